#!/usr/bin/env python3
"""Builds the VADER oracle: varied social texts scored by the reference, vaderSentiment 3.3.2.

Writes oracle.jsonl next to this script (or to --out): one JSON object per line,

    {"text": ..., "neg": ..., "neu": ..., "pos": ..., "compound": ..., "tsv": ..., "kind": ...}

where the four numbers are `SentimentIntensityAnalyzer().polarity_scores(text)`, "tsv" is
`str()` of each joined by tabs (the exact output `cluetrain sentiment` must print) and "kind"
names the generator of the text ("tweet" marks the realistic posts the benchmark samples).
crates/enrich/tests/vader_oracle.rs checks the Rust scorer against every line.

The texts are deterministic (fixed seed, no clock, no hash-order dependence): hand-written
cases for every rule of the algorithm, then generated ones that combine rule words, lexicon
words, emoticons, emoji, handles, hashtags, URLs, odd case and whitespace, non-English text and
very long texts. Run it with `cargo xtask vader-oracle`, which provides a virtual environment
with the reference installed.
"""

import argparse
import importlib.metadata
import json
import os
import random
import sys

from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

REFERENCE_VERSION = "3.3.2"
SEED = 20261122

# --------------------------------------------------------------------------------------------
# Hand-written cases: each rule of vaderSentiment.py, its edges and its quirks.
# --------------------------------------------------------------------------------------------

