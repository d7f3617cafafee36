//! The VADER 3.3.2 scorer: `SentimentIntensityAnalyzer.polarity_scores`, step for step.
//!
//! The pipeline is the reference's: replace emojis by their descriptions, split into
//! "words and emoticons", give each a valence (lexicon value adjusted by the rules), apply the
//! "but" rule, then sum, amplify by punctuation, normalise and round. Each function below names
//! the reference function it mirrors and keeps its floating-point operations in the same order,
//! so the results are the same doubles, not just close ones.
//!
//! Allocation: a [`Scorer`] owns reusable scratch (token and valence vectors, and two strings
//! for the rare paths: texts with emojis and tokens with non-ASCII characters). They grow to the
//! longest text seen and are then reused, so scoring allocates nothing per text once warm. Tokens
//! are never copied: each is resolved right away into a small `Tok` (its table entry id, flags
//! and values) using a stack buffer for the lowercase form.
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

use super::Scores;
use super::lexicon::{
    HIGHS, IDIOM_WORD, IN_BOOSTER, IN_LEX, Key, NEGATE_WORD, NO_ID, ONES, Phrase, RULE_WORD,
    RuleIds, Tables, swar_eq, tables,
};
use super::pyfloat::py_round;
use super::pytext::{at_most_two_chars, is_py_punct, py_isupper_chars, py_lower_into, space_len};

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
/// Token flags that can make a rule fire on a nearby lexicon word: a token window without any
/// of them leaves the word's valence alone (except for ALL-CAPS emphasis).
const RULE_FLAGS: u8 = IN_BOOSTER | NEGATED | IDIOM_WORD | RULE_WORD;

/// One word or emoticon, resolved against the tables.
#[derive(Debug, Clone, Copy)]
struct Tok {
    /// Lexicon valence (with [`IN_LEX`]).
    lex: f64,
    /// Booster scalar (with [`IN_BOOSTER`]).
    booster: f64,
    /// Entry id of the lowercase form, or [`NO_ID`].
    id: u32,
    /// Entry flags plus [`UPPER`] and [`NEGATED`].
    flags: u8,
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
    /// The text with emojis replaced (only used when it has emojis).
    demoji: String,
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
            demoji: String::new(),
            lower: String::new(),
            toks: Vec::with_capacity(64),
            sentiments: Vec::with_capacity(64),
        }
    }

    /// Scores `text` exactly like vaderSentiment 3.3.2's `polarity_scores`.
    pub fn score(&mut self, text: &str) -> Scores {
        let Scorer {
            tables,
            demoji,
            lower,
            toks,
            sentiments,
        } = self;
        let tables: &Tables = tables;
        // One pass splits, resolves and counts; it stops at the first emoji, in which case the
        // text is rewritten with descriptions (as the reference does first) and the pass resumes
        // at the start of the word holding the emoji: everything before it is unchanged.
        toks.clear();
        let marks = match tokenize(text, 0, Marks::default(), tables, lower, toks, true) {
            Ok(marks) => marks,
            Err(stop) => {
                let text = replace_emojis(text, stop.emoji, demoji, tables);
                match tokenize(text, stop.word, stop.marks, tables, lower, toks, false) {
                    Ok(marks) => marks,
                    // Unreachable: the emoji check is off on the second pass.
                    Err(_) => return Scores::ZERO,
                }
            }
        };
        if toks.is_empty() {
            return Scores::ZERO;
        }
        valences(tables, toks, sentiments);
        but_check(tables.ids.but, toks, sentiments);
        score_valence(sentiments, marks.exclamations, marks.questions)
    }
}

/// The emoji loop at the top of `polarity_scores`, from the first emoji at byte `first`: each
/// code point that is an emoji key is replaced by its description, preceded by a space unless
/// the previous character was an ASCII space; the character after a description is appended
/// with no space ("😀abc" becomes "grinning faceabc"). The reference then calls `.strip()`,
/// which cannot change the tokens or the "!"/"?" counts, so it is skipped.
fn replace_emojis<'a>(text: &str, first: usize, buf: &'a mut String, tables: &Tables) -> &'a str {
    let emoji = &tables.emoji;
    let bytes = text.as_bytes();
    buf.clear();
    buf.push_str(&text[..first]);
    let mut prev_space = first == 0 || bytes[first - 1] == b' ';
    let mut run_start = first;
    for (i, c) in text[first..].char_indices() {
        let at = first + i;
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
    buf.as_str()
}

