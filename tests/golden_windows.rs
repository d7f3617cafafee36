//! Golden window tests: each folder under `tests/data/windows/` holds a configuration
//! (`config.toml`), input events (`input.jsonl`, one event per line, each line its own
//! micro-batch) and the expected output (`expected.jsonl`: every window record in emission
//! order, then the ids of late events).
//!
//! Input lines are schema events; two extra fields, which the decoder ignores like any unknown
//! field, steer the run: `_partition` (default 0) and `_wall_seconds`, the wall-clock time at
//! which the event is observed (for idle-partition cases; default: the previous line's). A
//! line with `_assigned` alone sets the consumer's assignment, and its `_at_end` the
//! partitions the source reports at their end.
//!
//! The run uses the same [`Job`] as the pipeline, then ends like `cluetrain run --until-end`
//! (every window emitted as final). To accept a deliberate change of output, run with
//! `CLUETRAIN_BLESS=1` and review the diff of the expected files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cluetrain_tests::golden::{
    cases_dir, finals, run_case, run_case_overlapped, run_case_restoring,
};
use serde_json::Value;

fn check(case: &str) {
    let dir = cases_dir().join(case);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(run_case(&dir));
    // Arroyo's rule: every golden case also runs checkpoint → restore (here between every two
    // batches, from full checkpoints; then every third batch, from a full checkpoint and the
    // incremental ones on top of it) and must give exactly the same output.
    for every in [1, 3] {
        let restored = rt.block_on(run_case_restoring(&dir, every));
        for (i, (g, r)) in got.iter().zip(&restored).enumerate() {
            assert_eq!(
                g,
                r,
                "{case}: output line {} differs after checkpoint and restore every {every} \
                 batches (uninterrupted left)",
                i + 1
            );
        }
        assert_eq!(
            got.len(),
            restored.len(),
            "{case}: restored run (every {every} batches) gives another number of lines"
        );
    }
    // And as the pipeline runs on a backlog (`windows.overlap_enrichment`): the engine of each
    // batch beside the next one's enrichment, on a multi-threaded runtime as in the binary.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let overlapped = mt.block_on(run_case_overlapped(&dir));
    assert_eq!(
        got, overlapped,
        "{case}: output differs with the window engine beside the next batch's enrichment \
         (one after the other left)"
    );
    let expected_path = dir.join("expected.jsonl");
    let rendered: String = got
        .iter()
        .map(|v| serde_json::to_string(v).unwrap() + "\n")
        .collect();
    if std::env::var_os("CLUETRAIN_BLESS").is_some() {
        std::fs::write(&expected_path, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with CLUETRAIN_BLESS=1 to create it, then check it by hand",
            expected_path.display()
        )
    });
    let exp: Vec<Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, (g, e)) in got.iter().zip(&exp).enumerate() {
        assert_eq!(
            g,
            e,
            "{case}: output line {} differs (got left, expected right)",
            i + 1
        );
    }
    assert_eq!(
        got.len(),
        exp.len(),
        "{case}: {} output lines, {} expected",
        got.len(),
        exp.len()
    );
}

/// Looks a record up in a case's output: the `nth` record of brand and window start.
fn record<'a>(lines: &'a [Value], start: &str, pred: impl Fn(&Value) -> bool) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["window_start"] == start && pred(v))
        .collect()
}

#[test]
fn basic_figures() {
    check("basic");
}

#[test]
fn hopping_and_tumbling_side_by_side() {
    // Blessed with the engine that assigned windows in SQL, before panes: the pane merge must
    // give the same records.
    check("hopping");
}

#[test]
fn out_of_order_input() {
    check("out_of_order");
}

#[test]
fn late_events_within_and_beyond_the_lateness() {
    check("late_events");
}

#[test]
fn replies_before_parents() {
    check("reply_before_parent");
}

#[test]
fn idle_partitions_do_not_hold_windows_open() {
    check("idle_partition");
}

#[test]
fn a_partition_silent_to_the_end_still_gets_every_event_linked() {
    check("silent_partition");
}

