//! The "Customer Support on Twitter" (twcs) CSV format: parsing rows, attributing every tweet
//! to a company (the brand), and mapping rows to [`SocialEvent`]s.
//!
//! Two passes over the file. [`Index::build`] reads it once and keeps only what brand
//! attribution and thread roots need; [`replay`] reads it again and maps each row, in file
//! order, with the index's answers. Both passes validate rows with the same function, so they
//! agree on which rows exist.
//!
//! Memory while indexing, per row: 24 bytes (tweet id, parent id, author, mention offset), plus
//! for inbound tweets 8 bytes per @mention (+ 8 per tweet that has any) and 16 bytes per
//! `response_tweet_id` entry, plus the author-id interner (one copy of each distinct author id).
//! After indexing only 16 bytes per row (id, brand, thread root) and the company names remain.
//! See `docs/replay.md`.
//!
//! Why this lives in `ingest` and not in the `cluetrain` binary crate that runs the replay: the
//! parser is pure (CSV bytes in, [`SocialEvent`]s out; no Kafka, no DataFusion) and reads input
//! from outside, so it is fuzzed (`crates/ingest/fuzz`, docs/fuzzing.md). A fuzz build
//! instruments every dependency of the crate it fuzzes; from `cluetrain` that would be all of
//! DataFusion (20+ minutes on 2 cores), from `ingest` it is the decoder's few crates and csv. It
//! is the other way events enter the pipeline, next to the decoder it is checked against.
//! `cluetrain::replay::twcs` re-exports it, so the replay and its docs use the old path.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use csv::{ByteRecord, ReaderBuilder};
use model::{EventKind, SocialAuthor, SocialEvent, Stakeholder};

use crate::error::Fault;

/// The columns of the dataset, in its order.
pub const COLUMNS: [&str; 7] = [
    "tweet_id",
    "author_id",
    "inbound",
    "created_at",
    "text",
    "response_tweet_id",
    "in_response_to_tweet_id",
];

/// The dataset's time format, e.g. "Tue Oct 31 22:10:47 +0000 2017".
const TIME_FORMAT: &str = "%a %b %d %H:%M:%S %z %Y";

/// Sentinels in `u32` index arrays.
const NONE: u32 = u32::MAX;
const IN_PROGRESS: u32 = u32::MAX - 1;
const UNSET: u32 = u32::MAX - 2;
/// Largest row or author count the compact `u32` indexes (minus sentinels and flag bits) allow.
const AUTHORS_MAX: usize = (1 << 31) - 4;
const ROWS_MAX: usize = (u32::MAX - 3) as usize;
/// Bit of [`Tweet::author`] set for inbound tweets.
const INBOUND_BIT: u32 = 1 << 31;
/// "No parent" in [`Tweet::parent`] (ids equal to it are rejected as malformed).
const NO_PARENT: u64 = u64::MAX;

/// Why a file cannot be replayed at all (bad rows are [`Item`]s, not errors).
#[derive(Debug, thiserror::Error)]
pub enum TwcsError {
    /// The file is empty: no header row.
    #[error("missing header row: expected the columns {expected}")]
    MissingHeader {
        /// The expected columns, comma-separated.
        expected: String,
    },
    /// The header row does not have exactly the dataset's columns.
    #[error("wrong header row: expected the columns {expected}; found {found}")]
    WrongHeader {
        /// The expected columns, comma-separated.
        expected: String,
        /// The columns found.
        found: String,
    },
    /// The CSV reader failed (an I/O error of the underlying reader).
    #[error("{what}: {cause}")]
    Csv {
        /// What was being read.
        what: &'static str,
        /// The reader's error.
        cause: csv::Error,
    },
    /// The file has more rows, authors or @mentions than the compact index can hold.
    #[error("the file is too large to index: {0}")]
    TooLarge(String),
    /// The second pass found a row the first did not (the file was modified meanwhile).
    #[error("the file changed between the two passes")]
    Changed,
}

impl TwcsError {
    /// Whose fault the error is: the file's (header, size, changes) or the reader's.
    pub fn fault(&self) -> Fault {
        match self {
            TwcsError::Csv { .. } => Fault::External,
            _ => Fault::User,
        }
    }
}

/// What one data row turned into.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A valid, attributed event.
    Event {
        /// The line the record starts on.
        line: u64,
        /// The event.
        event: Box<SocialEvent>,
    },
    /// A row that could not be parsed; skipped.
    Malformed {
        /// The line the record starts on (the header is line 1).
        line: u64,
        /// Why.
        reason: String,
    },
    /// A valid inbound tweet that no rule attributes to a company; skipped.
    Unattributable {
        /// The line the record starts on.
        line: u64,
        /// Its tweet id.
        tweet_id: u64,
    },
}

