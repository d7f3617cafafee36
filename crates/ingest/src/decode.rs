//! JSON payload → validated event, or a reason why not.
//!
//! The rules are those of `schemas/social-event.v1.json`; a test runs every file in
//! `schemas/examples/` through both the schema (with the `jsonschema` crate) and this decoder
//! and requires that they agree. Strings are borrowed from the payload where JSON escapes allow.
//!
//! Order of checks, cheapest first: presence and size, UTF-8, JSON syntax, schema, event-time
//! range. The first failing check is the reason a message is dead-lettered.

use std::borrow::Cow;
use std::fmt;

use model::{AuthorRef, EventBatchBuilder, EventKind, EventRef, Stakeholder};
use serde::Deserialize;

/// Why a message was rejected. Closed set: it is a metric label and a dead-letter header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The message had no payload (a tombstone) or an empty one.
    EmptyPayload,
    /// The payload is larger than `ingest.message_bytes_max`.
    Oversized,
    /// The payload is not valid UTF-8.
    InvalidUtf8,
    /// The payload is not JSON (syntax error, truncated).
    InvalidJson,
    /// Valid JSON that breaks the event schema (missing field, wrong type, unknown kind...).
    SchemaViolation,
    /// `created_at` is before `ingest.event_time_min` or too far in the future.
    TimestampOutOfRange,
}

impl RejectReason {
    /// Every reason, for metric initialisation and docs.
    pub const ALL: [RejectReason; 6] = [
        RejectReason::EmptyPayload,
        RejectReason::Oversized,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::SchemaViolation,
        RejectReason::TimestampOutOfRange,
    ];

    /// The label value / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::EmptyPayload => "empty_payload",
            RejectReason::Oversized => "oversized",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::SchemaViolation => "schema_violation",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
        }
    }

    /// Position in [`RejectReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected payload: the reason and a human-readable detail (never containing the payload
/// itself beyond what serde quotes in a short error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The reason, a closed set.
    pub reason: RejectReason,
    /// What exactly was wrong, for the dead-letter header and logs.
    pub detail: String,
}

impl Reject {
    /// A reject whose detail is cut to [`DETAIL_BYTES_MAX`]: serde's messages quote the
    /// offending value whole (`invalid type: string "…"`), which can be most of the payload.
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > DETAIL_BYTES_MAX {
            const CUT: &str = "…";
            let mut end = DETAIL_BYTES_MAX - CUT.len();
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
            detail.push_str(CUT);
        }
        Reject { reason, detail }
    }
}

/// The limits a decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Payloads longer than this are rejected unread.
    pub message_bytes_max: usize,
    /// Earliest accepted event time, µs since the epoch.
    pub event_time_min_micros: i64,
    /// How far past "now" an event time may be, µs.
    pub event_time_future_max_micros: i64,
}

impl DecodeLimits {
    /// Limits from the ingest configuration.
    pub fn from_config(c: &model::config::IngestConfig) -> Self {
        DecodeLimits {
            message_bytes_max: c.message_bytes_max,
            event_time_min_micros: c.event_time_min.timestamp_micros(),
            event_time_future_max_micros: i64::try_from(c.event_time_future_max.as_micros())
                .unwrap_or(i64::MAX),
        }
    }

    /// No size or time limits: schema checks only (what the JSON Schema itself says).
    pub fn schema_only() -> Self {
        DecodeLimits {
            message_bytes_max: usize::MAX,
            event_time_min_micros: i64::MIN,
            event_time_future_max_micros: i64::MAX,
        }
    }
}

/// The longest id-like string the schema allows (event ids, brands, handles), in characters.
pub const ID_CHARS_MAX: usize = 256;
/// The longest language tag the schema allows, in characters.
pub const LANG_CHARS_MAX: usize = 35;
/// The longest [`Reject::detail`], in bytes: it travels as a dead-letter header, next to the
/// payload, and must not make the dead letter larger than the broker accepts.
pub const DETAIL_BYTES_MAX: usize = 512;

#[derive(Deserialize)]
struct WireAuthor<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    handle: Option<Cow<'a, str>>,
    is_org: bool,
    #[serde(default)]
    followers: Option<serde_json::Number>,
    #[serde(default)]
    stakeholder: Option<Stakeholder>,
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    platform: Cow<'a, str>,
    kind: EventKind,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    brand: Cow<'a, str>,
    #[serde(borrow)]
    author: WireAuthor<'a>,
    #[serde(borrow, default)]
    conversation_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    in_reply_to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(borrow, default)]
    lang: Option<Cow<'a, str>>,
}

