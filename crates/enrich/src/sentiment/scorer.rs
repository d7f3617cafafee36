//! The VADER 3.3.2 scorer: `SentimentIntensityAnalyzer.polarity_scores`, step for step.
//!
//! The pipeline is the reference's: replace emojis by their descriptions, split into
//! "words and emoticons", give each a valence (lexicon value adjusted by the rules), apply the
//! "but" rule, then sum, amplify by punctuation, normalise and round. Each function below names
//! the reference function it mirrors and keeps its floating-point operations in the same order,
//! so the results are the same doubles, not just close ones.
//!
//! How it stays fast (over a million tweets a second on one core): one pass over the bytes
//! splits the text and resolves each word right away into a small `Tok` (its table entry id,
//! flags and values) with a single hash probe, keyed by one machine word for words of up to
//! eight bytes; emojis are not rewritten into the text but replaced by their descriptions'
//! tokens, resolved once ([`EmojiWords`]); a lexicon word with no rule word near it skips the
//! rule cascade; the final arithmetic avoids branches on the values.
//!
//! Allocation: a [`Scorer`] owns reusable scratch (token and valence vectors, and two strings
//! for rare paths: a description glued to the text after its emoji, and the lowercase form of a
//! token with non-ASCII characters). They grow to the longest text seen and are then reused, so
//! scoring allocates nothing per text once warm. Tokens are never copied out of the text.
//!
//! Quirks of the reference that are replicated on purpose (each is commented where it happens):
//! - emojis are matched one code point at a time, so multi-code-point emojis only half match;
//! - punctuation is only stripped from words that keep more than two characters ("ok!" stays
//!   "ok!" and misses the lexicon);
//! - ALL-CAPS emphasis subtracts `C_INCR` when the valence is exactly 0;
//! - `_negation_check` for the third preceding word multiplies by 1.25 whenever the word right
//!   before the lexicon word is "so" or "this" (an `and`/`or` precedence slip);
//! - special-case idioms are only looked at from the fourth word on, and only when the word three
//!   before is not itself in the lexicon;
//! - the "but" rule finds each valence with `list.index`, so equal valences before and after
//!   "but" are scaled at the first occurrence only.

use std::sync::OnceLock;

use super::Scores;
use super::lexicon::{
    Entry, HIGHS, IN_BOOSTER, IN_LEX, Key, NEGATE_WORD, NO_ID, ONES, RULE_WORD, RuleIds, Tables,
    swar_eq, tables,
};
use super::pyfloat::py_round;
use super::pytext::{
    at_most_two_chars, is_py_punct, is_py_space, py_isupper_chars, py_lower_into, space_len,
};

/// ALL-CAPS emphasis increment (`C_INCR`).
const C_INCR: f64 = 0.733;
/// Negation scalar (`N_SCALAR`).
const N_SCALAR: f64 = -0.74;
/// `normalize`'s alpha.
const ALPHA: f64 = 15.0;

/// Token flag: `word.isupper()`.
const UPPER: u8 = 32;
/// Token flag: `negated([word])`: in `NEGATE` or containing "n't".
const NEGATED: u8 = 64;
/// Token flags that can make a rule other than idioms fire on a lexicon word when found on it or
/// up to three words before it: without any of them, only ALL-CAPS emphasis and the idiom
/// check can change its valence.
const RULE_FLAGS: u8 = IN_BOOSTER | NEGATED | RULE_WORD;

/// One word or emoticon, resolved against the tables.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tok {
    /// Lexicon valence (with [`IN_LEX`]).
    lex: f64,
    /// Entry id of the lowercase form, or [`NO_ID`].
    id: u32,
    /// Entry flags plus [`UPPER`] and [`NEGATED`].
    flags: u8,
    /// The entry's phrase masks ([`Entry::phrase`]).
    phrase: [u16; 3],
}

impl Tok {
    #[inline]
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A reusable VADER scorer. Cheap to create (the tables are shared and built once); keep one per
/// thread and call [`Scorer::score`] for each text.
pub struct Scorer {
    tables: &'static Tables,
    /// The tokens of each emoji description.
    emoji: &'static EmojiWords,
    /// A description's last word glued to the characters after its emoji ("faceabc").
    glue: String,
    /// The lowercase form of a token with non-ASCII characters.
    lower: String,
    toks: Vec<Tok>,
    sentiments: Vec<f64>,
}

impl Default for Scorer {
    fn default() -> Self {
        Scorer::new()
    }
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer").finish_non_exhaustive()
    }
}

impl Scorer {
    /// A scorer with empty scratch space. The first call in the process parses the lexicons
    /// (a few milliseconds).
    pub fn new() -> Scorer {
        Scorer {
            tables: tables(),
            emoji: emoji_words(),
            glue: String::new(),
            lower: String::new(),
            toks: Vec::with_capacity(64),
            sentiments: Vec::with_capacity(64),
        }
    }