#[test]
fn an_empty_partition_at_its_end_does_not_hold_a_cold_start() {
    check("empty_partition");
}

#[test]
fn business_hours_across_a_dst_change() {
    check("business_hours_dst");
}

#[test]
fn duplicate_event_ids_count_once() {
    check("duplicates");
}

#[test]
fn an_answer_after_the_window_closed_is_revision_two() {
    check("answer_after_close");
}

/// `windows.revision_interval`: changes to a closed window within the interval since its last
/// emission wait for the next batch after it, or for the final; none is lost.
#[test]
fn revisions_of_a_closed_window_wait_for_the_revision_interval() {
    check("revision_interval");
}

/// Out-of-order delivery within the bound gives the same final windows as sorted input.
#[test]
fn out_of_order_finals_equal_sorted_finals() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shuffled = rt.block_on(run_case(&cases_dir().join("out_of_order")));
    let sorted = rt.block_on(run_case(&cases_dir().join("basic")));
    assert!(!finals(&sorted).is_empty());
    assert_eq!(finals(&shuffled), finals(&sorted));
    // And the answered window is visible with its first response, checked by hand in basic.
    let w = record(&sorted, "2026-03-02T10:00:00Z", |v| v["final"] == true);
    assert_eq!(w.len(), 1);
}

/// With `[privacy]` on, no raw author id or handle reaches anything the pipeline publishes or
/// shows (records, late events, forwards, the enriched batch, linkage's reports behind
/// `voices`, open conversations), and every final figure is the same as without it: the
/// brand's accounts are still recognised. Every case, each author given a handle.
#[test]
fn pseudonymised_runs_export_no_raw_user_id_and_the_same_figures() {
    use std::collections::HashSet;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("hmac.key");
    std::fs::write(&key_file, "golden-0123456789abcdef0123456789abcdef\n").unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(cases_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("input.jsonl").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 9, "{cases:?}");
    for dir in cases {
        let plain = cluetrain::settings::load(Some(&dir.join("config.toml"))).unwrap();
        let mut private = plain.clone();
        private.privacy.pseudonymise_user_ids = true;
        private.privacy.hmac_key_file = key_file.display().to_string();
        let accounts: HashSet<String> = plain
            .brands
            .iter()
            .flat_map(|b| b.accounts.iter().cloned())
            .collect();
        let (mut raw, mut other) = (HashSet::new(), HashSet::new());
        let mut input = String::new();
        for line in std::fs::read_to_string(dir.join("input.jsonl"))
            .unwrap()
            .lines()
        {
            let Ok(mut v) = serde_json::from_str::<Value>(line) else {
                input.push_str(line);
                input.push('\n');
                continue;
            };
            if let Some(id) = v["author"]["id"].as_str().map(str::to_string) {
                let handle = format!("Handle_{id}");
                if !accounts.contains(&id) {
                    raw.insert(id.clone());
                    raw.insert(handle.clone());
                }
                v["author"]["handle"] = Value::from(handle);
            }
            for k in ["event_id", "in_reply_to", "brand", "platform"] {
                if let Some(s) = v[k].as_str() {
                    other.insert(s.to_string());
                }
            }
            input.push_str(&v.to_string());
            input.push('\n');
        }
        // An author id that is also a message id or a brand would be found legitimately.
        raw.retain(|r| !other.contains(r));
        assert!(!raw.is_empty(), "{}", dir.display());
        let expected = rt.block_on(cluetrain_tests::golden::run_input(
            &dir,
            &plain,
            &input,
            &mut |_| {},
        ));
        let mut exported = Vec::new();
        let got = rt.block_on(cluetrain_tests::golden::run_input(
            &dir,
            &private,
            &input,
            &mut |t| exported.push(t),
        ));
        assert!(!finals(&expected).is_empty(), "{}", dir.display());
        assert_eq!(finals(&got), finals(&expected), "{}", dir.display());
        assert_eq!(got.len(), expected.len(), "{}", dir.display());
        let all = exported.join("\n");
        for r in &raw {
            assert!(
                !all.contains(&format!("\"{r}\"")),
                "{}: raw user id {r:?} exported",
                dir.display()
            );
        }
        assert!(
            all.contains("\"u_"),
            "{}: pseudonyms exported",
            dir.display()
        );
        assert!(all.contains("\"h_"), "{}: handle pseudonyms", dir.display());
    }
}

