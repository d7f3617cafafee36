//! The deployment material of deploy/, checked offline against the code it deploys.
//!
//! No Docker engine or cluster is needed: the Dockerfile is parsed (stages, the cargo command,
//! the copied binary, the user, the exposed ports), the compose file is parsed as YAML and
//! checked against the configuration it mounts, Prometheus's compose configuration goes
//! through `promtool check config` with the files laid out as compose mounts them, and the
//! kustomize base is rendered with `kubectl kustomize` (path in `CLUETRAIN_KUBECTL`, set by
//! `cargo xtask test`). Every cluetrain configuration shipped is loaded by the real binary
//! (`cluetrain config --check` and `--show`) with exactly the environment its container gets,
//! and the ports, topics, probes and Services are compared with the effective values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use cluetrain_tests::cluetrain_bin;
use model::config::Config;
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    cluetrain_tests::package_dir()
        .join("..")
        .canonicalize()
        .unwrap()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// The workspace: what the Dockerfile must build.

/// The root manifest.
fn workspace() -> toml::Table {
    toml::from_str(&read("Cargo.toml")).unwrap()
}

/// `(major, minor)` of a `1.90`-style version.
fn minor_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile.

#[derive(Debug)]
struct Instruction {
    op: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, op: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.op == op)
            .map(|i| i.args.as_str())
            .collect()
    }

    fn last(&self, op: &str) -> &str {
        self.all(op)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("stage {:?} has no {op}", self.name))
    }
}

/// Instructions per stage; continuation lines joined, comment lines dropped (as Docker does,
/// also inside a continued instruction).
fn dockerfile() -> Vec<Stage> {
    let text = read("deploy/Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (op, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let op = op.to_ascii_uppercase();
        let args = args.trim().to_string();
        if op == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                [_] => None,
                _ => panic!("FROM {args}: expected `FROM image [AS name]`"),
            };
            stages.push(Stage {
                image: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{op} before the first FROM"))
                .instructions
                .push(Instruction { op, args });
        }
    }
    stages
}

/// The JSON (exec) form of CMD / ENTRYPOINT / HEALTHCHECK CMD.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args}: not the exec form: {e}"))
}

/// `COPY [--from=x] src... dest` → (from, sources, dest).
fn copy_args(args: &str) -> (Option<String>, Vec<String>, String) {
    let mut from = None;
    let mut paths = Vec::new();
    for w in args.split_whitespace() {
        if let Some(f) = w.strip_prefix("--from=") {
            from = Some(f.to_string());
        } else if w.starts_with("--") {
            continue;
        } else {
            paths.push(w.to_string());
        }
    }
    let dest = paths.pop().unwrap();
    (from, paths, dest)
}

fn builder_and_runtime() -> (Stage, Stage) {
    let mut stages = dockerfile();
    assert!(
        stages.len() >= 2,
        "multi-stage: a builder and a runtime stage"
    );
    let runtime = stages.pop().unwrap();
    let builder = stages
        .into_iter()
        .find(|s| s.image.starts_with("rust:"))
        .expect("a builder stage on the official rust image");
    (builder, runtime)
}

/// The package and binary the image is about: `cluetrain`, from its manifest.
fn cluetrain_binary_name() -> String {
    let manifest: toml::Table = toml::from_str(&read("crates/cluetrain/Cargo.toml")).unwrap();
    assert_eq!(manifest["package"]["name"].as_str(), Some("cluetrain"));
    let bins = manifest["bin"].as_array().unwrap();
    assert_eq!(bins.len(), 1, "one binary in the cluetrain package");
    bins[0]["name"].as_str().unwrap().to_string()
}

