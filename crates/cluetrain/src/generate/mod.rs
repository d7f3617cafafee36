//! Realistic synthetic social traffic, deterministic by seed.
//!
//! The generator simulates brands and the people who talk to them, in event time:
//! people mention brands and write to them (complaints, questions, praise, with the emoticons,
//! negations, capitals and hashtags real text has), brands broadcast, people comment under
//! broadcasts, brands answer a share of inbound messages after a realistic delay (minutes to
//! hours, some never), people follow up after an answer, happier or not. A little
//! out-of-order delivery, re-delivered duplicates and, on request, poison messages make it
//! behave like a real feed.
//!
//! The same seed and options give the same messages in the same order, whatever the pacing:
//! tests and benchmarks rely on it.

mod produce;
pub mod world;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use chrono::{DateTime, SecondsFormat, Utc};
use model::{EventKind, SocialAuthor, SocialEvent, Stakeholder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use produce::{Pacing, ProduceReport, produce};
use world::{BRANDS, Brand};

/// Options of the generator (not of pacing: see [`Pacing`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// Event time of the start, µs since the epoch.
    pub start_micros: i64,
    /// Spontaneous events per second of event time (answers and follow-ups come on top).
    pub events_per_second: f64,
    /// How many brands of [`world::BRANDS`] take part (1..=5).
    pub brands: usize,
    /// Size of the population writing to brands.
    pub people: u32,
    /// Share of messages delivered twice (same event_id).
    pub duplicate_rate: f64,
    /// Share of messages replaced by a malformed one (for dead-letter demos and tests).
    pub poison_rate: f64,
    /// Share of messages delivered late, and by how much event time at most (µs).
    pub disorder_rate: f64,
    /// Longest delivery delay of a late message, in µs of event time.
    pub disorder_max_micros: i64,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            seed: 1,
            start_micros: 1_767_261_600_000_000, // 2026-01-01T10:00:00Z
            events_per_second: 20.0,
            brands: BRANDS.len(),
            people: 20_000,
            duplicate_rate: 0.002,
            poison_rate: 0.0,
            disorder_rate: 0.02,
            disorder_max_micros: 5_000_000,
        }
    }
}

/// One message to produce: the Kafka key (the brand) and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedMessage {
    /// Kafka key: the brand, so that a brand's conversations share a partition.
    pub key: String,
    /// JSON of a [`SocialEvent`], or malformed bytes for a poison message.
    pub payload: Vec<u8>,
    /// The event, when the payload is a valid one.
    pub event: Option<SocialEvent>,
}

/// What an inbound message was about; decides the answer and the follow-up mood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mood {
    Complaint,
    Question,
    Praise,
}

#[derive(Debug, Clone)]
struct Person {
    id: String,
    handle: String,
    followers: u64,
    stakeholder: Stakeholder,
}

/// An event scheduled for later (answers, follow-ups), ordered by time then sequence.
#[derive(Debug, Clone)]
struct Scheduled {
    at: i64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// The brand answers `parent` (written by `person`).
    Respond {
        brand: usize,
        parent: ParentRef,
        person: usize,
        mood: Mood,
    },
    /// `person` writes again after the brand's answer `answer`.
    FollowUp {
        brand: usize,
        answer: ParentRef,
        person: usize,
        happy: bool,
    },
    /// The brand continues its own thread under `post`.
    ThreadContinuation { brand: usize, post: ParentRef },
}

/// What a reply needs of the message it replies to. The schedule keeps this, not the whole
/// event (text, author), for up to [`DELAY_MAX_MICROS`] of event time: at a steady rate with
/// event time on the wall clock (the bench's soak) the schedule only grows for the first hours,
/// and whole events made that 560 MB a minute at 43,000 messages/s (2026-12-07).
#[derive(Debug, Clone)]
struct ParentRef {
    event_id: String,
    conversation_id: Option<String>,
    platform: String,
    kind: EventKind,
}

impl ParentRef {
    fn of(e: &SocialEvent) -> Self {
        ParentRef {
            event_id: e.event_id.clone(),
            conversation_id: e.conversation_id.clone(),
            platform: e.platform.clone(),
            kind: e.kind,
        }
    }
}

