//! VADER 3.3.2's data, parsed once into the tables the scorer probes per token.
//!
//! The two lexicon files are the package's own (see `data/vader/README.md`), embedded with
//! `include_str!` and parsed on first use into a [`Tables`] held in a `OnceLock`. Everything the
//! scorer needs to know about a lowercased word (its lexicon valence, whether it is a booster or a
//! negation word, whether an idiom mentions it) lives in one [`Entry`], so scoring a token costs a
//! single hash probe. The rule words the reference compares literally ("no", "but", "least", ...)
//! are looked up here once and kept as entry ids, which turns every string comparison of the
//! reference into an integer comparison.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::pytext;

/// `vader_lexicon.txt` of vaderSentiment 3.3.2, byte for byte (CRLF line endings).
const VADER_LEXICON: &str = include_str!("../../data/vader/vader_lexicon.txt");
/// `emoji_utf8_lexicon.txt` of vaderSentiment 3.3.2, byte for byte (CRLF line endings).
const EMOJI_LEXICON: &str = include_str!("../../data/vader/emoji_utf8_lexicon.txt");

/// Empirical booster increment (`B_INCR` in the reference).
pub(crate) const B_INCR: f64 = 0.293;
/// Empirical dampener decrement (`B_DECR` in the reference).
pub(crate) const B_DECR: f64 = -0.293;

/// The reference's `NEGATE` list.
const NEGATE: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't", "aren't",
    "can't", "couldn't", "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt", "havent", "isnt",
    "mightnt", "mustnt", "neither", "don't", "hadn't", "hasn't", "haven't", "isn't", "mightn't",
    "mustn't", "neednt", "needn't", "never", "none", "nope", "nor", "not", "nothing", "nowhere",
    "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent", "oughtn't", "shan't", "shouldn't",
    "uh-uh", "wasn't", "weren't", "without", "wont", "wouldnt", "won't", "wouldn't", "rarely",
    "seldom", "despite",
];

/// The reference's `BOOSTER_DICT`. The multi-word keys can never equal a single token; they only
/// matter to the n-gram check of `_special_idioms_check` (see [`Tables::booster_ngrams`]).
const BOOSTER_DICT: &[(&str, f64)] = &[
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("just enough", B_DECR),
    ("kind of", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sort of", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

/// The reference's `SPECIAL_CASES`. Its single-word key "badass" can never match: the reference
/// only looks up space-joined sequences of two or three tokens (quirk kept; "badass" still scores
/// through the lexicon). `SENTIMENT_LADEN_IDIOMS` is not here because 3.3.2 never calls
/// `_sentiment_laden_idioms_check` ("future work" in the reference).
const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

/// Words the reference's rules compare tokens with literally.
const RULE_WORDS: [&str; 14] = [
    "no", "but", "kind", "of", "least", "at", "very", "never", "so", "this", "without", "doubt",
    "or", "nor",
];

/// Entry flag: the word is a key of the VADER lexicon.
pub(crate) const IN_LEX: u8 = 1;
/// Entry flag: the word is a key of `BOOSTER_DICT`.
pub(crate) const IN_BOOSTER: u8 = 2;
/// Entry flag: the word is in `NEGATE`.
pub(crate) const NEGATE_WORD: u8 = 4;
/// Entry flag: the word occurs in a multi-word special case or booster n-gram.
pub(crate) const IDIOM_WORD: u8 = 8;

/// What VADER knows about one lowercased word.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    /// Lexicon valence (meaningful only with [`IN_LEX`]).
    pub lex: f64,
    /// Booster scalar (meaningful only with [`IN_BOOSTER`]).
    pub booster: f64,
    /// `IN_LEX | IN_BOOSTER | NEGATE_WORD | IDIOM_WORD`.
    pub flags: u8,
}

/// The id of a word that has no entry: matches no rule word and no idiom.
pub(crate) const NO_ID: u32 = u32::MAX;

/// Entry ids of the rule words (see [`RULE_WORDS`]).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub(crate) struct RuleIds {
    pub no: u32,
    pub but: u32,
    pub kind: u32,
    pub of: u32,
    pub least: u32,
    pub at: u32,
    pub very: u32,
    pub never: u32,
    pub so: u32,
    pub this: u32,
    pub without: u32,
    pub doubt: u32,
    pub or: u32,
    pub nor: u32,
}

/// A multi-word key (two or three words) as entry ids, with its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phrase {
    /// Entry ids of the words; only the first `len` are used.
    pub ids: [u32; 3],
    /// Number of words (2 or 3).
    pub len: usize,
    /// The value the reference assigns (special case) or adds (booster n-gram).
    pub value: f64,
}

