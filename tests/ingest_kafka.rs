//! Ingest on a real broker (Tansu, started by `cargo xtask test`): what was produced is what
//! was decoded, poison messages land in the dead-letter topic with their reasons and original
//! bytes, and offsets are committed only for acknowledged batches, so a restarted consumer
//! resumes exactly where processing ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use cluetrain::pipeline::{self, Observers};
use cluetrain_tests::{
    Outgoing, committed, config, create_topic, generated, header, produce, read_all, unique,
};
use ingest::dead_letter::header as dlq;
use ingest::source::{self, RunMode};
use ingest::{IngestMetrics, RejectReason};
use model::schema::col;
use rdkafka::Message;

async fn recv(
    rx: &mut tokio::sync::mpsc::Receiver<ingest::IngestBatch>,
) -> Option<ingest::IngestBatch> {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("a batch within 60s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_batches_match_what_was_produced() {
    let topic = unique("in");
    create_topic(&topic, 3).await;
    let events = generated(7, 500);
    let msgs: Vec<Outgoing> = events.iter().map(|(m, _)| m.clone()).collect();
    let coords = produce(&topic, &msgs).await;

    let mut cfg = config(&topic, &unique("dlq"));
    cfg.ingest.batch_rows_max = 64;
    let metrics = Arc::new(IngestMetrics::default());
    let (handle, mut rx) =
        source::start(&cfg.kafka, &cfg.ingest, RunMode::UntilEnd, metrics.clone()).unwrap();
    let acker = handle.acker();
    let mut seen: HashMap<String, (i32, i64, String, String, String)> = HashMap::new();
    while let Some(batch) = recv(&mut rx).await {
        assert!(
            batch.events.num_rows() <= 64,
            "batch_rows_max bounds every batch"
        );
        assert!(batch.rejects.is_empty());
        let b = &batch.events;
        let ids = b.column_by_name(col::EVENT_ID).unwrap().as_string::<i32>();
        let brands = b.column_by_name(col::BRAND).unwrap().as_string::<i32>();
        let texts = b.column_by_name(col::TEXT).unwrap().as_string::<i32>();
        let kinds = b.column_by_name(col::KIND).unwrap().as_string::<i32>();
        let parts = b
            .column_by_name(col::KAFKA_PARTITION)
            .unwrap()
            .as_primitive::<Int32Type>();
        let offs = b
            .column_by_name(col::KAFKA_OFFSET)
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let prev = seen.insert(
                ids.value(i).to_string(),
                (
                    parts.value(i),
                    offs.value(i),
                    brands.value(i).into(),
                    texts.value(i).into(),
                    kinds.value(i).into(),
                ),
            );
            assert!(
                prev.is_none(),
                "each message decoded once: {}",
                ids.value(i)
            );
        }
        acker.ack(&batch);
    }
    let summary = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(seen.len(), events.len(), "every produced event was decoded");
    for ((_, e), (p, o)) in events.iter().zip(&coords) {
        let (sp, so, brand, text, kind) = &seen[&e.event_id];
        assert_eq!((sp, so), (p, o), "Kafka coordinates of {}", e.event_id);
        assert_eq!(brand, &e.brand);
        assert_eq!(text, &e.text);
        assert_eq!(kind, e.kind.as_str());
    }
    // Everything was acknowledged, so everything is committed: end offset per partition.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in &coords {
        let e = ends.entry(*p).or_default();
        *e = (*e).max(o + 1);
    }
    assert_eq!(summary.committed, ends);
    assert_eq!(
        committed(&cfg.kafka.group_id, &topic, 3),
        ends,
        "the group's committed offsets"
    );
    assert_eq!(metrics.events_decoded.get(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dead_letter_topic_with_their_reason() {
    let topic = unique("in");
    let dead = unique("dlq");
    create_topic(&topic, 2).await;
    create_topic(&dead, 1).await;
    let valid = generated(11, 200);
    let good = String::from_utf8(valid[0].0.payload.clone().unwrap()).unwrap();
    let mut poison: Vec<(RejectReason, Outgoing)> = vec![
        (
            RejectReason::InvalidUtf8,
            Outgoing::new("acme", b"{\"text\":\"\xff\xfe\"}".to_vec()),
        ),
        (
            RejectReason::InvalidJson,
            Outgoing::new("acme", &good.as_bytes()[..good.len() / 2]),
        ),
        (
            RejectReason::InvalidJson,
            Outgoing::new("acme", "not json at all"),
        ),
        (
            RejectReason::SchemaViolation,
            Outgoing::new("acme", good.replacen("\"brand\"", "\"brnd\"", 1)),
        ),
        (
            RejectReason::SchemaViolation,
            Outgoing::new("acme", r#"{"event_id":"x","kind":"tweet"}"#),
        ),
        (
            RejectReason::SchemaViolation,
            Outgoing::new("acme", "[1,2,3]"),
        ),
        (
            RejectReason::Oversized,
            Outgoing::new("acme", format!("{{\"pad\":\"{}\"}}", "x".repeat(20_000))),
        ),
        (
            RejectReason::TimestampOutOfRange,
            Outgoing::new(
                "acme",
                good.replacen(&valid[0].1.created_at, "1999-12-31T23:59:59Z", 1),
            ),
        ),
        (
            RejectReason::EmptyPayload,
            Outgoing {
                key: Some(b"acme".to_vec()),
                payload: None,
                headers: vec![],
            },
        ),
    ];
    for (i, (_, m)) in poison.iter_mut().enumerate() {
        m.headers
            .push(("trace-id".into(), format!("t-{i}").into_bytes()));
    }
    let mut all: Vec<Outgoing> = valid.iter().map(|(m, _)| m.clone()).collect();
    // Interleave: poison in the middle of good traffic must not stop or lose anything.
    for (i, (_, m)) in poison.iter().enumerate() {
        all.insert(10 + i * 20, m.clone());
    }
    let coords = produce(&topic, &all).await;

    let mut cfg = config(&topic, &dead);
    cfg.ingest.message_bytes_max = 16_384;
    let observers = Observers::default();
    let report = pipeline::run(
        &cfg,
        RunMode::UntilEnd,
        observers.clone(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.events, 200);
    assert_eq!(report.dead_letters, poison.len() as u64);

    let letters = read_all(&dead, poison.len(), Duration::from_secs(30));
    assert_eq!(
        letters.len(),
        poison.len(),
        "every poison message was dead-lettered"
    );
    for (i, (reason, m)) in poison.iter().enumerate() {
        let trace = format!("t-{i}");
        let l = letters
            .iter()
            .find(|l| header(l, "trace-id").as_deref() == Some(trace.as_str()))
            .unwrap_or_else(|| {
                panic!("dead letter {trace} ({reason}) missing; original headers are kept")
            });
        assert_eq!(
            header(l, dlq::REASON).as_deref(),
            Some(reason.as_str()),
            "{trace}"
        );
        assert!(header(l, dlq::DETAIL).is_some_and(|d| !d.is_empty()));
        assert_eq!(
            l.payload(),
            m.payload.as_deref(),
            "original bytes of {trace}"
        );
        assert_eq!(l.key(), Some(&b"acme"[..]));
        let pos = all.iter().position(|a| a.headers == m.headers).unwrap();
        assert_eq!(
            header(l, dlq::SOURCE_TOPIC).as_deref(),
            Some(topic.as_str())
        );
        assert_eq!(
            header(l, dlq::SOURCE_PARTITION),
            Some(coords[pos].0.to_string())
        );
        assert_eq!(
            header(l, dlq::SOURCE_OFFSET),
            Some(coords[pos].1.to_string())
        );
    }
    for reason in RejectReason::ALL {
        let expected = poison.iter().filter(|(r, _)| *r == reason).count() as u64;
        assert_eq!(
            observers.ingest.dead_letters_for(reason),
            expected,
            "counted per reason: {reason}"
        );
    }
    // The dead-lettered messages' offsets are committed too: nothing is read twice.
    let total: i64 = committed(&cfg.kafka.group_id, &topic, 2).values().sum();
    assert_eq!(total, all.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_payloads_can_be_truncated_or_left_out() {
    use model::config::DeadLetterPayload;
    let valid = generated(13, 20);
    let good = String::from_utf8(valid[0].0.payload.clone().unwrap()).unwrap();
    let poison = [
        "not json at all, and rather long".to_string(),
        good.replacen("\"brand\"", "\"brnd\"", 1),
        "é".repeat(10), // cut at a character boundary, never inside one
    ];
    for mode in [DeadLetterPayload::Truncate, DeadLetterPayload::None] {
        let topic = unique("in");
        let dead = unique("dlq");
        create_topic(&topic, 1).await;
        create_topic(&dead, 1).await;
        let mut all: Vec<Outgoing> = valid.iter().map(|(m, _)| m.clone()).collect();
        for (i, p) in poison.iter().enumerate() {
            let mut m = Outgoing::new("acme", p.as_bytes().to_vec());
            m.headers
                .push(("trace-id".into(), format!("t-{i}").into_bytes()));
            all.insert(5 + i * 3, m);
        }
        produce(&topic, &all).await;
        let mut cfg = config(&topic, &dead);
        cfg.ingest.dead_letter_payload = mode;
        cfg.ingest.dead_letter_payload_bytes_max = 9;
        let report = pipeline::run(
            &cfg,
            RunMode::UntilEnd,
            Observers::default(),
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(report.dead_letters, poison.len() as u64, "{mode:?}");
        assert_eq!(report.events, valid.len() as u64, "{mode:?}");
        let letters = read_all(&dead, poison.len(), Duration::from_secs(30));
        assert_eq!(letters.len(), poison.len(), "{mode:?}");
        for (i, p) in poison.iter().enumerate() {
            let trace = format!("t-{i}");
            let l = letters
                .iter()
                .find(|l| header(l, "trace-id").as_deref() == Some(trace.as_str()))
                .unwrap_or_else(|| panic!("{mode:?}: dead letter {trace} missing"));
            assert!(header(l, dlq::REASON).is_some(), "{mode:?} {trace}: reason");
            assert_eq!(
                header(l, dlq::PAYLOAD_BYTES),
                Some(p.len().to_string()),
                "{mode:?} {trace}: the original length"
            );
            match mode {
                DeadLetterPayload::Truncate => {
                    let cut = l.payload().unwrap();
                    assert!(
                        cut.len() <= 9,
                        "{trace}: at most 9 bytes, got {}",
                        cut.len()
                    );
                    assert!(p.as_bytes().starts_with(cut), "{trace}: a prefix");
                    assert!(std::str::from_utf8(cut).is_ok(), "{trace}: still UTF-8");
                    assert_eq!(header(l, dlq::PAYLOAD).as_deref(), Some("truncated"));
                }
                _ => {
                    assert_eq!(l.payload(), None, "{trace}: no payload");
                    assert_eq!(header(l, dlq::PAYLOAD).as_deref(), Some("omitted"));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_at_the_last_acknowledged_batch() {
    let topic = unique("in");
    create_topic(&topic, 1).await;
    let msgs: Vec<Outgoing> = generated(3, 100).into_iter().map(|(m, _)| m).collect();
    produce(&topic, &msgs).await;

    let mut cfg = config(&topic, &unique("dlq"));
    cfg.ingest.batch_rows_max = 10;
    cfg.ingest.batch_wait_max = Duration::from_secs(30); // batches close on rows only
    cfg.ingest.shutdown_timeout = Duration::from_secs(1);
    cfg.kafka.commit_interval = Duration::from_millis(50);

    // First run: four batches arrive, only three are acknowledged, then the process "stops".
    let metrics = Arc::new(IngestMetrics::default());
    let (handle, mut rx) = source::start(
        &cfg.kafka,
        &cfg.ingest,
        RunMode::Continuous,
        metrics.clone(),
    )
    .unwrap();
    let acker = handle.acker();
    for i in 0..4 {
        let b = recv(&mut rx).await.unwrap();
        assert_eq!(
            b.offsets,
            vec![ingest::PartitionOffset {
                partition: 0,
                next_offset: (i + 1) * 10
            }]
        );
        if i < 3 {
            acker.ack(&b);
        }
    }
    // The periodic commit (every 50 ms) makes the acknowledged offsets visible...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while committed(&cfg.kafka.group_id, &topic, 1) != BTreeMap::from([(0, 30)]) {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged offsets committed within 20s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and never runs ahead of them, however many commits happen meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        committed(&cfg.kafka.group_id, &topic, 1),
        BTreeMap::from([(0, 30)])
    );
    handle.stop();
    drop(rx);
    let first = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.committed,
        BTreeMap::from([(0, 30)]),
        "unacknowledged batches are never committed"
    );

    // Second run, same group: resumes at offset 30 and reads the rest exactly once.
    let (handle, mut rx) =
        source::start(&cfg.kafka, &cfg.ingest, RunMode::UntilEnd, metrics).unwrap();
    let acker = handle.acker();
    let mut offsets = Vec::new();
    while let Some(b) = recv(&mut rx).await {
        let offs = b
            .events
            .column_by_name(col::KAFKA_OFFSET)
            .unwrap()
            .as_primitive::<Int64Type>();
        offsets.extend(offs.values().iter().copied());
        acker.ack(&b);
    }
    let second = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets, (30..100).collect::<Vec<i64>>());
    assert_eq!(second.committed, BTreeMap::from([(0, 100)]));
}

/// A bounded run learns that every partition ended, empty ones included and however late the
/// end is seen: until it does, an assigned partition holds the watermark, and the run's
/// windows would wait on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_end_reaches_the_pipeline_even_without_messages() {
    let topic = unique("in");
    create_topic(&topic, 3).await;
    // One key: every message on one partition, the other two stay empty.
    let msgs: Vec<Outgoing> = generated(11, 40)
        .into_iter()
        .map(|(mut m, _)| {
            m.key = Some(b"one-key".to_vec());
            m
        })
        .collect();
    let coords = produce(&topic, &msgs).await;
    let used = coords[0].0;
    assert!(coords.iter().all(|(p, _)| *p == used));

    let cfg = config(&topic, &unique("dlq"));
    let metrics = Arc::new(IngestMetrics::default());
    let (handle, mut rx) =
        source::start(&cfg.kafka, &cfg.ingest, RunMode::UntilEnd, metrics).unwrap();
    let acker = handle.acker();
    let mut last_ended = Vec::new();
    let mut rows = 0;
    while let Some(b) = recv(&mut rx).await {
        rows += b.events.num_rows();
        last_ended.clone_from(&b.ended);
        acker.ack(&b);
    }
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 40);
    assert_eq!(
        last_ended,
        vec![0, 1, 2],
        "the last batch says every partition is at its end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkage_through_the_broker_finds_who_answers() {
    use cluetrain::generate::{Generator, GeneratorOptions};
    let topic = unique("in");
    create_topic(&topic, 4).await;
    // ~2.5 hours of event time: fast brands answer most, slow brands few, within that time.
    let opts = GeneratorOptions {
        seed: 21,
        events_per_second: 0.4,
        duplicate_rate: 0.01,
        ..Default::default()
    };
    let generator = Generator::new(opts.clone());
    let brands = generator.brand_configs();
    let msgs: Vec<Outgoing> = generator
        .take(4000)
        .map(|m| Outgoing::new(&m.key, m.payload))
        .collect();
    produce(&topic, &msgs).await;

    let mut cfg = config(&topic, &unique("dlq"));
    cfg.brands = brands;
    let observers = Observers::default();
    let report = pipeline::run(
        &cfg,
        RunMode::UntilEnd,
        observers.clone(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(
        report.late_events, 0,
        "nothing is late in a replay: {report:?}"
    );
    let snap = observers.live.snapshot();
    assert_eq!(snap.brands.len(), 5);
    for (brand, c) in &snap.brands {
        assert!(
            c.inbound > 50 && c.responses > 0 && c.broadcasts > 0,
            "{brand}: {c:?}, {report:?}"
        );
        assert!(c.answered <= c.inbound, "{brand}");
        assert!(
            c.net_sentiment().is_some_and(|n| n < 0.5),
            "complaints outweigh praise: {brand}"
        );
    }
    let share = |b: &str| snap.brands[b].answered_share().unwrap();
    // initech_cloud answers 90 % of mentions with a 12-minute median; globex_energy 18 % after
    // ~10 hours. Inbound also counts comments and customers' follow-ups, which brands answer
    // less, so the shares are lower than the mention answer rates.
    assert!(share("initech_cloud") > 0.4, "{}", share("initech_cloud"));
    assert!(share("globex_energy") < 0.2, "{}", share("globex_energy"));
    assert!(share("initech_cloud") > 3.0 * share("globex_energy"));
    let frt = snap.brands["initech_cloud"]
        .median_first_response()
        .unwrap();
    assert!(
        (120.0..3600.0).contains(&frt),
        "initech median first response {frt}s"
    );
    assert!(snap.watermark.is_some());
}

/// Event-time alignment (`ingest.partition_drift_max`): a partition whose events run ahead of
/// the other's in event time is held back (its queue not read) until the other catches up,
/// and holding loses and repeats nothing, also when the records came in batches of many (it
/// never restarts a fetch: Tansu 0.6.0 answers a fetch that starts inside a record batch with
/// the batches after it, which made librdkafka's pause and resume lose messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_ahead_in_event_time_is_held_back_and_nothing_is_lost() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    const PER_PARTITION: usize = 3000;
    let topic = unique("in");
    create_topic(&topic, 2).await;
    // Partition 0 has an event every second, partition 1 every 5 s: read side by side, 1
    // would end up hours ahead of 0 (3,000 events: 50 min against 4 h 10 min).
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T08:00:00Z").unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluetrain_tests::brokers())
        .set("linger.ms", "50")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for (i, (_, mut e)) in generated(23, 2 * PER_PARTITION).into_iter().enumerate() {
        let p = i32::try_from(i % 2).unwrap();
        let step = if p == 0 { 1 } else { 5 };
        let k = i64::try_from(i / 2).unwrap();
        e.created_at = (start + chrono::Duration::seconds(k * step)).to_rfc3339();
        let payload = serde_json::to_vec(&e).unwrap();
        let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .partition(p)
            .key(e.brand.as_bytes())
            .payload(&payload);
        deliveries.push(producer.send_result(rec).map_err(|(e, _)| e).unwrap());
    }
    let mut produced = std::collections::BTreeSet::new();
    for d in deliveries {
        let d = d.await.unwrap().map_err(|(e, _)| e).unwrap();
        produced.insert((d.partition, d.offset));
    }
    assert_eq!(produced.len(), 2 * PER_PARTITION);

    let mut cfg = config(&topic, &unique("dlq"));
    cfg.ingest.partition_drift_max = Duration::from_secs(600);
    cfg.ingest.batch_rows_max = 256;
    let metrics = Arc::new(IngestMetrics::default());
    let (handle, mut rx) =
        source::start(&cfg.kafka, &cfg.ingest, RunMode::UntilEnd, metrics.clone()).unwrap();
    let acker = handle.acker();
    let mut seen = std::collections::BTreeSet::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
    let mut count: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut spread_max, mut measured) = (0i64, 0usize);
    while let Some(batch) = recv(&mut rx).await {
        let b = &batch.events;
        let parts = b
            .column_by_name(col::KAFKA_PARTITION)
            .unwrap()
            .as_primitive::<Int32Type>();
        let offs = b
            .column_by_name(col::KAFKA_OFFSET)
            .unwrap()
            .as_primitive::<Int64Type>();
        let times = b
            .column_by_name(col::CREATED_AT)
            .unwrap()
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let (p, o) = (parts.value(i), offs.value(i));
            assert!(seen.insert((p, o)), "({p}, {o}) read once");
            let last = last_offset.insert(p, o);
            assert!(
                last.is_none_or(|l| l < o),
                "partition {p} in offset order: {o} after {last:?}"
            );
            let t = newest.entry(p).or_insert(i64::MIN);
            *t = (*t).max(times.value(i));
            *count.entry(p).or_default() += 1;
        }
        // While both partitions have events still to read, neither runs far ahead.
        let both_reading = (0..2).all(|p| count.get(&p).is_some_and(|n| *n < PER_PARTITION));
        if both_reading {
            let spread = newest[&1].abs_diff(newest[&0]);
            spread_max = spread_max.max(i64::try_from(spread).unwrap());
            measured += 1;
        }
        acker.ack(&batch);
    }
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, produced, "every message read exactly once");
    assert!(
        metrics.partition_holds.get() > 0,
        "partition 1 was held back at least once"
    );
    assert!(
        measured >= 5,
        "the partitions were read side by side ({measured} batches while both had events left)"
    );
    // 10 minutes, plus what one turn of reads (512 messages of a partition, 5 s apart) can
    // add before the next decision.
    let bound = (600 + 512 * 5) * 1_000_000;
    assert!(
        spread_max <= bound,
        "one partition ran {} s ahead of the other (partition_drift_max 600 s)",
        spread_max / 1_000_000
    );
}
