//! Pseudonymisation of user ids: keyed HMAC-SHA-256, Arrow batch in, Arrow batch out.
//!
//! When `privacy.pseudonymise_user_ids` is on, the binary runs [`Pseudonymiser::apply`] on
//! every decoded batch before anything else reads it, so linkage, the live tables, late events,
//! forwarded complaints and Parquet only ever see pseudonyms. The batch keeps its schema: the
//! `author_id` and `author_handle` columns hold pseudonyms instead of the platform's values.
//!
//! **What a pseudonym is.** `u_` + 32 lowercase hex digits for an author id, `h_` + 32 for a
//! handle: the first 16 bytes (128 bits) of HMAC-SHA-256 over a domain label and the value.
//! The same value under the same key always gives the same pseudonym (so conversations, turns
//! and `voices` still work); without the key it can neither be reversed nor recomputed from a
//! guessed id, which a plain hash could. Truncation to 128 bits (RFC 2104 allows truncation to
//! half the output) keeps values short in state, Parquet and SQL, and stays collision-safe: for
//! a billion distinct users the chance of any collision is about 10⁻²¹ (n² / 2¹²⁹).
//!
//! Handles are lowercased (ASCII) before hashing: platforms treat them case-insensitively, and
//! linkage compares configured handles that way. The domain label (`author_id` /
//! `author_handle`) keeps an id and a handle with the same text from sharing a pseudonym.
//!
//! **The brand's own accounts are exempt.** Configured `brands.accounts` are organisations
//! speaking in public, not people; an author whose id, or whose handle (case-insensitively),
//! is a configured account keeps both values unchanged. Linkage therefore recognises the brand
//! exactly as without pseudonymisation, and outputs still say which account answered.
//!
//! Message ids, reply targets and the text are not changed (a text may still mention `@name`).

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use hmac::{Hmac, KeyInit, Mac};
use model::schema::col;
use sha2::Sha256;

use crate::EnrichError;

/// The shortest key accepted, in bytes (the HMAC-SHA-256 output size: shorter keys weaken it).
pub const KEY_BYTES_MIN: usize = 32;

/// Bytes of the HMAC kept in a pseudonym (128 bits, 32 hex digits).
pub const PSEUDONYM_BYTES: usize = 16;

/// Prefix of author-id pseudonyms.
pub const ID_PREFIX: &str = "u_";

/// Prefix of handle pseudonyms.
pub const HANDLE_PREFIX: &str = "h_";

const ID_DOMAIN: &[u8] = b"author_id\0";
const HANDLE_DOMAIN: &[u8] = b"author_handle\0";

/// HMAC-SHA-256 of the concatenation of `parts` under `key` (any key length, as RFC 2104).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Replaces user ids by keyed pseudonyms (see the module documentation).
#[derive(Clone)]
pub struct Pseudonymiser {
    /// The keyed HMAC state, cloned per value (the key is hashed into it once).
    mac: Hmac<Sha256>,
    /// Configured brand accounts, exact (compared with author ids).
    exempt_ids: HashSet<String>,
    /// Configured brand accounts, ASCII-lowercased (compared with handles).
    exempt_handles: HashSet<String>,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("key", &"<redacted>")
            .field("exempt_accounts", &self.exempt_ids.len())
            .finish()
    }
}

