//! Project automation, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! * `test`: everything CI runs after fmt and clippy. Checks the crate layering, installs the
//!   Kafka-compatible broker Tansu into a cache directory if missing (pinned version), starts it
//!   on a free loopback port, creates the topics, runs every test of the workspace with the
//!   broker address in `CLUETRAIN_TEST_BROKERS`, and stops the broker, also when tests fail.
//!   Also needs Prometheus (promtool; installed from Debian if missing) and kubectl (for
//!   `kubectl kustomize`; the run fails with how to install it if missing).
//! * `bench`: the end-to-end benchmark against Tansu (`--events N`, `--runs K`, `--soak
//!   MINUTES`, `--rate R`, `--checkpoints on|off`, `--out FILE`), or with `--stages` the
//!   Criterion benches of `benches/`, one per stage (README, "Performance").
//! * `vader-oracle`: regenerates the VADER reference scores with the Python package.
//! * `check-layers`: only the layering check.
//! * `tools`: only installs what `test` needs (Tansu, Prometheus) and checks kubectl. `.ci/run`
//!   runs it beside clippy, so that a cold cache builds Tansu while clippy checks the workspace.
//! * `fuzz <target> [--seconds N] [-- libFuzzer args]`: installs cargo-fuzz into the cache
//!   directory if missing (pinned version) and runs a fuzz target on the stable toolchain
//!   (docs/fuzzing.md).
//!
//! The cache directory is `$CLUETRAIN_CACHE`, default `$HOME/.cache/cluetrain`; CI keeps it
//! between runs so the broker is built once.

mod vader;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The pinned Tansu release and its storage features: `dynostore` for the memory storage of
/// the shared test broker, `libsql` for the durable (SQLite) storage of the broker-restart test.
const TANSU_VERSION: &str = "0.6.0";
const TANSU_FEATURES: &str = "dynostore,libsql";

/// Topics the default configuration uses: (name, partitions).
const TOPICS: &[(&str, u32)] = &[
    ("social-events", 4),
    ("cluetrain-dead-letters", 1),
    ("cluetrain-windows", 4),
    ("cluetrain-late-events", 1),
];

/// The pinned cargo-fuzz release.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Fuzz targets: (name, the crate whose `fuzz/` directory holds it, what it fuzzes).
const FUZZ_TARGETS: &[(&str, &str, &str)] = &[
    (
        "decode",
        "crates/ingest",
        "the decoder: payload bytes → event or reject",
    ),
    (
        "twcs",
        "crates/ingest",
        "the twcs replay parser: CSV file → indexed, replayed items",
    ),
];

/// Seconds a fuzz run lasts unless `--seconds` says otherwise.
const FUZZ_SECONDS_DEFAULT: u64 = 60;

/// Stage crates that must not depend on each other.
const STAGES: &[&str] = &["ingest", "enrich", "aggregate"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, rest)) => (t.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "test" => test(rest),
        "bench" => bench(rest),
        "vader-oracle" => vader::run(rest).map(|()| ExitCode::SUCCESS),
        "check-layers" => check_layers().map(|()| ExitCode::SUCCESS),
        "tools" => ensure_tools().map(|_| ExitCode::SUCCESS),
        "fuzz" => fuzz(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  test          fmt-independent full test run with a real Kafka broker (Tansu)\n  bench         end-to-end benchmark against Tansu (--events N --runs K --soak MIN); --stages: Criterion per stage\n  vader-oracle  regenerate the VADER reference scores (Python vaderSentiment 3.3.2)\n  check-layers  check that ingest, enrich and aggregate do not depend on each other\n  tools         install what `test` needs (Tansu, Prometheus) and check kubectl\n  fuzz          run a cargo fuzz target: fuzz <decode|twcs> [--seconds N] [-- libFuzzer args]"
            );
            Ok(if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask {task}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // crates/xtask → the workspace root is two levels up. Prefer the directory cargo sets at
    // run time: a binary shared through one target directory may have been built in another
    // checkout, whose compile-time path would point there.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// `$CLUETRAIN_CACHE`, default `$HOME/.cache/cluetrain`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CLUETRAIN_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("cluetrain")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    // `cargo run` gave this process xtask's package variables. Cargo compares the values a
    // crate read with `env!` (clap's `about` reads CARGO_PKG_DESCRIPTION) against its own
    // environment, so with xtask's still set every build from here relinks the cluetrain
    // binary, and the next build from a shell relinks it again (minutes each in release).
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*k,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            c.env_remove(&*k);
        }
    }
    c
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn status(mut c: Command, what: &str) -> anyhow::Result<bool> {
    let s = c.status().with_context(|| format!("running {what}"))?;
    Ok(s.success())
}