/// The generator: an infinite iterator of messages in delivery order.
pub struct Generator {
    opts: GeneratorOptions,
    rng: ChaCha8Rng,
    people: Vec<Person>,
    brands: Vec<&'static Brand>,
    brand_weight_total: f64,
    next_spontaneous: i64,
    scheduled: BinaryHeap<Reverse<Scheduled>>,
    /// Messages held back to be delivered late, by release time.
    held: BinaryHeap<Reverse<(i64, u64, usize)>>,
    held_store: Vec<Option<GeneratedMessage>>,
    ready: VecDeque<GeneratedMessage>,
    recent_broadcasts: Vec<VecDeque<SocialEvent>>,
    recent_inbound: VecDeque<SocialEvent>,
    seq: u64,
}

/// Bound on remembered recent messages per brand (for comments and public chatter).
const RECENT_MAX: usize = 16;
/// Answers later than this are not generated (they would never count anyway).
const DELAY_MAX_MICROS: i64 = 48 * 3600 * 1_000_000;

fn weighted<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Exponential sample with the given mean.
fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random::<f64>();
    -mean * (1.0 - u).ln()
}

/// Log-normal sample with the given median and shape.
fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median * (sigma * z).exp()
}

#[allow(clippy::cast_possible_truncation)] // durations in µs of at most days
fn micros(seconds: f64) -> i64 {
    (seconds * 1_000_000.0) as i64
}