impl Pseudonymiser {
    /// A pseudonymiser with `key` (at least [`KEY_BYTES_MIN`] bytes); `exempt_accounts` are the
    /// configured brand accounts (ids or handles), left unchanged.
    pub fn new<'a>(
        key: &[u8],
        exempt_accounts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, EnrichError> {
        if key.len() < KEY_BYTES_MIN {
            return Err(EnrichError::KeyTooShort {
                bytes: key.len(),
                min: KEY_BYTES_MIN,
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| EnrichError::KeyTooShort {
            bytes: key.len(),
            min: KEY_BYTES_MIN,
        })?;
        let mut exempt_ids = HashSet::new();
        let mut exempt_handles = HashSet::new();
        for a in exempt_accounts {
            exempt_ids.insert(a.to_string());
            exempt_handles.insert(a.to_ascii_lowercase());
        }
        Ok(Pseudonymiser {
            mac,
            exempt_ids,
            exempt_handles,
        })
    }

    fn write(&self, domain: &[u8], prefix: &str, value: &[u8], out: &mut String) {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        out.clear();
        out.push_str(prefix);
        for b in digest.iter().take(PSEUDONYM_BYTES) {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
    }

    /// The pseudonym of an author id.
    pub fn author_id(&self, id: &str) -> String {
        let mut s = String::with_capacity(ID_PREFIX.len() + 2 * PSEUDONYM_BYTES);
        self.write(ID_DOMAIN, ID_PREFIX, id.as_bytes(), &mut s);
        s
    }

    /// The pseudonym of a handle (case-insensitive).
    pub fn handle(&self, handle: &str) -> String {
        let mut s = String::with_capacity(HANDLE_PREFIX.len() + 2 * PSEUDONYM_BYTES);
        self.write(
            HANDLE_DOMAIN,
            HANDLE_PREFIX,
            handle.to_ascii_lowercase().as_bytes(),
            &mut s,
        );
        s
    }

    /// True when the author is one of the configured brand accounts (by id, or by handle
    /// case-insensitively: the rule linkage uses).
    pub fn is_exempt(&self, id: &str, handle: Option<&str>) -> bool {
        self.exempt_ids.contains(id)
            || handle.is_some_and(|h| self.exempt_handles.contains(&h.to_ascii_lowercase()))
    }

    /// `batch` (with the event schema, or any schema with its author columns) with author
    /// ids and handles replaced by pseudonyms. Schema, row order and nulls are unchanged.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, EnrichError> {
        let schema = batch.schema();
        let (id_index, ids) = utf8_column(batch, col::AUTHOR_ID)?;
        let handle_col = match schema.index_of(col::AUTHOR_HANDLE) {
            Ok(_) => Some(utf8_column(batch, col::AUTHOR_HANDLE)?),
            Err(_) => None,
        };
        let rows = batch.num_rows();
        let width = ID_PREFIX.len() + 2 * PSEUDONYM_BYTES;
        let mut new_ids = StringBuilder::with_capacity(rows, rows * width);
        let mut new_handles = StringBuilder::with_capacity(rows, rows * width);
        let mut buf = String::with_capacity(width);
        for i in 0..rows {
            let handle = handle_col
                .as_ref()
                .and_then(|(_, h)| h.is_valid(i).then(|| h.value(i)));
            let id = ids.is_valid(i).then(|| ids.value(i));
            let exempt = self.is_exempt(id.unwrap_or_default(), handle);
            match id {
                Some(id) if exempt => new_ids.append_value(id),
                Some(id) => {
                    self.write(ID_DOMAIN, ID_PREFIX, id.as_bytes(), &mut buf);
                    new_ids.append_value(&buf);
                }
                None => new_ids.append_null(),
            }
            match handle {
                Some(h) if exempt => new_handles.append_value(h),
                Some(h) => {
                    self.write(
                        HANDLE_DOMAIN,
                        HANDLE_PREFIX,
                        h.to_ascii_lowercase().as_bytes(),
                        &mut buf,
                    );
                    new_handles.append_value(&buf);
                }
                None => new_handles.append_null(),
            }
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        if let Some(c) = columns.get_mut(id_index) {
            *c = Arc::new(new_ids.finish());
        }
        if let Some((handle_index, _)) = handle_col
            && let Some(c) = columns.get_mut(handle_index)
        {
            *c = Arc::new(new_handles.finish());
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

fn utf8_column<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<(usize, &'a StringArray), EnrichError> {
    let index = batch
        .schema()
        .index_of(name)
        .map_err(|_| EnrichError::MissingColumn { column: name })?;
    let column = batch.column(index);
    let strings = column
        .as_string_opt::<i32>()
        .ok_or_else(|| EnrichError::ColumnType {
            column: name,
            found: column.data_type().clone(),
            expected: "Utf8",
        })?;
    Ok((index, strings))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn rfc_4231_test_vectors() {
        // Test case 1.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2, the message split in two parts.
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_pseudonym_is_the_truncated_hmac_of_domain_and_value() {
        let p = Pseudonymiser::new(KEY, []).unwrap();
        let full = hmac_sha256(KEY, &[b"author_id\0", b"12345"]);
        assert_eq!(p.author_id("12345"), format!("u_{}", hex(&full[..16])));
        assert_eq!(p.author_id("12345").len(), 34);
        let full = hmac_sha256(KEY, &[b"author_handle\0", b"alice"]);
        assert_eq!(p.handle("Alice"), format!("h_{}", hex(&full[..16])));
    }

    #[test]
    fn same_id_same_pseudonym_other_key_other_pseudonym() {
        let a = Pseudonymiser::new(KEY, []).unwrap();
        let b = Pseudonymiser::new(b"another key of at least 32 bytes!", []).unwrap();
        assert_eq!(a.author_id("u1"), a.author_id("u1"));
        assert_ne!(a.author_id("u1"), a.author_id("u2"));
        assert_ne!(a.author_id("u1"), b.author_id("u1"));
        assert_eq!(
            a.handle("Bob"),
            a.handle("bob"),
            "handles are case-insensitive"
        );
        assert_ne!(
            a.author_id("bob")[2..],
            a.handle("bob")[2..],
            "ids and handles are separate domains"
        );
    }

    #[test]
    fn short_keys_are_refused_and_the_key_is_not_in_debug() {
        let e = Pseudonymiser::new(b"short", []).unwrap_err().to_string();
        assert!(e.contains("5 bytes") && e.contains("32"), "{e}");
        let p = Pseudonymiser::new(KEY, ["acme"]).unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("0123456789abcdef"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
    }

    fn batch() -> RecordBatch {
        let mut b = model::EventBatchBuilder::with_capacity(3);
        for (id, handle) in [
            (r#""id": "1001", "handle": "Alice""#, 0),
            (r#""id": "999", "handle": "AcmeHelp""#, 1),
            (r#""id": "1002""#, 2),
        ] {
            let json = format!(
                r#"{{"event_id": "e{handle}", "platform": "twitter", "kind": "post",
                   "created_at": "2026-03-02T10:00:00Z", "brand": "acme",
                   "author": {{{id}, "is_org": false}}, "text": "hi"}}"#
            );
            let v: model::SocialEvent = serde_json::from_str(&json).unwrap();
            let e = v.as_ref_with_time(v.created_at_micros().unwrap());
            b.append(&e, 0, i64::from(handle));
        }
        b.finish().unwrap()
    }

    #[test]
    fn the_batch_keeps_its_schema_and_brand_accounts_are_exempt() {
        let input = batch();
        let p = Pseudonymiser::new(KEY, ["acmehelp"]).unwrap();
        let out = p.apply(&input).unwrap();
        assert_eq!(out.schema(), input.schema());
        assert_eq!(out.num_rows(), 3);
        let ids = out
            .column_by_name(col::AUTHOR_ID)
            .unwrap()
            .as_string::<i32>();
        let handles = out
            .column_by_name(col::AUTHOR_HANDLE)
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), p.author_id("1001"));
        assert_eq!(handles.value(0), p.handle("alice"));
        // The brand's account (matched by handle, case-insensitively) is left as it is.
        assert_eq!(ids.value(1), "999");
        assert_eq!(handles.value(1), "AcmeHelp");
        assert_eq!(ids.value(2), p.author_id("1002"));
        assert!(handles.is_null(2), "nulls stay null");
        for c in [col::EVENT_ID, col::TEXT, col::BRAND] {
            assert_eq!(out.column_by_name(c), input.column_by_name(c), "{c}");
        }
        // By id as well.
        let by_id = Pseudonymiser::new(KEY, ["1001"])
            .unwrap()
            .apply(&input)
            .unwrap();
        let ids = by_id
            .column_by_name(col::AUTHOR_ID)
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "1001");
    }
}