/// Python's ASCII whitespace: `\t\n\x0b\x0c\r`, U+001C..U+001F and the space.
#[inline]
fn is_ascii_py_space(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x20)
}

/// 0x80 in each byte of `w` that needs a closer look while scanning a word: ASCII at or below
/// 0x20 (whitespace, or a control character), the first byte of a multi-byte character (which
/// may be a Unicode space or an emoji), '!' and '?' (counted). All other bytes just extend the
/// word. Exact per byte.
#[inline]
fn special_bytes(w: u64) -> u64 {
    let gt_20 = (w & !HIGHS) + ONES * (0x7f - 0x20);
    let ascii_le_20 = !(gt_20 | w) & HIGHS;
    let lead = w & (w << 1) & HIGHS;
    ascii_le_20 | lead | swar_eq(w, b'!') | swar_eq(w, b'?')
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
#[derive(Debug, Clone, Copy, Default)]
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

/// Where [`tokenize`] stopped on finding an emoji.
#[derive(Debug, Clone, Copy)]
struct EmojiStop {
    /// Byte offset of the emoji.
    emoji: usize,
    /// Byte offset of the word holding it: tokens before it are final.
    word: usize,
    /// The marks counted before `word`.
    marks: Marks,
}

/// `SentiText._words_and_emoticons` plus everything the rules later ask of each word, in one
/// pass over the bytes from `from` (a word start or 0): `text.split()` on Python whitespace,
/// `_strip_punc_if_word` (strip `string.punctuation` from both ends unless that leaves two
/// characters or fewer, in which case the word is kept whole, punctuation and all), the word
/// resolved against the tables and appended to `toks`, and the "!"/"?" counts added to `marks`.
/// With `find_emoji`, stops at the first emoji.
fn tokenize(
    text: &str,
    from: usize,
    mut marks: Marks,
    tables: &Tables,
    lower: &mut String,
    toks: &mut Vec<Tok>,
    find_emoji: bool,
) -> Result<Marks, EmojiStop> {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut i = from;
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
        // A word: up to the next whitespace, eight bytes at a time between special bytes.
        let start = i;
        let marks_before = marks;
        let mut non_ascii = false;
        loop {
            let special = special_bytes(load8(bytes, i));
            if special == 0 {
                i += 8;
                continue;
            }
            let j = i + (special.trailing_zeros() / 8) as usize;
            if j >= n {
                i = n;
                break;
            }
            let b = bytes[j];
            i = j + 1;
            match b {
                b'!' => marks.exclamations += 1,
                b'?' => marks.questions += 1,
                0..=0x20 if is_ascii_py_space(b) => {
                    i = j;
                    break;
                }
                0xc0.. => {
                    // Continuation bytes are never whitespace, so a word always ends on a char
                    // boundary.
                    if space_len(bytes, j) > 0 {
                        i = j;
                        break;
                    }
                    non_ascii = true;
                    if find_emoji && tables.emoji.contains(decode_at(bytes, j)) {
                        return Err(EmojiStop {
                            emoji: j,
                            word: start,
                            marks: marks_before,
                        });
                    }
                }
                // Other control characters belong to the word.
                _ => {}
            }
        }
        let (mut s, mut e) = (start, i);
        if is_py_punct(bytes[s]) || is_py_punct(bytes[e - 1]) {
            while s < e && is_py_punct(bytes[s]) {
                s += 1;
            }
            while e > s && is_py_punct(bytes[e - 1]) {
                e -= 1;
            }
            if at_most_two_chars(&bytes[s..e]) {
                (s, e) = (start, i);
            }
        }
        // Stripping only removes ASCII punctuation: both ends sit on char boundaries, and the
        // token is ASCII exactly when its word is.
        toks.push(resolve(text, s, e, non_ascii, tables, lower));
    }
    Ok(marks)
}

