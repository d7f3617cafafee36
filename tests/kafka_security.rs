//! Kafka security without a secured broker: what librdkafka checks when a client is created.
//!
//! librdkafka validates the security protocol, the SASL mechanism and its credentials, and
//! loads the CA, certificate and key files when a client is created, so a configuration that
//! creates clients here is one the build supports and whose files are usable. Each case goes
//! through the project's own path: a TOML file loaded by `cluetrain::settings::load`, then
//! `ingest::kafka::client_config` for the consumer and the producer (docs/kafka-security.md).
//! Certificates are made by the `openssl` CLI in a temporary directory. The last test runs the
//! binary: `cluetrain config --show` prints no secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ingest::kafka::{Role, client_config};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;

/// Nothing listens there: creating a client does not need a broker.
const NOWHERE: &str = "127.0.0.1:1";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a client certificate it signed with its key (also encrypted with `keypass`).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let subj = |cn: &str| format!("/CN={cn}");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subj("cluetrain-test-ca"),
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                &subj("cluetrain"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "2",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-in",
                "client.key",
                "-out",
                "client.enc.key",
                "-passout",
                "pass:keypass",
            ],
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Loads `properties` (TOML lines under `[kafka.properties]`) the way `cluetrain run` does.
fn load(dir: &Path, properties: &str) -> model::config::Config {
    let path: PathBuf = dir.join("cluetrain.toml");
    std::fs::write(
        &path,
        format!("[kafka]\nbootstrap_servers = \"{NOWHERE}\"\n\n[kafka.properties]\n{properties}\n"),
    )
    .unwrap();
    cluetrain::settings::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"))
}

/// Creates the consumer and a producer; the first error, as the pipeline would report it.
fn create_clients(config: &model::config::Config) -> Result<(), String> {
    client_config(&config.kafka, Role::Consumer)
        .create::<BaseConsumer>()
        .map_err(|e| format!("consumer: {e}"))?;
    client_config(&config.kafka, Role::Producer)
        .create::<BaseProducer>()
        .map_err(|e| format!("producer: {e}"))?;
    Ok(())
}

#[test]
fn sasl_ssl_with_scram_sha_512_creates_clients() {
    let pki = Pki::new();
    let config = load(
        pki.dir.path(),
        &format!(
            "security.protocol = \"SASL_SSL\"\nsasl.mechanisms = \"SCRAM-SHA-512\"\n\
             sasl.username = \"cluetrain\"\nsasl.password = \"s3cret-scram\"\n\
             ssl.ca.location = \"{}\"",
            pki.path("ca.pem")
        ),
    );
    assert_eq!(config.kafka.properties["security.protocol"], "SASL_SSL");
    create_clients(&config).unwrap();
}

#[test]
fn sasl_ssl_with_plain_creates_clients() {
    let pki = Pki::new();
    let config = load(
        pki.dir.path(),
        &format!(
            "security.protocol = \"SASL_SSL\"\nsasl.mechanism = \"PLAIN\"\n\
             sasl.username = \"cluetrain\"\nsasl.password = \"s3cret-plain\"\n\
             ssl.ca.location = \"{}\"",
            pki.path("ca.pem")
        ),
    );
    create_clients(&config).unwrap();
}

#[test]
fn scram_without_credentials_is_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        "security.protocol = \"SASL_SSL\"\nsasl.mechanisms = \"SCRAM-SHA-512\"",
    );
    let e = create_clients(&config).unwrap_err();
    assert!(e.contains("sasl.username"), "{e}");
}

#[test]
fn mtls_creates_clients_with_plain_and_encrypted_keys() {
    let pki = Pki::new();
    let config = load(
        pki.dir.path(),
        &format!(
            "security.protocol = \"SSL\"\nssl.ca.location = \"{}\"\n\
             ssl.certificate.location = \"{}\"\nssl.key.location = \"{}\"",
            pki.path("ca.pem"),
            pki.path("client.pem"),
            pki.path("client.key")
        ),
    );
    create_clients(&config).unwrap();
    let encrypted = format!(
        "security.protocol = \"SSL\"\nssl.ca.location = \"{}\"\n\
         ssl.certificate.location = \"{}\"\nssl.key.location = \"{}\"",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.enc.key")
    );
    let config = load(
        pki.dir.path(),
        &format!("{encrypted}\nssl.key.password = \"keypass\""),
    );
    create_clients(&config).unwrap();
    // The wrong passphrase: the key cannot be read, and the client is not created.
    let config = load(
        pki.dir.path(),
        &format!("{encrypted}\nssl.key.password = \"wrong\""),
    );
    let e = create_clients(&config).unwrap_err();
    assert!(e.contains("ssl.key"), "{e}");
}