    /// Scores `text` exactly like vaderSentiment 3.3.2's `polarity_scores`.
    pub fn score(&mut self, text: &str) -> Scores {
        let Scorer {
            tables,
            emoji,
            glue,
            lower,
            toks,
            sentiments,
        } = self;
        let tables: &Tables = tables;
        toks.clear();
        let mut words = Words {
            tables,
            emoji: Some(emoji),
            glue,
            lower,
            toks,
        };
        let marks = words.tokenize(text);
        if toks.is_empty() {
            return Scores::ZERO;
        }
        valences(tables, toks, sentiments);
        but_check(tables.ids.but, toks, sentiments);
        score_valence(sentiments, marks.exclamations, marks.questions)
    }
}

/// The emoji loop at the top of `polarity_scores`, literally: each code point that is an emoji
/// key is replaced by its description, preceded by a space unless the previous character was an
/// ASCII space; the character after a description is appended with no space ("😀abc" becomes
/// "grinning faceabc"). The scorer does not rewrite texts (see [`EmojiWords`]); tests check it
/// against this.
#[cfg(test)]
fn replace_emojis(text: &str, tables: &Tables) -> String {
    let emoji = &tables.emoji;
    let mut buf = String::new();
    let mut prev_space = true;
    let mut run_start = 0;
    for (at, c) in text.char_indices() {
        if let Some(description) = emoji.get(c) {
            buf.push_str(&text[run_start..at]);
            if !prev_space {
                buf.push(' ');
            }
            buf.push_str(description);
            prev_space = false;
            run_start = at + c.len_utf8();
        } else {
            prev_space = c == ' ';
        }
    }
    buf.push_str(&text[run_start..]);
    buf
}

/// Python's ASCII whitespace: `\t\n\x0b\x0c\r`, U+001C..U+001F and the space.
#[inline]
fn is_ascii_py_space(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x20)
}

/// 0x80 in each byte of `w` that needs a closer look while scanning a word: ASCII at or below
/// 0x20 (whitespace, or a control character) and the first byte of a multi-byte character
/// (which may be a Unicode space or an emoji). All other bytes just extend the word. Exact per
/// byte.
#[inline]
fn special_bytes(w: u64) -> u64 {
    let gt_20 = (w & !HIGHS) + ONES * (0x7f - 0x20);
    let ascii_le_20 = !(gt_20 | w) & HIGHS;
    let lead = w & (w << 1) & HIGHS;
    ascii_le_20 | lead
}

/// `text.count("!")` and `text.count("?")`, eight bytes at a time.
fn count_marks(bytes: &[u8]) -> Marks {
    let mut exclamations = 0;
    let mut questions = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let w = u64::from_le_bytes(b);
        exclamations += swar_eq(w, b'!').count_ones() as usize;
        questions += swar_eq(w, b'?').count_ones() as usize;
    }
    for &b in chunks.remainder() {
        exclamations += usize::from(b == b'!');
        questions += usize::from(b == b'?');
    }
    Marks {
        exclamations,
        questions,
    }
}

/// The eight bytes of `bytes` at `i`, padded with spaces past the end (so that the end of the
/// text reads as whitespace).
#[inline]
fn load8(bytes: &[u8], i: usize) -> u64 {
    let mut b = [b' '; 8];
    match bytes.get(i..i + 8) {
        Some(chunk) => b.copy_from_slice(chunk),
        None => {
            for (d, s) in b.iter_mut().zip(bytes.get(i..).unwrap_or_default()) {
                *d = *s;
            }
        }
    }
    u64::from_le_bytes(b)
}

/// The "!" and "?" counts of a text (`text.count("!")`, `text.count("?")`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Marks {
    exclamations: usize,
    questions: usize,
}

/// The code point of the character starting at `bytes[i]` (a lead byte of valid UTF-8).
#[inline]
fn decode_at(bytes: &[u8], i: usize) -> u32 {
    let b0 = u32::from(bytes[i]);
    let cont = |k: usize| u32::from(bytes.get(i + k).copied().unwrap_or(0x80) & 0x3f);
    if b0 < 0xe0 {
        ((b0 & 0x1f) << 6) | cont(1)
    } else if b0 < 0xf0 {
        ((b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2)
    } else {
        ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3)
    }
}

/// How a word scan ended.
#[derive(Debug, Clone, Copy)]
struct WordEnd {
    /// Byte offset after the word's last byte.
    end: usize,
    /// Whether the word has non-ASCII characters.
    non_ascii: bool,
    /// The emoji the scan stopped at (its index and length in bytes), if it did.
    emoji: Option<(usize, usize)>,
}

/// Whether a Python whitespace character starts at `bytes[i]`.
#[inline]
fn is_space_at(bytes: &[u8], i: usize) -> bool {
    let b = bytes[i];
    is_ascii_py_space(b) || (b >= 0xc0 && space_len(bytes, i) > 0)
}

/// The emoji starting at `bytes[i]` (index and length), if one does.
#[inline]
fn emoji_at(tables: &Tables, bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let b = bytes[i];
    if b < 0xc0 {
        return None;
    }
    let len = if b < 0xe0 {
        2
    } else if b < 0xf0 {
        3
    } else {
        4
    };
    tables
        .emoji
        .index(decode_at(bytes, i))
        .map(|index| (index, len))
}