/// Column positions, from the header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    tweet_id: usize,
    author_id: usize,
    inbound: usize,
    created_at: usize,
    text: usize,
    response_tweet_id: usize,
    in_response_to_tweet_id: usize,
}

impl Columns {
    fn from_header(header: &ByteRecord) -> Result<Columns, TwcsError> {
        let names: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 {
                    f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
                } else {
                    f
                };
                String::from_utf8_lossy(f).trim().to_string()
            })
            .collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        let expected = COLUMNS.join(", ");
        if names.len() != COLUMNS.len() || COLUMNS.iter().any(|c| find(c).is_none()) {
            if header.is_empty() {
                return Err(TwcsError::MissingHeader { expected });
            }
            return Err(TwcsError::WrongHeader {
                expected,
                found: names.join(", "),
            });
        }
        let at = |name: &str| find(name).unwrap_or(0);
        Ok(Columns {
            tweet_id: at("tweet_id"),
            author_id: at("author_id"),
            inbound: at("inbound"),
            created_at: at("created_at"),
            text: at("text"),
            response_tweet_id: at("response_tweet_id"),
            in_response_to_tweet_id: at("in_response_to_tweet_id"),
        })
    }
}

/// One validated row, borrowing from the record.
#[derive(Debug)]
struct Row<'a> {
    tweet_id: u64,
    author_id: &'a str,
    inbound: bool,
    created_at: DateTime<Utc>,
    text: &'a str,
    responses: &'a str,
    parent: Option<u64>,
}

fn field<'a>(rec: &'a ByteRecord, i: usize, name: &str) -> Result<&'a str, String> {
    let bytes = rec.get(i).unwrap_or_default();
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "{name} is not valid UTF-8 (at byte {} of the field)",
            e.valid_up_to()
        )
    })
}

/// Parses an id as the dataset writes it: digits, possibly float-formatted ("119237.0").
pub fn parse_id(s: &str) -> Option<u64> {
    let s = s.trim();
    let int = match s.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return None,
        None => s,
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    int.parse::<u64>().ok().filter(|&v| v != NO_PARENT)
}

fn parse_row<'a>(rec: &'a ByteRecord, cols: &Columns) -> Result<Row<'a>, String> {
    if rec.len() != COLUMNS.len() {
        return Err(format!("{} columns, expected {}", rec.len(), COLUMNS.len()));
    }
    let raw_id = field(rec, cols.tweet_id, "tweet_id")?;
    if raw_id.trim().is_empty() {
        return Err("empty tweet_id".into());
    }
    let tweet_id =
        parse_id(raw_id).ok_or_else(|| format!("tweet_id {raw_id:?} is not a numeric id"))?;
    let author_id = field(rec, cols.author_id, "author_id")?.trim();
    if author_id.is_empty() {
        return Err("empty author_id".into());
    }
    if author_id.chars().count() > crate::decode::ID_CHARS_MAX {
        return Err(format!(
            "author_id is longer than {} characters",
            crate::decode::ID_CHARS_MAX
        ));
    }
    let raw_inbound = field(rec, cols.inbound, "inbound")?.trim();
    let inbound = if raw_inbound.eq_ignore_ascii_case("true") {
        true
    } else if raw_inbound.eq_ignore_ascii_case("false") {
        false
    } else {
        return Err(format!("inbound {raw_inbound:?} is not True or False"));
    };
    let raw_time = field(rec, cols.created_at, "created_at")?.trim();
    let created_at = DateTime::parse_from_str(raw_time, TIME_FORMAT)
        .map_err(|e| {
            format!("created_at {raw_time:?} is not like \"Tue Oct 31 22:10:47 +0000 2017\" ({e})")
        })?
        .with_timezone(&Utc);
    // chrono reads `+12017` as a year, but RFC 3339 (the event's created_at) has four digits.
    if !(0..=9999).contains(&created_at.year()) {
        return Err(format!(
            "created_at {raw_time:?} is outside the years 0000-9999 (in UTC)"
        ));
    }
    let text = field(rec, cols.text, "text")?;
    let responses = field(rec, cols.response_tweet_id, "response_tweet_id")?;
    for r in response_ids(responses) {
        r.map_err(|bad| format!("response_tweet_id {bad:?} is not a list of numeric ids"))?;
    }
    let raw_parent = field(rec, cols.in_response_to_tweet_id, "in_response_to_tweet_id")?.trim();
    let parent =
        if raw_parent.is_empty() {
            None
        } else {
            Some(parse_id(raw_parent).ok_or_else(|| {
                format!("in_response_to_tweet_id {raw_parent:?} is not a numeric id")
            })?)
        };
    Ok(Row {
        tweet_id,
        author_id,
        inbound,
        created_at,
        text,
        responses,
        parent,
    })
}

