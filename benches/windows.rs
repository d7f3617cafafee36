//! Window aggregation stage: the DataFusion window engine over linked facts (every default
//! window spec, by brand as the default `windows.group_by`), with emission as the
//! watermark moves, events/s on one core.
//!
//! The facts are those enrichment makes of the generated traffic in micro-batches of 8192
//! events; each iteration starts from an empty engine and ingests and advances every batch.

// Setup on generated inputs: a panic is a broken bench, reported as such.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use cluetrain::job::engine_config;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support.rs"]
mod support;

const EVENTS: usize = 65_536;

fn windows(c: &mut Criterion) {
    let inputs = support::inputs(EVENTS);
    let facts = support::facts(&inputs);
    let rows: usize = inputs.batches.iter().map(|b| b.num_rows()).sum();
    let cfg = engine_config(&inputs.config).unwrap();
    let wall: chrono::DateTime<chrono::Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("engine_65536", |b| {
        b.iter_batched(
            || aggregate::WindowEngine::new(cfg.clone()),
            |mut engine| {
                rt.block_on(async {
                    let mut records = 0;
                    for (f, w) in &facts {
                        engine.ingest(f).await.unwrap();
                        if let Some(w) = w {
                            records += engine.advance(*w, wall).len();
                        }
                    }
                    black_box(records)
                })
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, windows);
criterion_main!(benches);
