//! Loading the configuration: defaults, then the TOML file, then `CLUETRAIN_*` variables.
//!
//! Environment variables use `__` between levels: `CLUETRAIN_INGEST__BATCH_ROWS_MAX=4096` sets
//! `ingest.batch_rows_max`. Under the librdkafka property tables, single `_` become `.`:
//! `CLUETRAIN_KAFKA__PROPERTIES__SASL_PASSWORD` sets the property `sasl.password` (librdkafka
//! property names contain no underscores), which keeps secrets out of the file.
//!
//! Errors name the key, say where the value came from (file or variable) and what a valid
//! value looks like (the default).

use std::fmt;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use model::config::{Config, ConfigError, ConfigProblem};

/// The documented default configuration, printed by `cluetrain config --print-default`.
pub const DEFAULT_TOML: &str = include_str!("../cluetrain.default.toml");

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CLUETRAIN_";

/// Top-level sections; other `CLUETRAIN_*` variables (e.g. `CLUETRAIN_CONFIG`) are not keys.
const SECTIONS: &[&str] = &[
    "kafka",
    "ingest",
    "log",
    "sentiment",
    "linkage",
    "brands",
    "windows",
    "departments",
    "outputs",
    "admin",
    "sql",
    "privacy",
    "checkpoint",
];

/// Property tables whose keys are librdkafka property names.
const PROPERTY_TABLES: &[&str] = &[
    "kafka__properties__",
    "kafka__consumer_properties__",
    "kafka__producer_properties__",
];

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file named on the command line does not exist or cannot be read.
    Missing(String),
    /// Values of the wrong type, unknown keys, bad syntax.
    Parse(Vec<String>),
    /// Values that parse but do not make sense.
    Invalid(ConfigError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Missing(p) => write!(
                f,
                "config file {p} not found: create it with `cluetrain config --print-default > {p}`"
            ),
            LoadError::Parse(lines) => {
                writeln!(f, "invalid configuration ({} problem(s)):", lines.len())?;
                for l in lines {
                    writeln!(f, "  - {l}")?;
                }
                Ok(())
            }
            LoadError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|k| {
            let k = k.as_str().to_ascii_lowercase();
            SECTIONS
                .iter()
                .any(|s| k == *s || k.starts_with(&format!("{s}__")))
        })
        .map(|k| {
            let k = k.as_str().to_ascii_lowercase();
            match PROPERTY_TABLES.iter().find(|t| k.starts_with(**t)) {
                Some(t) => {
                    let table = t.trim_end_matches('_').replace("__", ".");
                    format!("{table}.{}", k[t.len()..].replace('_', ".")).into()
                }
                None => k.replace("__", ".").into(),
            }
        })
        .lowercase(false)
}

/// Loads defaults, `path` (if given) and the environment, then validates.
pub fn load(path: Option<&Path>) -> Result<Config, LoadError> {
    load_with(path, env_provider())
}

fn load_with(path: Option<&Path>, env: Env) -> Result<Config, LoadError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(p) = path {
        if !p.is_file() {
            return Err(LoadError::Missing(p.display().to_string()));
        }
        figment = figment.merge(Toml::file_exact(p));
    }
    figment = figment.merge(env);
    let config: Config = figment
        .extract()
        .map_err(|e| LoadError::Parse(describe(e)))?;
    config.validate().map_err(LoadError::Invalid)?;
    // A missing or short pseudonymisation key, or a missing certificate, is a configuration
    // error like any other (librdkafka's own message does not name the file).
    let mut problems = missing_files(&config);
    if let Err(p) = crate::privacy::key(&config.privacy) {
        problems.push(p);
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid(ConfigError { problems }));
    }
    Ok(config)
}

/// librdkafka properties that name a file (or, for the CA, a directory) read at client creation.
const FILE_PROPERTIES: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
];

/// The file properties whose file cannot be opened, each naming its key and the path.
fn missing_files(config: &Config) -> Vec<ConfigProblem> {
    let k = &config.kafka;
    let mut problems = Vec::new();
    for (table, props) in [
        ("properties", &k.properties),
        ("consumer_properties", &k.consumer_properties),
        ("producer_properties", &k.producer_properties),
    ] {
        for name in FILE_PROPERTIES {
            let Some(path) = props.get(*name) else {
                continue;
            };
            if *name == "ssl.ca.location" && path == "probe" {
                continue;
            }
            let p = Path::new(path);
            if let Err(e) = std::fs::File::open(p) {
                problems.push(ConfigProblem {
                    key: format!("kafka.{table}.\"{name}\""),
                    message: format!("cannot open {path:?}: {e}; point it at a readable PEM file"),
                });
            }
        }
    }
    problems
}