#[test]
fn a_missing_certificate_file_is_a_clear_error() {
    let pki = Pki::new();
    // At load (`cluetrain config --check`, every command): the key and the path are named.
    let missing = pki.path("no-such.key");
    let path = pki.dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka.consumer_properties]\nsecurity.protocol = \"SSL\"\n\
             ssl.certificate.location = \"{}\"\nssl.key.location = \"{missing}\"\n",
            pki.path("client.pem")
        ),
    )
    .unwrap();
    let e = cluetrain::settings::load(Some(&path))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kafka.consumer_properties.\"ssl.key.location\""),
        "names the key: {e}"
    );
    assert!(e.contains(&missing), "names the path: {e}");
    assert!(e.contains("No such file"), "says why: {e}");
    // A file that goes away after loading: librdkafka refuses the client, naming the property,
    // and the pipeline's error says which table to check.
    let ca = pki.dir.path().join("gone-ca.pem");
    std::fs::copy(pki.dir.path().join("ca.pem"), &ca).unwrap();
    let config = load(
        pki.dir.path(),
        &format!(
            "security.protocol = \"SSL\"\nssl.ca.location = \"{}\"",
            ca.display()
        ),
    );
    std::fs::remove_file(&ca).unwrap();
    let e = create_clients(&config).unwrap_err();
    assert!(e.contains("ssl.ca.location"), "names the property: {e}");
    let e = ingest::DeadLetterSink::new(&config.kafka, &config.ingest)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("ssl.ca.location"), "{e}");
    assert!(e.contains("kafka.properties"), "says where to fix it: {e}");
}

#[test]
fn gssapi_is_not_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        "security.protocol = \"SASL_SSL\"\nsasl.mechanisms = \"GSSAPI\"",
    );
    let e = create_clients(&config).unwrap_err();
    assert!(e.contains("GSSAPI"), "{e}");
}

/// `cluetrain config --show` with secrets from the environment and a file shows none of them.
#[test]
fn config_show_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[kafka.properties]\nsecurity.protocol = \"SASL_SSL\"\nsasl.username = \"cluetrain\"\n\
         ssl.key.password = \"file-secret-1\"\n\n[privacy]\npseudonymise_user_ids = true\n",
    )
    .unwrap();
    let mut c = Command::new(cluetrain_tests::cluetrain_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("CLUETRAIN_") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["config", "--show", "--config"])
        .arg(&path)
        .env("CLUETRAIN_KAFKA__PROPERTIES__SASL_PASSWORD", "env-secret-2")
        .env(
            "CLUETRAIN_KAFKA__PRODUCER_PROPERTIES__SASL_PASSWORD",
            "env-secret-3",
        )
        .env("CLUETRAIN_SQL__PASSWORD", "env-secret-4")
        .env(
            "CLUETRAIN_HMAC_KEY",
            "env-secret-5-0123456789abcdef0123456789",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stdout.contains("secret-"),
        "a secret is printed:\n{stdout}"
    );
    assert!(!stderr.contains("secret-"), "{stderr}");
    assert!(stdout.contains("sasl.password"), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(
        stdout.contains("cluetrain"),
        "non-secrets are shown: {stdout}"
    );
    // A short key is refused by `config --check`, naming the setting, without the key.
    let mut c = Command::new(cluetrain_tests::cluetrain_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("CLUETRAIN_") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["config", "--check", "--config"])
        .arg(&path)
        .env("CLUETRAIN_HMAC_KEY", "short-secret-6")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("privacy.hmac_key_env"), "{stderr}");
    assert!(!stderr.contains("secret-6"), "{stderr}");
}