/// The ids of a `response_tweet_id` field ("1,2.0, 3"), each or the text that is not one.
fn response_ids(s: &str) -> impl Iterator<Item = Result<u64, &str>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_id(p).ok_or(p))
}

/// The @handles in a tweet's text, in order: `@` not preceded by a handle character, followed
/// by ASCII letters, digits or underscores (so e-mail addresses are not mentions).
pub fn mentions(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let is_handle = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let at = i;
            i += 1;
            if bytes[at] != b'@' || (at > 0 && is_handle(bytes[at - 1])) {
                continue;
            }
            let start = at + 1;
            let mut end = start;
            while end < bytes.len() && is_handle(bytes[end]) {
                end += 1;
            }
            i = end;
            if end > start {
                // ASCII boundaries: always char boundaries.
                return text.get(start..end);
            }
        }
        None
    })
}

/// Case-insensitive 64-bit hash of a handle. Mentions are stored as these hashes; a collision
/// with a company handle has a probability of about mentions × companies / 2^64 (1e-11 on the
/// full dataset).
fn handle_hash(handle: &str) -> u64 {
    let mut h = DefaultHasher::new();
    for b in handle.bytes() {
        h.write_u8(b.to_ascii_lowercase());
    }
    h.finish()
}

/// One tweet while indexing (24 bytes).
#[derive(Debug, Clone, Copy)]
struct Tweet {
    id: u64,
    /// Parent tweet id, or [`NO_PARENT`].
    parent: u64,
    /// Author index, with [`INBOUND_BIT`].
    author: u32,
    /// Offset of `[count, hash...]` in the mention list, or [`NONE`].
    mentions: u32,
}

impl Tweet {
    fn inbound(&self) -> bool {
        self.author & INBOUND_BIT != 0
    }
    fn author(&self) -> usize {
        (self.author & !INBOUND_BIT) as usize
    }
}

/// Counts from the indexing pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Valid rows indexed (each with a tweet id no other valid row has).
    pub tweets: u64,
    /// Valid rows left out because another valid row has the same tweet id.
    pub duplicate_rows: u64,
    /// Distinct company authors.
    pub companies: u64,
    /// Indexed tweets that no rule attributes to a company.
    pub unattributable: u64,
}

/// What the second pass needs from the first: per tweet (sorted by id) its brand and the
/// root of its thread.
#[derive(Debug)]
pub struct Index {
    cols: Columns,
    /// Tweet ids, sorted.
    ids: Vec<u64>,
    /// Per tweet: index into `companies`, or [`NONE`] when unattributable.
    brand: Vec<u32>,
    /// Per tweet: index of its thread root, or [`NONE`] (a cycle of replies).
    root: Vec<u32>,
    /// Company author ids.
    companies: Vec<Box<str>>,
    /// Tweet ids on more than one valid row, sorted: every such row is malformed.
    duplicates: Vec<u64>,
    /// Counts.
    pub stats: IndexStats,
}

/// The csv reader both passes use: RFC 4180 quoting, records of any length (checked per row).
fn csv_reader<R: Read>(reader: R) -> csv::Reader<R> {
    ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader)
}

fn read_columns<R: Read>(rdr: &mut csv::Reader<R>) -> Result<Columns, TwcsError> {
    let header = rdr
        .byte_headers()
        .map_err(|cause| csv_error("reading the header row", cause))?
        .clone();
    Columns::from_header(&header)
}

fn csv_error(what: &'static str, cause: csv::Error) -> TwcsError {
    TwcsError::Csv { what, cause }
}