/// Resolves the token `text[s..e]`: `isupper()`, `lower()` looked up in the tables,
/// `negated([lower])`.
#[inline]
fn resolve(
    text: &str,
    s: usize,
    e: usize,
    non_ascii: bool,
    tables: &Tables,
    lower: &mut String,
) -> Tok {
    let bytes = &text.as_bytes()[s..e];
    let (upper, id, apostrophe) = if non_ascii {
        let token = text.get(s..e).unwrap_or_default();
        let id = resolve_non_ascii(token, tables, lower);
        (py_isupper_chars(token), id, bytes.contains(&b'\''))
    } else if let Some((key, shape)) = Key::ascii_lower_at(text.as_bytes(), s, e - s) {
        let id = if e - s <= tables.max_key_len {
            tables.find_key(&key)
        } else {
            None
        };
        (shape.upper && !shape.lower, id, shape.apostrophe)
    } else {
        // Longer than any key: only its case and "n't" matter.
        let upper =
            bytes.iter().any(u8::is_ascii_uppercase) && !bytes.iter().any(u8::is_ascii_lowercase);
        (upper, None, bytes.contains(&b'\''))
    };
    let mut tok = Tok {
        lex: 0.0,
        booster: 0.0,
        id: id.unwrap_or(NO_ID),
        flags: 0,
    };
    if let Some(id) = id {
        let entry = tables.entry(id);
        tok.lex = entry.lex;
        tok.booster = entry.booster;
        tok.flags = entry.flags;
        if entry.flags & NEGATE_WORD != 0 {
            tok.flags |= NEGATED;
        }
    }
    // `"n't" in word.lower()`: only ASCII characters lowercase to 'n', '\'' or 't' (the two
    // non-ASCII characters whose lowercase has ASCII in it give 'k' and 'i'), so a
    // case-insensitive search of the original bytes is exact.
    if apostrophe && has_nt(bytes) {
        tok.flags |= NEGATED;
    }
    if upper {
        tok.flags |= UPPER;
    }
    tok
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
    sentiments.clear();
    let n = toks.len();
    let ids = &tables.ids;
    // allcap_differential: some but not all words are ALL CAPS.
    let upper_count = toks.iter().filter(|t| t.has(UPPER)).count();
    let cap_diff = upper_count > 0 && upper_count < n;
    for i in 0..n {
        let t = toks[i];
        // Boosters and "kind" of "kind of" carry no valence of their own.
        if t.has(IN_BOOSTER) || (i + 1 < n && t.id == ids.kind && toks[i + 1].id == ids.of) {
            sentiments.push(0.0);
            continue;
        }
        if !t.has(IN_LEX) {
            sentiments.push(0.0);
            continue;
        }
        sentiments.push(sentiment_valence(tables, toks, i, cap_diff));
    }
}