mod reordering {
    //! Property: delivering events in any order within the out-of-orderness bound, cut into
    //! micro-batches anywhere, leaves every final window record unchanged.
    use std::time::{Duration, Instant};

    use cluetrain::generate::{Generator, GeneratorOptions};
    use cluetrain::job::Job;
    use cluetrain_tests::golden::finals;
    use ingest::{DecodeLimits, Decoder};
    use model::EventBatchBuilder;
    use model::config::{Config, WindowSpecConfig};
    use proptest::prelude::*;
    use serde_json::Value;

    const OOO_MICROS: i64 = 60_000_000;

    /// (event time, partition, payload).
    type Event = (i64, i32, Vec<u8>);

    fn config() -> Config {
        let mut c = Config::default();
        c.linkage.response_horizon = Duration::from_secs(2 * 3600);
        c.linkage.out_of_orderness = Duration::from_micros(OOO_MICROS as u64);
        c.linkage.idle_timeout = Duration::from_secs(3600);
        c.windows.allowed_lateness = Duration::from_secs(300);
        c.windows.specs = vec![
            WindowSpecConfig {
                size: Duration::from_secs(600),
                slide: None,
            },
            WindowSpecConfig {
                size: Duration::from_secs(3600),
                slide: Some(Duration::from_secs(900)),
            },
        ];
        c.outputs.parquet_location = String::new();
        c.ingest.event_time_future_max = Duration::from_secs(10 * 365 * 24 * 3600);
        c
    }

    /// (time, partition, payload) of generated events, in event-time order.
    fn events() -> (Vec<Event>, Vec<model::config::BrandConfig>) {
        generated(
            GeneratorOptions {
                seed: 11,
                start_micros: 1_772_438_400_000_000, // 2026-03-02T08:00:00Z
                events_per_second: 0.5,
                duplicate_rate: 0.03,
                disorder_rate: 0.0,
                ..Default::default()
            },
            500,
        )
    }

    /// `n` events generated with `opts` as (time, partition, payload), in event-time order,
    /// and the generator's brands.
    fn generated(
        opts: GeneratorOptions,
        n: usize,
    ) -> (Vec<Event>, Vec<model::config::BrandConfig>) {
        let brands = Generator::new(opts.clone()).brand_configs();
        let mut v: Vec<Event> = Generator::new(opts)
            .take(n)
            .filter_map(|m| {
                let e = m.event?;
                let t = e.created_at_micros().ok()?;
                let p = i32::from(m.key.bytes().fold(0u8, |a, b| a.wrapping_add(b)) % 2);
                Some((t, p, m.payload))
            })
            .collect();
        v.sort_by_key(|e| e.0);
        (v, brands)
    }

    fn run(
        events: &[(i64, i32, Vec<u8>)],
        cuts: &[usize],
        brands: &[model::config::BrandConfig],
    ) -> Vec<Value> {
        run_specs(config().windows.specs, events, cuts, brands)
    }