/// RFC 3339 with milliseconds and `Z`.
pub fn rfc3339(t_micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(t_micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Generator {
    /// A generator with `opts`.
    pub fn new(opts: GeneratorOptions) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let brands: Vec<&'static Brand> = BRANDS
            .iter()
            .take(opts.brands.clamp(1, BRANDS.len()))
            .collect();
        let first = [
            "sam", "alex", "kim", "lee", "jo", "max", "ana", "li", "noor", "eli", "ola", "ravi",
        ];
        let second = [
            "rivers", "stone", "fox", "park", "woods", "ng", "garcia", "smith", "khan", "berg",
        ];
        let people = (0..opts.people.max(1))
            .map(|i| {
                let f = first[rng.random_range(0..first.len())];
                let s = second[rng.random_range(0..second.len())];
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small positive
                let followers =
                    (20.0 / rng.random::<f64>().max(1e-6).powf(1.0 / 1.1)).min(5e6) as u64;
                Person {
                    id: format!("u{i:07}"),
                    handle: format!("{f}_{s}{}", i % 1000),
                    followers,
                    stakeholder: *weighted(&mut rng, world::STAKEHOLDERS),
                }
            })
            .collect();
        let brand_weight_total = brands.iter().map(|b| b.weight).sum();
        let n = brands.len();
        let mut g = Generator {
            next_spontaneous: opts.start_micros,
            opts,
            rng,
            people,
            brands,
            brand_weight_total,
            scheduled: BinaryHeap::new(),
            held: BinaryHeap::new(),
            held_store: Vec::new(),
            ready: VecDeque::new(),
            recent_broadcasts: vec![VecDeque::new(); n],
            recent_inbound: VecDeque::new(),
            seq: 0,
        };
        g.advance_spontaneous();
        g
    }

    /// The `[[brands]]` configuration of the brands this generator uses: their names and
    /// own accounts, which linkage needs to know who speaks for each brand.
    pub fn brand_configs(&self) -> Vec<model::config::BrandConfig> {
        self.brands
            .iter()
            .map(|b| model::config::BrandConfig {
                name: b.name.to_string(),
                accounts: b.accounts.iter().map(|a| a.0.to_string()).collect(),
                ..Default::default()
            })
            .collect()
    }

    fn advance_spontaneous(&mut self) {
        let mean = 1.0 / self.opts.events_per_second.max(1e-6);
        self.next_spontaneous += micros(exponential(&mut self.rng, mean)).max(1);
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("g{:x}-{:09}", self.opts.seed, self.seq)
    }

    fn pick_brand(&mut self) -> usize {
        let mut x = self.rng.random::<f64>() * self.brand_weight_total;
        for (i, b) in self.brands.iter().enumerate() {
            if x < b.weight {
                return i;
            }
            x -= b.weight;
        }
        self.brands.len() - 1
    }

    fn fill(
        &mut self,
        template: &str,
        brand: usize,
        person: Option<usize>,
    ) -> (String, &'static str) {
        let b = self.brands[brand];
        let (hashtag, topic) = b.topics[self.rng.random_range(0..b.topics.len())];
        let handle = b.accounts[b.accounts.len() - 1].1;
        let user = person.map(|p| self.people[p].handle.as_str()).unwrap_or("");
        let text = template
            .replace("{b}", handle)
            .replace("{t}", topic)
            .replace("{h}", hashtag)
            .replace("{u}", user);
        (text, hashtag)
    }

    fn person_author(&self, p: usize) -> SocialAuthor {
        let person = &self.people[p];
        SocialAuthor {
            id: person.id.clone(),
            handle: Some(person.handle.clone()),
            is_org: false,
            followers: Some(person.followers),
            stakeholder: Some(person.stakeholder),
        }
    }

    fn brand_author(&self, brand: usize, support: bool) -> SocialAuthor {
        let b = self.brands[brand];
        let (id, handle) = if support {
            b.accounts[b.accounts.len() - 1]
        } else {
            b.accounts[0]
        };
        SocialAuthor {
            id: id.into(),
            handle: Some(handle.into()),
            is_org: true,
            followers: Some(b.followers),
            stakeholder: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        at: i64,
        brand: usize,
        kind: EventKind,
        author: SocialAuthor,
        text: String,
        in_reply_to: Option<&ParentRef>,
        platform: Option<String>,
    ) -> SocialEvent {
        let event_id = self.next_id();
        let platform =
            platform.unwrap_or_else(|| (*weighted(&mut self.rng, world::PLATFORMS)).to_string());
        let conversation_id = match in_reply_to {
            Some(p) => p
                .conversation_id
                .clone()
                .or_else(|| Some(p.event_id.clone())),
            None => Some(event_id.clone()),
        };
        let lang = Some((*weighted(&mut self.rng, world::LANGS)).to_string());
        SocialEvent {
            event_id,
            platform,
            kind,
            created_at: rfc3339(at),
            brand: self.brands[brand].name.to_string(),
            author,
            conversation_id,
            in_reply_to: in_reply_to.map(|p| p.event_id.clone()),
            text,
            lang,
        }
    }

    fn schedule(&mut self, at: i64, action: Action) {
        self.seq += 1;
        self.scheduled.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }

    /// Creates one spontaneous event at `at`.
    fn spontaneous(&mut self, at: i64) -> SocialEvent {
        let brand = self.pick_brand();
        let roll: f64 = self.rng.random();
        let has_broadcast = !self.recent_broadcasts[brand].is_empty();
        if roll < 0.06 || (!has_broadcast && roll < 0.10) {
            return self.broadcast(at, brand);
        }
        if has_broadcast && roll < 0.20 {
            return self.comment(at, brand);
        }
        if has_broadcast && roll < 0.28 {
            let i = self
                .rng
                .random_range(0..self.recent_broadcasts[brand].len());
            let post = self.recent_broadcasts[brand][i].clone();
            let p = self.rng.random_range(0..self.people.len());
            let author = self.person_author(p);
            let (kind, text) = if self.rng.random::<f64>() < 0.5 {
                (EventKind::Reaction, String::new())
            } else {
                (EventKind::Share, format!("RT {}", post.text))
            };
            return self.event(
                at,
                brand,
                kind,
                author,
                text,
                Some(&ParentRef::of(&post)),
                Some(post.platform.clone()),
            );
        }
        if roll < 0.31 && !self.recent_inbound.is_empty() {
            // Public talking to public in a brand thread.
            let i = self.rng.random_range(0..self.recent_inbound.len());
            let parent = self.recent_inbound[i].clone();
            let p = self.rng.random_range(0..self.people.len());
            let author = self.person_author(p);
            let text = format!(
                "@{} same here, {}",
                parent.author.handle.clone().unwrap_or_default(),
                pick(
                    &mut self.rng,
                    &[
                        "so annoying",
                        "no luck either",
                        "worked for me after a restart",
                        "+1"
                    ]
                )
            );
            let bi = self
                .brands
                .iter()
                .position(|b| b.name == parent.brand)
                .unwrap_or(brand);
            return self.event(
                at,
                bi,
                EventKind::Reply,
                author,
                text,
                Some(&ParentRef::of(&parent)),
                Some(parent.platform.clone()),
            );
        }
        self.inbound(at, brand)
    }

    fn broadcast(&mut self, at: i64, brand: usize) -> SocialEvent {
        let t = pick(&mut self.rng, world::BROADCASTS);
        let (text, _) = self.fill(t, brand, None);
        let author = self.brand_author(brand, false);
        let e = self.event(at, brand, EventKind::Post, author, text, None, None);
        let recent = &mut self.recent_broadcasts[brand];
        recent.push_back(e.clone());
        if recent.len() > RECENT_MAX {
            recent.pop_front();
        }
        if self.rng.random::<f64>() < 0.1 {
            let later = at + micros(lognormal(&mut self.rng, 600.0, 0.5));
            self.schedule(
                later,
                Action::ThreadContinuation {
                    brand,
                    post: ParentRef::of(&e),
                },
            );
        }
        e
    }

    fn comment(&mut self, at: i64, brand: usize) -> SocialEvent {
        let i = self
            .rng
            .random_range(0..self.recent_broadcasts[brand].len());
        let post = self.recent_broadcasts[brand][i].clone();
        let p = self.rng.random_range(0..self.people.len());
        let t = pick(&mut self.rng, world::COMMENTS);
        let (text, _) = self.fill(t, brand, Some(p));
        let author = self.person_author(p);
        let kind = if post.platform == "x" || post.platform == "bluesky" {
            EventKind::Reply
        } else {
            EventKind::Comment
        };
        let e = self.event(
            at,
            brand,
            kind,
            author,
            text,
            Some(&ParentRef::of(&post)),
            Some(post.platform.clone()),
        );
        let b = self.brands[brand];
        if self.rng.random::<f64>() < b.answer_rate * 0.4 {
            let delay = micros(lognormal(&mut self.rng, b.median_delay_minutes * 60.0, 1.0))
                .min(DELAY_MAX_MICROS);
            let mood = if text_is_negative(&e.text) {
                Mood::Complaint
            } else {
                Mood::Question
            };
            self.schedule(
                at + delay.max(1_000_000),
                Action::Respond {
                    brand,
                    parent: ParentRef::of(&e),
                    person: p,
                    mood,
                },
            );
        }
        e
    }

    fn inbound(&mut self, at: i64, brand: usize) -> SocialEvent {
        let p = self.rng.random_range(0..self.people.len());
        let mood = match self.rng.random::<f64>() {
            x if x < 0.5 => Mood::Complaint,
            x if x < 0.8 => Mood::Question,
            _ => Mood::Praise,
        };
        let templates = match mood {
            Mood::Complaint => world::COMPLAINTS,
            Mood::Question => world::QUESTIONS,
            Mood::Praise => world::PRAISE,
        };
        let t = pick(&mut self.rng, templates);
        let (text, _) = self.fill(t, brand, Some(p));
        let author = self.person_author(p);
        let dm = self.rng.random::<f64>() < 0.12;
        let kind = if dm {
            EventKind::DirectMessage
        } else {
            EventKind::Mention
        };
        let mut e = self.event(at, brand, kind, author, text, None, None);
        if dm {
            e.conversation_id = Some(format!(
                "dm-{}-{}",
                self.brands[brand].name, self.people[p].id
            ));
        } else {
            self.recent_inbound.push_back(e.clone());
            if self.recent_inbound.len() > RECENT_MAX {
                self.recent_inbound.pop_front();
            }
        }
        let b = self.brands[brand];
        if self.rng.random::<f64>() < b.answer_rate {
            let delay = micros(lognormal(&mut self.rng, b.median_delay_minutes * 60.0, 1.1))
                .min(DELAY_MAX_MICROS);
            self.schedule(
                at + delay.max(1_000_000),
                Action::Respond {
                    brand,
                    parent: ParentRef::of(&e),
                    person: p,
                    mood,
                },
            );
        }
        e
    }

    fn scheduled_event(&mut self, at: i64, action: Action) -> SocialEvent {
        match action {
            Action::Respond {
                brand,
                parent,
                person,
                mood,
            } => {
                let t = if mood == Mood::Praise {
                    pick(&mut self.rng, world::THANKS)
                } else {
                    pick(&mut self.rng, world::RESPONSES)
                };
                let (text, _) = self.fill(t, brand, Some(person));
                let author = self.brand_author(brand, true);
                let kind = if parent.kind == EventKind::DirectMessage {
                    EventKind::DirectMessage
                } else {
                    EventKind::Reply
                };
                let e = self.event(
                    at,
                    brand,
                    kind,
                    author,
                    text,
                    Some(&parent),
                    Some(parent.platform.clone()),
                );
                if self.rng.random::<f64>() < 0.35 {
                    let happy = match mood {
                        Mood::Complaint => self.rng.random::<f64>() < 0.55,
                        Mood::Question => self.rng.random::<f64>() < 0.85,
                        Mood::Praise => true,
                    };
                    let later = at + micros(lognormal(&mut self.rng, 1200.0, 0.8)).max(1_000_000);
                    self.schedule(
                        later,
                        Action::FollowUp {
                            brand,
                            answer: ParentRef::of(&e),
                            person,
                            happy,
                        },
                    );
                }
                e
            }
            Action::FollowUp {
                brand,
                answer,
                person,
                happy,
            } => {
                let t = if happy {
                    pick(&mut self.rng, world::FOLLOW_UPS_HAPPY)
                } else {
                    pick(&mut self.rng, world::FOLLOW_UPS_UNHAPPY)
                };
                let (text, _) = self.fill(t, brand, Some(person));
                let author = self.person_author(person);
                let kind = if answer.kind == EventKind::DirectMessage {
                    EventKind::DirectMessage
                } else {
                    EventKind::Reply
                };
                self.event(
                    at,
                    brand,
                    kind,
                    author,
                    text,
                    Some(&answer),
                    Some(answer.platform.clone()),
                )
            }
            Action::ThreadContinuation { brand, post } => {
                let author = self.brand_author(brand, false);
                let text =
                    "Update: more details in the thread below. Thanks for all your questions!"
                        .to_string();
                self.event(
                    at,
                    brand,
                    EventKind::Reply,
                    author,
                    text,
                    Some(&post),
                    Some(post.platform.clone()),
                )
            }
        }
    }

    /// The next event in event-time order (before delivery disorder).
    fn next_in_time(&mut self) -> SocialEvent {
        let due = self
            .scheduled
            .peek()
            .is_some_and(|Reverse(s)| s.at <= self.next_spontaneous);
        if due && let Some(Reverse(s)) = self.scheduled.pop() {
            return self.scheduled_event(s.at, s.action);
        }
        let at = self.next_spontaneous;
        self.advance_spontaneous();
        self.spontaneous(at)
    }

    fn message(&mut self, e: SocialEvent) -> GeneratedMessage {
        let payload = serde_json::to_vec(&e).unwrap_or_default();
        GeneratedMessage {
            key: e.brand.clone(),
            payload,
            event: Some(e),
        }
    }

    fn poison(&mut self, e: &SocialEvent) -> GeneratedMessage {
        let json = serde_json::to_string(e).unwrap_or_default();
        let payload = match self.rng.random_range(0..5) {
            0 => json.as_bytes()[..json.len() / 2].to_vec(),
            1 => {
                let mut b = json.into_bytes();
                b.extend_from_slice(b"\xff\xfe");
                b
            }
            2 => json
                .replacen(&format!("\"{}\"", e.kind.as_str()), "\"tweet\"", 1)
                .into_bytes(),
            3 => json.replacen("\"brand\"", "\"brnd\"", 1).into_bytes(),
            _ => json
                .replacen(&e.created_at, "1999-12-31T23:59:59Z", 1)
                .into_bytes(),
        };
        GeneratedMessage {
            key: e.brand.clone(),
            payload,
            event: None,
        }
    }
}

/// Very rough negativity test used only to pick a response template.
fn text_is_negative(t: &str) -> bool {
    ["Meh", "Fix", "annoying", "not"]
        .iter()
        .any(|w| t.contains(w))
}

impl Iterator for Generator {
    type Item = GeneratedMessage;

    fn next(&mut self) -> Option<GeneratedMessage> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            let e = self.next_in_time();
            let t = e.created_at_micros().unwrap_or(0);
            // Release held (late) messages whose time has come, before this one.
            while let Some(Reverse((release, _, slot))) = self.held.peek().copied() {
                if release > t {
                    break;
                }
                self.held.pop();
                if let Some(m) = self.held_store.get_mut(slot).and_then(Option::take) {
                    self.ready.push_back(m);
                }
            }
            let msg = if self.rng.random::<f64>() < self.opts.poison_rate {
                self.poison(&e)
            } else {
                self.message(e)
            };
            if self.rng.random::<f64>() < self.opts.duplicate_rate && msg.event.is_some() {
                self.ready.push_back(msg.clone());
            }
            if self.rng.random::<f64>() < self.opts.disorder_rate
                && self.opts.disorder_max_micros > 0
            {
                let delay = self.rng.random_range(0..self.opts.disorder_max_micros);
                let slot = self
                    .held_store
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        self.held_store.push(None);
                        self.held_store.len() - 1
                    });
                self.held_store[slot] = Some(msg);
                self.seq += 1;
                self.held.push(Reverse((t + delay, self.seq, slot)));
            } else {
                self.ready.push_back(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn take(opts: GeneratorOptions, n: usize) -> Vec<GeneratedMessage> {
        Generator::new(opts).take(n).collect()
    }

    #[test]
    fn same_seed_same_messages_other_seed_others() {
        let a = take(GeneratorOptions::default(), 2000);
        let b = take(GeneratorOptions::default(), 2000);
        assert_eq!(a, b);
        let c = take(
            GeneratorOptions {
                seed: 2,
                ..Default::default()
            },
            2000,
        );
        assert_ne!(a, c);
    }

    #[test]
    fn traffic_looks_like_conversations() {
        let msgs = take(
            GeneratorOptions {
                events_per_second: 2.0,
                ..Default::default()
            },
            20_000,
        );
        let events: Vec<_> = msgs.iter().filter_map(|m| m.event.clone()).collect();
        assert_eq!(events.len(), msgs.len(), "no poison unless asked");
        let by_id: HashMap<_, _> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
        let mut answered = HashSet::new();
        let mut delays = Vec::new();
        let mut kinds = HashMap::new();
        for e in &events {
            *kinds.entry(e.kind).or_insert(0) += 1;
            assert_eq!(
                e.brand,
                msgs.iter()
                    .find(|m| m.event.as_ref() == Some(e))
                    .unwrap()
                    .key
            );
            let parent = e.in_reply_to.as_deref().and_then(|p| by_id.get(p));
            if let Some(parent) = parent.filter(|p| e.author.is_org && !p.author.is_org) {
                answered.insert(parent.event_id.clone());
                let d = e.created_at_micros().unwrap() - parent.created_at_micros().unwrap();
                assert!(d > 0, "answers come after what they answer");
                delays.push(d);
            }
        }
        for k in [
            EventKind::Post,
            EventKind::Reply,
            EventKind::Mention,
            EventKind::DirectMessage,
            EventKind::Share,
        ] {
            assert!(
                kinds.get(&k).copied().unwrap_or(0) > 10,
                "{k:?} is represented: {kinds:?}"
            );
        }
        let inbound = events
            .iter()
            .filter(|e| !e.author.is_org && e.in_reply_to.is_none())
            .count();
        let rate = answered.len() as f64 / inbound as f64;
        assert!(
            (0.3..0.9).contains(&rate),
            "some inbound answered, some never: {rate}"
        );
        delays.sort_unstable();
        let median_min = delays[delays.len() / 2] as f64 / 60e6;
        assert!(
            (5.0..300.0).contains(&median_min),
            "answers take minutes to hours: {median_min}"
        );
        // Sentiment carriers are present.
        assert!(events.iter().any(|e| e.text.contains(":(")));
        assert!(events.iter().any(|e| e.text.contains("😍")));
        assert!(events.iter().any(|e| e.text.contains("never")));
    }

    #[test]
    fn delivery_is_slightly_out_of_order_and_duplicates_exist() {
        let msgs = take(
            GeneratorOptions {
                duplicate_rate: 0.01,
                ..Default::default()
            },
            20_000,
        );
        let times: Vec<i64> = msgs
            .iter()
            .filter_map(|m| m.event.as_ref())
            .map(|e| e.created_at_micros().unwrap())
            .collect();
        let inversions = times.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(inversions > 0, "some messages arrive late");
        let mut max_back = 0;
        let mut max_seen = times[0];
        for t in &times {
            max_back = max_back.max(max_seen - t);
            max_seen = max_seen.max(*t);
        }
        assert!(
            max_back <= GeneratorOptions::default().disorder_max_micros + 1_000_000,
            "bounded disorder: {max_back}"
        );
        let ids: HashSet<_> = msgs
            .iter()
            .filter_map(|m| m.event.as_ref())
            .map(|e| e.event_id.clone())
            .collect();
        assert!(ids.len() < times.len(), "re-delivered duplicates");
    }

    #[test]
    fn poison_messages_are_mixed_in_when_asked() {
        let msgs = take(
            GeneratorOptions {
                poison_rate: 0.05,
                ..Default::default()
            },
            4000,
        );
        let poison = msgs.iter().filter(|m| m.event.is_none()).count();
        assert!((100..400).contains(&poison), "{poison}");
    }
}