#[test]
fn dockerfile_builds_the_workspace_binary_as_ci_resolves_it() {
    let (builder, runtime) = builder_and_runtime();
    let bin = cluetrain_binary_name();

    // The toolchain is at least the workspace's rust-version, on the runtime's Debian release
    // (the binary links the builder's glibc and OpenSSL).
    let ws = workspace();
    let msrv = ws["workspace"]["package"]["rust-version"].as_str().unwrap();
    let tag = builder.image.strip_prefix("rust:").unwrap();
    let (version, release) = tag
        .split_once('-')
        .expect("rust:<version>-<debian release>");
    assert!(
        minor_version(version) >= minor_version(msrv),
        "builder {} is older than the workspace's rust-version {msrv}",
        builder.image
    );
    assert_eq!(release, "bookworm", "builder on Debian bookworm");
    assert!(
        runtime.image == "debian:bookworm-slim" || runtime.image.contains("-debian12"),
        "runtime {} is not the builder's Debian release (bookworm)",
        runtime.image
    );

    // The build command: the cluetrain package, release profile, Cargo.lock as is.
    let runs = builder.all("RUN");
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("the builder runs cargo build");
    let words: Vec<&str> = build.split_whitespace().collect();
    for flag in ["--release", "--locked"] {
        assert!(words.contains(&flag), "cargo build without {flag}: {build}");
    }
    let package = words
        .windows(2)
        .find(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1])
        .expect("cargo build -p <package>");
    assert_eq!(
        package, "cluetrain",
        "the image builds the cluetrain package"
    );

    // The binary cargo produced is the one copied into the runtime and run.
    let cp = words
        .windows(3)
        .find(|w| w[0] == "cp")
        .expect("the binary is copied out of the (cache-mounted) target directory");
    assert_eq!(
        cp[1],
        format!("target/release/{bin}"),
        "copies cargo's release binary"
    );
    let copies: Vec<_> = runtime.all("COPY").into_iter().map(copy_args).collect();
    let (_, _, installed) = copies
        .iter()
        .find(|(from, src, _)| {
            from.as_deref() == builder.name.as_deref() && src == &vec![cp[2].to_string()]
        })
        .unwrap_or_else(|| panic!("the runtime copies {} from the builder", cp[2]));
    assert_eq!(
        Path::new(installed).parent(),
        Some(Path::new("/usr/local/bin")),
        "installed on the default PATH"
    );
    let entrypoint = exec_form(runtime.last("ENTRYPOINT"));
    assert_eq!(
        Path::new(installed).file_name().unwrap().to_str(),
        Some(entrypoint[0].as_str())
    );
    assert_eq!(entrypoint[0], bin);

    // Everything the build copies from the context exists, and every workspace member is in
    // it (cargo resolves the whole workspace even for -p).
    let mut copied = Vec::new();
    for (from, sources, _) in builder.all("COPY").into_iter().map(copy_args) {
        assert!(from.is_none());
        for s in sources {
            assert!(root().join(&s).exists(), "COPY {s}: not in the repository");
            copied.push(s.trim_end_matches('/').to_string());
        }
    }
    for needed in ["Cargo.toml", "Cargo.lock"] {
        assert!(copied.iter().any(|c| c == needed), "{needed} is not copied");
    }
    for member in ws["workspace"]["members"].as_array().unwrap() {
        let m = member.as_str().unwrap();
        assert!(
            copied
                .iter()
                .any(|c| m == c || m.starts_with(&format!("{c}/"))),
            "workspace member {m} is not in the build context copied"
        );
    }

    // The build context leaves out target directories and git history.
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["**/target", ".git"] {
        assert!(rules.contains(&needed), ".dockerignore lacks {needed}");
    }
}

