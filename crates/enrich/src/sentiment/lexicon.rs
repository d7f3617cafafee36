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
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
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

/// Rule words that can change a nearby lexicon word's valence without being a booster or a
/// negation word: a lexicon word with none of these, no booster and no negation among itself and
/// the three words before it takes the scorer's fast path ("never" and "without" are negation
/// words too, listed for clarity).
const VALENCE_RULE_WORDS: [&str; 6] = ["no", "least", "so", "this", "never", "without"];

/// Entry flag: the word is a key of the VADER lexicon.
pub(crate) const IN_LEX: u8 = 1;
/// Entry flag: the word is a key of `BOOSTER_DICT`.
pub(crate) const IN_BOOSTER: u8 = 2;
/// Entry flag: the word is in `NEGATE`.
pub(crate) const NEGATE_WORD: u8 = 4;
/// Entry flag: one of [`VALENCE_RULE_WORDS`].
pub(crate) const RULE_WORD: u8 = 8;
/// Entry flag: a booster with `B_DECR` (a dampener); without it a booster has `B_INCR`.
pub(crate) const BOOST_DECR: u8 = 16;

/// What VADER knows about one lowercased word.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    /// Lexicon valence (meaningful only with [`IN_LEX`]).
    pub lex: f64,
    /// `IN_LEX | IN_BOOSTER | NEGATE_WORD | RULE_WORD | BOOST_DECR`.
    pub flags: u8,
    /// Bit `k` of `phrase[p]`: the word is word `p` of multi-word phrase `k` (see [`Phrases`]).
    pub phrase: [u16; 3],
}

impl Entry {
    /// The booster scalar (`BOOSTER_DICT[word]`), for a word with [`IN_BOOSTER`].
    #[inline]
    pub fn booster(flags: u8) -> f64 {
        if flags & BOOST_DECR != 0 {
            B_DECR
        } else {
            B_INCR
        }
    }
}

/// The multi-word keys of `SPECIAL_CASES` and `BOOSTER_DICT` ("the bomb", "kind of", ...) as
/// bit sets, so that matching a sequence of two or three words is a few ANDs of the words'
/// [`Entry::phrase`] masks instead of string joins and dict lookups. Phrase `k` is bit `k`;
/// special cases come first, in the reference's dict order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phrases {
    /// Phrases of two words.
    pub len2: u16,
    /// Phrases of three words.
    pub len3: u16,
    /// Phrases from `SPECIAL_CASES` (the others are booster n-grams).
    pub special: u16,
    /// The value of each phrase.
    pub values: [f64; 16],
}

impl Phrases {
    /// The phrases spelled by two words with these masks.
    #[inline]
    pub fn two(&self, a: &[u16; 3], b: &[u16; 3]) -> u16 {
        a[0] & b[1] & self.len2
    }

    /// The phrases spelled by three words with these masks.
    #[inline]
    pub fn three(&self, a: &[u16; 3], b: &[u16; 3], c: &[u16; 3]) -> u16 {
        a[0] & b[1] & c[2] & self.len3
    }

    /// The value of the special case among `hits`, if any. Keys are distinct strings, so a
    /// sequence spells at most one of them.
    #[inline]
    pub fn special_value(&self, hits: u16) -> Option<f64> {
        let hits = hits & self.special;
        (hits != 0).then(|| self.values[hits.trailing_zeros() as usize])
    }

    /// The value of the booster n-gram among `hits`, if any.
    #[inline]
    pub fn booster_value(&self, hits: u16) -> Option<f64> {
        let hits = hits & !self.special;
        (hits != 0).then(|| self.values[hits.trailing_zeros() as usize])
    }
}

/// The id of a word that has no entry: id 0 is a sentinel record with no flags, so that a miss
/// reads an empty entry instead of taking a branch.
pub(crate) const NO_ID: u32 = 0;

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

/// Longest key the tables can hold, in bytes (the 3.3.2 lexicon's longest is 19).
pub(crate) const KEY_BUF: usize = 32;