impl Phrase {
    /// Whether the words with these ids spell this phrase.
    #[inline]
    pub fn matches(&self, ids: &[u32]) -> bool {
        ids.len() == self.len && ids == &self.ids[..self.len]
    }
}

/// Everything parsed from the data, built once.
pub(crate) struct Tables {
    /// Open-addressing slots: 0 is empty, otherwise `(tag << 32) | (entry id + 1)`.
    slots: Box<[u64]>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
    /// Entry keys by id (lowercase words).
    keys: Vec<&'static str>,
    /// Entries by id.
    entries: Vec<Entry>,
    /// Longest key in bytes: longer tokens cannot match and skip the probe.
    pub max_key_len: usize,
    /// Ids of the rule words.
    pub ids: RuleIds,
    /// Multi-word `SPECIAL_CASES`, in the reference's dict order.
    pub special_cases: Vec<Phrase>,
    /// Multi-word `BOOSTER_DICT` keys.
    pub booster_ngrams: Vec<Phrase>,
    /// The emoji lexicon.
    pub emoji: EmojiTable,
    /// Number of distinct lexicon keys parsed (before dropping unreachable ones); for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub lexicon_len: usize,
}

/// The shared tables, parsed from the embedded data on first use.
pub(crate) fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Tables::build)
}

/// Python's `line.strip().split('\t')[0:2]`; `None` when the line has no tab (the reference would
/// raise; the embedded files have none, and a test checks the entry counts).
fn two_fields(line: &str) -> Option<(&str, &str)> {
    let mut fields = pytext::py_strip(line).split('\t');
    let key = fields.next()?;
    let value = fields.next()?;
    Some((key, value))
}

/// Python's `data.rstrip('\n').split('\n')`.
fn py_lines(data: &str) -> std::str::Split<'_, char> {
    data.trim_end_matches('\n').split('\n')
}