HANDWRITTEN = [
    # The module's own demo sentences.
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "Most automated sentiment analysis tools are shit.",
    "With VADER, sentiment analysis is the shit!",
    "Other sentiment analysis tools can be quite bad.",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "Without a doubt, excellent idea.",
    "Roger Dodger is one of the most compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Not such a badass after all.",
    "Without a doubt, an excellent idea.",
    "It was one of the worst movies I've seen, despite good reviews.",
    "Unbelievably bad acting!!",
    "Poor direction.",
    "VERY poor production.",
    "The movie was bad.",
    "Very bad movie.",
    "VERY BAD movie!",
    "balloons", "cake", "candles", "happy birthday", "friends", "laughing", "smiling", "party",
    "riot", "fire", "fight", "blood", "mob", "war", "police", "tear gas",
    # Empty, blank and punctuation-only.
    "", " ", "  ", "\t", "\n", "\r\n", " \u00a0 ", "\u3000", "\u2028", "\u2029", "\x1c\x1d\x1e\x1f",
    "\x85", "\u200b", "\u200b good", "good\u200bgreat", "\ufeffgood", ".", "...", "!", "!!", "!!!",
    "!!!!", "!!!!!", "!!!!!!!!!!!!", "?", "??", "???", "????", "?!", "!?", "?!?!?!", "''", "--",
    "-", "*", "#", "@", "@@", "##", "()", "(!)", "\"\"", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    # "no" as negation vs lexicon word.
    "no", "No", "NO", "no.", "No!", "no good", "no no", "no no no", "No good.", "no, good",
    "NO good", "no GOOD", "NO GOOD", "no good at all", "there is no love here", "no love lost",
    "no problem", "No problem!", "no problems at all", "no worries", "no thanks", "no fun",
    "it is no fun", "no real fun", "no very good ideas", "no fun or joy", "no fun nor joy",
    "no idea or plan", "no a b good", "no a or good", "no a nor good", "no a and good",
    "no, no, no, that is bad", "not no good", "no way this is good", "No. Just no.",
    "I said no", "say no to drugs", "no hate", "no hate no fear", "NO hate", "nO HATE please",
    # Negations (NEGATE words and n't).
    "not good", "not bad", "NOT good", "not GOOD", "isn't good", "isnt good", "ISN'T good",
    "isn’t good", "doesn't work well", "don't like it", "dont like it", "didn't love it",
    "wasn't happy", "weren't happy", "won't help", "wont help", "wouldn't recommend",
    "can't stand it", "cannot recommend", "aint good", "ain't good", "never good",
    "never been good", "never ever good", "nothing good", "nowhere good", "none good",
    "nope good", "neither good", "nor good", "rarely good", "seldom good", "despite good",
    "without good", "uh-uh good", "uhuh good", "not very good", "not so good",
    "not that good", "not really good", "not at all good", "not the best", "hardly good",
    "barely good", "naïven't good", "Xn'T good", "hasn'tgood good", "it's not not good",
    "not good not bad", "not bad, not bad at all", "I do not dislike it", "don't hate",
    "couldn't be happier", "couldnt be happier", "it's not that I hate it",
    "shouldn't've been sad", "mightn't be great", "mustn't be sad", "needn't worry",
    "daren't hope", "oughtn't cry", "shan't smile", "hadn't laughed", "hasn't cried",
    "haven't won", "not, good", "(not) good", "not... good",
    # "never so" / "never this" / "without doubt".
    "never so good", "never so bad", "never this good", "never this bad", "Never SO good",
    "never so very good", "never so much fun", "never so happy in my life",
    "it was never so good", "never been so good", "never been this good", "never a good idea",
    "so good", "this good", "it is so good", "I am so happy", "so so good", "this is good",
    "it was this good", "a this b good", "so a b good", "a so b good", "x this y good",
    "without doubt good", "without a doubt good", "without doubt, good", "without any doubt good",
    "without a b doubt good", "doubt good", "without doubt", "no doubt good",
    # "least".
    "least good", "the least good", "at least good", "very least good", "the very least good",
    "at the least good", "least", "least of all good", "not in the least happy",
    "LEAST good", "at LEAST good", "Least good", "the least bad", "at least bad",
    # "but".
    "good but bad", "bad but good", "good, but bad", "good but", "but good", "but", "BUT",
    "But good", "good BUT bad", "good good but good", "good but good good", "happy but happy",
    "happy happy but sad sad", "great great great but great", "love but hate but love",
    "but but good", "nice but, nice", "nice, but... nice!", "good bad but bad good",
    "I love it but it is terrible", "not good but not bad", "good but not bad",
    "sad happy but happy sad", "excellent excellent but excellent terrible excellent",
    "great! but great? but great.", "nice nice nice nice but", "but nice nice nice nice",
    # Boosters and dampeners.
    "very good", "very bad", "VERY good", "very GOOD", "VERY GOOD", "very very good",
    "very very very good", "very very very very good", "extremely good", "extremely bad",
    "really really bad", "so very good", "most excellent", "more happy", "less happy",
    "slightly good", "somewhat bad", "barely bad", "almost good", "hardly bad",
    "kind of good", "kind of bad", "Kind Of good", "KIND OF good", "kind of", "kind",
    "of kind good", "kinda good", "kindof good", "kind-of good", "sort of good",
    "sort of bad", "sorta good", "sortof good", "sort-of good", "just enough good",
    "it is just enough good", "it was kind of good", "it was sort of bad", "a b kind of good",
    "a kind of b good", "kind of kind of good", "sort of kind of good", "it was just enough fun",
    "x just enough y good", "friggin awesome", "FRIGGIN awesome", "fucking great",
    "effing terrible", "hella good", "uber cool", "totally awesome", "total disaster",
    "utterly terrible", "incredibly good", "deeply sad", "absolutely awful",
    "completely wrong", "entirely happy", "especially good", "exceptionally bad",
    "fabulously rich", "flipping great", "frickin sweet", "frackin cool", "fuggin great",
    "greatly appreciated", "highly recommend", "hugely successful", "intensely boring",
    "majorly cool", "particularly nice", "purely evil", "quite good", "remarkably bad",
    "substantially better", "thoroughly enjoyed", "tremendously happy", "unbelievably good",
    "unusually kind", "utter failure", "marginally better", "occasionally funny",
    "partly sunny", "scarcely happy", "slight improvement", "little joy", "scarce hope",
    "major win", "considerable damage", "enormous success", "extreme joy", "incredible work",
    "tremendous help", "decidedly bad", "amazingly bad", "awfully good", "fully satisfied",
    "very", "VERY", "so", "SO", "very very", "very kind", "so kind", "kind very",
    "good very", "good so", "very, good", "very... good", "very! good",
    # Idioms (SPECIAL_CASES) and sentiment-laden idioms (not used by 3.3.2).
    "the bomb", "this is the bomb", "that movie is the bomb", "this is the bomb!",
    "you are the bomb dot com", "the shit", "it is the shit", "that is the shit man",
    "THE SHIT", "this is THE BOMB", "bad ass", "what a bad ass", "such a bad ass dude",
    "badass", "what a badass", "bus stop", "at the bus stop", "waiting at the bus stop sad",
    "yeah right", "oh yeah right", "well yeah right, sure", "kiss of death",
    "it was the kiss of death", "to die for", "a cake to die for", "this cake is to die for",
    "beating heart", "my beating heart", "with a beating heart", "a b c the bomb",
    "a b the bomb c", "a b c d the bomb", "a b c bad ass", "a b c yeah right",
    "a b c kiss of death", "a b c to die for", "x y z beating heart", "good the bomb",
    "no the bomb", "the bomb the bomb", "cut the mustard", "hand to mouth", "back handed",
    "blow smoke", "blowing smoke", "upper hand", "break a leg", "cooking with gas",
    "in the black", "in the red", "on the ball", "under the weather",
    "he will cut the mustard", "living hand to mouth", "break a leg tonight!",
    # ALL CAPS emphasis.
    "GOOD", "good GOOD", "GOOD good", "I LOVE it", "I HATE you", "I HATE you so much",
    "ALL CAPS TEXT IS HERE", "ALL CAPS GREAT TEXT", "LOVE", "HATE", "I love IT", "OMG love",
    "LOL", "lol", "LoL", "Lol", "LMAO", "lmao", "WTF", "wtf", "OMG", "omg", "FML", "fml",
    "A good", "I good", "GOOD!", "GOOD?", "GREAT GREAT great", "great GREAT GREAT",
    "AWESOME stuff", "Awesome Stuff", "aWeSoMe sTuFf", "gOoD", "gOOD", "Good", "GOOd",
    "This Is Good", "THIS IS GOOD", "this is GOOD", "NO bad", "VERY bad", "not BAD",
    "NOT BAD", "NOT bad", "never SO good", "KIND of good", "SORT OF bad",
    "ÉTÉ GOOD", "été GOOD", "ÉTÉ good", "CAFÉ good", "Σ GOOD", "ΟΔΟΣ good", "ǅ good",
    "GOOD ǅ", "ǅ GOOD", "ª GOOD", "Ⅻ good", "ⅻ GOOD", "ⓐ GOOD", "Ⓐ good", "123 GOOD",
    "1ST GOOD", "GOOD 123", "Kelvin \u212aind of good", "\u212aIND OF GOOD", "\u212a good",
    "İstanbul good", "İSTANBUL GOOD", "istanbul İYİ", "GOOD AǅB", "AǅB GOOD good",
    "ÉǅÉ GOOD", "GOOD ᾈΑ", "GOOD ΑᾈΑ nice", "LOVE Aǲ", "Ǆǅǆ GREAT", "ÀÉÎ GREAT great",
    # Punctuation emphasis.
    "good!", "good!!", "good!!!", "good!!!!", "good!!!!!", "good!!!!!!!!!!", "bad!", "bad!!!",
    "good?", "good??", "good???", "good????", "good?????", "bad??", "bad???", "bad????",
    "good!?", "good?!?", "good!!!???", "bad!!!????", "good ! ! ! !", "good ? ?", "? good ?",
    "good. good! good? good!! good??", "neutral words only!!!", "table chair!!!", "table???",
    "!good", "!!good!!", "?good?", "good!bad!", "good...", "good,", "good;", "(good)",
    "[good]", "{good}", "'good'", "\"good\"", "`good`", "*good*", "_good_", "~good~",
    "good!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "?!?!?!?!?! great ?!?!?!",
    # Words of two characters or fewer keep their punctuation.
    "ok", "ok!", "OK!", "ok.", "(ok)", "ok?", "!ok!", "no!", "lol!", "xd", "xd!", "XD", "XD!",
    "xD", "xd.", "ha", "ha!", "haha!", "hahaha!!!", "a!", "I!", "<3", "</3", "<3!", "<3<3",
    ":)", ":(", ":-)", ":-(", ":D", ":d", ":P", ":p", ";)", ";-)", ":'(", ":')", ":/", ":-/",
    ":|", ":-|", "=)", "=(", "D:", "D=", "d:", "d=", "xp", "XP", "x-p", "X-P", "x-d", "X-D",
    "^_^", "^^", "-_-", "O_o", "o_O", "o.O", "O.o", "o.o", ">:(", ">:)", "B)", "8)", ":*",
    ":-*", ":Þ", ":þ", ":-Þ", ":-þ", "(:", "):", "(-:O", "(:O", ":o", ":O", "=D", "=-D",
    ";D", "( '}{' )", "can't stand", "fed up", "screwed up", "I am fed up", "I can't stand it",
    "happy :)", "sad :(", "good :) :) :)", "bad :( :(", "meh :/", "great <3 <3",
    "i love u <3", ":):):)", ":) good", "good:)", "good :)!", "(: good", ":)) great",
    "lol :P", "xD xD", "smile :-) again", "wink ;-)", "^_^ cute", "T_T", "TT_TT", ";_;",
    # Emoji, alone and mixed.
    "😀", "😁", "😂", "🤣", "😍", "😡", "😭", "😢", "👍", "👎", "❤", "❤️", "♥", "♥️", "💔",
    "🔥", "💯", "🙏", "🎉", "😀😀😀", "😀 😀 😀", "good😀", "😀good", "good 😀", "😀 good",
    "bad😡bad", "I ❤ you", "I ❤️ you", "I ♥ NY", "👍🏽", "👍🏽 thanks", "👨‍👩‍👧", "🏳️‍🌈",
    "🇫🇷", "🇺🇸 great", "☺", "☺️", "☹", "☹️", "☠", "☠️", "©", "®", "™", "‼", "⁉", "ℹ",
    "©good", "good®", "🔛 good", "🆙 good", "🔛🔛🔛", "🆙!", "⛑ helmet", "🕛 o'clock",
    "😀\t😀", "😀\u00a0😀", "a 😀b", "a😀 b", "😀  😀", " 😀", "😀 ", "🙂🙃", "🤔 hmm",
    "Love it 😍😍😍!!!", "Worst service ever 😡😡", "ok 👌", "party 🎉🎊🥳", "💩 product",
    "🍕🍔🍟", "🐶🐱", "⚽ goal!!!", "💘 and 💋 and 😁", "no 😀", "not 😍", "very 😍",
    "😍 but 😡", "😡 but 😍", "the 💣", "kind of 😀", "❤❤❤❤❤", "💔💔", "😭😭😭 I'm so sad",
    "\U0001f600\U0001f3fb", "\U0001f44d\u200d\U0001f44d", "\U0001faf6", "\U0001f979",
    # URLs, handles, hashtags.
    "@acme thanks! #love", "@acme your app is broken #fail", "#fail", "#love", "#happy",
    "#sad #angry", "#NotGood", "#good", "# good", "@good", "@ good", "@love you",
    "http://t.co/abc good", "https://example.com/great?x=1 bad", "check https://x.co/h8 :)",
    "www.great.com", "great.com", "good.bad", "good/bad", "good-bad", "good_bad", "good&bad",
    "@acme @support why is my order late???", "@user1 @user2 LOL", "RT @acme: great news!",
    "RT @news: terrible accident #breaking", "email me at hate@example.com",
    "@acme I love it but the delivery was late :(", "#blessed #grateful #happy",
    "#NoFilter", "#TBT", "#MondayMotivation great day", "@acme_help pls help!!!",
    "https://t.co/xyz", "http://", "https://a.b/c?d=e&f=g#h", "<a href='x'>good</a>",
    # Non-English.
    "Je suis surpris de voir comment VADER est incroyablement utile !",
    "Ich bin überrascht zu sehen, nur wie erstaunlich nützlich VADER!",
    "Me sorprende ver sólo cómo increíblemente útil VADER!",
    "Sono sorpreso di vedere solo come incredibilmente utile VADER è!",
    "Я удивлен увидеть, как раз как удивительно полезно ВЕЙДЕРА!",
    "私はちょうどどのように驚くほど役に立つベイダーを見て驚いています!",
    "أنا مندهش لرؤية فقط كيف مثير للدهشة فيدر فائدة!",
    "我很惊讶地看到VADER是如此有用!", "我很驚訝地看到VADER是如此有用!",
    "c'est super bien", "très bon", "TRÈS BON", "sehr gut", "SEHR GUT", "muy bueno", "no bueno",
    "no es bueno", "não é bom", "это хорошо", "ЭТО ХОРОШО", "это ПЛОХО", "καλό", "ΚΑΛΌ",
    "ΟΔΟΣ", "οδος", "좋아요", "좋아요!!!", "अच्छा है", "बहुत अच्छा", "iyi değil", "İYİ DEĞİL",
    "הכל טוב", "خوب است", "ดีมาก", "tốt lắm", "bardzo dobrze", "dobrze :)", "hyvä", "jó",
    "good 好", "好 good", "好好好", "love ❤ amour", "je t'aime", "I'm sooo happyyy",
    "ﬁne", "ﬁne good", "Ｇｏｏｄ", "ＧＯＯＤ good", "ｇｏｏｄ", "ɢᴏᴏᴅ", "𝐠𝐨𝐨𝐝", "𝐆𝐎𝐎𝐃 good",
    "gооd", "cafe\u0301 good", "GOOD\u0301", "good\u0301", "g\u0308ood",
    # Mixed-case and tricky tokens.
    "Good Bad Ugly", "gOOD bAD", "HAPPY sad", "Happy SAD", "sAD", "HaPpY", "HAPPY!", "HAPPY?",
    "WOW", "Wow", "wow", "WoW!!!", "YES", "yes", "Yes!", "YES!!!", "NO!!!", "No!!!",
    "I'M SO HAPPY", "I'm SO happy", "i'm so happy", "SO happy", "so HAPPY", "SO HAPPY",
    "NOT happy", "not HAPPY", "NOT HAPPY AT ALL", "DON'T like", "don't LIKE", "DON'T LIKE",
    "can't", "CAN'T", "won't", "WON'T stop", "it's", "IT'S GREAT", "it's great",
    "a", "I", "A", "an", "the", "of", "to", "is", "a a a", "I I I",
    "goodgood", "good-good", "good.good", "good,good", "good!good", "good?good",
    "good\tgood", "good\ngood", "good\r\ngood", "good\x0bgood", "good\x0cgood",
    "good\x1cgood", "good\x85good", "good\u00a0good", "good\u1680good", "good\u2000good",
    "good\u200agood", "good\u2028good", "good\u202fgood", "good\u205fgood", "good\u3000good",
    "good\u180egood", "good\u200bgood", "good\u2060good", "good\ufeffgood", "good\x00",
    "\x00good", "no\x00 good", "good\x00\x00 day", "\x7fgood", "good\x08",
]


