//! The pseudonymisation key: where it comes from (`[privacy]`), and the
//! [`enrich::pseudonym::Pseudonymiser`] built from it.
//!
//! The key is read from the environment variable `privacy.hmac_key_env` names, or from the file
//! `privacy.hmac_key_file` (which wins when set); surrounding whitespace (a file's trailing
//! newline) is not part of it. It is at least 32 bytes, is never part of [`Config`] and never
//! appears in a message, a log line or `Debug` output ([`HmacKey`] prints `<redacted>`).
//! [`crate::settings::load`] checks it, so `cluetrain config --check` reports a missing or short
//! key; [`crate::enrichment::Enrichment::new`] reads it again to build the pseudonymiser.

use std::fmt;

use enrich::pseudonym::{KEY_BYTES_MIN, Pseudonymiser};
use model::config::{Config, ConfigProblem, PrivacyConfig};

/// A pseudonymisation key. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacKey(Vec<u8>);

impl HmacKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey(<redacted>, {} bytes)", self.0.len())
    }
}

fn problem(key: &str, message: String) -> ConfigProblem {
    ConfigProblem {
        key: key.into(),
        message,
    }
}

/// The key when pseudonymisation is on (None when off); a problem names the key to fix.
pub fn key(p: &PrivacyConfig) -> Result<Option<HmacKey>, ConfigProblem> {
    key_with(p, |name| std::env::var(name))
}

fn key_with(
    p: &PrivacyConfig,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Option<HmacKey>, ConfigProblem> {
    if !p.pseudonymise_user_ids {
        return Ok(None);
    }
    let fix = format!(
        "a secret of at least {KEY_BYTES_MIN} bytes, e.g. from `openssl rand -hex 32`; keep it: \
         another key gives other pseudonyms"
    );
    let (config_key, source, bytes) = if !p.hmac_key_file.trim().is_empty() {
        let path = p.hmac_key_file.trim();
        let bytes = std::fs::read(path).map_err(|e| {
            problem(
                "privacy.hmac_key_file",
                format!("cannot read the key file {path:?}: {e}; it must hold {fix}"),
            )
        })?;
        ("privacy.hmac_key_file", format!("file {path:?}"), bytes)
    } else {
        let name = p.hmac_key_env.trim();
        if name.is_empty() {
            return Err(problem(
                "privacy.hmac_key_env",
                "pseudonymise_user_ids is on but no key source is set: name the environment \
                 variable holding the key (default \"CLUETRAIN_HMAC_KEY\") or set \
                 privacy.hmac_key_file"
                    .into(),
            ));
        }
        let value = env(name).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set",
                std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
            };
            problem(
                "privacy.hmac_key_env",
                format!(
                    "pseudonymise_user_ids is on but the environment variable {name} {why}: set \
                     it to {fix}, or set privacy.hmac_key_file"
                ),
            )
        })?;
        (
            "privacy.hmac_key_env",
            format!("environment variable {name}"),
            value.into_bytes(),
        )
    };
    let key = bytes.trim_ascii().to_vec();
    if key.len() < KEY_BYTES_MIN {
        return Err(problem(
            config_key,
            format!(
                "the key in {source} has {} bytes, at least {KEY_BYTES_MIN} are required: use {fix}",
                key.len()
            ),
        ));
    }
    Ok(Some(HmacKey(key)))
}

/// The pseudonymiser of `config` (None when `privacy.pseudonymise_user_ids` is off); the
/// brand's configured accounts are exempt (docs/privacy.md).
pub fn pseudonymiser(config: &Config) -> Result<Option<Pseudonymiser>, ConfigProblem> {
    let Some(key) = key(&config.privacy)? else {
        return Ok(None);
    };
    let accounts = config
        .brands
        .iter()
        .flat_map(|b| b.accounts.iter().map(String::as_str));
    Pseudonymiser::new(key.as_bytes(), accounts)
        .map(Some)
        .map_err(|e| problem("privacy", e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "k3y-0123456789abcdef0123456789abcdef";

    fn on() -> PrivacyConfig {
        PrivacyConfig {
            pseudonymise_user_ids: true,
            ..PrivacyConfig::default()
        }
    }

    fn env(value: Option<&'static str>) -> impl Fn(&str) -> Result<String, std::env::VarError> {
        move |name| {
            assert_eq!(name, "CLUETRAIN_HMAC_KEY");
            value
                .map(str::to_string)
                .ok_or(std::env::VarError::NotPresent)
        }
    }

    #[test]
    fn off_needs_no_key() {
        assert_eq!(
            key_with(&PrivacyConfig::default(), env(None)).unwrap(),
            None
        );
    }

    #[test]
    fn the_key_comes_from_the_environment_and_is_never_shown() {
        let k = key_with(&on(), env(Some(SECRET))).unwrap().unwrap();
        assert_eq!(k.as_bytes(), SECRET.as_bytes());
        let d = format!("{k:?}");
        assert!(!d.contains("k3y"), "{d}");
    }

    #[test]
    fn a_missing_or_short_key_names_the_setting_and_the_fix_without_the_key() {
        let e = key_with(&on(), env(None)).unwrap_err();
        assert_eq!(e.key, "privacy.hmac_key_env");
        assert!(
            e.message.contains("CLUETRAIN_HMAC_KEY is not set"),
            "{}",
            e.message
        );
        assert!(e.message.contains("openssl rand"), "{}", e.message);
        let e = key_with(&on(), env(Some("k3y-short"))).unwrap_err();
        assert_eq!(e.key, "privacy.hmac_key_env");
        assert!(e.message.contains("9 bytes"), "{}", e.message);
        assert!(
            !e.message.contains("k3y"),
            "the key is not shown: {}",
            e.message
        );
    }

    #[test]
    fn a_key_file_wins_and_its_newline_is_not_part_of_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let mut p = on();
        p.hmac_key_file = path.display().to_string();
        let k = key_with(&p, env(None)).unwrap().unwrap();
        assert_eq!(k.as_bytes(), SECRET.as_bytes());
        p.hmac_key_file = dir.path().join("missing").display().to_string();
        let e = key_with(&p, env(None)).unwrap_err();
        assert_eq!(e.key, "privacy.hmac_key_file");
        assert!(e.message.contains("cannot read"), "{}", e.message);
    }
}