fn check_layers() -> anyhow::Result<()> {
    step("checking that the stage crates do not depend on each other");
    for stage in STAGES {
        let out = cargo()
            .args([
                "tree",
                "--quiet",
                "-p",
                stage,
                "-e",
                "normal,build,dev",
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .output()
            .context("running cargo tree")?;
        if !out.status.success() {
            bail!(
                "cargo tree -p {stage} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        for other in STAGES.iter().filter(|o| *o != stage) {
            if tree.lines().any(|l| l.starts_with(&format!("{other} v"))) {
                bail!(
                    "layering violation: {stage} depends on {other}. Stage crates meet only in `model` and are wired by the `cluetrain` binary (ARCHITECTURE.md)."
                );
            }
        }
    }
    eprintln!("ok: {} are independent", STAGES.join(", "));
    Ok(())
}

/// What `test` needs besides the workspace.
struct Tools {
    tansu: PathBuf,
    prometheus: PathBuf,
    kubectl: PathBuf,
}

/// The tools `test` needs, installed into the cache if missing (`cargo xtask tools` alone, or
/// the start of `cargo xtask test`).
fn ensure_tools() -> anyhow::Result<Tools> {
    let tools = Tools {
        tansu: ensure_tansu()?,
        prometheus: ensure_prometheus()?,
        kubectl: ensure_kubectl()?,
    };
    eprintln!(
        "ok: {}, {}, {}",
        tools.tansu.display(),
        tools.prometheus.display(),
        tools.kubectl.display()
    );
    Ok(tools)
}

fn ensure_tansu() -> anyhow::Result<PathBuf> {
    ensure_tool(
        "tansu",
        TANSU_VERSION,
        Some(TANSU_FEATURES),
        "~15 minutes on 2 cores",
    )
}

/// Where `cargo install` puts tool `name` at `version` (built with `features`) in the cache:
/// each feature set has its own directory, so a change of features installs anew.
fn tool_bin(name: &str, version: &str, features: Option<&str>) -> PathBuf {
    let dir = match features {
        Some(f) => format!("{name}-{version}-{}", f.replace(',', "-")),
        None => format!("{name}-{version}"),
    };
    cache_dir().join("tools").join(dir).join("bin").join(name)
}

/// Installs crate `name` at `version` (with `features`) into the cache if missing, with a
/// target directory of its own so that its build never fights over ours.
fn ensure_tool(
    name: &str,
    version: &str,
    features: Option<&str>,
    first_run: &str,
) -> anyhow::Result<PathBuf> {
    let bin = tool_bin(name, version, features);
    if bin.is_file() {
        return Ok(bin);
    }
    step(&format!(
        "installing {name} {version} into {} (first run only; {first_run})",
        bin.display()
    ));
    let root = bin
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{name} path has no root"))?;
    let mut c = cargo();
    c.args(["install", name, "--version", version, "--locked"]);
    if let Some(f) = features {
        c.args(["--features", f]);
    }
    c.arg("--root").arg(root).env(
        "CARGO_TARGET_DIR",
        cache_dir().join("tools").join(format!("{name}-build")),
    );
    if !status(c, &format!("cargo install {name}"))? || !bin.is_file() {
        bail!("installing {name} failed; see the cargo output above");
    }
    Ok(bin)
}

/// Debian's Prometheus (with promtool), for the dashboard test: installed with apt-get when
/// missing (CI runs as root; elsewhere install the `prometheus` package yourself).
fn ensure_prometheus() -> anyhow::Result<PathBuf> {
    let found = |p: &str| {
        let path = PathBuf::from(p);
        (path.is_file() && path.with_file_name("promtool").is_file()).then_some(path)
    };
    if let Some(p) = found("/usr/bin/prometheus") {
        return Ok(p);
    }
    step("installing Debian's prometheus package (first run only)");
    let apt = |args: &[&str]| -> anyhow::Result<bool> {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        status(c, "apt-get")
    };
    if !apt(&["update"])? || !apt(&["install", "-y", "--no-install-recommends", "prometheus"])? {
        bail!(
            "installing prometheus failed: install Debian's `prometheus` package (it has promtool), then rerun"
        );
    }
    found("/usr/bin/prometheus")
        .context("prometheus installed but /usr/bin/prometheus or promtool is missing")
}

/// kubectl, whose built-in kustomize renders deploy/kubernetes for tests/deploy.rs (offline, no
/// cluster). Not installed by xtask (it is not one of Debian's packages): a missing one fails
/// the run with what to do. `$CLUETRAIN_KUBECTL` names another binary.
fn ensure_kubectl() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("CLUETRAIN_KUBECTL")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join("kubectl")));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "kubectl not found (on PATH or in $CLUETRAIN_KUBECTL): tests/deploy.rs renders deploy/kubernetes with `kubectl kustomize`. Install kubectl 1.27 or later (the `kubectl` package from the Kubernetes project's apt repository, or its release binary on PATH), then rerun"
    )
}