impl Index {
    /// The first pass: reads every row of `reader` and resolves brands and thread roots.
    /// Malformed rows are skipped silently here (the second pass reports them).
    pub fn build<R: Read>(reader: R) -> Result<Index, TwcsError> {
        let mut rdr = csv_reader(reader);
        let cols = read_columns(&mut rdr)?;
        let mut authors: HashMap<Box<str>, u32> = HashMap::new();
        let mut tweets: Vec<Tweet> = Vec::new();
        let mut mention_list: Vec<u64> = Vec::new();
        // (asker tweet id, responder tweet id) from inbound tweets' response_tweet_id.
        let mut response_links: Vec<(u64, u64)> = Vec::new();
        let mut rec = ByteRecord::new();
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|cause| csv_error("reading the file", cause))?
        {
            let Ok(row) = parse_row(&rec, &cols) else {
                continue;
            };
            let author = match authors.get(row.author_id) {
                Some(&a) => a,
                None => {
                    let a = u32::try_from(authors.len())
                        .ok()
                        .filter(|_| authors.len() < AUTHORS_MAX)
                        .ok_or_else(|| {
                            TwcsError::TooLarge(format!("more than {AUTHORS_MAX} distinct authors"))
                        })?;
                    authors.insert(row.author_id.into(), a);
                    a
                }
            };
            let mut mentions_at = NONE;
            if row.inbound {
                let start = mention_list.len();
                mention_list.push(0);
                for m in mentions(row.text) {
                    mention_list.push(handle_hash(m));
                }
                let n = mention_list.len() - start - 1;
                if n == 0 {
                    mention_list.truncate(start);
                } else {
                    mention_list[start] = n as u64;
                    mentions_at = u32::try_from(start)
                        .ok()
                        .filter(|&s| s < UNSET)
                        .ok_or_else(|| TwcsError::TooLarge("too many @mentions".into()))?;
                }
                for r in response_ids(row.responses).flatten() {
                    response_links.push((row.tweet_id, r));
                }
            }
            if tweets.len() >= ROWS_MAX {
                return Err(TwcsError::TooLarge(format!("more than {ROWS_MAX} rows")));
            }
            tweets.push(Tweet {
                id: row.tweet_id,
                parent: row.parent.unwrap_or(NO_PARENT),
                author: author | if row.inbound { INBOUND_BIT } else { 0 },
                mentions: mentions_at,
            });
        }
        Ok(Self::resolve(
            cols,
            tweets,
            authors,
            &mention_list,
            response_links,
        ))
    }

    fn resolve(
        cols: Columns,
        mut tweets: Vec<Tweet>,
        authors: HashMap<Box<str>, u32>,
        mention_list: &[u64],
        response_links: Vec<(u64, u64)>,
    ) -> Index {
        tweets.sort_unstable_by_key(|t| t.id);
        // An id on several rows is ambiguous (whose brand, whose parent?): every row that has
        // it is left out, as if malformed; replies to it are replies to a tweet not in the file.
        let mut duplicates: Vec<u64> = tweets
            .windows(2)
            .filter(|w| w[0].id == w[1].id)
            .map(|w| w[0].id)
            .collect();
        duplicates.dedup();
        let rows = tweets.len();
        if !duplicates.is_empty() {
            tweets.retain(|t| duplicates.binary_search(&t.id).is_err());
        }
        let duplicate_rows = (rows - tweets.len()) as u64;
        // Companies are the authors of the company tweets that remain.
        let mut is_company = vec![false; authors.len()];
        for t in tweets.iter().filter(|t| !t.inbound()) {
            if let Some(c) = is_company.get_mut(t.author()) {
                *c = true;
            }
        }
        let find = |id: u64| -> Option<usize> {
            if id == NO_PARENT {
                return None;
            }
            let i = tweets.partition_point(|t| t.id < id);
            (tweets.get(i).map(|t| t.id) == Some(id)).then_some(i)
        };
        // Companies, in name order (deterministic), and their handle hashes.
        let mut company_names: Vec<(Box<str>, u32)> = authors
            .into_iter()
            .filter(|(_, a)| is_company.get(*a as usize).copied().unwrap_or(false))
            .collect();
        company_names.sort_unstable();
        let mut company_of = vec![NONE; is_company.len()];
        let mut by_handle: HashMap<u64, u32> = HashMap::new();
        let mut companies = Vec::with_capacity(company_names.len());
        for (c, (name, a)) in company_names.into_iter().enumerate() {
            // Fewer companies than authors: fits in u32 (checked when interning).
            let c = u32::try_from(c).unwrap_or(NONE);
            company_of[a as usize] = c;
            by_handle.entry(handle_hash(&name)).or_insert(c);
            companies.push(name);
        }
        let company = |t: &Tweet| company_of.get(t.author()).copied().unwrap_or(NONE);

        // Rules 1 and 2 (and company tweets: their own author).
        let mut brand = vec![UNSET; tweets.len()];
        for (i, t) in tweets.iter().enumerate() {
            if !t.inbound() {
                brand[i] = company(t);
                continue;
            }
            if let Some(p) = find(t.parent)
                && !tweets[p].inbound()
            {
                brand[i] = company(&tweets[p]);
                continue;
            }
            if t.mentions != NONE {
                let start = t.mentions as usize;
                let n = mention_list.get(start).copied().unwrap_or(0);
                let hashes = mention_list
                    .get(start + 1..)
                    .unwrap_or_default()
                    .iter()
                    .take(usize::try_from(n).unwrap_or(usize::MAX));
                if let Some(&c) = hashes.filter_map(|h| by_handle.get(h)).next() {
                    brand[i] = c;
                }
            }
        }
        // Rule 3: the company that answers it (earliest answer by tweet id).
        let mut answers: Vec<(u32, u64, u32)> = Vec::new();
        let unresolved = |i: usize| tweets[i].inbound() && brand[i] == UNSET;
        for t in &tweets {
            if !t.inbound()
                && let Some(p) = find(t.parent)
                && unresolved(p)
            {
                answers.push((u32::try_from(p).unwrap_or(NONE), t.id, company(t)));
            }
        }
        for (asker, responder) in response_links {
            if let (Some(a), Some(r)) = (find(asker), find(responder))
                && unresolved(a)
                && !tweets[r].inbound()
            {
                answers.push((
                    u32::try_from(a).unwrap_or(NONE),
                    tweets[r].id,
                    company(&tweets[r]),
                ));
            }
        }
        answers.sort_unstable();
        answers.dedup_by_key(|a| a.0);
        for (a, _, c) in answers {
            brand[a as usize] = c;
        }
        // Rule 4: an inbound tweet replying to another inbound tweet takes its brand.
        let parent = |i: usize| find(tweets[i].parent);
        follow(&mut brand, parent, |_| NONE);
        let mut root = vec![UNSET; tweets.len()];
        follow(&mut root, parent, |i| u32::try_from(i).unwrap_or(NONE));

        let stats = IndexStats {
            tweets: tweets.len() as u64,
            duplicate_rows,
            companies: companies.len() as u64,
            unattributable: brand.iter().filter(|&&b| b == NONE).count() as u64,
        };
        Index {
            cols,
            ids: tweets.iter().map(|t| t.id).collect(),
            brand,
            root,
            companies,
            duplicates,
            stats,
        }
    }

    fn find(&self, id: u64) -> Option<usize> {
        let i = self.ids.partition_point(|&t| t < id);
        (self.ids.get(i) == Some(&id)).then_some(i)
    }
}