    fn run_specs(
        specs: Vec<WindowSpecConfig>,
        events: &[(i64, i32, Vec<u8>)],
        cuts: &[usize],
        brands: &[model::config::BrandConfig],
    ) -> Vec<Value> {
        let mut cfg = config();
        cfg.windows.specs = specs;
        cfg.brands = brands.to_vec();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut job = Job::new(&cfg).unwrap();
            let decoder = Decoder::new(DecodeLimits::from_config(&cfg.ingest));
            let wall: chrono::DateTime<chrono::Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
            let now = Instant::now();
            let mut out = Vec::new();
            let mut start = 0;
            let mut bounds: Vec<usize> =
                cuts.iter().copied().filter(|c| *c < events.len()).collect();
            bounds.push(events.len());
            bounds.sort_unstable();
            for end in bounds {
                if end <= start {
                    continue;
                }
                let mut b = EventBatchBuilder::with_capacity(end - start);
                for (i, (_, p, payload)) in events[start..end].iter().enumerate() {
                    decoder
                        .decode_into(Some(payload), i64::MAX / 2, &mut b, *p, (start + i) as i64)
                        .unwrap();
                }
                let step = job.process(&b.finish().unwrap(), now, wall).await.unwrap();
                assert!(
                    step.enriched.late.is_empty(),
                    "nothing is late within the bound"
                );
                out.extend(
                    step.records
                        .iter()
                        .map(|r| serde_json::to_value(r).unwrap()),
                );
                start = end;
            }
            let (records, _) = job.finish(wall).await.unwrap();
            out.extend(records.iter().map(|r| serde_json::to_value(r).unwrap()));
            finals(&out)
        })
    }

    /// The final records of one-hour windows with everything that depends on the slide
    /// removed (the previous window, so `sentiment_shift`, is an hour or a slide earlier).
    fn hour_windows(finals: &[Value]) -> Vec<Value> {
        finals
            .iter()
            .filter(|v| {
                v["window_seconds"] == 3600
                    && v["window_start"]
                        .as_str()
                        .is_some_and(|s| s.ends_with(":00:00Z"))
            })
            .cloned()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                o.remove("slide_seconds");
                o.remove("sentiment_shift");
                v
            })
            .collect()
    }

    /// A window combined from 12 panes (sliding by 5 min) has the figures of the same window
    /// kept as one pane (tumbling): sums, response-time quantiles (merged from the panes'
    /// sorted runs), thread depth (most turns per conversation over the panes), departments,
    /// backlog, share of voice; the sliding run cut into batches of 97 events, so panes
    /// change between emissions.
    #[test]
    fn a_window_combined_from_its_panes_equals_the_window_as_one_pane() {
        let (events, brands) = generated(
            GeneratorOptions {
                seed: 5,
                start_micros: 1_772_438_400_000_000, // 2026-03-02T08:00:00Z, on the hour
                events_per_second: 0.4,
                duplicate_rate: 0.02,
                disorder_rate: 0.0,
                ..Default::default()
            },
            4_000,
        );
        let hour = |slide: Option<u64>| {
            vec![WindowSpecConfig {
                size: Duration::from_secs(3600),
                slide: slide.map(Duration::from_secs),
            }]
        };
        let cuts: Vec<usize> = (1..40).map(|k| k * 97).collect();
        let tumbling = hour_windows(&run_specs(hour(None), &events, &[], &brands));
        let sliding = hour_windows(&run_specs(hour(Some(300)), &events, &cuts, &brands));
        assert!(tumbling.len() >= 5, "the corpus makes hour windows");
        let answered: u64 = tumbling
            .iter()
            .map(|v| v["answered"].as_u64().unwrap_or(0))
            .sum();
        assert!(answered > 20, "with response times to merge ({answered})");
        assert!(
            tumbling
                .iter()
                .any(|v| v["thread_depth"].as_f64().is_some()),
            "and thread depths"
        );
        assert_eq!(sliding.len(), tumbling.len());
        for (s, t) in sliding.iter().zip(&tumbling) {
            assert_eq!(s, t);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn shuffling_within_the_bound_leaves_final_windows_unchanged(
            delays in proptest::collection::vec(0..OOO_MICROS, 600),
            cuts in proptest::collection::vec(0usize..600, 0..40),
        ) {
            let (sorted, brands) = events();
            let reference = run(&sorted, &[], &brands);
            prop_assert!(reference.len() > 10, "the corpus makes windows");
            // Each event is delivered as if delayed by up to the out-of-orderness.
            let mut shuffled: Vec<(i64, Event)> = sorted
                .iter()
                .cloned()
                .zip(delays.iter().cycle())
                .map(|(e, d)| (e.0 + d, e))
                .collect();
            shuffled.sort_by_key(|(k, _)| *k);
            let shuffled: Vec<_> = shuffled.into_iter().map(|(_, e)| e).collect();
            let got = run(&shuffled, &cuts, &brands);
            prop_assert_eq!(got, reference);
        }
    }
}