/// Decodes payloads into an [`EventBatchBuilder`] under [`DecodeLimits`].
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: DecodeLimits,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: DecodeLimits) -> Self {
        Decoder { limits }
    }

    /// Decodes `payload` and appends the event to `out` (tagged with its Kafka coordinates),
    /// or says why it cannot. `now_micros` is the wall clock used for the future bound.
    pub fn decode_into(
        &self,
        payload: Option<&[u8]>,
        now_micros: i64,
        out: &mut EventBatchBuilder,
        partition: i32,
        offset: i64,
    ) -> Result<(), Reject> {
        let text = self.check_bytes(payload)?;
        let wire = parse(text)?;
        let event = validate(&wire)?;
        self.check_time(event.created_at_micros, now_micros)?;
        out.append(&event, partition, offset);
        Ok(())
    }

    /// Runs every check without appending: the event's validity under these limits.
    pub fn check(&self, payload: Option<&[u8]>, now_micros: i64) -> Result<(), Reject> {
        let text = self.check_bytes(payload)?;
        let wire = parse(text)?;
        let event = validate(&wire)?;
        self.check_time(event.created_at_micros, now_micros)
    }

    fn check_bytes<'a>(&self, payload: Option<&'a [u8]>) -> Result<&'a str, Reject> {
        let bytes = match payload {
            None | Some([]) => {
                return Err(Reject::new(
                    RejectReason::EmptyPayload,
                    "message has no payload",
                ));
            }
            Some(b) => b,
        };
        if bytes.len() > self.limits.message_bytes_max {
            return Err(Reject::new(
                RejectReason::Oversized,
                format!(
                    "payload is {} bytes, over ingest.message_bytes_max = {}",
                    bytes.len(),
                    self.limits.message_bytes_max
                ),
            ));
        }
        std::str::from_utf8(bytes).map_err(|e| {
            Reject::new(
                RejectReason::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })
    }

    fn check_time(&self, t: i64, now_micros: i64) -> Result<(), Reject> {
        let latest = now_micros.saturating_add(self.limits.event_time_future_max_micros);
        if t < self.limits.event_time_min_micros {
            return Err(Reject::new(
                RejectReason::TimestampOutOfRange,
                format!(
                    "created_at is before ingest.event_time_min ({} µs < {} µs)",
                    t, self.limits.event_time_min_micros
                ),
            ));
        }
        if t > latest {
            return Err(Reject::new(
                RejectReason::TimestampOutOfRange,
                format!(
                    "created_at is more than ingest.event_time_future_max ahead of the wall clock ({} µs > {} µs)",
                    t, latest
                ),
            ));
        }
        Ok(())
    }
}

fn parse(text: &str) -> Result<WireEvent<'_>, Reject> {
    // serde would also fill a struct from a JSON array of the right length; the schema says
    // object, so anything else is refused before serde sees it.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Reject::new(
                RejectReason::SchemaViolation,
                "an event must be a JSON object",
            ),
            Err(e) => Reject::new(RejectReason::InvalidJson, e.to_string()),
        });
    }
    serde_json::from_str::<WireEvent<'_>>(text).map_err(|e| {
        // serde stops at the first error in reading order, and a schema error early in a
        // document (`"kind":"tweet"`, a missing field of `author`) comes before a syntax error
        // later on (a truncated message). Syntax is checked first: only a document that is
        // valid JSON as a whole is a schema violation, and an invalid one is described by its
        // syntax error. (Some field deserializers also report a wrong type, `"kind": 5`, as a
        // syntax-like "expected value": valid JSON, so a schema violation.)
        match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Reject::new(RejectReason::SchemaViolation, e.to_string()),
            Err(syntax) => Reject::new(RejectReason::InvalidJson, syntax.to_string()),
        }
    })
}

fn violation(detail: String) -> Reject {
    Reject::new(RejectReason::SchemaViolation, detail)
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), Reject> {
    if min > 0 && value.is_empty() {
        return Err(violation(format!("{field} must not be empty")));
    }
    // The byte length bounds the character count from above: count characters only when needed.
    if value.len() > max {
        let chars = value.chars().count();
        if chars > max {
            return Err(violation(format!(
                "{field} has {chars} characters, at most {max} are allowed"
            )));
        }
    }
    Ok(())
}