/// Fills the [`UNSET`] entries of `values` by following `parent` links: a tweet takes the
/// value of the first ancestor that has one; a tweet without a parent takes `terminal(i)`;
/// a tweet on or leading into a cycle takes [`NONE`]. Iterative, each tweet visited once.
fn follow(
    values: &mut [u32],
    parent: impl Fn(usize) -> Option<usize>,
    terminal: impl Fn(usize) -> u32,
) {
    let mut path: Vec<usize> = Vec::new();
    for start in 0..values.len() {
        if values[start] != UNSET {
            continue;
        }
        path.clear();
        let mut cur = start;
        let result = loop {
            match values[cur] {
                UNSET => {}
                IN_PROGRESS => break NONE,
                v => break v,
            }
            values[cur] = IN_PROGRESS;
            path.push(cur);
            match parent(cur) {
                Some(p) => cur = p,
                None => break terminal(cur),
            }
        };
        for &p in &path {
            values[p] = result;
        }
    }
}

/// The second pass: maps every data row of `reader` (the same file [`Index::build`] read) to
/// an [`Item`], in file order. An error of `out` stops the pass and is returned.
pub fn replay<R: Read, E: From<TwcsError>>(
    reader: R,
    index: &Index,
    mut out: impl FnMut(Item) -> Result<(), E>,
) -> Result<(), E> {
    let mut rdr = csv_reader(reader);
    let cols = read_columns(&mut rdr)?;
    if cols.tweet_id != index.cols.tweet_id || cols.text != index.cols.text {
        return Err(TwcsError::Changed.into());
    }
    let mut rec = ByteRecord::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|cause| csv_error("reading the file", cause))?
    {
        let line = rec.position().map_or(0, csv::Position::line);
        let row = match parse_row(&rec, &cols) {
            Ok(row) => row,
            Err(reason) => {
                out(Item::Malformed { line, reason })?;
                continue;
            }
        };
        if index.duplicates.binary_search(&row.tweet_id).is_ok() {
            out(Item::Malformed {
                line,
                reason: format!(
                    "tweet_id {} is on more than one row (each of them is skipped)",
                    row.tweet_id
                ),
            })?;
            continue;
        }
        let i = index.find(row.tweet_id).ok_or(TwcsError::Changed)?;
        let brand = match index.brand[i] {
            NONE => {
                out(Item::Unattributable {
                    line,
                    tweet_id: row.tweet_id,
                })?;
                continue;
            }
            c => index.companies.get(c as usize).ok_or(TwcsError::Changed)?,
        };
        let root = match index.root[i] {
            NONE => row.tweet_id,
            r => index.ids.get(r as usize).copied().unwrap_or(row.tweet_id),
        };
        out(Item::Event {
            line,
            event: Box::new(to_event(&row, brand, root)),
        })?;
    }
    Ok(())
}

