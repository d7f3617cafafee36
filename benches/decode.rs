//! Decode stage: JSON payloads → validated events → Arrow batch, events/s on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ingest::{DecodeLimits, Decoder};
use model::EventBatchBuilder;

fn payloads(n: usize) -> Vec<Vec<u8>> {
    cluetrain_benches::generated_payloads(n)
}

fn decode(c: &mut Criterion) {
    let inputs = payloads(8192);
    let decoder = Decoder::new(DecodeLimits::schema_only());
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("json_to_arrow_batch_8192", |b| {
        let mut builder = EventBatchBuilder::with_capacity(inputs.len());
        b.iter(|| {
            for (i, p) in inputs.iter().enumerate() {
                let _ = decoder.decode_into(Some(p), 0, &mut builder, 0, i as i64);
            }
            black_box(builder.finish())
        });
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