/// Parses `vader_lexicon.txt` like `make_lex_dict`: later duplicates win (the file has 14
/// duplicated keys, e.g. "lol"; the reference keeps the last value).
fn parse_lexicon(data: &'static str) -> HashMap<&'static str, f64> {
    let mut lex = HashMap::with_capacity(8192);
    for line in py_lines(data) {
        if line.is_empty() {
            continue;
        }
        if let Some((word, measure)) = two_fields(line) {
            // Rust's and Python's float parsing are both correctly rounded.
            if let Ok(value) = measure.trim().parse::<f64>() {
                lex.insert(word, value);
            }
        }
    }
    lex
}

impl Tables {
    fn build() -> Tables {
        let lexicon = parse_lexicon(VADER_LEXICON);
        let lexicon_len = lexicon.len();

        let mut map: HashMap<&'static str, Entry> = HashMap::with_capacity(lexicon_len + 256);
        let empty = Entry { lex: 0.0, booster: 0.0, flags: 0 };
        for (&word, &value) in &lexicon {
            // A key is only reachable if it can equal Python's `token.lower()` for a token
            // without whitespace: ":D" or ":Þ" (uppercase) and "can't stand" (space) never are.
            if is_reachable(word) {
                let e = map.entry(word).or_insert(empty);
                e.lex = value;
                e.flags |= IN_LEX;
            }
        }
        for &(word, value) in BOOSTER_DICT {
            if !word.contains(' ') {
                let e = map.entry(word).or_insert(empty);
                e.booster = value;
                e.flags |= IN_BOOSTER;
            }
        }
        for &word in NEGATE {
            map.entry(word).or_insert(empty).flags |= NEGATE_WORD;
        }
        for &word in &RULE_WORDS {
            map.entry(word).or_insert(empty);
        }
        let phrase_words = SPECIAL_CASES
            .iter()
            .map(|(k, _)| *k)
            .chain(BOOSTER_DICT.iter().map(|(k, _)| *k))
            .filter(|k| k.contains(' '))
            .flat_map(|k| k.split(' '));
        for word in phrase_words {
            map.entry(word).or_insert(empty).flags |= IDIOM_WORD;
        }

        // Deterministic ids: sorted keys.
        let mut pairs: Vec<(&'static str, Entry)> = map.into_iter().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let keys: Vec<&'static str> = pairs.iter().map(|p| p.0).collect();
        let entries: Vec<Entry> = pairs.iter().map(|p| p.1).collect();
        let max_key_len = keys.iter().map(|k| k.len()).max().unwrap_or(0);

        let capacity = (keys.len() * 2).next_power_of_two().max(16);
        let shift = 64 - capacity.trailing_zeros();
        let mut slots = vec![0u64; capacity].into_boxed_slice();
        let mask = capacity - 1;
        for (id, key) in keys.iter().enumerate() {
            let h = hash(key.as_bytes());
            let mut at = home(h, shift);
            while slots[at] != 0 {
                at = (at + 1) & mask;
            }
            slots[at] = (u64::from(tag(h)) << 32) | (id as u64 + 1);
        }

        let mut tables = Tables {
            slots,
            shift,
            keys,
            entries,
            max_key_len,
            ids: RuleIds {
                no: NO_ID,
                but: NO_ID,
                kind: NO_ID,
                of: NO_ID,
                least: NO_ID,
                at: NO_ID,
                very: NO_ID,
                never: NO_ID,
                so: NO_ID,
                this: NO_ID,
                without: NO_ID,
                doubt: NO_ID,
                or: NO_ID,
                nor: NO_ID,
            },
            special_cases: Vec::new(),
            booster_ngrams: Vec::new(),
            emoji: EmojiTable::parse(EMOJI_LEXICON),
            lexicon_len,
        };
        let id = |w: &str| tables.find(w.as_bytes()).unwrap_or(NO_ID);
        let ids = RuleIds {
            no: id("no"),
            but: id("but"),
            kind: id("kind"),
            of: id("of"),
            least: id("least"),
            at: id("at"),
            very: id("very"),
            never: id("never"),
            so: id("so"),
            this: id("this"),
            without: id("without"),
            doubt: id("doubt"),
            or: id("or"),
            nor: id("nor"),
        };
        let phrases = |list: &[(&str, f64)]| -> Vec<Phrase> {
            list.iter()
                .filter(|(k, _)| k.contains(' '))
                .filter_map(|&(k, value)| {
                    let mut ids = [NO_ID; 3];
                    let mut len = 0;
                    for (slot, word) in ids.iter_mut().zip(k.split(' ')) {
                        *slot = tables.find(word.as_bytes())?;
                        len += 1;
                    }
                    Some(Phrase { ids, len, value })
                })
                .collect()
        };
        let special_cases = phrases(SPECIAL_CASES);
        let booster_ngrams = phrases(BOOSTER_DICT);
        tables.ids = ids;
        tables.special_cases = special_cases;
        tables.booster_ngrams = booster_ngrams;
        tables
    }

    /// The id of a lowercased word, if it has an entry.
    #[inline]
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        if key.len() > self.max_key_len {
            return None;
        }
        let h = hash(key);
        let want = tag(h);
        let mask = self.slots.len() - 1;
        let mut at = home(h, self.shift);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            let (slot_tag, id) = split_slot(slot);
            if slot_tag == want && self.keys[id as usize].as_bytes() == key {
                return Some(id);
            }
            at = (at + 1) & mask;
        }
    }

    /// The entry of an id returned by [`Tables::find`].
    #[inline]
    pub fn entry(&self, id: u32) -> &Entry {
        &self.entries[id as usize]
    }

    /// The key of an entry id (for tests and debugging).
    #[cfg(test)]
    pub fn key(&self, id: u32) -> &str {
        self.keys[id as usize]
    }
}

/// Whether a lexicon key can equal Python's `lower()` of a whitespace-free token. Rust's
/// `to_lowercase` stands in for Python's `str.lower` here (same Unicode rules, final sigma
/// included); only the two `:Þ` emoticons and a dozen ASCII keys with capitals are dropped.
fn is_reachable(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(pytext::is_py_space) && key.to_lowercase() == key
}

/// FxHash-style word hash with a final avalanche, so that both the top bits (home slot) and the
/// low bits (tag) are well mixed.
#[inline]
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The home slot: the hash's top bits.
#[inline]
fn home(h: u64, shift: u32) -> usize {
    // `shift` >= 64 - 32 for any table we build, so the value fits in usize on every target.
    usize::try_from(h >> shift).unwrap_or(0)
}

/// The 32-bit tag stored in a slot: the hash's low half.
#[inline]
#[allow(clippy::cast_possible_truncation)] // keeping the low 32 bits is the point
fn tag(h: u64) -> u32 {
    h as u32
}

/// Splits a slot into its tag and entry id.
#[inline]
#[allow(clippy::cast_possible_truncation)] // both halves are 32-bit fields by construction
fn split_slot(slot: u64) -> (u32, u32) {
    ((slot >> 32) as u32, (slot as u32).wrapping_sub(1))
}

