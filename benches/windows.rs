//! Window aggregation stage: the DataFusion window engine over linked facts (every default
//! window spec, by brand as the default `windows.group_by`), with emission as the
//! watermark moves, events/s on one core.
//!
//! The facts are those enrichment makes of the generated traffic in micro-batches of 8192
//! events; each iteration starts from an empty engine and ingests and advances every batch.

// Setup on generated inputs: a panic is a broken bench, reported as such.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support.rs"]
mod support;

const EVENTS: usize = 65_536;

fn windows(c: &mut Criterion) {
    let set = support::engine_inputs(EVENTS);
    let cfg = set.engine_config();
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(set.rows as u64));
    group.bench_function("engine_65536", |b| {
        b.iter_batched(
            || aggregate::WindowEngine::new(cfg.clone()),
            |mut engine| black_box(set.drive(&mut engine).iter().map(Vec::len).sum::<usize>()),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, windows);
criterion_main!(benches);