/// Checks what serde's types cannot express, and parses the event time.
fn validate<'a>(w: &'a WireEvent<'a>) -> Result<EventRef<'a>, Reject> {
    check_len("event_id", &w.event_id, 1, ID_CHARS_MAX)?;
    check_len("platform", &w.platform, 1, ID_CHARS_MAX)?;
    check_len("brand", &w.brand, 1, ID_CHARS_MAX)?;
    check_len("author.id", &w.author.id, 1, ID_CHARS_MAX)?;
    if let Some(h) = &w.author.handle {
        check_len("author.handle", h, 0, ID_CHARS_MAX)?;
    }
    for (field, v) in [
        ("conversation_id", &w.conversation_id),
        ("in_reply_to", &w.in_reply_to),
    ] {
        if let Some(v) = v {
            check_len(field, v, 1, ID_CHARS_MAX)?;
        }
    }
    if let Some(l) = &w.lang {
        check_len("lang", l, 1, LANG_CHARS_MAX)?;
    }
    let followers = match &w.author.followers {
        None => None,
        Some(n) => Some(non_negative_integer(n).ok_or_else(|| {
            violation(format!(
                "author.followers must be a non-negative integer, got {n}"
            ))
        })?),
    };
    let created_at_micros = parse_rfc3339(&w.created_at)?;
    Ok(EventRef {
        event_id: &w.event_id,
        platform: &w.platform,
        kind: w.kind,
        created_at_micros,
        brand: &w.brand,
        author: AuthorRef {
            id: &w.author.id,
            handle: w.author.handle.as_deref(),
            is_org: w.author.is_org,
            followers,
            stakeholder: w.author.stakeholder,
        },
        conversation_id: w.conversation_id.as_deref(),
        in_reply_to: w.in_reply_to.as_deref(),
        text: &w.text,
        lang: w.lang.as_deref(),
    })
}

/// JSON Schema's "integer" includes `3.0`; accept what it accepts, within u64.
fn non_negative_integer(n: &serde_json::Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    // 2^64 as f64; anything at or above it does not fit.
    if f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0 {
        #[allow(clippy::cast_possible_truncation)] // checked: integral and in range above
        return Some(f as u64);
    }
    None
}