/// A lowercase word as the tables compare it: zero-padded to [`KEY_BUF`] bytes, read as four
/// words, so that hashing and comparing cost a few integer operations and no `memcmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    words: [u64; 4],
    len: usize,
}

impl Key {
    /// The key of `bytes` as they are; `None` if longer than [`KEY_BUF`].
    #[inline]
    pub fn new(bytes: &[u8]) -> Option<Key> {
        Key::build(bytes, |b| b)
    }

    /// The key of `bytes` with ASCII letters lowercased (Python's `lower()` for ASCII text);
    /// `None` if longer than [`KEY_BUF`]. The reference for [`Key::ascii_lower_at`] in tests.
    #[cfg(test)]
    pub fn ascii_lower(bytes: &[u8]) -> Option<Key> {
        Key::build(bytes, |b| b.to_ascii_lowercase())
    }

    #[inline]
    fn build(bytes: &[u8], map: impl Fn(u8) -> u8) -> Option<Key> {
        if bytes.len() > KEY_BUF {
            return None;
        }
        let mut buf = [0u8; KEY_BUF];
        for (d, &s) in buf.iter_mut().zip(bytes) {
            *d = map(s);
        }
        let mut words = [0u64; 4];
        for (w, chunk) in words.iter_mut().zip(buf.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Some(Key {
            words,
            len: bytes.len(),
        })
    }

    /// The one word of a key of at most eight ASCII bytes: the `len` bytes of `text` at
    /// `start`, lowercased and zero-padded, with what its letters say. The hot path: most words
    /// are this short, and their hash and comparison then take one word.
    #[inline(always)]
    pub fn short_ascii_at(text: &[u8], start: usize, len: usize) -> (u64, AsciiShape) {
        let mut b = [0u8; 8];
        match text.get(start..start + 8) {
            Some(chunk) => b.copy_from_slice(chunk),
            None => {
                for (d, s) in b.iter_mut().zip(text.get(start..).unwrap_or_default()) {
                    *d = *s;
                }
            }
        }
        let mut word = u64::from_le_bytes(b);
        if len < 8 {
            word &= (1u64 << (8 * len)) - 1;
        }
        let upper = swar_in_range(word, b'A', b'Z');
        let shape = AsciiShape {
            // `&`, not `&&`: both tests are cheap, a branch between them is not.
            isupper: (upper != 0) & (swar_in_range(word, b'a', b'z') == 0),
            apostrophe: swar_eq(word, b'\'') != 0,
        };
        (word | (upper >> 2), shape)
    }

    /// The hash of a key of at most eight bytes from its one word: the same value as
    /// [`Key::hash`], whose other words are zero then.
    #[inline(always)]
    fn short_hash(word: u64, len: usize) -> u64 {
        let h = word.wrapping_mul(HASH_K[0]) ^ len as u64;
        fold(u128::from(h.rotate_left(32)) * u128::from(HASH_K[4]))
    }

    /// The key of the `len` bytes of `text` at `start`, ASCII-lowercased, for a token known
    /// to be ASCII, with what its letters say ([`AsciiShape`]); `None` if longer than
    /// [`KEY_BUF`]. Reads eight bytes at a time straight from the text where it can (the hot
    /// path: no byte loop, no copy).
    #[inline]
    pub fn ascii_lower_at(text: &[u8], start: usize, len: usize) -> Option<(Key, AsciiShape)> {
        if len > KEY_BUF {
            return None;
        }
        let mut words = [0u64; 4];
        let mut upper = 0;
        let mut lower = 0;
        let mut apostrophe = 0;
        let mut off = 0;
        for w in words.iter_mut() {
            if off >= len {
                break;
            }
            let at = start + off;
            let mut word = match text.get(at..at + 8) {
                Some(chunk) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    u64::from_le_bytes(b)
                }
                None => {
                    // Near the end of the text: assemble the word bytewise.
                    let mut b = [0u8; 8];
                    for (d, s) in b.iter_mut().zip(&text[at.min(text.len())..]) {
                        *d = *s;
                    }
                    u64::from_le_bytes(b)
                }
            };
            let keep = len - off;
            if keep < 8 {
                word &= (1u64 << (8 * keep)) - 1;
            }
            let upper_bytes = swar_in_range(word, b'A', b'Z');
            upper |= upper_bytes;
            lower |= swar_in_range(word, b'a', b'z');
            apostrophe |= swar_eq(word, b'\'');
            *w = word | (upper_bytes >> 2);
            off += 8;
        }
        let shape = AsciiShape {
            isupper: upper != 0 && lower == 0,
            apostrophe: apostrophe != 0,
        };
        Some((Key { words, len }, shape))
    }

