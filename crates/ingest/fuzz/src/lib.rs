//! The checks the fuzz targets run: one function per target, taking the fuzzer's bytes and
//! panicking when an invariant breaks.
//!
//! They live here, in plain Rust with no fuzzing dependency, so that two callers share them:
//! the targets in `fuzz_targets/` (cargo fuzz, libFuzzer) and the regular test
//! `crates/ingest/tests/fuzz_seeds.rs`, which includes this file by path and runs every file of
//! `seeds/` through it on the stable toolchain, so the checks cannot rot between fuzz runs.
//! docs/fuzzing.md says how to run the targets.
//!
//! Every assertion is a promise the code makes in its docs: the decoder's (`decode.rs`:
//! never panics, reasons in check order, details bounded, an accepted event lands in the Arrow
//! batch as it was in the JSON) and the twcs replay's (`twcs.rs`, docs/replay.md: one item per
//! record in file order, every event valid by the decoder, the attribution rules).

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use ingest::decode::{DETAIL_BYTES_MAX, ID_CHARS_MAX, LANG_CHARS_MAX};
use ingest::twcs::{self, Index, Item, TwcsError};
use ingest::{DecodeLimits, Decoder, Reject, RejectReason};
use model::{EventBatchBuilder, EventKind, SocialEvent, Stakeholder, schema::col};
use serde::Deserialize;

/// The wall clock the checks decode with (2026-01-01T00:00:00Z): fixed, so a crash replays.
pub const NOW_MICROS: i64 = 1_767_225_600_000_000;

/// Limits that make every reject reason reachable from small inputs.
fn tight_limits() -> DecodeLimits {
    DecodeLimits {
        message_bytes_max: 1024,
        // 2006-03-21, the first tweet; one day past NOW_MICROS.
        event_time_min_micros: 1_142_899_200_000_000,
        event_time_future_max_micros: 86_400_000_000,
    }
}

/// Is `bytes` one JSON value (the oracle for "valid JSON", independent of the event schema)?
fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// The decoder target: `data` is a message payload.
///
/// Decoding never panics; `check` and `decode_into` agree; a reject has a reason that matches
/// what is wrong with the bytes (in the documented order of checks) and a non-empty, bounded
/// detail; the size and time limits only ever add rejects; an accepted event round-trips its
/// fields through the Arrow batch.
pub fn decode(data: &[u8]) {
    let schema_only = decode_one(&Decoder::new(DecodeLimits::schema_only()), data, 3, 7);
    let limits = tight_limits();
    let tight = decode_one(&Decoder::new(limits), data, 0, 0);
    if data.is_empty() {
        assert_eq!(reason(&schema_only), Some(RejectReason::EmptyPayload));
    }
    if data.len() > limits.message_bytes_max {
        assert_eq!(reason(&tight), Some(RejectReason::Oversized));
        return;
    }
    match (&schema_only, &tight) {
        (Err(a), Err(b)) => assert_eq!(a, b, "limits changed the reason of a schema reject"),
        (Ok(()), Err(b)) => assert_eq!(
            b.reason,
            RejectReason::TimestampOutOfRange,
            "limits rejected an in-size event for another reason: {b:?}"
        ),
        (Err(a), Ok(())) => panic!("limits accepted what schema-only rejects: {a:?}"),
        (Ok(()), Ok(())) => {}
    }
    // Without limits, a reject's reason is exactly the first check that fails.
    let expected = if data.is_empty() {
        Some(RejectReason::EmptyPayload)
    } else if std::str::from_utf8(data).is_err() {
        Some(RejectReason::InvalidUtf8)
    } else if !is_json(data) {
        Some(RejectReason::InvalidJson)
    } else {
        None
    };
    match (expected, reason(&schema_only)) {
        (Some(e), got) => assert_eq!(got, Some(e), "{schema_only:?}"),
        (None, got) => assert!(
            matches!(got, None | Some(RejectReason::SchemaViolation)),
            "valid JSON rejected as {got:?}: {schema_only:?}"
        ),
    }
}

fn reason(r: &Result<(), Reject>) -> Option<RejectReason> {
    r.as_ref().err().map(|e| e.reason)
}

