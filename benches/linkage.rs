//! Linkage stage: each event's role, reply-to-parent links, first responses and response
//! effects, events/s on one core.
//!
//! `linkage/linker` is `enrich::linkage::Linker` alone, fed in event-time order as enrichment
//! feeds it; `linkage/enrichment` is the whole `Enrichment::process` the pipeline runs per
//! micro-batch: sentiment columns, the lateness screen, the reorder buffer, linkage, department
//! routing and the linked facts. Their difference is what enrichment costs around linkage.

// Setup on generated inputs: a panic is a broken bench, reported as such.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use enrich::linkage::{LinkInput, Linker, LinkerConfig};

#[path = "support.rs"]
mod support;

/// Events per iteration: enough for linkage state to matter (parents found, replies held).
const EVENTS: usize = 65_536;

fn linkage(c: &mut Criterion) {
    let inputs = support::inputs(EVENTS);
    let mut events: Vec<model::SocialEvent> = inputs
        .messages
        .iter()
        .filter_map(|m| m.event.clone())
        .collect();
    events.sort_by_key(|e| e.created_at_micros().unwrap_or(0));
    let times: Vec<i64> = events
        .iter()
        .map(|e| e.created_at_micros().unwrap_or(0))
        .collect();
    let cfg = LinkerConfig {
        horizon_micros: 24 * 3600 * 1_000_000,
        entries_max: 1_000_000,
        accounts: inputs
            .config
            .brands
            .iter()
            .map(|b| (b.name.clone(), b.accounts.iter().cloned().collect()))
            .collect(),
        ..LinkerConfig::default()
    };

    let mut group = c.benchmark_group("linkage");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("linker_65536", |b| {
        let mut out = Vec::with_capacity(events.len() * 2);
        b.iter_batched(
            || Linker::new(cfg.clone()),
            |mut linker| {
                out.clear();
                for (i, (e, &t)) in events.iter().zip(&times).enumerate() {
                    linker.observe(
                        &LinkInput {
                            event_id: &e.event_id,
                            brand: &e.brand,
                            kind: e.kind,
                            author_id: &e.author.id,
                            author_handle: e.author.handle.as_deref(),
                            author_is_org: e.author.is_org,
                            in_reply_to: e.in_reply_to.as_deref(),
                            created_at: t,
                            compound: 0.0,
                            tag: 0,
                        },
                        &mut out,
                    );
                    if i % support::BATCH_ROWS == support::BATCH_ROWS - 1 {
                        linker.advance(t, &mut out);
                    }
                }
                black_box(out.len())
            },
            BatchSize::LargeInput,
        );
    });
    let rows: usize = inputs.batches.iter().map(|b| b.num_rows()).sum();
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("enrichment_65536", |b| {
        b.iter_batched(
            || support::enrichment(&inputs.config),
            |mut e| {
                let mut n = 0;
                for batch in &inputs.batches {
                    n += e.process(batch, Instant::now()).unwrap().facts.num_rows();
                }
                black_box(n)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, linkage);
criterion_main!(benches);