/// The emoji lexicon: single code points and their descriptions.
pub(crate) struct EmojiTable {
    /// Sorted by code point.
    sorted: Vec<(char, &'static str)>,
    /// One bit per code point below [`BITMAP_LIMIT`]: a fast "certainly not an emoji".
    bitmap: Box<[u64]>,
    /// Smallest emoji code point.
    min: u32,
    /// Number of keys in the file (including multi-code-point ones); for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub file_len: usize,
}

/// Code points covered by the emoji bitmap (all of the 3.3.2 single-code-point keys).
const BITMAP_LIMIT: u32 = 0x2_0000;

impl EmojiTable {
    /// Parses `emoji_utf8_lexicon.txt` like `make_emoji_dict`. The reference replaces emojis
    /// while iterating over the text one code point at a time, so keys of several code points
    /// (skin tones, ZWJ sequences, variation selectors) can never match and are dropped here
    /// (quirk kept: "👍🏽" becomes "thumbs up" followed by the bare skin-tone modifier).
    fn parse(data: &'static str) -> EmojiTable {
        let mut map: HashMap<char, &'static str> = HashMap::new();
        let mut file_keys = std::collections::HashSet::new();
        for line in py_lines(data) {
            if let Some((key, description)) = two_fields(line) {
                file_keys.insert(key);
                let mut chars = key.chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    map.insert(c, description);
                }
            }
        }
        let mut sorted: Vec<(char, &'static str)> = map.into_iter().collect();
        sorted.sort_unstable_by_key(|p| p.0);
        let mut bitmap = vec![0u64; (BITMAP_LIMIT / 64) as usize].into_boxed_slice();
        for &(c, _) in &sorted {
            let cp = c as u32;
            if cp < BITMAP_LIMIT {
                bitmap[(cp / 64) as usize] |= 1 << (cp % 64);
            }
        }
        let min = sorted.first().map_or(u32::MAX, |p| p.0 as u32);
        EmojiTable { sorted, bitmap, min, file_len: file_keys.len() }
    }

    /// The description of `c` if it is an emoji of the lexicon.
    #[inline]
    pub fn get(&self, c: char) -> Option<&'static str> {
        let cp = c as u32;
        if cp < self.min {
            return None;
        }
        if cp < BITMAP_LIMIT && self.bitmap[(cp / 64) as usize] & (1 << (cp % 64)) == 0 {
            return None;
        }
        self.sorted.binary_search_by_key(&c, |p| p.0).ok().map(|i| self.sorted[i].1)
    }

    /// Number of single-code-point emojis (the only ones that can match).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sorted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_matches_reference_counts() {
        let t = tables();
        // len(SentimentIntensityAnalyzer().lexicon) and .emojis in vaderSentiment 3.3.2.
        assert_eq!(t.lexicon_len, 7506);
        assert_eq!(t.emoji.file_len, 3570);
        assert_eq!(t.emoji.len(), 1212);
        assert!(t.max_key_len <= 32);
    }

    #[test]
    fn duplicates_keep_the_last_value() {
        let t = tables();
        let lol = t.find(b"lol").map(|id| t.entry(id).lex);
        assert_eq!(lol, Some(1.8));
        let ok = t.find(b"ok").map(|id| t.entry(id).lex);
        assert_eq!(ok, Some(1.2));
    }

    #[test]
    fn every_key_is_found_and_misses_miss() {
        let t = tables();
        for id in 0..u32::try_from(t.keys.len()).unwrap() {
            assert_eq!(t.find(t.key(id).as_bytes()), Some(id));
        }
        assert_eq!(t.find(b"definitelynotaword"), None);
        assert_eq!(t.find(b":D"), None, "unreachable keys are dropped");
        assert!(t.find(b":d").is_some());
    }

    #[test]
    fn rule_words_and_phrases_resolve() {
        let t = tables();
        let i = t.ids;
        for id in [
            i.no, i.but, i.kind, i.of, i.least, i.at, i.very, i.never, i.so, i.this, i.without,
            i.doubt, i.or, i.nor,
        ] {
            assert_ne!(id, NO_ID);
        }
        assert_eq!(t.special_cases.len(), 8);
        assert_eq!(t.booster_ngrams.len(), 3);
        let so = t.entry(i.so);
        assert_eq!(so.flags & IN_BOOSTER, IN_BOOSTER);
        assert_eq!(so.booster, B_INCR);
        assert_eq!(t.entry(i.never).flags & NEGATE_WORD, NEGATE_WORD);
    }

    #[test]
    fn emoji_lookup() {
        let e = &tables().emoji;
        assert_eq!(e.get('😁'), Some("beaming face with smiling eyes"));
        assert_eq!(e.get('a'), None);
        assert_eq!(e.get('é'), None);
        assert_eq!(e.get('\u{FE0F}'), None);
    }
}