/// The tokens of every emoji's description, resolved once, so that scoring a text with emojis
/// needs no rewritten copy of it.
///
/// The reference first rewrites the text, replacing each emoji by its description with a space
/// before it (unless an ASCII space is already there) and none after it. After splitting, that
/// means: the word before an emoji ends at the emoji; the description's words are tokens of
/// their own, except that its last word is glued to whatever non-space characters follow the
/// emoji up to the next whitespace or emoji ("😀abc" gives "grinning", "faceabc"). So the
/// tokens of a description are fixed but for the last one, which only needs resolving when
/// something is glued to it.
pub(crate) struct EmojiWords {
    /// Per emoji, in [`super::lexicon::EmojiTable`] order.
    entries: Vec<EmojiDescription>,
    /// The tokens of all descriptions but their last words.
    toks: Vec<Tok>,
}

/// One emoji's description as tokens.
struct EmojiDescription {
    /// Its tokens in [`EmojiWords::toks`], all words but the last.
    words: std::ops::Range<usize>,
    /// The last word as text (empty if the description ends in whitespace).
    last_word: &'static str,
    /// The last word's token when nothing is glued to it.
    last_tok: Option<Tok>,
    /// The "!" and "?" in the description ("ON! arrow" has one).
    marks: Marks,
}

/// The shared [`EmojiWords`], built on first use.
fn emoji_words() -> &'static EmojiWords {
    static WORDS: OnceLock<EmojiWords> = OnceLock::new();
    WORDS.get_or_init(|| EmojiWords::build(tables()))
}

impl EmojiWords {
    fn build(tables: &Tables) -> EmojiWords {
        let mut lower = String::new();
        let mut glue = String::new();
        let mut toks = Vec::new();
        let mut entries = Vec::with_capacity(tables.emoji.entries().len());
        for &(_, description) in tables.emoji.entries() {
            let split = description
                .char_indices()
                .rfind(|&(_, c)| is_py_space(c))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let (head, last_word) = description.split_at(split);
            let start = toks.len();
            // Descriptions hold no emojis, so no emoji lookup is needed (or possible: this runs
            // while the shared EmojiWords is being built).
            let mut words = Words {
                tables,
                emoji: None,
                glue: &mut glue,
                lower: &mut lower,
                toks: &mut toks,
            };
            words.tokenize(head);
            let mut last = Vec::new();
            let mut words = Words {
                tables,
                emoji: None,
                glue: &mut glue,
                lower: &mut lower,
                toks: &mut last,
            };
            words.tokenize(last_word);
            let bytes = description.as_bytes();
            let marks = Marks {
                exclamations: bytes.iter().filter(|&&b| b == b'!').count(),
                questions: bytes.iter().filter(|&&b| b == b'?').count(),
            };
            entries.push(EmojiDescription {
                words: start..toks.len(),
                last_word,
                last_tok: last.first().copied(),
                marks,
            });
        }
        EmojiWords { entries, toks }
    }
}

/// The tokenizer's working state.
struct Words<'a> {
    tables: &'a Tables,
    /// `None` only while building [`EmojiWords`] (descriptions contain no emojis).
    emoji: Option<&'a EmojiWords>,
    glue: &'a mut String,
    lower: &'a mut String,
    toks: &'a mut Vec<Tok>,
}

