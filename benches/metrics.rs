//! Metrics stage: the Prometheus side of a micro-batch (`PipelineMetrics::observe_facts` and
//! `observe_records`, per event) and one scrape of `/metrics` (OpenMetrics text encoding of
//! every series the generated traffic creates), on one core.

// Setup on generated inputs: a panic is a broken bench, reported as such.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use cluetrain::metrics::PipelineMetrics;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support.rs"]
mod support;

const EVENTS: usize = 65_536;

fn metrics(c: &mut Criterion) {
    let set = support::engine_inputs(EVENTS);
    let (inputs, facts, rows) = (&set.inputs, &set.facts, set.rows);
    let mut engine = aggregate::WindowEngine::new(set.engine_config());
    let records = set.drive(&mut engine);
    let (longest, backlog) = (
        engine.longest_window_seconds(),
        engine.backlog_window_seconds(),
    );

    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(rows as u64));
    let m = PipelineMetrics::new(&inputs.config);
    group.bench_function("observe_65536", |b| {
        b.iter(|| {
            for (f, r) in facts.iter().zip(&records) {
                m.observe_facts(&f.0);
                m.observe_records(r, longest, backlog);
            }
        });
    });
    let mut registry = prometheus_client::registry::Registry::default();
    m.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    group.throughput(Throughput::Elements(series as u64));
    group.bench_function(format!("encode_scrape_{series}_series"), |b| {
        b.iter(|| {
            text.clear();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            black_box(text.len())
        });
    });
    group.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