/// Decodes `data` with both entry points and checks what they give.
fn decode_one(decoder: &Decoder, data: &[u8], partition: i32, offset: i64) -> Result<(), Reject> {
    let checked = decoder.check(Some(data), NOW_MICROS);
    let mut builder = EventBatchBuilder::with_capacity(1);
    let decoded = decoder.decode_into(Some(data), NOW_MICROS, &mut builder, partition, offset);
    assert_eq!(checked, decoded, "check and decode_into disagree");
    match &decoded {
        Err(reject) => {
            assert!(RejectReason::ALL.contains(&reject.reason));
            assert!(!reject.detail.trim().is_empty(), "empty detail: {reject:?}");
            assert!(
                reject.detail.len() <= DETAIL_BYTES_MAX,
                "detail of {} bytes, over DETAIL_BYTES_MAX = {DETAIL_BYTES_MAX}",
                reject.detail.len()
            );
            assert!(builder.is_empty(), "a reject appended a row");
        }
        Ok(()) => {
            assert_eq!(builder.len(), 1);
            let batch = match builder.finish() {
                Ok(b) => b,
                Err(e) => panic!("an accepted event does not make a batch: {e}"),
            };
            round_trip(data, &batch, partition, offset);
        }
    }
    decoded
}

/// The fields of an event as plain serde reads them: the oracle for the Arrow row.
#[derive(Deserialize)]
struct Expected {
    event_id: String,
    platform: String,
    kind: String,
    created_at: String,
    brand: String,
    author: ExpectedAuthor,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    in_reply_to: Option<String>,
    text: String,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize)]
struct ExpectedAuthor {
    id: String,
    #[serde(default)]
    handle: Option<String>,
    is_org: bool,
    #[serde(default)]
    stakeholder: Option<String>,
}

fn round_trip(data: &[u8], batch: &RecordBatch, partition: i32, offset: i64) {
    let e: Expected = match serde_json::from_slice(data) {
        Ok(e) => e,
        Err(err) => panic!("accepted, but its fields do not parse: {err}"),
    };
    assert_eq!(batch.num_rows(), 1);
    let text = |name: &str| -> Option<String> {
        let c = batch.column_by_name(name)?.as_string_opt::<i32>()?;
        c.is_valid(0).then(|| c.value(0).to_string())
    };
    for (name, want, max) in [
        (col::EVENT_ID, &e.event_id, ID_CHARS_MAX),
        (col::PLATFORM, &e.platform, ID_CHARS_MAX),
        (col::BRAND, &e.brand, ID_CHARS_MAX),
        (col::AUTHOR_ID, &e.author.id, ID_CHARS_MAX),
    ] {
        assert_eq!(text(name).as_ref(), Some(want), "{name}");
        let chars = want.chars().count();
        assert!((1..=max).contains(&chars), "{name} has {chars} characters");
    }
    assert_eq!(text(col::KIND), Some(e.kind.clone()));
    assert!(EventKind::parse(&e.kind).is_some(), "kind {:?}", e.kind);
    assert_eq!(text(col::TEXT), Some(e.text));
    assert_eq!(text(col::AUTHOR_HANDLE), e.author.handle);
    assert_eq!(text(col::AUTHOR_STAKEHOLDER), e.author.stakeholder);
    assert_eq!(text(col::CONVERSATION_ID), e.conversation_id);
    assert_eq!(text(col::IN_REPLY_TO), e.in_reply_to);
    assert_eq!(text(col::LANG), e.lang.clone());
    if let Some(l) = &e.lang {
        assert!(
            (1..=LANG_CHARS_MAX).contains(&l.chars().count()),
            "lang {l:?}"
        );
    }
    let is_org = batch
        .column_by_name(col::AUTHOR_IS_ORG)
        .and_then(|c| c.as_boolean_opt().map(|b| b.value(0)));
    assert_eq!(is_org, Some(e.author.is_org));
    // RFC 3339 as the schema means it: `T` between date and time, then chrono's reading.
    assert!(
        matches!(e.created_at.as_bytes().get(10), Some(b'T' | b't')),
        "created_at {:?}",
        e.created_at
    );
    let micros = chrono::DateTime::parse_from_rfc3339(&e.created_at)
        .map(|t| t.timestamp_micros())
        .ok();
    let got = batch.column_by_name(col::CREATED_AT).and_then(|c| {
        c.as_primitive_opt::<TimestampMicrosecondType>()
            .map(|a| a.value(0))
    });
    assert_eq!(got, micros, "created_at {:?}", e.created_at);
    let part = batch
        .column_by_name(col::KAFKA_PARTITION)
        .and_then(|c| c.as_primitive_opt::<Int32Type>().map(|a| a.value(0)));
    let off = batch
        .column_by_name(col::KAFKA_OFFSET)
        .and_then(|c| c.as_primitive_opt::<Int64Type>().map(|a| a.value(0)));
    assert_eq!((part, off), (Some(partition), Some(offset)));
}

