//! `cluetrain demo`: the whole job in one process, with nothing installed.
//!
//! librdkafka's mock cluster plays the broker (it speaks the Kafka protocol, with consumer
//! groups and commits). It must stay on the thread that created it, so this function owns it
//! on the calling thread and runs everything else on a Tokio runtime and a producer thread.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::RunMode;
use model::config::Config;
use rdkafka::mocking::MockCluster;

use crate::cli::DemoArgs;
use crate::generate::{Generator, GeneratorOptions, Pacing, produce};
use crate::pipeline::{self, Observers};
use crate::stats::Snapshot;

/// Runs the demo until Ctrl-C or `--duration`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    let cluster = MockCluster::new(1).context("starting the embedded Kafka broker")?;
    let partitions = 4;
    cluster
        .create_topic(&config.kafka.input_topic, partitions, 1)
        .context("creating the input topic")?;
    cluster
        .create_topic(&config.kafka.dead_letter_topic, 1, 1)
        .context("creating the dead-letter topic")?;
    for topic in [
        &config.outputs.windows_topic,
        &config.outputs.late_events_topic,
    ] {
        cluster
            .create_topic(topic, 1, 1)
            .with_context(|| format!("creating the output topic {topic}"))?;
    }
    // Window history for SQL goes to a temporary directory of this demo run.
    let history = std::env::temp_dir().join(format!("cluetrain-demo-{}", std::process::id()));
    config.outputs.parquet_location = history.display().to_string();
    config.outputs.parquet_flush_interval = Duration::from_secs(5);
    // Checkpoints of this demo run only: the embedded broker starts empty every time, so a
    // previous run's offsets and state must not be restored.
    config.checkpoint.location = std::env::temp_dir()
        .join(format!("cluetrain-demo-{}-checkpoints", std::process::id()))
        .display()
        .to_string();
    config.sql.password = "demo".into();
    if let Some(a) = args.sql_listen {
        config.sql.listen = a;
    }
    config.kafka.bootstrap_servers = cluster.bootstrap_servers();
    config.kafka.group_id = "cluetrain-demo".into();
    // A partition without traffic must not hold the demo's windows back for a minute.
    config.linkage.idle_timeout = Duration::from_secs(5);
    // The demo fast-forwards event time; allow it to run ahead of the wall clock.
    config.ingest.event_time_future_max = Duration::from_secs(365 * 24 * 3600);
    crate::telemetry::init(&model::config::LogConfig {
        // The live screen shows dead letters as a count; warnings would scroll it.
        filter: "error".into(),
        ..config.log.clone()
    })?;

    let now = chrono::Utc::now().timestamp_micros();
    let gen_opts = GeneratorOptions {
        seed: args.seed,
        start_micros: now - 12 * 3600 * 1_000_000,
        events_per_second: args.events_per_second,
        poison_rate: 0.002,
        ..GeneratorOptions::default()
    };
    // The brands' own accounts, so linkage knows who speaks for each brand.
    config.brands = Generator::new(gen_opts.clone()).brand_configs();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let kafka = config.kafka.clone();
        let topic = config.kafka.input_topic.clone();
        let stop = stop.clone();
        let speedup = args.speedup;
        std::thread::Builder::new()
            .name("demo-generator".into())
            .spawn(move || {
                produce(
                    &kafka,
                    &topic,
                    Generator::new(gen_opts),
                    None,
                    Pacing::EventTime { speedup },
                    stop,
                    |_| {},
                )
            })?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(a) = args.admin_listen {
        config.admin.listen = a;
    }
    let (observers, registry) = Observers::with_metrics(&config);
    let admin = runtime.block_on(crate::admin::AdminServer::bind(
        config.admin.listen,
        std::sync::Arc::new(registry),
        observers.health.clone(),
        config.admin.ready_stall,
    ))?;
    let admin_addr = admin.local_addr()?;
    let sql = crate::sql_server::SqlServer::start(
        &config.outputs.parquet_location,
        &config.sql,
        Some(observers.tables.clone()),
    )?;
    let sql_addr = sql.local_addr();
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = runtime.spawn(admin.serve(async {
        let _ = admin_stopped.await;
    }));
    let plain = args.plain || !std::io::stdout().is_terminal();
    let header = format!(
        "cluetrain demo: embedded Kafka at {} | topic {} ({partitions} partitions) | speedup {}x | Ctrl-C to stop\nmetrics: http://{admin_addr}/metrics (health: /livez, /readyz)\nSQL: PGPASSWORD=demo psql -h {} -p {} -U {} -c 'SELECT brand, window_start, inbound, response_rate FROM engagement_windows ORDER BY window_start DESC LIMIT 10'",
        config.kafka.bootstrap_servers,
        config.kafka.input_topic,
        args.speedup,
        sql_addr.ip(),
        sql_addr.port(),
        config.sql.user
    );
    if plain {
        println!("{header}");
    }
    let duration = args.duration;
    let result = runtime.block_on(async {
        let started = Instant::now();
        let shutdown = async move {
            match duration {
                Some(d) => tokio::select! {
                    () = pipeline::shutdown_signal() => {},
                    () = tokio::time::sleep(d) => {},
                },
                None => pipeline::shutdown_signal().await,
            }
        };
        let live = observers.live.clone();
        let header2 = header.clone();
        let printer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(if plain { 5 } else { 1 }));
            loop {
                tick.tick().await;
                let s = live.snapshot();
                let text = render(&header2, &s, started.elapsed());
                let mut out = std::io::stdout().lock();
                if plain {
                    let _ = writeln!(out, "{}", summary_line(&s));
                } else {
                    // Clear the screen and draw from the top left.
                    let _ = write!(out, "\x1b[2J\x1b[H{text}");
                }
                let _ = out.flush();
            }
        });
        let report = pipeline::run(&config, RunMode::Continuous, observers.clone(), shutdown).await;
        printer.abort();
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        report
    });
    stop.store(true, Ordering::Relaxed);
    sql.stop();
    let _ = std::fs::remove_dir_all(&history);
    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
    let report = result?;
    let s = observers.live.snapshot();
    println!("\n{}", render(&header, &s, Duration::ZERO));
    println!(
        "stopped cleanly: {} messages produced, {} events decoded, {} dead-lettered, offsets committed {:?}",
        produced.sent, report.events, report.dead_letters, report.source.committed
    );
    drop(cluster);
    Ok(())
}

