//! Inputs of the stage benches that run on the real generator's traffic (and so link the
//! `cluetrain` crate): `linkage`, `windows`, `metrics`. Deterministic: seed 7 from a fixed
//! start, the same traffic as the end-to-end bench's preload.

// Each bench uses part of this; setup panics are broken benches.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Instant;

use arrow_array::RecordBatch;
use cluetrain::enrichment::Enrichment;
use cluetrain::generate::{GeneratedMessage, Generator, GeneratorOptions};
use ingest::{DecodeLimits, Decoder};
use model::EventBatchBuilder;
use model::config::Config;

/// Rows per micro-batch: `ingest.batch_rows_max`'s default.
pub const BATCH_ROWS: usize = 8192;

/// Generated traffic, decoded into micro-batches of one partition.
pub struct Inputs {
    /// The default configuration with the generator's brands.
    pub config: Config,
    /// The messages, in delivery order.
    pub messages: Vec<GeneratedMessage>,
    /// The messages decoded into batches of [`BATCH_ROWS`] (partition 0).
    pub batches: Vec<RecordBatch>,
}

/// `n` generated messages (seed 7, from 2026-01-05T08:00:00Z, as `cargo xtask bench`).
pub fn inputs(n: usize) -> Inputs {
    let opts = GeneratorOptions {
        seed: 7,
        start_micros: 1_767_600_000_000_000,
        ..GeneratorOptions::default()
    };
    let config = Config {
        brands: Generator::new(opts.clone()).brand_configs(),
        ..Config::default()
    };
    let messages: Vec<GeneratedMessage> = Generator::new(opts).take(n).collect();
    let decoder = Decoder::new(DecodeLimits::from_config(&config.ingest));
    // The wall clock, as the pipeline decodes: `ingest.event_time_future_max` rejects events
    // ahead of it, so a fixed `now` of 0 (1970) rejected every event and left the engine
    // benches measuring empty batches.
    let now = chrono::Utc::now().timestamp_micros();
    let mut batches = Vec::new();
    let mut decoded = 0;
    for (c, chunk) in messages.chunks(BATCH_ROWS).enumerate() {
        let mut b = EventBatchBuilder::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            let offset = (c * BATCH_ROWS + i) as i64;
            match decoder.decode_into(Some(&m.payload), now, &mut b, 0, offset) {
                Ok(()) => decoded += 1,
                // The generator's poison messages: rejected, as they should be.
                Err(_) if m.event.is_none() => {}
                Err(r) => panic!("generated event {offset} was rejected: {r:?}"),
            }
        }
        batches.push(b.finish().unwrap());
    }
    let valid = messages.iter().filter(|m| m.event.is_some()).count();
    assert!(
        decoded == valid && valid > 0,
        "decoded {decoded} of {valid} valid generated events"
    );
    Inputs {
        config,
        messages,
        batches,
    }
}

/// Enrichment of one partition, as the pipeline sets it up.
pub fn enrichment(config: &Config) -> Enrichment {
    let mut e = Enrichment::new(config).unwrap();
    e.assignment(&[0], &[], &[], Instant::now());
    e
}

/// The linked facts of every batch with the watermark after it: the window engine's input.
pub fn facts(inputs: &Inputs) -> Vec<(RecordBatch, Option<i64>)> {
    let mut e = enrichment(&inputs.config);
    inputs
        .batches
        .iter()
        .map(|b| {
            let out = e.process(b, Instant::now()).unwrap();
            (out.facts, out.watermark)
        })
        .collect()
}

/// The set-up the engine-driven benches (`windows`, `metrics`) share: `n` generated events as
/// fact batches, their row count, a fixed emission time and a one-thread runtime.
pub struct EngineInputs {
    /// The generated traffic.
    pub inputs: Inputs,
    /// Fact batches, each with the watermark after it (if any).
    pub facts: Vec<(RecordBatch, Option<i64>)>,
    /// Event rows in all batches: the throughput unit.
    pub rows: usize,
    /// `emitted_at` of every record.
    pub wall: chrono::DateTime<chrono::Utc>,
    /// The runtime the engine's DataFusion queries run on (one core).
    pub rt: tokio::runtime::Runtime,
}

/// [`EngineInputs`] for `n` generated messages.
pub fn engine_inputs(n: usize) -> EngineInputs {
    let inputs = inputs(n);
    let facts = facts(&inputs);
    let rows = inputs.batches.iter().map(|b| b.num_rows()).sum();
    let fact_rows: usize = facts.iter().map(|(f, _)| f.num_rows()).sum();
    // A bench over no facts measures nothing (it once did: see `inputs`).
    assert!(
        fact_rows > 0 && facts.iter().any(|(_, w)| w.is_some()),
        "{rows} events gave {fact_rows} fact rows and no watermark: the engine would be idle"
    );
    EngineInputs {
        inputs,
        facts,
        rows,
        wall: "2026-06-01T00:00:00Z".parse().unwrap(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    }
}

impl EngineInputs {
    /// The engine's default configuration for these inputs.
    pub fn engine_config(&self) -> aggregate::EngineConfig {
        cluetrain::job::engine_config(&self.inputs.config).unwrap()
    }

    /// Ingests every batch into `engine` and advances it after each: the records of each.
    pub fn drive(&self, engine: &mut aggregate::WindowEngine) -> Vec<Vec<model::WindowRecord>> {
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(self.facts.len());
            for (f, w) in &self.facts {
                engine.ingest(f).await.unwrap();
                out.push(w.map(|w| engine.advance(w, self.wall)).unwrap_or_default());
            }
            out
        })
    }
}