def long_texts(rng, pool):
    """Very long texts: hundreds of tweets joined, a single huge token, long runs."""
    out = []
    for size in (50, 120, 300, 600):
        out.append(" ".join(rng.choice(pool) for _ in range(size)))
    out.append("good " * 2000)
    out.append("bad! " * 1500 + "but " + "great " * 1500)
    out.append("a" * 20000)
    out.append("GOOD" * 5000)
    out.append("!" * 10000)
    out.append("?" * 10000)
    out.append("😀" * 3000)
    out.append(("not so good but kind of the bomb " * 400).strip())
    out.append("no " * 3000 + "good")
    out.append(" ".join(["love"] * 1000 + ["but"] + ["hate"] * 1000))
    out.append("\u3000".join(["happy"] * 2000))
    return out


# --------------------------------------------------------------------------------------------
# Generated texts.
# --------------------------------------------------------------------------------------------

FILLER = (
    "the a an my your our their this that it its is was are were be been i you we they he she "
    "me him her us them order delivery service app update product support team store price "
    "phone account refund package today yesterday tomorrow again still just really also "
    "and or with for from on at in to of by about after before when why how what who "
    "customer experience people thing stuff time day week month year brand company guys"
).split()

RULE_WORDS = (
    "no not never so this without doubt least at very kind of sort just enough but or nor "
    "the bomb shit bad ass bus stop yeah right kiss death to die for beating heart "
    "isn't don't can't won't aint nope nothing rarely despite uh-uh kinda sorta "
    "extremely really most more less barely hardly slightly somewhat almost"
).split()

