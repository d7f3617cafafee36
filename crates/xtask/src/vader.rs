//! `cargo xtask vader-oracle`: regenerates the VADER oracle with the Python reference.
//!
//! The oracle (`crates/enrich/tests/data/vader/oracle.jsonl`) holds thousands of texts and the
//! scores vaderSentiment 3.3.2 gives them; `crates/enrich/tests/vader_oracle.rs` checks the Rust
//! scorer against every one. This task makes sure a virtual environment with exactly that
//! package exists under the cache directory (`$CLUETRAIN_CACHE`, default
//! `$HOME/.cache/cluetrain`, in `venv-vader/`), creating it with `python3 -m venv` and
//! installing the package with pip from PyPI if needed, then runs the generator script
//! `oracle.py` next to the oracle, which writes the texts and their reference scores.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The reference implementation the oracle pins.
const PACKAGE: &str = "vaderSentiment";
const VERSION: &str = "3.3.2";
/// Where the generator and its output live, relative to the workspace root.
const ORACLE_DIR: &str = "crates/enrich/tests/data/vader";

/// Runs the task. Takes no arguments besides `--help`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(arg) = args.first() {
        if arg == "-h" || arg == "--help" {
            println!(
                "cargo xtask vader-oracle\n\nRegenerates {ORACLE_DIR}/oracle.jsonl: runs oracle.py with {PACKAGE}=={VERSION}\ninstalled in a virtual environment under $CLUETRAIN_CACHE/venv-vader\n(default $HOME/.cache/cluetrain/venv-vader), created if missing."
            );
            return Ok(());
        }
        bail!("unexpected argument {arg:?} (vader-oracle takes none)");
    }
    let root = workspace_root()?;
    let venv = cache_dir().join("venv-vader");
    let python = ensure_reference(&venv)?;

    let dir = root.join(ORACLE_DIR);
    let script = dir.join("oracle.py");
    let out = dir.join("oracle.jsonl");
    eprintln!(
        "vader-oracle: scoring texts with {PACKAGE} {VERSION} ({})",
        python.display()
    );
    run_checked(
        Command::new(&python)
            .arg(&script)
            .arg("--out")
            .arg(&out)
            .current_dir(&root),
        "oracle.py",
    )?;
    let data =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let count = data.lines().filter(|l| !l.trim().is_empty()).count();
    if count == 0 {
        bail!("{} is empty", out.display());
    }
    println!(
        "vader-oracle: {count} texts with reference scores in {}",
        out.display()
    );
    println!("vader-oracle: check them with `cargo test -p enrich --test vader_oracle`");
    Ok(())
}

/// The workspace root: the nearest ancestor of this crate whose Cargo.toml has `[workspace]`.
/// `cargo run` sets `CARGO_MANIFEST_DIR` at run time too, and that one wins over the value
/// compiled in: checkouts sharing a target directory can leave a binary built from another
/// checkout in place, and its compiled-in path would point there.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    for dir in here.ancestors() {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.lines().any(|l| l.trim() == "[workspace]")
        {
            return Ok(dir.to_path_buf());
        }
    }
    bail!("no workspace Cargo.toml above {}", here.display())
}

/// `$CLUETRAIN_CACHE`, default `$HOME/.cache/cluetrain` (the system temp dir without `HOME`).
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLUETRAIN_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("cluetrain")
}

/// Creates the venv if missing and installs the pinned package if it is not there; returns the
/// venv's interpreter.
fn ensure_reference(venv: &Path) -> anyhow::Result<PathBuf> {
    let python = venv_python(venv);
    if !python.exists() {
        eprintln!(
            "vader-oracle: creating virtual environment {}",
            venv.display()
        );
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let system_python = if cfg!(windows) { "python" } else { "python3" };
        run_checked(
            Command::new(system_python)
                .args([OsStr::new("-m"), OsStr::new("venv")])
                .arg(venv),
            "python3 -m venv (is python3 with the venv module installed?)",
        )?;
    }
    if installed_version(&python).as_deref() != Some(VERSION) {
        eprintln!("vader-oracle: installing {PACKAGE}=={VERSION} from PyPI");
        run_checked(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("{PACKAGE}=={VERSION}"),
            ]),
            "pip install",
        )?;
        match installed_version(&python) {
            Some(v) if v == VERSION => {}
            other => {
                bail!("{PACKAGE} {VERSION} not importable after pip install (found {other:?})")
            }
        }
    }
    Ok(python)
}

/// The interpreter inside a venv.
fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// The installed version of the package, if any.
fn installed_version(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version('{PACKAGE}'))"),
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Runs a command with inherited stdio and fails with `what` if it does not succeed.
fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