fn to_event(row: &Row<'_>, brand: &str, root: u64) -> SocialEvent {
    let kind = if row.parent.is_some() {
        EventKind::Reply
    } else if row.inbound {
        EventKind::Mention
    } else {
        EventKind::Post
    };
    SocialEvent {
        event_id: format!("twcs-{}", row.tweet_id),
        platform: "x".into(),
        kind,
        created_at: row.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        brand: brand.into(),
        author: SocialAuthor {
            id: row.author_id.into(),
            handle: Some(row.author_id.into()),
            is_org: !row.inbound,
            followers: None,
            stakeholder: row.inbound.then_some(Stakeholder::Customer),
        },
        conversation_id: Some(format!("twcs-{root}")),
        in_reply_to: row.parent.map(|p| format!("twcs-{p}")),
        text: row.text.into(),
        lang: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "tweet_id,author_id,inbound,created_at,text,response_tweet_id,\
                          in_response_to_tweet_id\n";
    const T: &str = "Tue Oct 31 22:10:47 +0000 2017";

    fn row(id: &str, author: &str, inbound: bool, text: &str, resp: &str, parent: &str) -> String {
        let text = text.replace('"', "\"\"");
        let inbound = if inbound { "True" } else { "False" };
        format!("{id},{author},{inbound},{T},\"{text}\",\"{resp}\",{parent}\n")
    }

    fn run(csv: &str) -> Vec<Item> {
        let index = Index::build(csv.as_bytes()).unwrap();
        let mut items = Vec::new();
        replay(csv.as_bytes(), &index, |i| {
            items.push(i);
            Ok::<(), TwcsError>(())
        })
        .unwrap();
        items
    }

    fn events(csv: &str) -> HashMap<String, SocialEvent> {
        run(csv)
            .into_iter()
            .filter_map(|i| match i {
                Item::Event { event, .. } => Some((event.event_id.clone(), *event)),
                _ => None,
            })
            .collect()
    }

    fn brand_of(csv: &str, id: &str) -> Option<String> {
        events(csv)
            .get(&format!("twcs-{id}"))
            .map(|e| e.brand.clone())
    }

    #[test]
    fn maps_a_question_and_its_answer() {
        let csv = format!(
            "{HEADER}{}{}",
            row(
                "1",
                "115712",
                true,
                "@sprintcare is the network down?",
                "2",
                ""
            ),
            row(
                "2",
                "sprintcare",
                false,
                "@115712 Sorry! Which area?",
                "",
                "1"
            ),
        );
        let ev = events(&csv);
        let q = &ev["twcs-1"];
        assert_eq!(q.platform, "x");
        assert_eq!(q.kind, EventKind::Mention);
        assert_eq!(q.brand, "sprintcare");
        assert_eq!(q.created_at, "2017-10-31T22:10:47Z");
        assert_eq!(q.author.id, "115712");
        assert_eq!(q.author.handle.as_deref(), Some("115712"));
        assert!(!q.author.is_org);
        assert_eq!(q.author.stakeholder, Some(Stakeholder::Customer));
        assert_eq!(q.in_reply_to, None);
        assert_eq!(q.conversation_id.as_deref(), Some("twcs-1"));
        let a = &ev["twcs-2"];
        assert_eq!(a.kind, EventKind::Reply);
        assert_eq!(a.brand, "sprintcare");
        assert!(a.author.is_org);
        assert_eq!(a.author.stakeholder, None);
        assert_eq!(a.in_reply_to.as_deref(), Some("twcs-1"));
        assert_eq!(a.conversation_id.as_deref(), Some("twcs-1"));
    }

    #[test]
    fn company_post_replying_to_nothing_is_a_post() {
        let csv = format!(
            "{HEADER}{}",
            row("5", "AppleSupport", false, "News", "", "")
        );
        let ev = events(&csv);
        assert_eq!(ev["twcs-5"].kind, EventKind::Post);
        assert_eq!(ev["twcs-5"].brand, "AppleSupport");
    }

    #[test]
    fn rule_1_the_company_replied_to_wins_over_mentions() {
        let csv = format!(
            "{HEADER}{}{}{}",
            row("1", "AppleSupport", false, "Hi", "", ""),
            row("2", "Delta", false, "Hi", "", ""),
            row("3", "42", true, "@Delta you are better than this", "", "1"),
        );
        assert_eq!(brand_of(&csv, "3").as_deref(), Some("AppleSupport"));
    }

    #[test]
    fn rule_2_first_company_mention_case_insensitive() {
        let csv = format!(
            "{HEADER}{}{}{}{}",
            // The mention comes before the companies' rows: they are known after pass 1.
            row(
                "1",
                "42",
                true,
                "@99 me@example.com @applesupport @delta why",
                "4",
                ""
            ),
            row("2", "AppleSupport", false, "x", "", ""),
            row("3", "Delta", false, "x", "", ""),
            row("4", "Delta", false, "@42 we can help", "", "1"),
        );
        assert_eq!(brand_of(&csv, "1").as_deref(), Some("AppleSupport"));
    }

    #[test]
    fn rule_3_the_company_that_answers() {
        // Via the answer's in_response_to, earliest answer wins.
        let csv = format!(
            "{HEADER}{}{}{}",
            row("1", "42", true, "my flight is late", "", ""),
            row("3", "Delta", false, "@42 sorry", "", "1"),
            row("2", "AmericanAir", false, "@42 try us", "", "1"),
        );
        assert_eq!(brand_of(&csv, "1").as_deref(), Some("AmericanAir"));
        // Via response_tweet_id only (the answer does not link back).
        let csv = format!(
            "{HEADER}{}{}",
            row("1", "42", true, "my flight is late", "7.0", ""),
            row("7", "Delta", false, "@42 sorry", "", ""),
        );
        assert_eq!(brand_of(&csv, "1").as_deref(), Some("Delta"));
    }

    #[test]
    fn rule_4_inbound_chain_takes_the_parents_brand() {
        let csv = format!(
            "{HEADER}{}{}{}{}",
            // Child before parent in the file; chain of two inbound replies.
            row("4", "43", true, "me too", "", "3"),
            row("3", "42", true, "still broken", "", "2"),
            row("2", "42", true, "@Delta broken", "", ""),
            row("9", "Delta", false, "x", "", ""),
        );
        let ev = events(&csv);
        assert_eq!(ev["twcs-4"].brand, "Delta");
        assert_eq!(ev["twcs-3"].brand, "Delta");
        assert_eq!(ev["twcs-4"].conversation_id.as_deref(), Some("twcs-2"));
        assert_eq!(ev["twcs-4"].kind, EventKind::Reply);
    }

    #[test]
    fn unattributable_tweets_are_reported_not_produced() {
        let csv = format!(
            "{HEADER}{}{}{}",
            row("1", "Delta", false, "x", "", ""),
            row("2", "42", true, "nobody answers me", "", ""),
            // A reply cycle: no root, no brand.
            row("3", "43", true, "a", "", "4"),
        ) + &row("4", "44", true, "b", "", "3");
        let items = run(&csv);
        let un: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Unattributable { line, tweet_id } => Some((*line, *tweet_id)),
                _ => None,
            })
            .collect();
        assert_eq!(un, vec![(3, 2), (4, 3), (5, 4)]);
        assert_eq!(items.len(), 4);
    }

    #[test]
    fn reply_to_a_tweet_outside_the_file_keeps_its_link() {
        let csv = format!("{HEADER}{}", row("8", "Delta", false, "@42 ok", "", "777"));
        let e = &events(&csv)["twcs-8"];
        assert_eq!(e.in_reply_to.as_deref(), Some("twcs-777"));
        assert_eq!(e.conversation_id.as_deref(), Some("twcs-8"));
        assert_eq!(e.kind, EventKind::Reply);
    }

    #[test]
    fn multi_line_quoted_text_and_float_ids() {
        let csv = format!(
            "{HEADER}1.0,42,True,{T},\"@Delta line one,\nline \"\"two\"\"\",\"2.0,3\",\n\
             2,Delta,False,{T},ok,,1.0\n\
             x,42,True,{T},bad,,\n"
        );
        let items = run(&csv);
        let Item::Event { event: e, .. } = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(e.event_id, "twcs-1");
        assert_eq!(e.text, "@Delta line one,\nline \"two\"");
        let Item::Event { event: e, .. } = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(e.in_reply_to.as_deref(), Some("twcs-1"));
        // The multi-line record started on line 2, so the next ones start on 4 and 5.
        assert!(
            matches!(&items[2], Item::Malformed { line: 5, reason } if reason.contains("tweet_id")),
            "{items:?}"
        );
    }

    #[test]
    fn malformed_rows_are_reported_with_their_line_and_reason() {
        let csv = format!(
            "{HEADER}1,Delta,False,{T},ok,,\n\
             2,Delta,False,{T},too,many,columns,here\n\
             3,Delta,False,yesterday,bad date,,\n\
             ,Delta,False,{T},no id,,\n\
             4,,False,{T},no author,,\n\
             5,Delta,Maybe,{T},bad inbound,,\n\
             6,Delta,False,{T},bad parent,,abc\n\
             7,Delta,False,{T},bad responses,1;2,\n\
             8,Delta,False,{T},fine,,\n"
        );
        let got: Vec<(u64, String)> = run(&csv)
            .into_iter()
            .filter_map(|i| match i {
                Item::Malformed { line, reason } => Some((line, reason)),
                _ => None,
            })
            .collect();
        let lines: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9], "{got:?}");
        assert!(got[0].1.contains("8 columns, expected 7"), "{got:?}");
        assert!(got[1].1.contains("created_at"), "{got:?}");
        assert!(got[2].1.contains("empty tweet_id"), "{got:?}");
        assert!(got[3].1.contains("empty author_id"), "{got:?}");
        assert!(got[4].1.contains("inbound"), "{got:?}");
        assert!(got[5].1.contains("in_response_to_tweet_id"), "{got:?}");
        assert!(got[6].1.contains("response_tweet_id"), "{got:?}");
    }

    #[test]
    fn wrong_or_missing_header_names_the_columns() {
        let err = Index::build("a,b,c\n1,2,3\n".as_bytes()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("wrong header"), "{msg}");
        assert!(msg.contains("in_response_to_tweet_id"), "{msg}");
        let err = Index::build("".as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("missing header"), "{err:#}");
        // With a BOM and another column order, the header is fine.
        let csv = format!(
            "\u{feff}author_id,tweet_id,inbound,created_at,text,response_tweet_id,\
             in_response_to_tweet_id\nDelta,1,False,{T},hi,,\n"
        );
        assert_eq!(events(&csv)["twcs-1"].author.id, "Delta");
    }

    #[test]
    fn duplicate_tweet_ids_are_malformed_on_every_row() {
        // Found by the twcs fuzz target: rows sharing a tweet id shared one index entry, so a
        // company tweet could take a customer's brand (or be called unattributable), and two
        // events had one event_id.
        let csv = format!(
            "{HEADER}{}{}{}{}",
            row("1", "42", true, "@Delta help", "", ""),
            row("1", "AppleSupport", false, "@42 hi", "", ""),
            row("2", "Delta", false, "@42 we are on it", "", "1"),
            row("3", "43", true, "@AppleSupport me too", "", ""),
        );
        let index = Index::build(csv.as_bytes()).unwrap();
        assert_eq!(index.stats.tweets, 2);
        assert_eq!(index.stats.duplicate_rows, 2);
        let items = run(&csv);
        for line in [2, 3] {
            assert!(
                matches!(&items[line - 2], Item::Malformed { reason, .. } if reason.contains("tweet_id 1 is on more than one row")),
                "{items:?}"
            );
        }
        let ev = events(&csv);
        // The reply keeps its link to a tweet that is, for the index, not in the file.
        assert_eq!(ev["twcs-2"].in_reply_to.as_deref(), Some("twcs-1"));
        assert_eq!(ev["twcs-2"].conversation_id.as_deref(), Some("twcs-2"));
        // AppleSupport's only tweet was a duplicate: it is no company, so no brand.
        assert!(!ev.contains_key("twcs-3"), "{items:?}");
    }

    #[test]
    fn created_at_outside_four_digit_years_is_malformed() {
        // Found with the twcs fuzz check: `+12017` parsed, and the event's created_at,
        // "+12017-10-31T22:10:47Z", was no RFC 3339 date-time (the decoder rejected it).
        for (time, ok) in [
            ("Tue Oct 31 22:10:47 +0000 +12017", false),
            ("Fri Dec 31 23:30:00 -0100 9999", false),
            ("Fri Dec 31 23:30:00 +0000 9999", true),
        ] {
            let csv = format!("{HEADER}1,Delta,False,{time},x,,\n");
            let items = run(&csv);
            match &items[0] {
                Item::Event { event, .. } => {
                    assert!(ok, "{time}: {event:?}");
                    assert_eq!(event.created_at, "9999-12-31T23:30:00Z");
                }
                Item::Malformed { reason, .. } => {
                    assert!(!ok, "{time}: {reason}");
                    assert!(reason.contains("0000-9999"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn ids_and_mentions_parse() {
        assert_eq!(parse_id("119237.0"), Some(119_237));
        assert_eq!(parse_id(" 12 "), Some(12));
        assert_eq!(parse_id("12.5"), None);
        assert_eq!(parse_id("+12"), None);
        assert_eq!(parse_id("1e5"), None);
        assert_eq!(parse_id(""), None);
        let m: Vec<_> = mentions("@a_1 hi@b, (@C) @ x@y @").collect();
        assert_eq!(m, vec!["a_1", "C"]);
    }

    #[test]
    fn follow_resolves_chains_and_cycles() {
        // 0 <- 1 <- 2, 3 <-> 4, 5 -> 4
        let parents = [None, Some(0), Some(1), Some(4), Some(3), Some(4)];
        let mut v = vec![UNSET; 6];
        follow(&mut v, |i| parents[i], |i| u32::try_from(i).unwrap());
        assert_eq!(v, vec![0, 0, 0, NONE, NONE, NONE]);
    }
}