impl Words<'_> {
    /// `SentiText._words_and_emoticons` of the text with its emojis replaced, plus everything
    /// the rules later ask of each word, in one pass over the bytes: `text.split()` on Python
    /// whitespace, `_strip_punc_if_word` (strip `string.punctuation` from both ends unless that
    /// leaves two characters or fewer, in which case the word is kept whole, punctuation and
    /// all), each word resolved against the tables and appended to `toks`; returns the "!" and
    /// "?" counts.
    fn tokenize(&mut self, text: &str) -> Marks {
        let bytes = text.as_bytes();
        let n = bytes.len();
        // The marks of the text itself in one SWAR pass; those of emoji descriptions are added
        // per emoji below.
        let mut marks = count_marks(bytes);
        let mut i = 0;
        'words: loop {
            // Skip whitespace.
            loop {
                if i >= n {
                    break 'words;
                }
                let b = bytes[i];
                if is_ascii_py_space(b) {
                    i += 1;
                } else if b >= 0xc0 && space_len(bytes, i) > 0 {
                    i += space_len(bytes, i);
                } else {
                    break;
                }
            }
            let start = i;
            let word = self.scan_word(bytes, i);
            if word.end > start {
                let tok = finish_word(
                    text,
                    start,
                    word.end,
                    word.non_ascii,
                    self.tables,
                    self.lower,
                );
                self.toks.push(tok);
            }
            i = word.end;
            if let Some(emoji) = word.emoji {
                i = self.emojis(text, i, emoji, &mut marks);
            }
        }
        marks
    }

    /// The emoji at byte `i` (`first`: its index and length) and any emojis right after it:
    /// their descriptions' tokens, with the last word of each glued to what follows the emoji
    /// up to the next whitespace or emoji. Returns where the word scan resumes. Kept out of line
    /// so that the loop over plain words stays small.
    #[inline(never)]
    fn emojis(
        &mut self,
        text: &str,
        mut i: usize,
        first: (usize, usize),
        marks: &mut Marks,
    ) -> usize {
        let bytes = text.as_bytes();
        let n = bytes.len();
        let Some(emoji) = self.emoji else {
            return i;
        };
        let mut next_emoji = Some(first);
        while let Some((index, len)) = next_emoji {
            let Some(description) = emoji.entries.get(index) else {
                break;
            };
            marks.exclamations += description.marks.exclamations;
            marks.questions += description.marks.questions;
            self.toks
                .extend_from_slice(&emoji.toks[description.words.clone()]);
            i += len;
            next_emoji = if i < n && !is_space_at(bytes, i) {
                emoji_at(self.tables, bytes, i)
            } else {
                None
            };
            if i >= n || is_space_at(bytes, i) || next_emoji.is_some() {
                // Nothing glued to the last word.
                self.toks.extend(description.last_tok);
                continue;
            }
            // The last word and the characters after the emoji form one word.
            let rest = self.scan_word(bytes, i);
            self.glue.clear();
            self.glue.push_str(description.last_word);
            self.glue.push_str(&text[i..rest.end]);
            let glued = self.glue.as_str();
            let non_ascii = rest.non_ascii || !description.last_word.is_ascii();
            let tok = finish_word(glued, 0, glued.len(), non_ascii, self.tables, self.lower);
            self.toks.push(tok);
            i = rest.end;
            next_emoji = rest.emoji;
        }
        i
    }

    /// Scans a word from `i` (not whitespace) up to the next whitespace, the end, or an emoji
    /// (when emojis are being replaced), eight bytes at a time between special bytes, counting
    /// its "!" and "?".
    #[inline(always)]
    fn scan_word(&self, bytes: &[u8], mut i: usize) -> WordEnd {
        let n = bytes.len();
        let mut non_ascii = false;
        loop {
            let special = special_bytes(load8(bytes, i));
            if special == 0 {
                i += 8;
                continue;
            }
            let j = i + (special.trailing_zeros() / 8) as usize;
            if j >= n {
                return WordEnd {
                    end: n,
                    non_ascii,
                    emoji: None,
                };
            }
            let b = bytes[j];
            i = j + 1;
            match b {
                0..=0x20 if is_ascii_py_space(b) => {
                    return WordEnd {
                        end: j,
                        non_ascii,
                        emoji: None,
                    };
                }
                0xc0.. => {
                    // Continuation bytes are never whitespace, so a word always ends on a char
                    // boundary.
                    if space_len(bytes, j) > 0 {
                        return WordEnd {
                            end: j,
                            non_ascii,
                            emoji: None,
                        };
                    }
                    if self.emoji.is_some()
                        && let Some(emoji) = emoji_at(self.tables, bytes, j)
                    {
                        return WordEnd {
                            end: j,
                            non_ascii,
                            emoji: Some(emoji),
                        };
                    }
                    non_ascii = true;
                }
                // Other control characters belong to the word.
                _ => {}
            }
        }
    }
}

/// `_strip_punc_if_word` on the word `text[start..end]`, then the token resolved.
#[inline(always)]
fn finish_word(
    text: &str,
    start: usize,
    end: usize,
    non_ascii: bool,
    tables: &Tables,
    lower: &mut String,
) -> Tok {
    let bytes = text.as_bytes();
    let (mut s, mut e) = (start, end);
    if is_py_punct(bytes[s]) | is_py_punct(bytes[e - 1]) {
        while s < e && is_py_punct(bytes[s]) {
            s += 1;
        }
        while e > s && is_py_punct(bytes[e - 1]) {
            e -= 1;
        }
        if at_most_two_chars(&bytes[s..e]) {
            (s, e) = (start, end);
        }
    }
    // Stripping only removes ASCII punctuation: both ends sit on char boundaries, and the token
    // is ASCII exactly when its word is.
    resolve(text, s, e, non_ascii, tables, lower)
}

/// Resolves the token `text[s..e]`: `isupper()`, `lower()` looked up in the tables,
/// `negated([lower])`.
#[inline(always)]
fn resolve(
    text: &str,
    s: usize,
    e: usize,
    non_ascii: bool,
    tables: &Tables,
    lower: &mut String,
) -> Tok {
    let bytes = &text.as_bytes()[s..e];
    let len = e - s;
    let (upper, id, apostrophe) = if non_ascii {
        let token = text.get(s..e).unwrap_or_default();
        let id = resolve_non_ascii(token, tables, lower).unwrap_or(NO_ID);
        (py_isupper_chars(token), id, bytes.contains(&b'\''))
    } else if len <= 8 {
        // Most words: one machine word for the key, its hash and its comparison.
        let (word, shape) = Key::short_ascii_at(text.as_bytes(), s, len);
        (
            shape.isupper,
            tables.lookup_short(word, len),
            shape.apostrophe,
        )
    } else if len <= tables.max_key_len
        && let Some((key, shape)) = Key::ascii_lower_at(text.as_bytes(), s, len)
    {
        (shape.isupper, tables.lookup(&key), shape.apostrophe)
    } else {
        // Longer than any key: only its case and "n't" matter.
        let upper =
            bytes.iter().any(u8::is_ascii_uppercase) && !bytes.iter().any(u8::is_ascii_lowercase);
        (upper, NO_ID, bytes.contains(&b'\''))
    };
    // A miss reads the sentinel entry (no flags): no branch on hit or miss.
    let entry = tables.entry(id);
    let mut flags = entry.flags;
    // `"n't" in word.lower()`: only ASCII characters lowercase to 'n', '\'' or 't' (the two
    // non-ASCII characters whose lowercase has ASCII in it give 'k' and 'i'), so a
    // case-insensitive search of the original bytes is exact.
    // Flags set without branches (whether a word is a negation or in caps is unpredictable);
    // only the rare apostrophe search stays conditional.
    let negated = (entry.flags & NEGATE_WORD != 0) | (apostrophe && has_nt(bytes));
    flags |= (u8::from(negated) * NEGATED) | (u8::from(upper) * UPPER);
    Tok {
        lex: entry.lex,
        id,
        flags,
        phrase: entry.phrase,
    }
}

