//! `cluetrain`: see `cluetrain --help` and the README.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::Parser;
use cluetrain::cli::{Cli, Command, ConfigArgs, GenerateArgs, ReplayArgs, RunArgs, SqlArgs};
use cluetrain::generate::{Generator, GeneratorOptions, Pacing, produce};
use cluetrain::pipeline::{self, Observers};
use cluetrain::settings::{self, LoadError};
use ingest::RunMode;

/// jemalloc (feature `jemalloc`, on by default on Linux): lower peak memory and a faster
/// pipeline than glibc's malloc, measured (crates/cluetrain/Cargo.toml).
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for configuration errors (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Config(args) => config(&args),
        Command::Generate(args) => generate(&args),
        Command::Demo(args) => cluetrain::demo::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => replay(&args),
        Command::Sentiment => sentiment(),
        Command::Sql(args) => sql(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(le) = e.downcast_ref::<LoadError>() {
                eprintln!("error: {le}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load(args.source.config.as_deref())?;
    cluetrain::telemetry::init(&config.log)?;
    let mode = if args.until_end {
        RunMode::UntilEnd
    } else {
        RunMode::Continuous
    };
    let (observers, registry) = Observers::with_metrics(&config);
    let rt = runtime()?;
    let report = rt.block_on(async {
        let admin = cluetrain::admin::AdminServer::bind(
            config.admin.listen,
            std::sync::Arc::new(registry),
            observers.health.clone(),
            config.admin.ready_stall,
        )
        .await?;
        tracing::info!(address = %admin.local_addr()?, "admin server: /metrics /livez /readyz");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(admin.serve(async {
            let _ = stop_rx.await;
        }));
        // SQL over the history, on a runtime of its own (a heavy query cannot stall ingestion).
        // Its tables: the Parquet history (when outputs.parquet_location is set) and the
        // pipeline's live tables.
        let sql = {
            let location = config.outputs.parquet_location.clone();
            let sql_cfg = config.sql.clone();
            let live = observers.tables.clone();
            let s = tokio::task::spawn_blocking(move || {
                cluetrain::sql_server::SqlServer::start(&location, &sql_cfg, Some(live))
            })
            .await??;
            tracing::info!(address = %s.local_addr(), user = %config.sql.user, "SQL (Postgres wire) server");
            Some(s)
        };
        let report = pipeline::run(&config, mode, observers, pipeline::shutdown_signal()).await;
        let _ = stop_tx.send(());
        let _ = server.await;
        if let Some(s) = sql {
            let _ = tokio::task::spawn_blocking(move || s.stop()).await;
        }
        report
    })?;
    println!(
        "{}",
        serde_json::json!({
            "batches": report.batches,
            "events": report.events,
            "dead_letters": report.dead_letters,
            "late_events": report.late_events,
            "window_records": report.window_records,
            "final_records": report.final_records,
            "forwarded": report.forwarded,
            "parquet_files": report.parquet_files,
            "performance": report.performance_json(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Exit status of a refused or failed query (sysexits' EX_DATAERR).
const EXIT_QUERY: u8 = 65;

fn sql(args: &SqlArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load(args.source.config.as_deref())?;
    let limits = cluetrain::sql::QueryLimits {
        memory_bytes_max: config.sql.memory_bytes_max,
        timeout: config.sql.query_timeout,
        rows_max: config.sql.rows_max,
    };
    runtime()?.block_on(async {
        let ctx =
            cluetrain::sql::history_context(&config.outputs.parquet_location, limits, None).await?;
        match cluetrain::sql::query(&ctx, &args.query, limits).await {
            Ok(batches) => {
                print!("{}", cluetrain::sql::render(&batches, args.format)?);
                if args.format == cluetrain::sql::Format::Table {
                    println!();
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(EXIT_QUERY))
            }
        }
    })
}

fn config(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    if args.print_default {
        print!("{}", settings::DEFAULT_TOML);
        return Ok(ExitCode::SUCCESS);
    }
    let config = settings::load(args.source.config.as_deref())?;
    if args.show {
        print!(
            "{}",
            // Passwords and other secret properties are shown as "<redacted>".
            toml::to_string_pretty(&config.redacted()).context("rendering the configuration")?
        );
    } else {
        println!("configuration is valid");
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    if args.print_brands {
        #[derive(serde::Serialize)]
        struct Brands {
            brands: Vec<model::config::BrandConfig>,
        }
        let opts = GeneratorOptions {
            brands: args.brands,
            ..GeneratorOptions::default()
        };
        let brands = Brands {
            brands: Generator::new(opts).brand_configs(),
        };
        print!(
            "{}",
            toml::to_string_pretty(&brands).context("rendering the brands")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = settings::load(args.source.config.as_deref())?;
    cluetrain::telemetry::init(&config.log)?;
    let start_micros = if args.start == "now" {
        chrono::Utc::now().timestamp_micros()
    } else {
        chrono::DateTime::parse_from_rfc3339(&args.start)
            .with_context(|| {
                format!(
                    "--start {:?} is not RFC 3339 (e.g. 2026-01-05T10:00:00Z) or \"now\"",
                    args.start
                )
            })?
            .timestamp_micros()
    };
    if !(0.0..=1.0).contains(&args.poison_rate) {
        anyhow::bail!("--poison-rate must be between 0 and 1");
    }
    let opts = GeneratorOptions {
        seed: args.seed,
        start_micros,
        events_per_second: args.events_per_second,
        brands: args.brands,
        poison_rate: args.poison_rate,
        ..GeneratorOptions::default()
    };
    let pacing = match (args.rate, args.speedup) {
        (Some(r), _) => Pacing::Rate(r),
        (None, Some(s)) => Pacing::EventTime { speedup: s },
        (None, None) => Pacing::Unpaced,
    };
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| config.kafka.input_topic.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let rt = runtime()?;
    rt.spawn(async move {
        pipeline::shutdown_signal().await;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let started = std::time::Instant::now();
    let report = produce(
        &config.kafka,
        &topic,
        Generator::new(opts),
        args.count,
        pacing,
        stop,
        |n| {
            eprintln!(
                "{n} messages sent ({:.0}/s)",
                n as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        },
    )?;
    println!(
        "{{\"sent\":{},\"delivered\":{},\"failed\":{}}}",
        report.sent, report.delivered, report.failed
    );
    if report.failed > 0 {
        anyhow::bail!("{} messages were not delivered to {topic:?}", report.failed);
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load(args.source.config.as_deref())?;
    cluetrain::telemetry::init(&config.log)?;
    let report = cluetrain::replay::run(&config, args)?;
    cluetrain::replay::print_report(&report, args.dry_run)?;
    if report.failed > 0 {
        anyhow::bail!("{} events were not delivered", report.failed);
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit status when some input lines were not valid UTF-8 (their output lines are empty).
const EXIT_SOME_LINES_FAILED: u8 = 3;

fn sentiment() -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let stderr = std::io::stderr().lock();
    let report = enrich::sentiment::score_lines(stdin, stdout, stderr).context("scoring stdin")?;
    if report.failed > 0 {
        eprintln!(
            "{} of {} lines were not valid UTF-8 (empty output lines)",
            report.failed, report.lines
        );
        return Ok(ExitCode::from(EXIT_SOME_LINES_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