EMOTICONS = (
    ":) :( :-) :-( :D :P ;) ;-) :'( :/ :-/ :| =) =( D: xD XD xd <3 </3 ^_^ -_- O_o o.O >:( :* "
    ":Þ :þ (: ): =D ;D 8) B) :o :O T_T"
).split()

HANDLES = ["@acme", "@acme_help", "@AcmeSupport", "@user123", "@jane_doe", "@Bob", "@x"]
HASHTAGS = ["#fail", "#love", "#happy", "#sad", "#blessed", "#NotGood", "#AcmeFail", "#win",
            "#worst", "#best", "#TBT", "#good", "#bad", "#ad"]
URLS = ["http://t.co/abc123", "https://t.co/Xy9", "https://acme.example/status/1?x=1",
        "www.example.com", "http://bit.ly/great", "https://example.org/bad-news"]
ENDINGS = ["", "", "", ".", "!", "!!", "!!!", "?", "??", "???", "?!", "...", ",", "!!!!!",
           "????", "!?!?", " :)", " :(", " lol", " #fail", " <3"]
FOREIGN = ("très bon mauvais sehr gut schlecht muy bueno malo это хорошо плохо 好 不好 "
           "いいね だめ 좋아 나빠 καλό κακό İyi kötü ÇOK ÉTÉ Über Straße ΟΔΟΣ ǅemal naïve "
           "café résumé jalapeño façade").split()