/// One line per figment error: `key: what is wrong (from SOURCE; default: VALUE)`.
fn describe(err: figment::Error) -> Vec<String> {
    let defaults = Figment::from(Serialized::defaults(Config::default()));
    err.into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                path.push(field.clone());
            }
            let key = if path.is_empty() {
                "(top level)".to_string()
            } else {
                path.join(".")
            };
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment variable") => {
                    format!(
                        " [from environment variable {ENV_PREFIX}{}]",
                        e.path.join("__").to_ascii_uppercase()
                    )
                }
                Some(m) => match &m.source {
                    Some(src) => format!(" [from {src}]"),
                    None => format!(" [from {}]", m.name),
                },
                None => String::new(),
            };
            let default = defaults
                .find_value(&e.path.join("."))
                .ok()
                .filter(|_| !matches!(e.kind, figment::error::Kind::UnknownField(..)))
                .map(|v| format!("; default: {}", render(&v)))
                .unwrap_or_default();
            format!("{key}: {}{default}{source}", e.kind)
        })
        .collect()
}

fn render(v: &figment::value::Value) -> String {
    use figment::value::Value;
    match v {
        Value::String(_, s) => format!("{s:?}"),
        Value::Dict(..) => "(a table)".into(),
        Value::Array(..) => "(a list)".into(),
        other => other
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| other.to_u128().map(|u| u.to_string()))
            .or_else(|| other.to_bool().map(|b| b.to_string()))
            .or_else(|| other.to_f64().map(|f| f.to_string()))
            .unwrap_or_else(|| "?".into()),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn default_file_is_the_default_config() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(
            parsed,
            Config::default(),
            "cluetrain.default.toml and Config::default() differ"
        );
    }

    #[test]
    fn env_overrides_file_and_names_properties() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[ingest]\nbatch_rows_max = 100\n[kafka.properties]\nsecurity.protocol = \"SASL_SSL\"\n")?;
            jail.set_env("CLUETRAIN_INGEST__BATCH_ROWS_MAX", "200");
            jail.set_env("CLUETRAIN_KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret");
            jail.set_env("CLUETRAIN_KAFKA__GROUP_ID", "g2");
            jail.set_env("CLUETRAIN_CONFIG", "ignored: not a key");
            let c = load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.ingest.batch_rows_max, 200);
            assert_eq!(c.kafka.group_id, "g2");
            assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
            assert_eq!(c.kafka.properties["sasl.password"], "s3cret");
            Ok(())
        });
    }

    #[test]
    fn errors_name_key_source_and_default() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[ingest]\nbatch_row_max = 1\n")?;
            let e = load(Some(Path::new("c.toml"))).unwrap_err().to_string();
            assert!(e.contains("ingest.batch_row_max"), "{e}");
            assert!(e.contains("batch_rows_max"), "suggests the right key: {e}");
            jail.create_file("d.toml", "[ingest]\nbatch_wait_max = \"soon\"\n")?;
            let e = load(Some(Path::new("d.toml"))).unwrap_err().to_string();
            assert!(e.contains("ingest.batch_wait_max"), "{e}");
            assert!(e.contains("default: \"250ms\""), "{e}");
            jail.set_env("CLUETRAIN_INGEST__QUEUE_BATCHES_MAX", "many");
            let e = load(None).unwrap_err().to_string();
            assert!(e.contains("ingest.queue_batches_max"), "{e}");
            assert!(
                e.contains("CLUETRAIN_INGEST__QUEUE_BATCHES_MAX"),
                "names the variable: {e}"
            );
            Ok(())
        });
    }

    #[test]
    fn validation_problems_and_missing_file_are_explained() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[kafka]\ndead_letter_topic = \"social-events\"\n")?;
            let e = load(Some(Path::new("c.toml"))).unwrap_err().to_string();
            assert!(e.contains("kafka.dead_letter_topic"), "{e}");
            let e = load(Some(Path::new("nope.toml"))).unwrap_err().to_string();
            assert!(e.contains("--print-default"), "{e}");
            Ok(())
        });
    }
}