/// A running broker, stopped when dropped (also on error and panic paths).
struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("==> broker at {} stopped", self.address);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn start_broker(bin: &Path, log_dir: &Path, topics: &[(&str, u32)]) -> anyhow::Result<Broker> {
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let url = format!("tcp://{address}");
    std::fs::create_dir_all(log_dir)?;
    let log_path = log_dir.join("tansu.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    step(&format!(
        "starting Tansu on {address} (log: {})",
        log_path.display()
    ));
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env_remove("STORAGE_ENGINE")
        // Tansu logs every request at its default level: gigabytes over a bench's preload.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let broker = Broker { child, address };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&broker.address).is_err() {
        if Instant::now() > deadline {
            bail!(
                "Tansu did not accept connections on {} within 30s; see {}",
                broker.address,
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (topic, partitions) in topics {
        let out = Command::new(bin)
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
                "--broker",
                &url,
            ])
            .output()
            .context("running tansu topic create")?;
        if !out.status.success() {
            bail!(
                "creating topic {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(broker)
}

fn target_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(d);
        return Ok(if p.is_absolute() {
            p
        } else {
            workspace_root().join(p)
        });
    }
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let key = "\"target_directory\":\"";
    let start = text
        .find(key)
        .context("cargo metadata has no target_directory")?
        + key.len();
    let end = text[start..]
        .find('"')
        .context("malformed cargo metadata")?
        + start;
    Ok(PathBuf::from(&text[start..end]))
}