#[test]
fn dockerfile_runtime_is_non_root_and_exposes_the_ports_of_its_config() {
    let (_, runtime) = builder_and_runtime();
    assert!(
        runtime.all("RUN").iter().all(|r| !r.contains("cargo")),
        "the runtime stage builds nothing"
    );
    let uid = image_uid();
    assert_ne!(uid, 0, "the image runs as a non-root user");

    // CMD runs the pipeline on the configuration the image ships.
    let cmd = exec_form(runtime.last("CMD"));
    assert_eq!(cmd[0], "run");
    let config_path = flag_value(&cmd, "--config").expect("CMD passes --config");
    let (_, sources, _) = runtime
        .all("COPY")
        .into_iter()
        .map(copy_args)
        .find(|(from, _, dest)| from.is_none() && dest == &config_path)
        .unwrap_or_else(|| panic!("the image ships no file at {config_path}"));
    let shipped = root().join(&sources[0]);
    let eff = Effective::load(&shipped, &[("CLUETRAIN_SQL__PASSWORD", "test")]);

    // Inside the container the endpoints listen on every interface, on the exposed ports.
    let (admin, sql) = (eff.config.admin.listen, eff.config.sql.listen);
    assert!(admin.ip().is_unspecified() && sql.ip().is_unspecified());
    let exposed: BTreeSet<u16> = runtime
        .all("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([admin.port(), sql.port()]));

    // The health check asks /livez on admin.listen's port.
    let hc = runtime.last("HEALTHCHECK");
    let hc_cmd = exec_form(&hc[hc.find('[').unwrap()..]).join(" ");
    assert!(
        hc_cmd.contains(&format!("/dev/tcp/127.0.0.1/{}", admin.port())),
        "{hc_cmd}"
    );
    assert!(hc_cmd.contains("GET /livez "), "{hc_cmd}");
}

/// The numeric user of the runtime stage (`USER uid[:gid]`).
fn image_uid() -> u32 {
    let (_, runtime) = builder_and_runtime();
    let user = runtime.last("USER");
    let uid = user.split(':').next().unwrap();
    let uid: u32 = uid.parse().unwrap_or_else(|_| {
        panic!("USER {user}: use a numeric uid, so that runAsNonRoot can verify it")
    });
    // The account exists in the image too (tools that look the user up).
    assert!(
        runtime
            .all("RUN")
            .iter()
            .any(|r| r.contains(&format!("--uid {uid}"))),
        "the runtime creates the user {uid}"
    );
    uid
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
}

// ---------------------------------------------------------------------------------------------
// cluetrain's loader, as the container runs it.

/// A configuration as the binary sees it with a given environment.
struct Effective {
    config: Config,
    table: toml::Table,
}

impl Effective {
    /// `cluetrain config --check` and `--show` on `path` with `env` only (inherited
    /// `CLUETRAIN_*` variables removed).
    fn load(path: &Path, env: &[(&str, &str)]) -> Effective {
        let run = |what: &str| {
            let mut c = Command::new(cluetrain_bin());
            c.args(["config", what, "--config"]).arg(path);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("CLUETRAIN_") {
                    c.env_remove(k);
                }
            }
            c.envs(env.iter().copied());
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "cluetrain config {what} --config {} rejects it: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run("--check").trim(), "configuration is valid");
        let shown = run("--show");
        Effective {
            config: toml::from_str(&shown).unwrap(),
            table: toml::from_str(&shown).unwrap(),
        }
    }

    /// Every topic the configuration names: input, dead letters, outputs, forwards.
    fn topics(&self) -> BTreeSet<String> {
        let c = &self.config;
        let mut t = BTreeSet::from([
            c.kafka.input_topic.clone(),
            c.kafka.dead_letter_topic.clone(),
            c.outputs.late_events_topic.clone(),
        ]);
        if !c.outputs.windows_topic.is_empty() {
            t.insert(c.outputs.windows_topic.clone());
        }
        t.extend(c.departments.forward_negative.values().cloned());
        t
    }

    /// Every `CLUETRAIN_*` variable of `env` reached its key: a misspelt variable is ignored
    /// by the loader (only known sections are read), so it is checked here. A section the
    /// loader does not know yet may be set ahead of its release only if it is in
    /// `SECTIONS_AHEAD` and the default configuration indeed lacks it.
    fn assert_env_reached(&self, env: &[(&str, &str)]) {
        for (var, value) in env {
            let Some(path) = env_key_path(var) else {
                continue;
            };
            if self.is_key_variable(var) {
                continue;
            }
            if !self.table.contains_key(&path[0]) {
                assert!(
                    SECTIONS_AHEAD.contains(&path[0].as_str()),
                    "{var}: cluetrain has no section [{}]",
                    path[0]
                );
                assert!(
                    !default_config().contains(&format!("[{}]", path[0])),
                    "{var}: [{}] exists but the variable did not reach it",
                    path[0]
                );
                continue;
            }
            let mut node = toml::Value::Table(self.table.clone());
            for p in &path {
                node = node
                    .get(p)
                    .unwrap_or_else(|| panic!("{var}: no key {} in the effective config", p))
                    .clone();
            }
            let got = match node {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            // `config --show` may print secrets as "<redacted>": it does so only for a value
            // that is set, so the variable did reach its key.
            assert!(
                &got == value || got == REDACTED,
                "{var} did not set {}: {got:?}",
                path.join(".")
            );
        }
    }
}

impl Effective {
    /// Whether `var` holds the pseudonymisation key, which is read by name
    /// (`privacy.hmac_key_env`) and is no configuration key. Before `[privacy]` exists, its
    /// default name counts, as a section set ahead of its release does.
    fn is_key_variable(&self, var: &str) -> bool {
        match self
            .table
            .get("privacy")
            .and_then(|p| p.get("hmac_key_env"))
            .and_then(|v| v.as_str())
        {
            Some(name) => var == name,
            None => var == HMAC_KEY_VARIABLE && !default_config().contains("[privacy]"),
        }
    }
}

/// `cluetrain config --print-default`.
fn default_config() -> String {
    let out = Command::new(cluetrain_bin())
        .args(["config", "--print-default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The default of `privacy.hmac_key_env`: the variable that holds the pseudonymisation key.
const HMAC_KEY_VARIABLE: &str = "CLUETRAIN_HMAC_KEY";

/// How `config --show` prints a secret that is set.
const REDACTED: &str = "<redacted>";

/// Sections that deployment material sets by environment variable before the loader knows
/// them (ignored until then). `checkpoint`: checkpoints are being added in parallel; once
/// `[checkpoint]` is in `config --print-default`, the variable is checked like any other.
const SECTIONS_AHEAD: &[&str] = &["checkpoint"];

/// The key a `CLUETRAIN_*` variable sets, by the loader's rules (settings.rs): `__` between
/// levels, and under the librdkafka property tables `_` for `.`.
fn env_key_path(var: &str) -> Option<Vec<String>> {
    let rest = var.strip_prefix("CLUETRAIN_")?.to_ascii_lowercase();
    if rest == "config" {
        return None;
    }
    for table in ["properties", "consumer_properties", "producer_properties"] {
        if let Some(name) = rest.strip_prefix(&format!("kafka__{table}__")) {
            return Some(vec!["kafka".into(), table.into(), name.replace('_', ".")]);
        }
    }
    Some(rest.split("__").map(str::to_string).collect())
}

// ---------------------------------------------------------------------------------------------
// YAML.

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

// ---------------------------------------------------------------------------------------------
// Compose.

const COMPOSE: &str = "deploy/compose/compose.yaml";

fn compose_dir() -> PathBuf {
    root().join("deploy/compose")
}

fn compose() -> Value {
    yaml(&read(COMPOSE))
}

/// Compose's interpolation with nothing set in the environment: `${NAME:-default}` becomes
/// the default, `$$` a `$`. Any other form would depend on the user's shell and is refused.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r.find('}').unwrap();
            let (name, default) = r[..end]
                .split_once(":-")
                .unwrap_or_else(|| panic!("${{{}}} in {COMPOSE} has no default", &r[..end]));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            out.push_str(default);
            rest = &r[end + 1..];
        } else {
            panic!("a bare $ in {COMPOSE}: {s}");
        }
    }
    out.push_str(rest);
    out
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    let svc = &c["services"][name];
    assert!(svc.is_object(), "{COMPOSE} has no service {name}");
    svc
}

fn environment(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), interpolate(&v))
            })
            .collect(),
        other => panic!("environment as a map, not {other}"),
    }
}