/// RFC 3339 date-time as the schema's `format: date-time` means it: `T` (or `t`) between date
/// and time, and a real calendar date. chrono alone would also accept a space separator.
fn parse_rfc3339(s: &str) -> Result<i64, Reject> {
    let sep_ok = matches!(s.as_bytes().get(10), Some(b'T' | b't'));
    let parsed = if sep_ok {
        chrono::DateTime::parse_from_rfc3339(s).ok()
    } else {
        None
    };
    match parsed {
        Some(t) => Ok(t.timestamp_micros()),
        None => {
            let shown: String = s.chars().take(64).collect();
            Err(violation(format!(
                "created_at {shown:?} is not an RFC 3339 date-time (e.g. 2026-01-05T10:00:00Z)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"event_id":"e1","platform":"x","kind":"reply","created_at":"2026-01-05T10:00:00.5+01:00",
        "brand":"acme","author":{"id":"u1","handle":"jo","is_org":false,"followers":12.0,"stakeholder":"customer"},
        "in_reply_to":"p0","text":"caf\u00e9 :)","extra":{"ignored":[1,2]}}"#;

    fn check(p: &[u8]) -> Result<(), Reject> {
        Decoder::new(DecodeLimits::schema_only()).check(Some(p), 0)
    }

    #[test]
    fn good_event_decodes_with_escapes_and_extra_fields() {
        let mut b = EventBatchBuilder::with_capacity(1);
        Decoder::new(DecodeLimits::schema_only())
            .decode_into(Some(GOOD.as_bytes()), 0, &mut b, 2, 7)
            .unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn each_reason_is_detected() {
        let d = Decoder::new(DecodeLimits {
            message_bytes_max: 600,
            ..DecodeLimits::schema_only()
        });
        let r = |p: Option<&[u8]>| d.check(p, 0).unwrap_err().reason;
        assert_eq!(r(None), RejectReason::EmptyPayload);
        assert_eq!(r(Some(b"")), RejectReason::EmptyPayload);
        assert_eq!(r(Some(&[b'{'; 601])), RejectReason::Oversized);
        assert_eq!(r(Some(b"{\"a\":\"\xff\"}")), RejectReason::InvalidUtf8);
        assert_eq!(r(Some(b"{\"event_id\":")), RejectReason::InvalidJson);
        assert_eq!(r(Some(b"[1,2]")), RejectReason::SchemaViolation);
        let as_array = r#"["e1","x","post","2026-01-05T10:00:00Z","acme",{"id":"u","is_org":true},null,null,"t",null]"#;
        assert_eq!(
            r(Some(as_array.as_bytes())),
            RejectReason::SchemaViolation,
            "arrays are not events"
        );
        assert_eq!(r(Some(b"  nul")), RejectReason::InvalidJson);
        assert_eq!(
            r(Some(GOOD.replace("reply", "tweet").as_bytes())),
            RejectReason::SchemaViolation
        );
        assert_eq!(
            r(Some(GOOD.replace("\"reply\"", "5").as_bytes())),
            RejectReason::SchemaViolation,
            "a wrong type in valid JSON is a schema violation"
        );
        assert_eq!(
            r(Some(GOOD.replace("12.0", "-1").as_bytes())),
            RejectReason::SchemaViolation
        );
        assert_eq!(
            r(Some(GOOD.replace("12.0", "1.5").as_bytes())),
            RejectReason::SchemaViolation
        );
        assert_eq!(
            r(Some(GOOD.replace("\"e1\"", "\"\"").as_bytes())),
            RejectReason::SchemaViolation
        );
        assert_eq!(
            r(Some(GOOD.replace("T10", " 10").as_bytes())),
            RejectReason::SchemaViolation
        );
        assert_eq!(
            r(Some(GOOD.replace("01-05", "02-30").as_bytes())),
            RejectReason::SchemaViolation
        );
        let timed = Decoder::new(DecodeLimits {
            event_time_min_micros: 1_800_000_000_000_000,
            ..DecodeLimits::schema_only()
        });
        assert_eq!(
            timed.check(Some(GOOD.as_bytes()), 0).unwrap_err().reason,
            RejectReason::TimestampOutOfRange
        );
        let future = Decoder::new(DecodeLimits {
            event_time_future_max_micros: 0,
            ..DecodeLimits::schema_only()
        });
        let err = future.check(Some(GOOD.as_bytes()), 0).unwrap_err();
        assert_eq!(err.reason, RejectReason::TimestampOutOfRange);
        assert!(
            err.detail.contains("event_time_future_max"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn details_name_the_field() {
        let e = check(GOOD.replace("\"kind\":\"reply\",", "").as_bytes()).unwrap_err();
        assert!(e.detail.contains("kind"), "{}", e.detail);
        let e = check(
            GOOD.replace("\"is_org\":false", "\"is_org\":\"no\"")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.detail.contains("boolean"), "{}", e.detail);
    }

    #[test]
    fn truncated_json_with_an_early_schema_error_is_invalid_json() {
        // Found by the decode fuzz target: serde met the missing `is_org` before the missing
        // closing brace, and the message was dead-lettered as a schema violation.
        let truncated = r#"{"event_id":"e1","platform":"x","kind":"reply","created_at":"2026-01-05T10:00:00Z","brand":"acme","author":{"id":"u"}"#;
        let e = check(truncated.as_bytes()).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidJson, "{e:?}");
        assert!(
            e.detail.contains("EOF"),
            "the syntax error is the detail: {e:?}"
        );
        let wrong_then_cut = r#"{"kind":"tweet","event_id":"#;
        assert_eq!(
            check(wrong_then_cut.as_bytes()).unwrap_err().reason,
            RejectReason::InvalidJson
        );
    }

    #[test]
    fn detail_quoting_a_huge_value_is_bounded() {
        // serde quotes a wrong-typed string whole; the detail is a dead-letter header, and a
        // payload-sized one made the dead letter too large for the broker even without its
        // payload (delivery fails, the batch is never acknowledged: a poison message).
        let huge = "é".repeat(100_000);
        for payload in [
            GOOD.replace("\"is_org\":false", &format!("\"is_org\":\"{huge}\"")),
            GOOD.replace("\"reply\"", &format!("\"{huge}\"")),
        ] {
            let e = check(payload.as_bytes()).unwrap_err();
            assert_eq!(e.reason, RejectReason::SchemaViolation);
            assert!(
                e.detail.len() <= DETAIL_BYTES_MAX,
                "{} bytes",
                e.detail.len()
            );
            assert!(e.detail.ends_with('…'), "{}", e.detail);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check(&bytes);
        }

        #[test]
        fn mutated_valid_events_never_panic(pos in 0usize..400, byte in any::<u8>()) {
            let mut v = GOOD.as_bytes().to_vec();
            let i = pos % v.len();
            v[i] = byte;
            let _ = check(&v);
        }
    }
}