    /// A mix of the words and length: four independent multiplies, then a folded multiply so
    /// that both the top bits (home slot) and the low bits (tag) depend on every input bit.
    #[inline]
    fn hash(&self) -> u64 {
        let h = self.words[0].wrapping_mul(HASH_K[0])
            ^ self.words[1].wrapping_mul(HASH_K[1])
            ^ self.words[2].wrapping_mul(HASH_K[2])
            ^ self.words[3].wrapping_mul(HASH_K[3])
            ^ self.len as u64;
        fold(u128::from(h.rotate_left(32)) * u128::from(HASH_K[4]))
    }
}

/// Multipliers of [`Key::hash`].
const HASH_K: [u64; 5] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0xd6e8_feb8_6659_fd93,
    0xff51_afd7_ed55_8ccd,
];

/// The two halves of a 128-bit product, xored.
#[inline]
#[allow(clippy::cast_possible_truncation)] // splitting into halves is the point
fn fold(m: u128) -> u64 {
    (m >> 64) as u64 ^ m as u64
}

/// What an ASCII token's bytes contain, found while building its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AsciiShape {
    /// Python's `isupper()`: some letter is uppercase and none is lowercase.
    pub isupper: bool,
    /// It contains an apostrophe (so it may contain "n't").
    pub apostrophe: bool,
}

/// Eight 0x01 bytes.
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
/// Eight 0x80 bytes.
pub(crate) const HIGHS: u64 = ONES * 0x80;

/// 0x80 in each byte of `w` (all bytes ASCII) that lies in `lo..=hi`, 0 elsewhere. Byte-wise
/// additions cannot carry into the next byte because every byte is below 0x80.
#[inline]
pub(crate) fn swar_in_range(w: u64, lo: u8, hi: u8) -> u64 {
    let ge_lo = w + ONES * (0x80 - u64::from(lo));
    let gt_hi = w + ONES * (0x7f - u64::from(hi));
    ge_lo & !gt_hi & HIGHS
}

/// 0x80 in each byte of `w` equal to zero, exactly (no false positives from borrows).
#[inline]
pub(crate) fn swar_zero(w: u64) -> u64 {
    !(((w & !HIGHS) + !HIGHS) | w) & HIGHS
}

/// 0x80 in each byte of `w` equal to `b`.
#[inline]
pub(crate) fn swar_eq(w: u64, b: u8) -> u64 {
    swar_zero(w ^ (ONES * u64::from(b)))
}

/// ASCII-lowercases the eight bytes of `w`, which must all be ASCII.
#[cfg(test)]
fn swar_ascii_lower(w: u64) -> u64 {
    w | (swar_in_range(w, b'A', b'Z') >> 2)
}

/// One table entry with its key, on one cache line: a hit costs one slot load and one line.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Record {
    key: Key,
    entry: Entry,
}