fn env_pairs(env: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A volume: a bind mount (host path, resolved) or a named volume.
#[derive(Debug)]
enum Source {
    Bind(PathBuf),
    Named(String),
}

/// `(source, container path)` of every volume of a service (short syntax).
fn mounts(svc: &Value) -> Vec<(Source, String)> {
    svc["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let parts: Vec<&str> = s(v).split(':').collect();
            assert!(
                (2..=3).contains(&parts.len()),
                "volume {v}: source:target[:mode]"
            );
            let src = if parts[0].starts_with('.') || parts[0].starts_with('/') {
                Source::Bind(compose_dir().join(parts[0]))
            } else {
                Source::Named(parts[0].to_string())
            };
            (src, parts[1].to_string())
        })
        .collect()
}

/// The host file mounted at `target` in `svc`.
fn mounted_file(svc: &Value, target: &str) -> PathBuf {
    mounts(svc)
        .into_iter()
        .find_map(|(src, t)| match src {
            Source::Bind(p) if t == target => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing is bind-mounted at {target}"))
}

fn command(svc: &Value) -> Vec<String> {
    svc["command"]
        .as_array()
        .unwrap_or_else(|| panic!("command as a list: {}", svc["command"]))
        .iter()
        .map(|a| interpolate(s(a)))
        .collect()
}

/// The cluetrain configuration a compose service runs with, loaded as it would be.
fn compose_cluetrain(c: &Value, name: &str) -> (Effective, BTreeMap<String, String>) {
    let svc = service(c, name);
    let args = command(svc);
    let path = flag_value(&args, "--config").expect("--config in the command");
    let env = environment(svc);
    let eff = Effective::load(&mounted_file(svc, &path), &env_pairs(&env));
    eff.assert_env_reached(&env_pairs(&env));
    (eff, env)
}

#[test]
fn compose_services_kafka_kraft_and_mounts_exist() {
    let c = compose();
    for name in [
        "kafka",
        "kafka-init",
        "cluetrain",
        "generator",
        "prometheus",
        "grafana",
    ] {
        service(&c, name);
    }

    // Kafka in KRaft mode: one node, broker and controller, no ZooKeeper; no topic appears
    // by accident.
    let kafka = environment(service(&c, "kafka"));
    let roles: BTreeSet<&str> = kafka["KAFKA_PROCESS_ROLES"].split(',').collect();
    assert_eq!(roles, BTreeSet::from(["broker", "controller"]));
    assert!(kafka.contains_key("KAFKA_CONTROLLER_QUORUM_VOTERS"));
    assert!(kafka.contains_key("KAFKA_CONTROLLER_LISTENER_NAMES"));
    assert!(!kafka.keys().any(|k| k.contains("ZOOKEEPER")));
    assert_eq!(kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false");

    let declared: BTreeSet<String> = c["volumes"].as_object().unwrap().keys().cloned().collect();
    for (name, svc) in c["services"].as_object().unwrap() {
        for (src, target) in mounts(svc) {
            assert!(target.starts_with('/'), "{name}: {target} is not absolute");
            match src {
                Source::Bind(p) => assert!(p.exists(), "{name} mounts {}: missing", p.display()),
                Source::Named(v) => assert!(declared.contains(&v), "{name}: volume {v}"),
            }
        }
        // Published ports are for this machine only.
        for p in svc["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            assert!(
                s(p).starts_with("127.0.0.1:"),
                "{name} publishes {p} beyond the host's loopback"
            );
        }
    }

    // cluetrain is built from the Dockerfile, with the repository root as context.
    let build = &service(&c, "cluetrain")["build"];
    let context = compose_dir()
        .join(s(&build["context"]))
        .canonicalize()
        .unwrap();
    assert_eq!(context, root());
    assert!(context.join(s(&build["dockerfile"])).is_file());
    assert_eq!(s(&build["dockerfile"]), "deploy/Dockerfile");
    assert_eq!(
        service(&c, "generator")["image"],
        service(&c, "cluetrain")["image"],
        "the generator runs the image compose builds"
    );

    // Start order: the broker is up before the topics, the topics before cluetrain.
    assert_eq!(
        s(&service(&c, "kafka-init")["depends_on"]["kafka"]["condition"]),
        "service_healthy"
    );
    for svc in ["cluetrain", "generator"] {
        assert_eq!(
            s(&service(&c, svc)["depends_on"]["kafka-init"]["condition"]),
            "service_completed_successfully"
        );
    }
}

/// `(topic, partitions)` the kafka-init script creates.
fn init_topics(c: &Value) -> BTreeMap<String, u32> {
    let script = command(service(c, "kafka-init")).join("\n");
    let mut topics = BTreeMap::new();
    for line in script.lines().filter(|l| l.contains("--create")) {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let topic = flag_value(&words, "--topic").expect("--topic");
        let partitions = flag_value(&words, "--partitions")
            .expect("--partitions")
            .parse()
            .unwrap();
        topics.insert(topic, partitions);
    }
    topics
}

#[test]
fn compose_cluetrain_config_loads_and_its_topics_and_brands_exist() {
    let c = compose();
    let (eff, _) = compose_cluetrain(&c, "cluetrain");
    // The generator validates the same file with its own environment.
    let (gen_eff, _) = compose_cluetrain(&c, "generator");
    assert_eq!(
        gen_eff.config, eff.config,
        "generator and pipeline share one config"
    );
    assert_eq!(command(service(&c, "generator"))[0], "generate");
    assert_eq!(command(service(&c, "cluetrain"))[0], "run");

    // Every topic the configuration names exists before cluetrain starts.
    let created = init_topics(&c);
    for t in eff.topics() {
        assert!(created.contains_key(&t), "kafka-init does not create {t}");
    }
    assert!(
        created[&eff.config.kafka.input_topic] >= 2,
        "room to scale out"
    );

    // cluetrain reaches the broker on the listener it advertises to containers.
    let kafka = environment(service(&c, "kafka"));
    let advertised: Vec<&str> = kafka["KAFKA_ADVERTISED_LISTENERS"]
        .split(',')
        .filter_map(|l| l.split_once("://").map(|(_, a)| a))
        .collect();
    for server in eff.config.kafka.bootstrap_servers.split(',') {
        assert!(advertised.contains(&server), "{server} is not advertised");
        let host = server.split(':').next().unwrap();
        assert!(
            c["services"][host].is_object() || service(&c, "kafka")["hostname"] == host,
            "{host} is no compose service"
        );
    }

    // Endpoints on every interface of the container, published on the same ports.
    let (admin, sql) = (eff.config.admin.listen, eff.config.sql.listen);
    assert!(admin.ip().is_unspecified() && sql.ip().is_unspecified());
    let published: BTreeSet<u16> = service(&c, "cluetrain")["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| s(p).rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(published, BTreeSet::from([admin.port(), sql.port()]));

    // The generator's brands are configured by name with their accounts, so that the
    // dashboard shows them rather than "other".
    let generated =
        cluetrain::generate::Generator::new(cluetrain::generate::GeneratorOptions::default())
            .brand_configs();
    let names = |b: &[model::config::BrandConfig]| -> Vec<(String, Vec<String>)> {
        let mut v: Vec<_> = b
            .iter()
            .map(|b| (b.name.clone(), b.accounts.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&eff.config.brands), names(&generated));
    // The graceful stop has time for ingest.shutdown_timeout.
    let grace =
        humantime::parse_duration(s(&service(&c, "cluetrain")["stop_grace_period"])).unwrap();
    assert!(grace > eff.config.ingest.shutdown_timeout);
}

fn promtool() -> PathBuf {
    match std::env::var_os("CLUETRAIN_PROMETHEUS") {
        Some(p) => PathBuf::from(p).with_file_name("promtool"),
        None => panic!(
            "CLUETRAIN_PROMETHEUS is not set: run with `cargo xtask test`, which installs Debian's prometheus package (with promtool) if missing"
        ),
    }
}

#[test]
fn compose_prometheus_config_passes_promtool_and_scrapes_cluetrain() {
    let c = compose();
    let prom = service(&c, "prometheus");
    let args = command(prom);
    let config_path = args
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("--config.file")
        .to_string();

    // The container's view: every bind-mounted file at its path under a temporary root.
    let container = tempfile::tempdir().unwrap();
    for (src, target) in mounts(prom) {
        if let Source::Bind(p) = src {
            let dest = container.path().join(target.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&p, &dest).unwrap();
        }
    }
    let config_file = container.path().join(config_path.trim_start_matches('/'));
    let out = Command::new(promtool())
        .args(["check", "config"])
        .arg(&config_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // It loads the shipped alerting rules...
    let p = yaml(&std::fs::read_to_string(&config_file).unwrap());
    let rules: Vec<&str> = p["rule_files"].as_array().unwrap().iter().map(s).collect();
    assert!(!rules.is_empty());
    for r in rules {
        let loaded = std::fs::read_to_string(config_file.parent().unwrap().join(r)).unwrap();
        assert_eq!(loaded, read("deploy/prometheus/alerts.yml"), "{r}");
    }
    // ...and scrapes the cluetrain service where it listens.
    let (eff, _) = compose_cluetrain(&c, "cluetrain");
    let job = p["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "cluetrain")
        .expect("a cluetrain job (the alerts select job=\"cluetrain\")");
    let targets: Vec<&str> = job["static_configs"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(
        targets,
        vec![format!("cluetrain:{}", eff.config.admin.listen.port())]
    );
    let path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert_eq!(path, "/metrics");
}

#[test]
fn compose_grafana_provisions_the_dashboard_and_its_datasources() {
    let c = compose();
    let grafana = service(&c, "grafana");
    let files: Vec<(PathBuf, String)> = mounts(grafana)
        .into_iter()
        .filter_map(|(src, t)| match src {
            Source::Bind(p) => Some((p, t)),
            Source::Named(_) => None,
        })
        .collect();

    // The dashboard provider's folder is where the repository's dashboard is mounted.
    let (provider, _) = files
        .iter()
        .find(|(_, t)| t.starts_with("/etc/grafana/provisioning/dashboards/"))
        .expect("a dashboard provider is provisioned");
    assert_eq!(
        provider.canonicalize().unwrap(),
        root().join("deploy/grafana/provisioning/dashboards/cluetrain.yaml")
    );
    let provider = yaml(&std::fs::read_to_string(provider).unwrap());
    let folder = s(&provider["providers"][0]["options"]["path"]);
    let (dir, _) = files
        .iter()
        .find(|(_, t)| t == folder)
        .unwrap_or_else(|| panic!("nothing is mounted at the provider's path {folder}"));
    assert_eq!(
        dir.canonicalize().unwrap(),
        root().join("deploy/grafana/dashboards")
    );
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/cluetrain.json")).unwrap();

    // The datasources: every uid the dashboard uses is provisioned, each URL reaches a
    // compose service on the port it listens on.
    let mut uids = BTreeSet::new();
    let (eff, cluetrain_env) = compose_cluetrain(&c, "cluetrain");
    let grafana_env = environment(grafana);
    let datasource_files: Vec<&PathBuf> = files
        .iter()
        .filter(|(_, t)| t.starts_with("/etc/grafana/provisioning/datasources/"))
        .map(|(p, _)| p)
        .collect();
    assert!(datasource_files.len() >= 2, "Prometheus and PostgreSQL");
    for f in datasource_files {
        let d = yaml(&std::fs::read_to_string(f).unwrap());
        for ds in d["datasources"].as_array().unwrap() {
            uids.insert(s(&ds["uid"]).to_string());
            let url = s(&ds["url"]);
            let hostport = url.strip_prefix("http://").unwrap_or(url);
            let (host, port) = hostport.trim_end_matches('/').split_once(':').unwrap();
            let port: u16 = port.parse().unwrap();
            service(&c, host);
            match s(&ds["type"]) {
                "prometheus" => assert_eq!((host, port), ("prometheus", 9090)),
                "grafana-postgresql-datasource" | "postgres" => {
                    assert_eq!(host, "cluetrain");
                    assert_eq!(port, eff.config.sql.listen.port());
                    assert_eq!(s(&ds["user"]), eff.config.sql.user);
                    // Grafana expands ${VAR} from its environment: the same password.
                    let pw = s(&ds["secureJsonData"]["password"]);
                    let var = pw
                        .strip_prefix("${")
                        .and_then(|p| p.strip_suffix('}'))
                        .expect("the password comes from Grafana's environment");
                    assert_eq!(
                        grafana_env.get(var),
                        cluetrain_env.get("CLUETRAIN_SQL__PASSWORD"),
                        "Grafana's {var} is cluetrain's sql.password"
                    );
                }
                other => panic!("unexpected datasource type {other}"),
            }
        }
    }
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let uid = s(&t["datasource"]["uid"]);
            assert!(uids.contains(uid), "datasource {uid} is not provisioned");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes.

fn kubectl() -> PathBuf {
    match std::env::var_os("CLUETRAIN_KUBECTL") {
        Some(p) => p.into(),
        None => panic!(
            "CLUETRAIN_KUBECTL is not set: run with `cargo xtask test`, which finds kubectl (and says how to install it if missing)"
        ),
    }
}

/// `kubectl kustomize deploy/kubernetes`, by kind and name.
struct Rendered {
    objects: Vec<Value>,
}

impl Rendered {
    fn render() -> Rendered {
        let out = Command::new(kubectl())
            .arg("kustomize")
            .arg(root().join("deploy/kubernetes"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/kubernetes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Rendered {
            objects: yaml_documents(&String::from_utf8(out.stdout).unwrap()),
        }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let v = self.all(kind);
        assert_eq!(v.len(), 1, "one {kind} in the render");
        v[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
    }

    fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]
    }

    fn container(&self) -> &Value {
        let c = self.pod()["spec"]["containers"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        &c[0]
    }

    /// The container's environment with Secret references resolved from the rendered Secret
    /// (every reference must resolve).
    fn env(&self) -> Vec<(String, String)> {
        self.container()["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let name = s(&e["name"]).to_string();
                if let Some(v) = e["value"].as_str() {
                    return (name, v.to_string());
                }
                let r = &e["valueFrom"]["secretKeyRef"];
                let secret = self.named("Secret", s(&r["name"]));
                let key = s(&r["key"]);
                let data = secret["data"][key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: the Secret has no key {key}"));
                let value = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap();
                (name, String::from_utf8(value).unwrap())
            })
            .collect()
    }

    /// The containerPort a probe or Service port refers to (by name or number).
    fn container_port(&self, port: &Value) -> u16 {
        let ports = self.container()["ports"].as_array().unwrap();
        let found = ports.iter().find(|p| match port {
            Value::String(n) => p["name"] == n.as_str(),
            other => &p["containerPort"] == other,
        });
        let p = found.unwrap_or_else(|| panic!("the container has no port {port}"));
        u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap()
    }

    /// The rendered ConfigMap's cluetrain.toml, loaded with the container's environment.
    fn effective(&self, dir: &Path) -> Effective {
        let args: Vec<String> = self.container()["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| s(a).to_string())
            .collect();
        assert_eq!(args[0], "run");
        let path = flag_value(&args, "--config").expect("args pass --config");
        // The file at that path comes from the generated ConfigMap.
        let mount = self.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["mountPath"] == path.as_str()
                    || Path::new(&path).parent() == Some(Path::new(s(&m["mountPath"])))
            })
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        let key = match mount["subPath"].as_str() {
            Some(k) => k.to_string(),
            None => Path::new(&path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        };
        let volume = self.pod()["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let cm = self.named("ConfigMap", s(&volume["configMap"]["name"]));
        let toml_text = s(&cm["data"][&key]);
        let file = dir.join("cluetrain.toml");
        std::fs::write(&file, toml_text).unwrap();
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let eff = Effective::load(&file, &pairs);
        eff.assert_env_reached(&pairs);
        // No secret in the ConfigMap: they come from the Secret.
        let table: toml::Table = toml::from_str(toml_text).unwrap();
        assert!(table.get("sql").and_then(|s| s.get("password")).is_none());
        assert!(
            table
                .get("kafka")
                .and_then(|k| k.get("properties"))
                .and_then(|p| p.get("sasl"))
                .and_then(|s| s.get("password"))
                .is_none()
        );
        eff
    }
}

#[test]
fn kubernetes_probes_ports_and_service_match_the_rendered_config() {
    let r = Rendered::render();
    let dir = tempfile::tempdir().unwrap();
    let eff = r.effective(dir.path());
    let (admin, sql) = (eff.config.admin.listen, eff.config.sql.listen);
    assert!(admin.ip().is_unspecified() && sql.ip().is_unspecified());
    let c = r.container();

    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(s(&get["path"]), path, "{probe}");
        assert_eq!(r.container_port(&get["port"]), admin.port(), "{probe}");
    }
    let ports: BTreeSet<u16> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| r.container_port(&p["containerPort"]))
        .collect();
    assert_eq!(ports, BTreeSet::from([admin.port(), sql.port()]));

    // The Service reaches both endpoints of the pods it selects.
    let pod_labels = r.pod()["metadata"]["labels"].as_object().unwrap();
    let selects = |sel: &Value| {
        let sel = sel.as_object().unwrap();
        assert!(!sel.is_empty());
        sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    let svc = r.one("Service");
    assert!(
        selects(&svc["spec"]["selector"]),
        "Service selects the pods"
    );
    let targets: BTreeSet<u16> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| r.container_port(&p["targetPort"]))
        .collect();
    assert_eq!(targets, BTreeSet::from([admin.port(), sql.port()]));
    let deployment = r.one("Deployment");
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"]));
    let pdb = r.one("PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"]),
        "the PodDisruptionBudget covers the pods"
    );

    // Scraped without a ServiceMonitor, through the pod annotations.
    let a = &r.pod()["metadata"]["annotations"];
    assert_eq!(s(&a["prometheus.io/scrape"]), "true");
    assert_eq!(s(&a["prometheus.io/port"]), admin.port().to_string());
    assert_eq!(s(&a["prometheus.io/path"]), "/metrics");
}

#[test]
fn kubernetes_pod_is_locked_down_and_bounded() {
    let r = Rendered::render();
    let pod = &r.pod()["spec"];
    let c = r.container();
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["runAsUser"].as_u64(),
        Some(u64::from(image_uid())),
        "runs as the image's user (deploy/Dockerfile)"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["automountServiceAccountToken"], false);
    // A read-only root: the working directory and /tmp are volumes.
    let mounted: BTreeSet<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s(&m["mountPath"]))
        .collect();
    let (_, runtime) = builder_and_runtime();
    for dir in [runtime.last("WORKDIR"), "/tmp"] {
        assert!(mounted.contains(dir), "{dir} is not writable");
    }
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res}"
            );
        }
    }

    let image = s(&c["image"]);
    let version = workspace()["workspace"]["package"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(image.ends_with(&format!(":{version}")), "{image}");

    // Rolling updates never add a pod beyond `replicas` (it could find no partition and
    // never become ready).
    let d = &r.one("Deployment")["spec"];
    assert_eq!(d["strategy"]["rollingUpdate"]["maxSurge"], 0);
    let dir = tempfile::tempdir().unwrap();
    let eff = r.effective(dir.path());
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > eff.config.ingest.shutdown_timeout.as_secs(),
        "terminationGracePeriodSeconds leaves time for ingest.shutdown_timeout"
    );
}

#[test]
fn kubernetes_state_goes_to_object_storage_and_secrets_stay_placeholders() {
    let r = Rendered::render();
    let dir = tempfile::tempdir().unwrap();
    let eff = r.effective(dir.path());
    // Pods move: the history and the checkpoints live in object storage.
    assert!(eff.config.outputs.parquet_location.starts_with("s3://"));
    let env: BTreeMap<String, String> = r.env().into_iter().collect();
    let checkpoint = eff
        .table
        .get("checkpoint")
        .and_then(|c| c.get("location"))
        .and_then(|l| l.as_str())
        .map(str::to_string)
        .or_else(|| env.get("CLUETRAIN_CHECKPOINT__LOCATION").cloned())
        .expect("checkpoint.location is set");
    assert!(checkpoint.starts_with("s3://"), "{checkpoint}");
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(env.contains_key(var), "{var} for the S3 client");
    }

    // Every secret the container gets comes from the Secret, and the repository holds
    // placeholders only.
    for e in r.container()["env"].as_array().unwrap() {
        let name = s(&e["name"]);
        if name.contains("PASSWORD") || name.contains("SECRET") || name.contains("KEY") {
            assert!(
                e["valueFrom"]["secretKeyRef"].is_object(),
                "{name} must come from the Secret"
            );
        }
    }
    let secret = r.one("Secret");
    let data = secret["data"].as_object().unwrap();
    assert!(!data.is_empty());
    for (k, v) in data {
        let v = base64::engine::general_purpose::STANDARD
            .decode(s(v))
            .unwrap();
        assert_eq!(v, b"REPLACE_ME", "{k}: only placeholders are committed");
    }
}