/// `sentiment_valence` for a token that is in the lexicon.
fn sentiment_valence(tables: &Tables, toks: &[Tok], i: usize, cap_diff: bool) -> f64 {
    let ids = &tables.ids;
    let n = toks.len();
    let t = toks[i];
    // Fast path: no booster, negation, rule or idiom word from three before to two after (the
    // widest window any rule looks at), so only ALL-CAPS emphasis can apply.
    let window = &toks[i.saturating_sub(3)..(i + 3).min(n)];
    if window.iter().all(|w| w.flags & RULE_FLAGS == 0) {
        return if t.has(UPPER) && cap_diff {
            if t.lex > 0.0 {
                t.lex + C_INCR
            } else {
                t.lex - C_INCR
            }
        } else {
            t.lex
        };
    }
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
#[inline]
fn scalar_inc_dec(word: Tok, valence: f64, cap_diff: bool) -> f64 {
    if !word.has(IN_BOOSTER) {
        return 0.0;
    }
    let mut scalar = word.booster;
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

/// The first of `phrases` spelled by `words`, if any.
#[inline]
fn phrase_value(phrases: &[Phrase], words: &[u32]) -> Option<f64> {
    phrases.iter().find(|p| p.matches(words)).map(|p| p.value)
}

/// `_special_idioms_check` (called with `i > 2`): a special case around the word replaces the
/// valence; a booster bigram before it ("kind of", "sort of", "just enough") adds to it.
fn special_idioms_check(tables: &Tables, valence: f64, toks: &[Tok], i: usize) -> f64 {
    let n = toks.len();
    // Fast exit: no word in the window can be part of any phrase.
    let window_end = (i + 3).min(n);
    if !toks[i - 3..window_end].iter().any(|t| t.has(IDIOM_WORD)) {
        return valence;
    }
    let w = |k: usize| toks[k].id;
    let mut valence = valence;
    let one_zero = [w(i - 1), w(i)];
    let two_one_zero = [w(i - 2), w(i - 1), w(i)];
    let two_one = [w(i - 2), w(i - 1)];
    let three_two_one = [w(i - 3), w(i - 2), w(i - 1)];
    let three_two = [w(i - 3), w(i - 2)];
    let sequences: [&[u32]; 5] = [
        &one_zero,
        &two_one_zero,
        &two_one,
        &three_two_one,
        &three_two,
    ];
    for seq in sequences {
        if let Some(v) = phrase_value(&tables.special_cases, seq) {
            valence = v;
            break;
        }
    }
    if n - 1 > i
        && let Some(v) = phrase_value(&tables.special_cases, &[w(i), w(i + 1)])
    {
        valence = v;
    }
    if n - 1 > i + 1
        && let Some(v) = phrase_value(&tables.special_cases, &[w(i), w(i + 1), w(i + 2)])
    {
        valence = v;
    }
    let n_grams: [&[u32]; 3] = [&three_two_one, &three_two, &two_one];
    for n_gram in n_grams {
        if let Some(b) = phrase_value(&tables.booster_ngrams, n_gram) {
            valence += b;
        }
    }
    valence
}

/// `_least_check`: "least" before a word negates it, except in "at least" and "very least".
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
    // compensated sum, which can move the compound by an ulp).
    let mut sum_s = 0.0;
    for &s in sentiments {
        sum_s += s;
    }
    let punct_emph_amplifier = punctuation_emphasis(exclamations, questions);
    if sum_s > 0.0 {
        sum_s += punct_emph_amplifier;
    } else if sum_s < 0.0 {
        sum_s -= punct_emph_amplifier;
    }
    let compound = normalize(sum_s);

    // _sift_sentiment_scores
    let mut pos_sum = 0.0;
    let mut neg_sum = 0.0;
    let mut neu_count = 0usize;
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu_count += 1;
        }
    }
    let neg_abs = f64::abs(neg_sum);
    if pos_sum > neg_abs {
        pos_sum += punct_emph_amplifier;
    } else if pos_sum < neg_abs {
        neg_sum -= punct_emph_amplifier;
    }
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
        let mut buf = String::new();
        let mut replace = |text: &str| {
            let mut lower = String::new();
            let mut toks = Vec::new();
            match tokenize(text, 0, Marks::default(), t, &mut lower, &mut toks, true) {
                Ok(_) => text.to_string(),
                Err(stop) => replace_emojis(text, stop.emoji, &mut buf, t).to_string(),
            }
        };
        assert_eq!(replace("a😀b"), "a grinning faceb");
        assert_eq!(replace("😀😀"), "grinning face grinning face");
        assert_eq!(replace("é 😀"), "é grinning face");
        assert_eq!(replace("a\u{a0}©x"), "a\u{a0} copyrightx");
        assert_eq!(replace("plain é"), "plain é");
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
    fn special_bytes_are_exact() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[pos] = b;
                let special = special_bytes(u64::from_le_bytes(bytes));
                let want = b <= 0x20 || b >= 0xc0 || b == b'!' || b == b'?';
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
            booster: 0.0,
            id: NO_ID,
            flags: 0,
        };
        let but_tok = Tok { id: but, ..plain };
        let toks = [plain, plain, but_tok, plain];
        let mut s = [1.0, 2.0, 0.0, 1.0];
        but_check(but, &toks, &mut s);
        // 1.0 -> 0.5 at 0; 2.0 -> 1.0 at 1; the trailing 1.0 finds position 1 first and halves it.
        assert_eq!(s, [0.5, 0.5, 0.0, 1.0]);
    }
}