/// Everything parsed from the data, built once.
pub(crate) struct Tables {
    /// Open-addressing slots: 0 is empty, otherwise `(16-bit tag << 16) | (entry id + 1)`.
    /// Four bytes each keep the whole index (64 KiB) close to L1.
    slots: Box<[u32]>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
    /// Keys and entries by id.
    records: Vec<Record>,
    /// Keys by id, as text (tests and debugging).
    #[cfg_attr(not(test), allow(dead_code))]
    keys: Vec<&'static str>,
    /// Longest key in bytes: longer tokens cannot match and skip the probe.
    pub max_key_len: usize,
    /// Whether every key is ASCII. Then a token with non-ASCII characters can only match if
    /// one of them is KELVIN SIGN: every other non-ASCII character lowercases to something
    /// with non-ASCII in it (a unit test checks this over all of Unicode).
    pub ascii_keys: bool,
    /// Ids of the rule words.
    pub ids: RuleIds,
    /// Multi-word `SPECIAL_CASES` and `BOOSTER_DICT` keys.
    pub phrases: Phrases,
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
        let empty = Entry {
            lex: 0.0,
            flags: 0,
            phrase: [0; 3],
        };
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
                e.flags |= IN_BOOSTER;
                if value == B_DECR {
                    e.flags |= BOOST_DECR;
                }
            }
        }
        for &word in NEGATE {
            map.entry(word).or_insert(empty).flags |= NEGATE_WORD;
        }
        for &word in &RULE_WORDS {
            map.entry(word).or_insert(empty);
        }
        for &word in &VALENCE_RULE_WORDS {
            map.entry(word).or_insert(empty).flags |= RULE_WORD;
        }
        let mut phrases = Phrases {
            len2: 0,
            len3: 0,
            special: 0,
            values: [0.0; 16],
        };
        let multi_word = |list: &'static [(&'static str, f64)]| {
            list.iter()
                .filter(|(k, _)| k.contains(' '))
                .map(|&(k, v)| (k, v))
        };
        let specials = multi_word(SPECIAL_CASES).map(|p| (p, true));
        let ngrams = multi_word(BOOSTER_DICT).map(|p| (p, false));
        for (k, ((key, value), special)) in specials.chain(ngrams).take(16).enumerate() {
            let bit = 1u16 << k;
            let words: Vec<&'static str> = key.split(' ').collect();
            match words.len() {
                2 => phrases.len2 |= bit,
                3 => phrases.len3 |= bit,
                _ => continue,
            }
            if special {
                phrases.special |= bit;
            }
            phrases.values[k] = value;
            for (p, word) in words.into_iter().enumerate() {
                map.entry(word).or_insert(empty).phrase[p] |= bit;
            }
        }

        // Deterministic ids: sorted keys.
        let mut pairs: Vec<(&'static str, Entry)> = map.into_iter().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // Keys longer than KEY_BUF could not be stored, nor more than 65,535 entries; 3.3.2 is
        // far from both (a test checks).
        pairs.retain(|p| p.0.len() <= KEY_BUF);
        pairs.truncate(0xfff0);
        // Record 0 is the sentinel of NO_ID: a key no word has (its length is impossible) and
        // an entry without flags.
        let sentinel = Record {
            key: Key {
                words: [0; 4],
                len: usize::MAX,
            },
            entry: empty,
        };
        let mut keys: Vec<&'static str> = vec![""];
        let mut records: Vec<Record> = vec![sentinel];
        for &(k, entry) in &pairs {
            if let Some(key) = Key::new(k.as_bytes()) {
                keys.push(k);
                records.push(Record { key, entry });
            }
        }
        let max_key_len = keys.iter().map(|k| k.len()).max().unwrap_or(0);
        let ascii_keys = keys.iter().all(|k| k.is_ascii());

        let capacity = (records.len() * 8).next_power_of_two().max(16);
        let shift = 64 - capacity.trailing_zeros();
        let mut slots = vec![0u32; capacity].into_boxed_slice();
        let mask = capacity - 1;
        for (id, record) in records.iter().enumerate().skip(1) {
            let h = record.key.hash();
            let mut at = home(h, shift);
            while slots[at] != 0 {
                at = (at + 1) & mask;
            }
            // Ids fit in 16 bits: 3.3.2 gives ~7,600 entries (a test checks the bound).
            let id = u32::try_from(id).unwrap_or(0) & 0xffff;
            slots[at] = (u32::from(tag(h)) << 16) | id;
        }

        let mut tables = Tables {
            slots,
            shift,
            records,
            keys,
            max_key_len,
            ascii_keys,
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
            phrases,
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
        tables.ids = ids;
        tables
    }

    /// The id of a lowercased word, if it has an entry.
    #[inline]
    pub fn find(&self, word: &[u8]) -> Option<u32> {
        Key::new(word).and_then(|key| self.find_key(&key))
    }

    /// The id of a key, if it has an entry.
    #[inline]
    pub fn find_key(&self, key: &Key) -> Option<u32> {
        let id = self.lookup(key);
        (id != NO_ID).then_some(id)
    }

    /// The id of a key, [`NO_ID`] if it has no entry.
    #[inline]
    pub fn lookup(&self, key: &Key) -> u32 {
        let h = key.hash();
        let want = tag(h);
        let mask = self.slots.len() - 1;
        let mut at = home(h, self.shift);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return NO_ID;
            }
            let (slot_tag, id) = split_slot(slot);
            if slot_tag == want && self.records[id as usize].key == *key {
                return id;
            }
            at = (at + 1) & mask;
        }
    }

    /// [`Tables::lookup`] for a key of at most eight bytes, given as its one lowercased,
    /// zero-padded word ([`Key::short_ascii_at`]).
    #[inline(always)]
    pub fn lookup_short(&self, word: u64, len: usize) -> u32 {
        let h = Key::short_hash(word, len);
        let want = tag(h);
        let mask = self.slots.len() - 1;
        let mut at = home(h, self.shift);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return NO_ID;
            }
            let (slot_tag, id) = split_slot(slot);
            if slot_tag == want {
                // Keys of the same length up to eight bytes differ in their first word only.
                let key = &self.records[id as usize].key;
                if key.words[0] == word && key.len == len {
                    return id;
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// The entry of an id from [`Tables::lookup`]; [`NO_ID`] gives an entry without flags.
    #[inline]
    pub fn entry(&self, id: u32) -> &Entry {
        // Ids come from this table's slots (or are NO_ID, the sentinel at index 0).
        &self.records[id as usize].entry
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

/// The home slot: the hash's top bits.
#[inline]
fn home(h: u64, shift: u32) -> usize {
    // `shift` >= 64 - 32 for any table we build, so the value fits in usize on every target.
    usize::try_from(h >> shift).unwrap_or(0)
}

/// The 16-bit tag stored in a slot: the hash's low bits.
#[inline]
#[allow(clippy::cast_possible_truncation)] // keeping the low 16 bits is the point
fn tag(h: u64) -> u16 {
    h as u16
}

/// Splits a slot into its tag and entry id.
#[inline]
fn split_slot(slot: u32) -> (u16, u32) {
    let tag = u16::try_from(slot >> 16).unwrap_or(0);
    (tag, slot & 0xffff)
}

/// The emoji lexicon: single code points and their descriptions.
pub(crate) struct EmojiTable {
    /// Sorted by code point.
    sorted: Vec<(char, &'static str)>,
    /// Two-level index for code points below [`PAGED_LIMIT`]: `pages[cp >> 8]` is 0 for a
    /// 256-code-point page without emojis, else `p + 1` where `slots[p * 256 + (cp & 0xff)]`
    /// is 0 or the emoji's index plus one. Two loads, no search.
    pages: Box<[u16]>,
    slots: Vec<u16>,
    /// Smallest emoji code point.
    min: u32,
    /// Number of keys in the file (including multi-code-point ones); for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub file_len: usize,
}

/// Code points covered by the paged index (all of the 3.3.2 single-code-point keys); beyond
/// it, a binary search.
const PAGED_LIMIT: u32 = 0x2_0000;

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
        // Indexes must fit in u16 with room for the +1; 3.3.2 has 1,212.
        sorted.truncate(0xfff0);
        let mut pages = vec![0u16; (PAGED_LIMIT >> 8) as usize].into_boxed_slice();
        let mut slots: Vec<u16> = Vec::new();
        for (index, &(c, _)) in sorted.iter().enumerate() {
            let cp = c as u32;
            if cp >= PAGED_LIMIT {
                continue;
            }
            let page = &mut pages[(cp >> 8) as usize];
            if *page == 0 {
                slots.resize(slots.len() + 256, 0);
                *page = u16::try_from(slots.len() / 256).unwrap_or(0);
            }
            let at = (usize::from(*page) - 1) * 256 + (cp & 0xff) as usize;
            slots[at] = u16::try_from(index + 1).unwrap_or(0);
        }
        let min = sorted.first().map_or(u32::MAX, |p| p.0 as u32);
        EmojiTable {
            sorted,
            pages,
            slots,
            min,
            file_len: file_keys.len(),
        }
    }

    /// The index of code point `cp` among the emojis (see [`EmojiTable::entries`]), if it is
    /// one.
    #[inline]
    pub fn index(&self, cp: u32) -> Option<usize> {
        if cp < self.min {
            return None;
        }
        if cp >= PAGED_LIMIT {
            let c = char::from_u32(cp)?;
            return self.sorted.binary_search_by_key(&c, |p| p.0).ok();
        }
        let page = usize::from(self.pages[(cp >> 8) as usize]);
        if page == 0 {
            return None;
        }
        let slot = self
            .slots
            .get((page - 1) * 256 + (cp & 0xff) as usize)
            .copied()
            .unwrap_or(0);
        usize::from(slot).checked_sub(1)
    }

    /// The emojis and their descriptions, by index.
    pub fn entries(&self) -> &[(char, &'static str)] {
        &self.sorted
    }

    /// The description of `c` if it is an emoji of the lexicon.
    #[cfg(test)]
    pub fn get(&self, c: char) -> Option<&'static str> {
        self.index(c as u32).map(|i| self.sorted[i].1)
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
        assert!(t.max_key_len <= KEY_BUF);
        assert_eq!(
            t.records.len(),
            t.keys.len(),
            "no key was too long to store"
        );
        assert!(t.ascii_keys);
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
        for id in 1..u32::try_from(t.records.len()).unwrap() {
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
        let p = t.phrases;
        assert_eq!(p.special.count_ones(), 8);
        assert_eq!((p.len2 | p.len3).count_ones(), 11);
        assert_eq!(p.len3.count_ones(), 2, "kiss of death, to die for");
        let word = |w: &str| t.entry(t.find(w.as_bytes()).unwrap()).phrase;
        assert_eq!(
            p.special_value(p.two(&word("the"), &word("bomb"))),
            Some(3.0)
        );
        assert_eq!(p.special_value(p.two(&word("bomb"), &word("the"))), None);
        assert_eq!(
            p.special_value(p.three(&word("kiss"), &word("of"), &word("death"))),
            Some(-1.5)
        );
        assert_eq!(
            p.booster_value(p.two(&word("kind"), &word("of"))),
            Some(B_DECR)
        );
        assert_eq!(
            p.booster_value(p.two(&word("just"), &word("enough"))),
            Some(B_DECR)
        );
        assert_eq!(p.special_value(p.two(&word("kind"), &word("of"))), None);
        let so = t.entry(i.so);
        assert_eq!(so.flags & IN_BOOSTER, IN_BOOSTER);
        assert_eq!(Entry::booster(so.flags), B_INCR);
        assert_eq!(Entry::booster(t.entry(i.kind).flags | BOOST_DECR), B_DECR);
        assert_eq!(
            Entry::booster(t.entry(t.find(b"kinda").unwrap()).flags),
            B_DECR
        );
        assert_eq!(t.entry(i.never).flags & NEGATE_WORD, NEGATE_WORD);
    }

    #[test]
    fn probes_are_short() {
        let t = tables();
        let mask = t.slots.len() - 1;
        let mut total = 0;
        for r in &t.records[1..] {
            let mut at = home(r.key.hash(), t.shift);
            let mut probes = 1;
            while t.records[(t.slots[at] & 0xffff) as usize].key != r.key {
                at = (at + 1) & mask;
                probes += 1;
            }
            total += probes;
        }
        let mean = f64::from(total) / (t.records.len() - 1) as f64;
        assert!(mean < 1.6, "mean probes {mean}");
        assert!(t.records.len() < 0xffff);
    }

    #[test]
    fn swar_lowercase() {
        let all: Vec<u8> = (0..0x80u8).collect();
        for chunk in all.chunks(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            let lowered = swar_ascii_lower(u64::from_le_bytes(b)).to_le_bytes();
            let expected: Vec<u8> = chunk.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(lowered.to_vec(), expected);
        }
        let text = b"xx HeLLo-WORLD-and-More-Text-Here-To-Read n't 'Z@[`{ N'T";
        let t = tables();
        for start in 0..text.len() {
            for len in 0..=(text.len() - start).min(KEY_BUF) {
                let token = &text[start..start + len];
                let want = Key::ascii_lower(token);
                let got = Key::ascii_lower_at(text, start, len);
                assert_eq!(got.map(|g| g.0), want, "{start} {len}");
                let shape = got.unwrap().1;
                let isupper = token.iter().any(u8::is_ascii_uppercase)
                    && !token.iter().any(u8::is_ascii_lowercase);
                assert_eq!(shape.isupper, isupper);
                assert_eq!(shape.apostrophe, token.contains(&b'\''));
                if len <= 8 {
                    let (word, short_shape) = Key::short_ascii_at(text, start, len);
                    assert_eq!(short_shape, shape);
                    assert_eq!(word, got.unwrap().0.words[0]);
                    assert_eq!(Key::short_hash(word, len), got.unwrap().0.hash());
                    assert_eq!(t.lookup_short(word, len), t.lookup(&got.unwrap().0));
                }
            }
        }
    }

    #[test]
    fn short_lookup_finds_every_short_key() {
        let t = tables();
        for (id, key) in t.keys.iter().enumerate().skip(1) {
            if key.len() <= 8 && key.is_ascii() {
                let (word, _) = Key::short_ascii_at(key.as_bytes(), 0, key.len());
                assert_eq!(t.lookup_short(word, key.len()) as usize, id, "{key}");
            }
        }
        let (word, _) = Key::short_ascii_at(b"GOOD!", 0, 4);
        assert_eq!(t.lookup_short(word, 4), t.find(b"good").unwrap());
        let (word, _) = Key::short_ascii_at(b"zzzz", 0, 4);
        assert_eq!(t.lookup_short(word, 4), NO_ID);
    }

    #[test]
    fn swar_masks_are_exact() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[pos] = b;
                let w = u64::from_le_bytes(bytes);
                let bit = 0x80u64 << (8 * pos);
                assert!(swar_eq(w, b) & bit != 0);
                assert_eq!(swar_zero(w) & bit != 0, b == 0, "{b}");
                if b < 0x80 {
                    assert_eq!(
                        swar_in_range(w, b'A', b'Z') & bit != 0,
                        b.is_ascii_uppercase()
                    );
                    assert_eq!(
                        swar_in_range(w, b'a', b'z') & bit != 0,
                        b.is_ascii_lowercase()
                    );
                }
            }
        }
    }

    #[test]
    fn emoji_index_matches_a_search() {
        let e = &tables().emoji;
        for cp in 0..0x11_0000u32 {
            let want =
                char::from_u32(cp).and_then(|c| e.sorted.binary_search_by_key(&c, |p| p.0).ok());
            assert_eq!(e.index(cp), want, "U+{cp:04X}");
        }
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