/// The entry id of a token with non-ASCII characters (rare path: full Unicode lowercasing).
#[cold]
fn resolve_non_ascii(token: &str, tables: &Tables, lower: &mut String) -> Option<u32> {
    // With ASCII-only keys (as in 3.3.2), only KELVIN SIGN lowercases into ASCII ("k"); a token
    // with any other non-ASCII character cannot match.
    if tables.ascii_keys && !token.chars().all(|c| c.is_ascii() || c == KELVIN_SIGN) {
        return None;
    }
    // Lowercasing shrinks a string at most threefold (KELVIN SIGN, 3 bytes, becomes "k").
    if token.len() > 3 * tables.max_key_len {
        return None;
    }
    py_lower_into(token, lower);
    tables.find(lower.as_bytes())
}

/// U+212A, the only non-ASCII character whose lowercase is pure ASCII.
const KELVIN_SIGN: char = '\u{212a}';

/// Whether `bytes` contains "n't" ignoring ASCII case.
fn has_nt(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] | 0x20 == b'n' && w[1] == b'\'' && w[2] | 0x20 == b't')
}

/// The loop of `polarity_scores` with `sentiment_valence` inlined: one valence per token.
fn valences(tables: &Tables, toks: &[Tok], sentiments: &mut Vec<f64>) {
    let n = toks.len();
    // Most words carry no valence: start from zeros and fill in the lexicon words.
    sentiments.clear();
    sentiments.resize(n, 0.0);
    let ids = &tables.ids;
    // allcap_differential: some but not all words are ALL CAPS.
    let upper_count = toks.iter().filter(|t| t.has(UPPER)).count();
    let cap_diff = upper_count > 0 && upper_count < n;
    // Bit k set: the word k places back has one of RULE_FLAGS (k = 0 is the word itself).
    let mut rule_window = 0u32;
    for (i, slot) in sentiments.iter_mut().enumerate() {
        let t = toks[i];
        rule_window = (rule_window << 1) | u32::from(t.flags & RULE_FLAGS != 0);
        // Words not in the lexicon, boosters and "kind" of "kind of" carry no valence.
        if t.flags & (IN_LEX | IN_BOOSTER) != IN_LEX
            || (t.id == ids.kind && i + 1 < n && toks[i + 1].id == ids.of)
        {
            continue;
        }
        *slot = if rule_window & 0b1111 == 0 {
            fast_valence(tables, toks, i, cap_diff)
        } else {
            sentiment_valence(tables, toks, i, cap_diff)
        };
    }
}

/// `sentiment_valence` when no booster, negation or rule word is among the word and the three
/// before it: then only ALL-CAPS emphasis and idioms can apply (the general version reduces to
/// this).
#[inline(always)]
fn fast_valence(tables: &Tables, toks: &[Tok], i: usize, cap_diff: bool) -> f64 {
    let t = toks[i];
    let mut valence = t.lex;
    if t.has(UPPER) && cap_diff {
        valence += if valence > 0.0 { C_INCR } else { -C_INCR };
    }
    if i > 2 && !toks[i - 3].has(IN_LEX) {
        valence = special_idioms_check(tables, valence, toks, i);
    }
    valence
}

/// `sentiment_valence` for a token that is in the lexicon.
#[inline]
fn sentiment_valence(tables: &Tables, toks: &[Tok], i: usize, cap_diff: bool) -> f64 {
    let ids = &tables.ids;
    let n = toks.len();
    let t = toks[i];
    let mut valence = t.lex;
    // "no" right before a lexicon word negates it instead of counting as negative itself.
    if t.id == ids.no && i != n - 1 && toks[i + 1].has(IN_LEX) {
        valence = 0.0;
    }
    if (i > 0 && toks[i - 1].id == ids.no)
        || (i > 1 && toks[i - 2].id == ids.no)
        || (i > 2
            && toks[i - 3].id == ids.no
            && (toks[i - 1].id == ids.or || toks[i - 1].id == ids.nor))
    {
        valence = t.lex * N_SCALAR;
    }
    // ALL CAPS among non-caps words. Quirk: a valence of exactly 0 (a "NO" before a lexicon word)
    // takes the `else` branch and becomes -C_INCR.
    if t.has(UPPER) && cap_diff {
        if valence > 0.0 {
            valence += C_INCR;
        } else {
            valence -= C_INCR;
        }
    }
    for start_i in 0..3 {
        if i > start_i && !toks[i - (start_i + 1)].has(IN_LEX) {
            let mut s = scalar_inc_dec(toks[i - (start_i + 1)], valence, cap_diff);
            if start_i == 1 && s != 0.0 {
                s *= 0.95;
            }
            if start_i == 2 && s != 0.0 {
                s *= 0.9;
            }
            valence += s;
            valence = negation_check(ids, valence, toks, start_i, i);
            if start_i == 2 {
                valence = special_idioms_check(tables, valence, toks, i);
            }
        }
    }
    least_check(ids, valence, toks, i)
}