fn has_nextest() -> bool {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test(extra: &[String]) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    check_layers()?;
    let Tools {
        tansu,
        prometheus,
        kubectl,
    } = ensure_tools()?;
    // Every target at once, the binary the CLI tests run included: the same feature
    // unification as the test run below, so dependencies (DataFusion above all) are built
    // once instead of once for the binary alone and again for the tests.
    step("building every target, including the cluetrain binary used by the CLI tests");
    if !status(
        {
            let mut c = cargo();
            c.args(["build", "--workspace", "--tests", "--bins"]);
            c
        },
        "cargo build",
    )? {
        bail!("building cluetrain failed");
    }
    let target = target_dir()?;
    let bin = target.join("debug").join("cluetrain");
    let broker = start_broker(&tansu, &target.join("xtask"), TOPICS)?;
    // Every pipeline the tests start checkpoints under one fresh directory of this run (each
    // under its own group and topic), not into the working directory.
    let checkpoints = target.join("xtask").join("checkpoints");
    let _ = std::fs::remove_dir_all(&checkpoints);
    let env = [
        ("CLUETRAIN_TEST_BROKERS", broker.address.clone()),
        ("CLUETRAIN_BIN", bin.display().to_string()),
        ("CLUETRAIN_PROMETHEUS", prometheus.display().to_string()),
        ("CLUETRAIN_KUBECTL", kubectl.display().to_string()),
        ("CLUETRAIN_TANSU", tansu.display().to_string()),
        (
            "CLUETRAIN_CHECKPOINT__LOCATION",
            checkpoints.display().to_string(),
        ),
    ];

    let mut ok = true;
    if has_nextest() {
        // Doc tests first (nextest does not run them), so that nextest's summary of every
        // other test is the run's closing line.
        step("running doc tests");
        let mut c = cargo();
        c.args(["test", "--workspace", "--doc"]).envs(env.clone());
        ok &= status(c, "cargo test --doc")?;
        // `--all-targets`: the Criterion benches of benches/ run too, in test mode (each bench
        // once, debug profile), so a bench that panics or measures an empty input (its set-up
        // asserts it has work) fails here, not in a measurement session.
        step("running every test and every bench once (cargo nextest)");
        let mut c = cargo();
        c.args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
        ])
        .args(extra)
        .envs(env.clone());
        ok &= status(c, "cargo nextest run")?;
    } else {
        step("running every test (cargo test; install cargo-nextest for parallel runs)");
        let mut c = cargo();
        c.args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
            .args(extra)
            .envs(env.clone());
        ok &= status(c, "cargo test")?;
    }
    drop(broker);
    eprintln!(
        "\n==> cargo xtask test: {} in {:.0}s",
        if ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Topics of the end-to-end bench besides [`TOPICS`]: the preloaded input and the soak's.
const BENCH_TOPICS: &[(&str, u32)] = &[("cluetrain-bench-events", 4), ("cluetrain-bench-soak", 4)];

/// `cargo xtask bench [--events N] [--runs K] [--soak MINUTES [--rate R]] [--checkpoints
/// on|off] [--out FILE]`, or `cargo xtask bench --stages [Criterion args]`.
///
/// The end-to-end bench: builds the release `cluetrain` and `cluetrain-e2e` binaries, starts
/// Tansu with the default topics and the bench's, and runs `cluetrain-e2e run` (preload, drain,
/// cluetrain runs, soak; see benches/e2e.rs), which prints the medians and writes every figure
/// as JSON (default `<target>/bench/e2e.json`). `--stages` runs the Criterion benches of
/// `benches/` instead, one per stage.
fn bench(args: &[String]) -> anyhow::Result<ExitCode> {
    let usage = "usage: cargo xtask bench [--events N] [--runs K] [--soak MINUTES [--rate MSG_PER_S]] [--checkpoints on|off] [--baseline BINARY] [--baseline-env KEY=VALUE]... [--out FILE]\n       cargo xtask bench --stages [Criterion arguments, e.g. a bench name filter]";
    if args.first().is_some_and(|a| a == "--stages") {
        step("running the Criterion benches of benches/, one per stage (release profile)");
        let mut c = cargo();
        c.args(["bench", "--package", "cluetrain-benches"]);
        if args.len() > 1 {
            c.arg("--").args(&args[1..]);
        }
        return Ok(if status(c, "cargo bench")? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut e2e: Vec<String> = Vec::new();
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{a} needs {what}\n{usage}"))
        };
        match a.as_str() {
            "--events" | "--runs" | "--soak" | "--rate" => {
                let v = value("a number")?;
                if v.parse::<f64>().is_err() {
                    bail!("{a} {v:?} is not a number\n{usage}");
                }
                e2e.extend([a.clone(), v]);
            }
            "--checkpoints" => {
                let v = value("on or off")?;
                let on = match v.as_str() {
                    "on" => "true",
                    "off" => "false",
                    _ => bail!("--checkpoints takes on or off, not {v:?}"),
                };
                e2e.extend([a.clone(), on.to_string()]);
            }
            "--out" => out = Some(PathBuf::from(value("a file")?)),
            "--baseline" => {
                // An A/B: another build's binary (e.g. a copy of target/release/cluetrain
                // made before a change), run interleaved with this one.
                let b = PathBuf::from(value("the path of a cluetrain binary")?);
                if !b.is_file() {
                    bail!(
                        "--baseline {}: no such file (a cluetrain binary of another build, e.g. a copy of target/release/cluetrain made before the change)",
                        b.display()
                    );
                }
                let b = b
                    .canonicalize()
                    .with_context(|| format!("--baseline {}", b.display()))?;
                e2e.push(a.clone());
                e2e.push(b.display().to_string());
            }
            "--baseline-env" => {
                // An A/B of a setting: the baseline runs with this variable too, e.g.
                // CLUETRAIN_INGEST__BATCH_ROWS_MAX=16384.
                let v = value("KEY=VALUE")?;
                if !v.contains('=') {
                    bail!(
                        "--baseline-env {v:?}: expected KEY=VALUE, e.g. CLUETRAIN_OUTPUTS__OVERLAP_DELIVERY=false"
                    );
                }
                e2e.extend([a.clone(), v]);
            }
            "-h" | "--help" => {
                eprintln!("{usage}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unexpected argument {other:?}\n{usage}"),
        }
    }
    let tansu = ensure_tansu()?;
    step("building the release cluetrain and cluetrain-e2e binaries");
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "--package",
        "cluetrain",
        "--bin",
        "cluetrain",
        "--package",
        "cluetrain-benches",
        "--bin",
        "cluetrain-e2e",
    ]);
    if !status(c, "cargo build --release")? {
        bail!("building the release binaries failed");
    }
    let target = target_dir()?;
    let release = target.join("release");
    let work = target.join("bench");
    let out = out.unwrap_or_else(|| work.join("e2e.json"));
    let topics: Vec<(&str, u32)> = TOPICS.iter().chain(BENCH_TOPICS).copied().collect();
    let broker = start_broker(&tansu, &work, &topics)?;
    let mut c = Command::new(release.join("cluetrain-e2e"));
    c.arg("run")
        .args(["--brokers", &broker.address])
        .arg("--cluetrain")
        .arg(release.join("cluetrain"))
        .arg("--work-dir")
        .arg(work.join("runs"))
        .arg("--out")
        .arg(&out)
        .args(&e2e);
    let ok = status(c, "cluetrain-e2e")?;
    drop(broker);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn ensure_cargo_fuzz() -> anyhow::Result<PathBuf> {
    ensure_tool("cargo-fuzz", CARGO_FUZZ_VERSION, None, "~2 minutes")
}

/// `cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args]`.
///
/// On the stable toolchain: `--sanitizer none` keeps cargo fuzz to stable `-C` flags (sancov
/// instrumentation, `--cfg fuzzing`); AddressSanitizer needs `-Zsanitizer` (nightly, or
/// `RUSTC_BOOTSTRAP=1`) and breaks librdkafka's build, and our code is `forbid(unsafe_code)`
/// anyway: what is hunted is panics and broken invariants. The build has its own target
/// directory (other RUSTFLAGS than the workspace's). The corpus grows in `fuzz/corpus/<target>`
/// (not committed), starting from the committed `fuzz/seeds/<target>`.
fn fuzz(args: &[String]) -> anyhow::Result<ExitCode> {
    let usage = || {
        let targets: Vec<String> = FUZZ_TARGETS
            .iter()
            .map(|(name, krate, what)| format!("  {name:8} {what} ({krate}/fuzz)"))
            .collect();
        format!(
            "usage: cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args]\n\ntargets:\n{}\n\n--seconds 0 runs until stopped (Ctrl-C); default {FUZZ_SECONDS_DEFAULT}.",
            targets.join("\n")
        )
    };
    let (ours, libfuzzer) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut target = None;
    let mut seconds = FUZZ_SECONDS_DEFAULT;
    let mut it = ours.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v:?} is not a whole number"))?;
            }
            "-h" | "--help" => {
                eprintln!("{}", usage());
                return Ok(ExitCode::SUCCESS);
            }
            t if target.is_none() && !t.starts_with('-') => target = Some(t),
            other => bail!("unexpected argument {other:?}\n{}", usage()),
        }
    }
    let Some(target) = target else {
        bail!("which target?\n{}", usage());
    };
    let Some(&(name, krate, _)) = FUZZ_TARGETS.iter().find(|(n, _, _)| *n == target) else {
        bail!("unknown fuzz target {target:?}\n{}", usage());
    };
    let cargo_fuzz = ensure_cargo_fuzz()?;
    let dir = workspace_root().join(krate);
    let corpus = Path::new("fuzz").join("corpus").join(name);
    let seeds = Path::new("fuzz").join("seeds").join(name);
    std::fs::create_dir_all(dir.join(&corpus))
        .with_context(|| format!("creating {}", dir.join(&corpus).display()))?;
    step(&format!(
        "fuzzing {name} for {} (corpus {krate}/{}, seeds {krate}/{})",
        if seconds == 0 {
            "as long as it runs".to_string()
        } else {
            format!("{seconds} s")
        },
        corpus.display(),
        seeds.display()
    ));
    let mut c = Command::new(&cargo_fuzz);
    c.current_dir(&dir)
        .args([
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "--release",
            "--target-dir",
        ])
        .arg(cache_dir().join("fuzz-target"))
        .arg(name)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .args(libfuzzer)
        // The workspace's target directory is for the normal build only.
        .env_remove("CARGO_TARGET_DIR");
    let ok = status(c, "cargo fuzz run")?;
    if !ok {
        eprintln!(
            "\n==> the fuzz run failed. A crash input is in {krate}/fuzz/artifacts/{name}/ (the \
             reproduce command is above). Once it is fixed, keep it as a seed: \
             {krate}/fuzz/seeds/{name}/regression-<what-broke>, and add a unit test named after it."
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