ODD_SPACES = ["\t", "\u00a0", "\u3000", "\u2003", "\u202f", "\x1c", "\u2028", "\x85", "  ",
              "\u200b", "\u2060", "\ufeff", "\u180e"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def case_variant(rng, word):
    r = rng.random()
    if r < 0.70:
        return word
    if r < 0.82:
        return word.upper()
    if r < 0.90:
        return word[:1].upper() + word[1:]
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)


def decorate(rng, word):
    """Sometimes glue punctuation to a word, as people do."""
    r = rng.random()
    if r < 0.80:
        return word
    if r < 0.88:
        return word + rng.choice(["!", ",", ".", "?", "!!", "...", ":", ";", ")"])
    if r < 0.94:
        return rng.choice(["(", "\"", "'", "*", "[", "-", "#", "@"]) + word
    return rng.choice(["\"", "'", "(", "*", "_"]) + word + rng.choice(["\"", "'", ")", "*", "_"])


class Generator:
    def __init__(self, rng, lexicon_words, emojis):
        self.rng = rng
        self.lexicon_words = lexicon_words
        # Common sentiment words make idioms and rules fire more often than random keys would.
        self.common = ("good great love like happy nice best awesome amazing excellent fun "
                       "bad worst hate terrible awful sad angry poor horrible disappointed "
                       "broken fail sucks lol thanks please sorry wow ok fine cool yes "
                       "problem issue wrong free win lost kill joke smart funny pretty").split()
        self.emojis = emojis
        self.boosters = sorted(k for k in BOOSTER_DICT if " " not in k)
        self.negations = list(NEGATE)

    def lexicon_word(self):
        rng = self.rng
        return rng.choice(self.common) if rng.random() < 0.6 else rng.choice(self.lexicon_words)

    def token(self):
        rng = self.rng
        r = rng.random()
        if r < 0.34:
            return rng.choice(FILLER)
        if r < 0.58:
            return self.lexicon_word()
        if r < 0.66:
            return rng.choice(self.boosters)
        if r < 0.73:
            return rng.choice(self.negations)
        if r < 0.80:
            return rng.choice(RULE_WORDS)
        if r < 0.84:
            return rng.choice(EMOTICONS)
        if r < 0.89:
            return rng.choice(self.emojis)
        if r < 0.91:
            return rng.choice(HANDLES)
        if r < 0.93:
            return rng.choice(HASHTAGS)
        if r < 0.94:
            return rng.choice(URLS)
        if r < 0.97:
            return rng.choice(FOREIGN)
        return rng.choice(list(SPECIAL_CASES))

    def join(self, words):
        rng = self.rng
        out = []
        for i, w in enumerate(words):
            if i > 0:
                out.append(rng.choice(ODD_SPACES) if rng.random() < 0.04 else " ")
            out.append(w)
        return "".join(out)

    def tweet(self):
        """A social post: mostly words, some emphasis, the odd emoji, handle or link."""
        rng = self.rng
        n = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 22, 26, 30])
        words = [decorate(rng, case_variant(rng, self.token())) for _ in range(n)]
        if rng.random() < 0.15:
            words.insert(0, rng.choice(HANDLES))
        if rng.random() < 0.2 and len(words) > 2:
            words.insert(rng.randrange(1, len(words)), "but")
        text = self.join(words) + rng.choice(ENDINGS)
        if rng.random() < 0.08:
            # Emoji glued to words, or runs of them.
            text = text.replace(" ", rng.choice(self.emojis), 1)
        if rng.random() < 0.05:
            text = text.upper()
        return text

    def rule_window(self):
        """Short sequences dense in rule words, around one or two lexicon words: this is where
        the negation, booster, idiom, "least" and "but" rules interact."""
        rng = self.rng
        n = rng.randint(2, 8)
        words = []
        for _ in range(n):
            r = rng.random()
            if r < 0.55:
                words.append(rng.choice(RULE_WORDS))
            elif r < 0.85:
                words.append(self.lexicon_word())
            elif r < 0.93:
                words.append(rng.choice(self.negations))
            else:
                words.append(rng.choice(FILLER))
        words = [case_variant(rng, w) if rng.random() < 0.3 else w for w in words]
        return " ".join(words) + (rng.choice(ENDINGS) if rng.random() < 0.3 else "")

    def but_repeats(self):
        """Repeated equal valences around "but" (the list.index quirk)."""
        rng = self.rng
        vocab = [rng.choice(self.common) for _ in range(rng.randint(1, 3))]
        before = [rng.choice(vocab + FILLER[:5]) for _ in range(rng.randint(0, 5))]
        after = [rng.choice(vocab + FILLER[:5]) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.3:
            after.append("but")
            after += [rng.choice(vocab) for _ in range(rng.randint(0, 3))]
        return " ".join(before + ["but"] + after)

    def caps_mix(self):
        """ALL-CAPS emphasis with and without a cap differential."""
        rng = self.rng
        words = [self.token() for _ in range(rng.randint(1, 7))]
        mode = rng.random()
        if mode < 0.4:
            words = [w.upper() for w in words]
        elif mode < 0.8:
            k = rng.randrange(len(words))
            words[k] = words[k].upper()
        else:
            words = [case_variant(rng, w) for w in words]
        return " ".join(words) + rng.choice(ENDINGS)

    def unicode_noise(self):
        """Random code points from many blocks, with words and spaces in between."""
        rng = self.rng
        blocks = [(0x20, 0x7e), (0xa0, 0x17f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
                  (0x900, 0x97f), (0x1e00, 0x1fff), (0x2000, 0x206f), (0x2100, 0x218f),
                  (0x2190, 0x27bf), (0x3000, 0x30ff), (0x4e00, 0x4eff), (0xac00, 0xacff),
                  (0xfe00, 0xfe0f), (0xff00, 0xffef), (0x1d400, 0x1d4ff), (0x1f300, 0x1faff),
                  (0x300, 0x36f), (0x1c, 0x1f), (0x9, 0xd)]
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.5:
                lo, hi = rng.choice(blocks)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
            elif r < 0.8:
                parts.append(case_variant(rng, self.lexicon_word()))
            else:
                parts.append(rng.choice(self.emojis))
        return " ".join(parts)

    def punctuation_only(self):
        rng = self.rng
        n = rng.randint(1, 12)
        s = "".join(rng.choice(PUNCT + [" ", " ", "!", "?"]) for _ in range(n))
        if rng.random() < 0.3:
            s += " " + case_variant(rng, self.lexicon_word())
        return s


def build_texts():
    rng = random.Random(SEED)
    analyzer = SentimentIntensityAnalyzer()
    lexicon_words = sorted(analyzer.lexicon)
    # Every emoji key, including the multi-code-point ones the reference cannot match whole.
    emojis = sorted(analyzer.emojis)
    gen = Generator(rng, lexicon_words, emojis)

    texts = []

    def add(kind, items):
        texts.extend((kind, t) for t in items)

    add("handwritten", HANDWRITTEN)
    # Every booster and negation word before a positive and a negative word, plain and in caps.
    for w in sorted(BOOSTER_DICT) + sorted(NEGATE):
        add("modifier", [f"it is {w} good", f"that was {w} bad!", f"{w.upper()} happy and sad"])
    # Every special case and the multi-word boosters at each position of a short sentence.
    for phrase in list(SPECIAL_CASES) + [k for k in BOOSTER_DICT if " " in k]:
        for pre in ("", "it ", "it was ", "oh well it was ", "not "):
            for post in ("", " good", " really bad", " day!"):
                add("idiom", [pre + phrase + post])
    # A sample of lexicon words alone and in a sentence (emoticons included).
    for w in rng.sample(lexicon_words, 400):
        add("lexicon", [w, f"{case_variant(rng, w)} {rng.choice(FILLER)} {gen.lexicon_word()}"])
    # A sample of single emoji, alone and glued.
    for e in rng.sample(emojis, 150):
        add("emoji", [e, f"so {e}{gen.lexicon_word()}"])
    # The realistic posts (the benchmark's corpus), then the stress generators.
    add("tweet", [gen.tweet() for _ in range(2400)])
    add("rule_window", [gen.rule_window() for _ in range(1500)])
    add("but", [gen.but_repeats() for _ in range(300)])
    add("caps", [gen.caps_mix() for _ in range(300)])
    add("unicode_noise", [gen.unicode_noise() for _ in range(250)])
    add("punctuation", [gen.punctuation_only() for _ in range(100)])
    add("long", long_texts(rng, [t for _, t in texts[:4000]]))

    seen = set()
    unique = []
    for kind, t in texts:
        if t not in seen:
            seen.add(t)
            unique.append((kind, t))
    return analyzer, unique


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "oracle.jsonl"))
    args = parser.parse_args()

    version = importlib.metadata.version("vaderSentiment")
    if version != REFERENCE_VERSION:
        sys.exit(f"vaderSentiment {version} is installed; the oracle needs {REFERENCE_VERSION}")

    analyzer, texts = build_texts()
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for kind, text in texts:
            s = analyzer.polarity_scores(text)
            row = {
                "text": text,
                "neg": s["neg"],
                "neu": s["neu"],
                "pos": s["pos"],
                "compound": s["compound"],
                "tsv": "\t".join(str(s[k]) for k in ("neg", "neu", "pos", "compound")),
                "kind": kind,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {len(texts)} texts scored by vaderSentiment {version} to {args.out}")


if __name__ == "__main__":
    main()