/// `scalar_inc_dec`: the booster or dampener effect of a preceding word.
#[inline(always)]
fn scalar_inc_dec(word: Tok, valence: f64, cap_diff: bool) -> f64 {
    if !word.has(IN_BOOSTER) {
        return 0.0;
    }
    let mut scalar = Entry::booster(word.flags);
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if word.has(UPPER) && cap_diff {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

/// `_negation_check` for the word `start_i + 1` places before the lexicon word at `i`.
#[inline(always)]
fn negation_check(ids: &RuleIds, valence: f64, toks: &[Tok], start_i: usize, i: usize) -> f64 {
    let so_or_this = |k: usize| toks[k].id == ids.so || toks[k].id == ids.this;
    match start_i {
        0 => {
            if toks[i - 1].has(NEGATED) {
                return valence * N_SCALAR;
            }
        }
        1 => {
            if toks[i - 2].id == ids.never && so_or_this(i - 1) {
                return valence * 1.25;
            } else if toks[i - 2].id == ids.without && toks[i - 1].id == ids.doubt {
                return valence;
            } else if toks[i - 2].has(NEGATED) {
                return valence * N_SCALAR;
            }
        }
        _ => {
            // Quirk: the reference's `a and b or c` groups as `(a and b) or c`, so "so"/"this"
            // right before the lexicon word boosts even without "never".
            if (toks[i - 3].id == ids.never && so_or_this(i - 2)) || so_or_this(i - 1) {
                return valence * 1.25;
            } else if toks[i - 3].id == ids.without
                && (toks[i - 2].id == ids.doubt || toks[i - 1].id == ids.doubt)
            {
                return valence;
            } else if toks[i - 3].has(NEGATED) {
                return valence * N_SCALAR;
            }
        }
    }
    valence
}

/// `_special_idioms_check` (called with `i > 2`): a special case around the word replaces the
/// valence; a booster bigram before it ("kind of", "sort of", "just enough") adds to it. The
/// reference joins the words with spaces and looks the strings up; here each word's phrase
/// masks are ANDed, which is the same test.
fn special_idioms_check(tables: &Tables, valence: f64, toks: &[Tok], i: usize) -> f64 {
    let n = toks.len();
    let p = &tables.phrases;
    let m = |k: usize| &toks[k].phrase;
    // Every sequence looked at starts at one of i-3..=i: without a phrase's first word there,
    // nothing can match (the common case).
    if (m(i - 3)[0] | m(i - 2)[0] | m(i - 1)[0] | m(i)[0]) == 0 {
        return valence;
    }
    let two_one = p.two(m(i - 2), m(i - 1));
    let three_two_one = p.three(m(i - 3), m(i - 2), m(i - 1));
    let three_two = p.two(m(i - 3), m(i - 2));
    let sequences = [
        p.two(m(i - 1), m(i)),
        p.three(m(i - 2), m(i - 1), m(i)),
        two_one,
        three_two_one,
        three_two,
    ];
    let mut valence = valence;
    if let Some(v) = sequences.into_iter().find_map(|hits| p.special_value(hits)) {
        valence = v;
    }
    if n - 1 > i
        && let Some(v) = p.special_value(p.two(m(i), m(i + 1)))
    {
        valence = v;
    }
    if n - 1 > i + 1
        && let Some(v) = p.special_value(p.three(m(i), m(i + 1), m(i + 2)))
    {
        valence = v;
    }
    for n_gram in [three_two_one, three_two, two_one] {
        if let Some(b) = p.booster_value(n_gram) {
            valence += b;
        }
    }
    valence
}

/// `_least_check`: "least" before a word negates it, except in "at least" and "very least".
#[inline(always)]
fn least_check(ids: &RuleIds, valence: f64, toks: &[Tok], i: usize) -> f64 {
    let least_before = |k: usize| !toks[k].has(IN_LEX) && toks[k].id == ids.least;
    if i > 1 && least_before(i - 1) {
        let two_before = toks[i - 2].id;
        if two_before != ids.at && two_before != ids.very {
            return valence * N_SCALAR;
        }
    } else if i > 0 && least_before(i - 1) {
        return valence * N_SCALAR;
    }
    valence
}

/// `_but_check`: valences before the first "but" are halved, those after it grow by half.
///
/// Quirk kept: the reference walks the list and finds each value's position with
/// `sentiments.index(value)`, the *first* position holding an equal value at that moment. When a
/// value repeats (two "good"s), the first occurrence is scaled again and the later one not at
/// all. Zeros are skipped: rewriting a zero with a scaled zero changes nothing.
fn but_check(but: u32, toks: &[Tok], sentiments: &mut [f64]) {
    let Some(bi) = toks.iter().position(|t| t.id == but) else {
        return;
    };
    for k in 0..sentiments.len() {
        // Positions >= k are untouched so far, so this is the original value, as in Python.
        let value = sentiments[k];
        if value == 0.0 {
            continue;
        }
        let si = sentiments.iter().position(|&s| s == value).unwrap_or(k);
        if si < bi {
            sentiments[si] = value * 0.5;
        } else if si > bi {
            sentiments[si] = value * 1.5;
        }
    }
}

/// `_punctuation_emphasis`: up to four "!" add 0.292 each; two or three "?" add 0.18 each, more
/// add 0.96.
#[allow(clippy::cast_precision_loss)] // counts are at most 4 or 3 where converted
fn punctuation_emphasis(exclamations: usize, questions: usize) -> f64 {
    let ep_amplifier = exclamations.min(4) as f64 * 0.292;
    let qm_amplifier = if questions > 1 {
        if questions <= 3 {
            questions as f64 * 0.18
        } else {
            0.96
        }
    } else {
        0.0
    };
    ep_amplifier + qm_amplifier
}

/// `normalize` with alpha 15.
fn normalize(score: f64) -> f64 {
    let norm_score = score / (score * score + ALPHA).sqrt();
    norm_score.clamp(-1.0, 1.0)
}

/// `score_valence` for a non-empty valence list, including the final rounding.
#[allow(clippy::cast_precision_loss)] // neu_count is a word count, far below 2^53
fn score_valence(sentiments: &[f64], exclamations: usize, questions: usize) -> Scores {
    // `float(sum(sentiments))`: CPython 3.11 adds left to right from 0 (3.12 switched to a
    // compensated sum, which can move the compound by an ulp). The same loop does
    // `_sift_sentiment_scores`.
    let mut sum_s = 0.0;
    let mut pos_sum = 0.0;
    let mut neg_sum = 0.0;
    let mut neu_count = 0usize;
    for &s in sentiments {
        sum_s += s;
        // Adding 0.0 leaves the sums unchanged (neither is ever -0.0), so these selects are the
        // reference's `if`s without the branches.
        pos_sum += if s > 0.0 { s + 1.0 } else { 0.0 };
        neg_sum += if s < 0.0 { s - 1.0 } else { 0.0 };
        neu_count += usize::from(s == 0.0);
    }
    let punct_emph_amplifier = punctuation_emphasis(exclamations, questions);
    // `sum_s += amp` if positive, `-= amp` if negative (`a - b` is `a + -b` in IEEE), nothing
    // if zero (never -0.0 here): as selects rather than branches.
    sum_s += if sum_s > 0.0 {
        punct_emph_amplifier
    } else if sum_s < 0.0 {
        -punct_emph_amplifier
    } else {
        0.0
    };
    let compound = normalize(sum_s);

    let neg_abs = f64::abs(neg_sum);
    // Adding or subtracting 0.0 leaves either sum as it is (+0.0 stays +0.0): selects again.
    let (pos_more, neg_more) = (pos_sum > neg_abs, pos_sum < neg_abs);
    pos_sum += if pos_more { punct_emph_amplifier } else { 0.0 };
    neg_sum -= if neg_more { punct_emph_amplifier } else { 0.0 };
    let total = pos_sum + f64::abs(neg_sum) + neu_count as f64;
    let pos = f64::abs(pos_sum / total);
    let neg = f64::abs(neg_sum / total);
    let neu = f64::abs(neu_count as f64 / total);
    Scores {
        neg: py_round(neg, 3),
        neu: py_round(neu, 3),
        pos: py_round(pos, 3),
        compound: py_round(compound, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(text: &str) -> (f64, f64, f64, f64) {
        let s = Scorer::new().score(text);
        (s.neg, s.neu, s.pos, s.compound)
    }

    // Expected values printed by vaderSentiment 3.3.2 (the module's own demo sentences).
    #[test]
    fn reference_demo_sentences() {
        assert_eq!(
            score("VADER is smart, handsome, and funny."),
            (0.0, 0.254, 0.746, 0.8316)
        );
        assert_eq!(
            score("VADER is smart, handsome, and funny!"),
            (0.0, 0.248, 0.752, 0.8439)
        );
        assert_eq!(
            score("VADER is VERY SMART, handsome, and FUNNY."),
            (0.0, 0.246, 0.754, 0.9227)
        );
        assert_eq!(score("The book was good."), (0.0, 0.508, 0.492, 0.4404));
        assert_eq!(
            score("At least it isn't a horrible book."),
            (0.0, 0.678, 0.322, 0.431)
        );
        assert_eq!(score("Today SUX!"), (0.779, 0.221, 0.0, -0.5461));
        assert_eq!(score("Not bad at all"), (0.0, 0.513, 0.487, 0.431));
        assert_eq!(
            score("Catch utf-8 emoji such as 💘 and 💋 and 😁"),
            (0.0, 0.583, 0.417, 0.875)
        );
        assert_eq!(
            score("Make sure you :) or :D today!"),
            (0.0, 0.294, 0.706, 0.8633)
        );
    }

    #[test]
    fn empty_and_blank() {
        assert_eq!(score(""), (0.0, 0.0, 0.0, 0.0));
        assert_eq!(score(" \u{3000}\t"), (0.0, 0.0, 0.0, 0.0));
        assert_eq!(score("!!!"), (0.0, 1.0, 0.0, 0.0));
    }

    #[test]
    fn emoji_replacement_spacing() {
        let t = tables();
        assert_eq!(replace_emojis("a😀b", t), "a grinning faceb");
        assert_eq!(replace_emojis("😀😀", t), "grinning face grinning face");
        assert_eq!(replace_emojis("é 😀", t), "é grinning face");
        assert_eq!(replace_emojis("a\u{a0}©x", t), "a\u{a0} copyrightx");
        assert_eq!(replace_emojis("plain é", t), "plain é");
    }

    /// Tokens and marks of `text` the scorer's way (emojis resolved in place) and the
    /// reference's way (the text rewritten first, then split).
    fn both_ways(text: &str) -> ((Vec<Tok>, Marks), (Vec<Tok>, Marks)) {
        let t = tables();
        let (mut glue, mut lower) = (String::new(), String::new());
        let mut direct = Vec::new();
        let mut words = Words {
            tables: t,
            emoji: Some(emoji_words()),
            glue: &mut glue,
            lower: &mut lower,
            toks: &mut direct,
        };
        let direct_marks = words.tokenize(text);
        let rewritten = replace_emojis(text, t);
        let mut reference = Vec::new();
        let mut words = Words {
            tables: t,
            emoji: None,
            glue: &mut glue,
            lower: &mut lower,
            toks: &mut reference,
        };
        let reference_marks = words.tokenize(&rewritten);
        ((direct, direct_marks), (reference, reference_marks))
    }

    #[test]
    fn emojis_in_place_match_the_rewritten_text() {
        let cases = [
            "😀",
            "😀😀",
            "😀 😀",
            "a😀",
            "😀a",
            "a😀b",
            "a 😀 b",
            "a\t😀b",
            "x😀!!",
            "😀?x",
            "good😀great",
            "(😀)",
            "'😀'",
            "😀\u{fe0f}",
            "❤️ love",
            "I ❤️ you",
            "👍🏽",
            "👍🏽 ok",
            "🔛!",
            "🔛 🆙?",
            "GOOD 🔛",
            "NOT 😀 bad",
            "no😀",
            "😀no good",
            "😀\u{a0}x",
            "😀\u{3000}",
            "©2024",
            "a©b®c™",
            "the 💣",
            "kind of 😀",
            "😀 but 😡",
            "⛑good",
            "🕛o'clock",
            "😀\u{200d}😀",
            "\u{1f600}\u{1f3fb}",
            "x😀y😀z",
            "😀abc😀",
            "é😀é",
            "ÉTÉ😀",
        ];
        for text in cases {
            let (direct, reference) = both_ways(text);
            assert_eq!(direct, reference, "{text:?}");
        }
        // Every emoji, alone, glued on both sides and followed by punctuation.
        for &(c, _) in tables().emoji.entries() {
            for text in [
                format!("{c}"),
                format!("ab{c}cd"),
                format!("x {c}!? y"),
                format!("{c}{c}"),
            ] {
                let (direct, reference) = both_ways(&text);
                assert_eq!(direct, reference, "{text:?}");
            }
        }
    }

    #[test]
    fn only_kelvin_sign_lowercases_to_ascii() {
        for c in (0x80..=0x10ffffu32).filter_map(char::from_u32) {
            if c != KELVIN_SIGN {
                assert!(
                    c.to_lowercase().any(|l| !l.is_ascii()),
                    "U+{:04X}",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn marks_are_counted() {
        let text = "!?a!!b???c! ?x!".repeat(5);
        let want = Marks {
            exclamations: text.matches('!').count(),
            questions: text.matches('?').count(),
        };
        for end in 0..text.len() {
            let part = &text.as_bytes()[..end];
            let want_part = Marks {
                exclamations: part.iter().filter(|&&b| b == b'!').count(),
                questions: part.iter().filter(|&&b| b == b'?').count(),
            };
            assert_eq!(count_marks(part), want_part);
        }
        assert_eq!(count_marks(text.as_bytes()), want);
    }

    #[test]
    fn special_bytes_are_exact() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[pos] = b;
                let special = special_bytes(u64::from_le_bytes(bytes));
                let want = b <= 0x20 || b >= 0xc0;
                assert_eq!(special == 0x80u64 << (8 * pos), want, "{b:#x} at {pos}");
                assert_eq!(special & !(0x80u64 << (8 * pos)), 0);
            }
            if b < 0x80 {
                assert_eq!(is_ascii_py_space(b), space_len(&[b], 0) == 1, "{b:#x}");
            }
        }
    }

    #[test]
    fn but_check_first_occurrence_quirk() {
        let but = tables().ids.but;
        let plain = Tok {
            lex: 0.0,
            id: NO_ID,
            flags: 0,
            phrase: [0; 3],
        };
        let but_tok = Tok { id: but, ..plain };
        let toks = [plain, plain, but_tok, plain];
        let mut s = [1.0, 2.0, 0.0, 1.0];
        but_check(but, &toks, &mut s);
        // 1.0 -> 0.5 at 0; 2.0 -> 1.0 at 1; the trailing 1.0 finds position 1 first and halves it.
        assert_eq!(s, [0.5, 0.5, 0.0, 1.0]);
    }
}