/// The twcs target: `data` is a whole twcs CSV file, read by both passes.
///
/// Indexing and replay never panic and agree (the second pass never finds the file "changed");
/// one item per record, in file order; the index's counts match the items; every event is
/// valid by the decoder and survives JSON; the mapping table and attribution rules 1 and 2 of
/// docs/replay.md hold; threads have roots in the file.
pub fn twcs(data: &[u8]) {
    let index = match Index::build(data) {
        Ok(i) => i,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    TwcsError::MissingHeader { .. } | TwcsError::WrongHeader { .. }
                ),
                "an in-memory file failed other than by its header: {e}"
            );
            // The second pass reads the same header and fails the same way.
            let again = twcs::replay(data, &empty_index(), |_| Ok::<(), TwcsError>(()));
            assert!(again.is_err(), "replay accepted a header indexing refused");
            return;
        }
    };
    let mut items = Vec::new();
    if let Err(e) = twcs::replay(data, &index, |i| {
        items.push(i);
        Ok::<(), TwcsError>(())
    }) {
        panic!("replay failed on the file it indexed: {e}");
    }
    assert_eq!(
        items.len() as u64,
        data_records(data),
        "not one item per record"
    );
    let mut last_line = 0;
    for i in &items {
        let line = match i {
            Item::Event { line, .. } | Item::Malformed { line, .. } => *line,
            Item::Unattributable { line, .. } => *line,
        };
        assert!(line >= last_line, "items out of file order");
        last_line = line;
        if let Item::Malformed { reason, .. } = i {
            assert!(!reason.trim().is_empty());
        }
    }
    let events: Vec<&SocialEvent> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event { event, .. } => Some(&**event),
            _ => None,
        })
        .collect();
    let unattributable: Vec<u64> = items
        .iter()
        .filter_map(|i| match i {
            Item::Unattributable { tweet_id, .. } => Some(*tweet_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        index.stats.tweets,
        (events.len() + unattributable.len()) as u64,
        "indexed tweets vs valid rows replayed"
    );
    assert_eq!(index.stats.unattributable, unattributable.len() as u64);

    let decoder = Decoder::new(DecodeLimits::schema_only());
    let mut by_id: HashMap<&str, &SocialEvent> = HashMap::new();
    let mut companies: HashSet<String> = HashSet::new();
    for e in &events {
        let payload = match serde_json::to_vec(e) {
            Ok(p) => p,
            Err(err) => panic!("an event does not serialise: {err}"),
        };
        if let Err(r) = decoder.check(Some(&payload), NOW_MICROS) {
            panic!("replay made an event the decoder rejects: {r:?}\n{e:?}");
        }
        let back: SocialEvent = match serde_json::from_slice(&payload) {
            Ok(b) => b,
            Err(err) => panic!("an event does not read back: {err}"),
        };
        assert_eq!(&back, *e);
        mapping(e);
        assert!(
            by_id.insert(&e.event_id, e).is_none(),
            "two events with id {}",
            e.event_id
        );
        if e.author.is_org {
            companies.insert(e.author.id.to_ascii_lowercase());
        }
    }
    let ids: HashSet<String> = by_id
        .keys()
        .map(|k| (*k).to_string())
        .chain(unattributable.iter().map(|t| format!("twcs-{t}")))
        .collect();
    assert_eq!(
        ids.len(),
        events.len() + unattributable.len(),
        "a tweet id is both an event and unattributable"
    );
    for e in &events {
        let parent = e.in_reply_to.as_deref().and_then(|p| by_id.get(p));
        // Rule 1: a customer's reply to a company tweet belongs to that company.
        if let Some(p) = parent
            && !e.author.is_org
            && p.author.is_org
        {
            assert_eq!(
                e.brand, p.brand,
                "rule 1: {} replies to {}",
                e.event_id, p.event_id
            );
        }
        // Rule 2: otherwise its first @mention of a company.
        let replies_to_company = e
            .in_reply_to
            .as_deref()
            .is_some_and(|p| by_id.get(p).is_some_and(|p| p.author.is_org));
        if !e.author.is_org
            && !replies_to_company
            && let Some(m) =
                twcs::mentions(&e.text).find(|m| companies.contains(&m.to_ascii_lowercase()))
        {
            assert!(
                e.brand.eq_ignore_ascii_case(m),
                "rule 2: {} mentions @{m} first but is {}'s",
                e.event_id,
                e.brand
            );
        }
        // Threads: the root is a tweet of the file and its own root; no parent in the file,
        // no other root.
        let Some(root) = e.conversation_id.as_deref() else {
            panic!("{} has no conversation_id", e.event_id);
        };
        assert!(
            ids.contains(root),
            "{}: root {root} is not in the file",
            e.event_id
        );
        if let Some(r) = by_id.get(root) {
            assert_eq!(
                r.conversation_id.as_deref(),
                Some(root),
                "a root that is not its own"
            );
        }
        let parent_in_file = e.in_reply_to.as_deref().is_some_and(|p| ids.contains(p));
        if !parent_in_file {
            assert_eq!(root, e.event_id, "{}: no parent in the file", e.event_id);
        }
        // Every brand is a company: the author of some company tweet.
        assert!(
            companies.contains(&e.brand.to_ascii_lowercase()),
            "{}: brand {} wrote no company tweet",
            e.event_id,
            e.brand
        );
    }
}

/// The mapping table of docs/replay.md, for one event.
fn mapping(e: &SocialEvent) {
    let Some(id) = e.event_id.strip_prefix("twcs-") else {
        panic!("event_id {}", e.event_id);
    };
    assert_eq!(
        twcs::parse_id(id).map(|v| v.to_string()).as_deref(),
        Some(id)
    );
    assert_eq!(e.platform, "x");
    let expected_kind = if e.in_reply_to.is_some() {
        EventKind::Reply
    } else if e.author.is_org {
        EventKind::Post
    } else {
        EventKind::Mention
    };
    assert_eq!(e.kind, expected_kind, "{}", e.event_id);
    assert_eq!(e.author.handle.as_deref(), Some(e.author.id.as_str()));
    assert_eq!(e.author.followers, None);
    let stakeholder = (!e.author.is_org).then_some(Stakeholder::Customer);
    assert_eq!(e.author.stakeholder, stakeholder);
    if e.author.is_org {
        assert_eq!(
            e.brand, e.author.id,
            "a company tweet belongs to its author"
        );
    }
    assert!(
        e.created_at.ends_with('Z') && e.created_at.len() == 20,
        "{}",
        e.created_at
    );
    assert_eq!(e.lang, None);
    for m in twcs::mentions(&e.text) {
        assert!(!m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
}

/// An index of a file that has only a header, for replaying a file whose header is bad.
fn empty_index() -> Index {
    let header = twcs::COLUMNS.join(",");
    match Index::build(header.as_bytes()) {
        Ok(i) => i,
        Err(e) => panic!("the dataset's own header is refused: {e}"),
    }
}

/// The number of data records in `data`, read as the replay reads CSV.
fn data_records(data: &[u8]) -> u64 {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let mut rec = csv::ByteRecord::new();
    let mut n = 0;
    while let Ok(true) = rdr.read_byte_record(&mut rec) {
        n += 1;
    }
    n
}