fn format_seconds(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.0}s")
    } else if secs < 3600.0 {
        format!("{:.0}m", secs / 60.0)
    } else {
        format!("{:.1}h", secs / 3600.0)
    }
}

fn summary_line(s: &Snapshot) -> String {
    format!(
        "events={} dead_letters={} rate={:.0} msg/s brands={}",
        s.events,
        s.dead_letters,
        s.messages_per_second,
        s.brands.len()
    )
}

fn render(header: &str, s: &Snapshot, elapsed: Duration) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{header}");
    if !elapsed.is_zero() {
        let _ = writeln!(t, "running {:.0}s", elapsed.as_secs_f64());
    }
    let _ = writeln!(t, "\n{}", summary_line(s));
    if let Some(w) = s
        .watermark
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_micros)
    {
        let _ = writeln!(
            t,
            "event time (watermark): {}",
            w.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:<16} {:>7} {:>8} {:>9} {:>10} {:>9} {:>12} {:>9}",
        "brand",
        "events",
        "inbound",
        "answers",
        "broadcasts",
        "answered",
        "median FRT",
        "net sent."
    );
    for (brand, c) in &s.brands {
        let pct = c
            .answered_share()
            .map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0));
        let frt = c
            .median_first_response()
            .map_or("-".to_string(), format_seconds);
        let net = c
            .net_sentiment()
            .map_or("-".to_string(), |n| format!("{n:+.2}"));
        let _ = writeln!(
            t,
            "{:<16} {:>7} {:>8} {:>9} {:>10} {:>9} {:>12} {:>9}",
            brand, c.events, c.inbound, c.responses, c.broadcasts, pct, frt, net
        );
    }
    let _ = writeln!(
        t,
        "\nanswered = inbound messages answered so far (answers can take hours: the share grows); \
         FRT = first-response time; net sent. = (positive - negative) / (positive + negative) inbound"
    );
    t
}
