//! Conversation linkage: each event's role relative to its brand, the message it answers, its
//! conversation root, and first responses (definitions: the metrics reference, "Roles").
//!
//! A [`Linker`] holds the state of one input partition. The input topic is keyed by brand, so a
//! brand's conversations (and this state) live on one partition and move with it on a
//! rebalance.
//!
//! Replies can arrive before their parents. A reply whose parent is unknown is held (bounded)
//! and resolved when the parent arrives; if the parent has not arrived when the watermark passes
//! the reply's time plus the response horizon, the reply is released with what is known
//! (role `other` for outsiders, `broadcast` for the brand's own messages) and counted.
//!
//! State is bounded two ways, both settings: entries older than the watermark minus the
//! response horizon are dropped (`expired`), and beyond `entries_max` the oldest are evicted
//! (`evicted`, the metric that shows the bound biting).

mod nodes;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use model::EventKind;
use serde::{Deserialize, Serialize};

use nodes::{AuthorKey, Node, NodeOut, NodeWire, Nodes, Shared, Slot};

/// The role of an event relative to its brand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Someone else addressing the brand.
    Inbound,
    /// The brand answering an inbound message directly.
    Response,
    /// The brand speaking first (a top-level message).
    Broadcast,
    /// The brand continuing its own thread (counted with broadcasts, never as a response).
    FollowUp,
    /// Anything else (shares, reactions, public posts not addressing the brand...).
    Other,
}

impl Role {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inbound => "inbound",
            Role::Response => "response",
            Role::Broadcast => "broadcast",
            Role::FollowUp => "follow_up",
            Role::Other => "other",
        }
    }
}

/// How the brand's own accounts are recognised (the metrics reference: configured accounts,
/// and `author.is_org` on authors configured for the brand). Named because tools differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrgAuthorRule {
    #[default]
    /// Only configured account ids or handles count as the brand.
    Configured,
    /// Configured accounts when the brand has any; for brands without configured accounts, any
    /// `is_org` author of the brand's events (e.g. replays where each company is a brand).
    ConfiguredElseIsOrg,
}

/// Linkage settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkerConfig {
    /// Response horizon H in µs: answers later than this do not count, and state older than
    /// the watermark minus H is dropped.
    pub horizon_micros: i64,
    /// Bound on remembered messages (plus held replies) per partition.
    pub entries_max: usize,
    /// How the brand's accounts are recognised.
    pub org_rule: OrgAuthorRule,
    /// Per brand, its account ids and handles (compared case-insensitively for handles).
    /// Looked up for every event, so with foldhash rather than SipHash (SipHash's `write` was
    /// ~1.5 % of the process's samples in the bench's profile, from this and other per-event
    /// maps).
    pub accounts: HashMap<String, HashSet<String, FastHash>, FastHash>,
}

/// One event as linkage sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkInput<'a> {
    /// Unique id.
    pub event_id: &'a str,
    /// The brand it concerns.
    pub brand: &'a str,
    /// Its kind.
    pub kind: EventKind,
    /// Author id.
    pub author_id: &'a str,
    /// Author handle.
    pub author_handle: Option<&'a str>,
    /// Author is an organisation account.
    pub author_is_org: bool,
    /// Parent id.
    pub in_reply_to: Option<&'a str>,
    /// Event time, µs.
    pub created_at: i64,
    /// VADER compound of its text.
    pub compound: f64,
    /// Opaque to linkage: handed back with every fact about this event (the caller packs the
    /// grouping keys it needs there, e.g. platform and department, so that facts emitted
    /// later, when a held reply's parent arrives, still carry them).
    pub tag: u64,
}

/// What linkage learned; emitted in an order consistent with cause and effect. Its strings
/// are shared with the linker's state (one allocation per message id, author and brand, not
/// one per output).
#[derive(Debug, Clone, PartialEq)]
pub enum Linked {
    /// An event's role is known (at arrival, or later when its parent arrived).
    Event {
        /// The event.
        event_id: Arc<str>,
        /// Its brand.
        brand: Arc<str>,
        /// Its author (the voices table: who converses with the brand).
        author_id: Arc<str>,
        /// Its time, µs.
        created_at: i64,
        /// Its role.
        role: Role,
        /// For responses: the inbound message answered.
        answers: Option<Arc<str>>,
        /// Root of its conversation (its own id for a root).
        root: Arc<str>,
        /// For a reply/comment of the public: whether its parent is a broadcast of the brand
        /// (conversation rate).
        replies_to_broadcast: bool,
        /// Speaker changes between the brand and others in its conversation so far.
        turns: u32,
        /// VADER compound of its text.
        compound: f64,
        /// The event's tag.
        tag: u64,
    },
    /// An inbound message got its first response.
    FirstResponse {
        /// The inbound message.
        inbound_id: Arc<str>,
        /// Its brand.
        brand: Arc<str>,
        /// When it was created, µs (its window).
        inbound_created_at: i64,
        /// When the first response was created, µs.
        responded_at: i64,
        /// The inbound message's tag.
        tag: u64,
    },
    /// An answered inbound message's author wrote again in the same conversation: the change
    /// in sentiment (response effect).
    Effect {
        /// The answered inbound message.
        inbound_id: Arc<str>,
        /// Its brand.
        brand: Arc<str>,
        /// When it was created, µs (its window).
        inbound_created_at: i64,
        /// compound(next message) − compound(answered message).
        delta: f64,
        /// The inbound message's tag.
        tag: u64,
    },
}

/// An inbound message awaiting an answer ([`Linker::open_inbound`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenInbound<'a> {
    /// The message.
    pub event_id: &'a str,
    /// Its brand.
    pub brand: &'a str,
    /// When it was written, µs.
    pub created_at: i64,
    /// Its tag.
    pub tag: u64,
}

/// Counters of one linker; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    /// Events linked.
    pub linked: u64,
    /// Re-delivered event ids ignored.
    pub duplicates: u64,
    /// Replies that waited for their parent and got it.
    pub resolved_late: u64,
    /// Replies released without their parent after the horizon.
    pub orphans: u64,
    /// Entries dropped because they aged out of the horizon.
    pub expired: u64,
    /// Entries evicted because `entries_max` was reached.
    pub evicted: u64,
}

/// The state's maps, looked up several times per message: foldhash (seeded per process, like
/// std's SipHash) instead of SipHash, which showed in `perf` of a bounded run. Iteration order
/// reaches no output: `open_inbound` is unordered by contract, and the held reply released
/// first under the bound is any one of them.
pub type FastHash = foldhash::fast::RandomState;
type FastMap<K, V> = HashMap<K, V, FastHash>;
type FastSet<K> = HashSet<K, FastHash>;

/// What changed in a linker's messages and conversations since it was last marked
/// checkpointed ([`Linker::checkpointed`]): the content of an incremental checkpoint. The sets
/// are disjoint per kind and describe the end state (a message added then expired in one
/// interval is only "removed"), so applying them in any order gives the same state.
///
/// Bounded: the changed sets are subsets of the state; the removed sets grow with expiry and
/// eviction between checkpoints, and past `entries_max` removals tracking gives up
/// (`overflowed`): the next checkpoint is a full one.
#[derive(Debug, Default)]
struct Changes {
    /// Slots of messages added or changed (a slot freed is taken out, so a slot reused is
    /// the new message's).
    nodes: FastSet<Slot>,
    removed_nodes: FastSet<Shared>,
    conversations: FastSet<Shared>,
    removed_conversations: FastSet<Shared>,
    /// Parents whose held replies changed (some held, or all released): the delta writes
    /// their list as it is then, or that it is gone.
    held: FastSet<String>,
    overflowed: bool,
}

impl Changes {
    // Once `overflowed`, the next checkpoint is a full one whatever is recorded: every method
    // returns at once (recording went on before, filling the sets up to the bound again: in
    // the bounded bench's end of run, a set entry per expired message, a seventh of it).
    fn node_added(&mut self, slot: Slot, id: &Shared) {
        if self.overflowed {
            return;
        }
        self.removed_nodes.remove(id);
        self.nodes.insert(slot);
    }

    fn node_changed(&mut self, slot: Slot) {
        if self.overflowed {
            return;
        }
        self.nodes.insert(slot);
    }

    fn node_removed(&mut self, slot: Slot, id: &Shared, bound: usize) {
        if self.overflowed {
            return;
        }
        self.nodes.remove(&slot);
        self.removed_nodes.insert(id.clone());
        self.check(bound);
    }

    fn conversation(&mut self, root: &Shared) {
        if self.overflowed {
            return;
        }
        if !self.conversations.contains(root) {
            self.removed_conversations.remove(root);
            self.conversations.insert(root.clone());
        }
    }

    fn conversation_removed(&mut self, root: &Shared, bound: usize) {
        if self.overflowed {
            return;
        }
        self.conversations.remove(root);
        self.removed_conversations.insert(root.clone());
        self.check(bound);
    }

    fn held_changed(&mut self, parent: &str, bound: usize) {
        if self.overflowed {
            return;
        }
        if !self.held.contains(parent) {
            self.held.insert(parent.to_string());
            self.check(bound);
        }
    }

    fn check(&mut self, bound: usize) {
        if self.removed_nodes.len() + self.removed_conversations.len() + self.held.len() > bound {
            self.overflow();
        }
    }

    /// Gives up tracking: the next checkpoint is a full one.
    fn overflow(&mut self) {
        *self = Changes {
            overflowed: true,
            ..Changes::default()
        };
    }
}

/// The changes of a linker since its last checkpoint, borrowed for writing (see
/// [`Linker::delta`]). Counters go whole. Held replies go as changes per parent (format 5):
/// whole, they were most of a delta in a soak at 65,000 events/s, where replies to parents
/// evicted by `linkage.entries_max` wait in them (500,000 replies, 105 MB of a 213 MB delta
/// of one partition, written every 10 s).
#[derive(Debug, Serialize)]
pub struct LinkerDeltaRef<'a> {
    nodes: Vec<(&'a Shared, NodeOut<'a>)>,
    removed_nodes: Vec<&'a Shared>,
    conversations: Vec<(&'a Shared, &'a Conversation)>,
    removed_conversations: Vec<&'a Shared>,
    /// Parents whose held replies changed, with the replies held for them now.
    held_changed: Vec<(&'a String, &'a Vec<Held>)>,
    /// Parents with no held reply any more.
    held_removed: Vec<&'a String>,
    stats: LinkStats,
}

impl LinkerDeltaRef<'_> {
    /// Messages and conversations added, changed or removed.
    pub fn len(&self) -> usize {
        self.nodes.len()
            + self.removed_nodes.len()
            + self.conversations.len()
            + self.removed_conversations.len()
            + self.held_changed.len()
            + self.held_removed.len()
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The changes of a linker as read back from an incremental checkpoint ([`Linker::apply`]).
#[derive(Debug, Deserialize)]
pub struct LinkerDelta {
    nodes: Vec<(Shared, NodeWire)>,
    removed_nodes: Vec<Shared>,
    conversations: Vec<(Shared, Conversation)>,
    removed_conversations: Vec<Shared>,
    /// Formats 3 and 4: every held reply, whole.
    #[serde(default)]
    held: Option<FastMap<String, Vec<Held>>>,
    /// Format 5: the changes (see [`LinkerDeltaRef`]).
    #[serde(default)]
    held_changed: Vec<(String, Vec<Held>)>,
    #[serde(default)]
    held_removed: Vec<String>,
    stats: LinkStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    input: OwnedInput,
}

/// A [`LinkInput`] that owns its strings: for events that wait (held replies here, a reorder
/// buffer upstream, up to `linkage.reorder_events_max` of them while partitions are read at
/// different speeds). Its five strings are one allocation, back to back: 64 bytes and one
/// allocation per waiting event, where five `String`s were 152 bytes and five allocations (and
/// the reorder buffer a sixth, its copy of the id as the key).
/// Checkpoints (format 5) write it as an array of its ten fields, in the order of
/// [`OwnedInputWire`]; formats 2 to 4 wrote a map with the field names, which still reads.
/// The names were about 40 % of an event: the reorder buffer and held replies, written whole
/// or as changes at every checkpoint, were 160 of the 213 MB of one partition's delta in the
/// soak at 65,000 events/s.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedInput {
    /// event id, brand, author id, author handle, parent id.
    text: Box<str>,
    /// Where each of them ends in `text`.
    ends: [u32; 5],
    has_handle: bool,
    has_parent: bool,
    kind: EventKind,
    author_is_org: bool,
    created_at: i64,
    compound: f64,
    tag: u64,
}

/// [`OwnedInput`] as checkpoints have it: its fields, in this order.
#[derive(Deserialize)]
struct OwnedInputWire {
    event_id: String,
    brand: String,
    kind: EventKind,
    author_id: String,
    author_handle: Option<String>,
    author_is_org: bool,
    in_reply_to: Option<String>,
    created_at: i64,
    compound: f64,
    tag: u64,
}

impl From<OwnedInputWire> for OwnedInput {
    fn from(w: OwnedInputWire) -> Self {
        OwnedInput::of(&LinkInput {
            event_id: &w.event_id,
            brand: &w.brand,
            kind: w.kind,
            author_id: &w.author_id,
            author_handle: w.author_handle.as_deref(),
            author_is_org: w.author_is_org,
            in_reply_to: w.in_reply_to.as_deref(),
            created_at: w.created_at,
            compound: w.compound,
            tag: w.tag,
        })
    }
}

impl Serialize for OwnedInput {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let v = self.view();
        let mut t = s.serialize_tuple(10)?;
        t.serialize_element(v.event_id)?;
        t.serialize_element(v.brand)?;
        t.serialize_element(&v.kind)?;
        t.serialize_element(v.author_id)?;
        t.serialize_element(&v.author_handle)?;
        t.serialize_element(&v.author_is_org)?;
        t.serialize_element(&v.in_reply_to)?;
        t.serialize_element(&v.created_at)?;
        t.serialize_element(&v.compound)?;
        t.serialize_element(&v.tag)?;
        t.end()
    }
}

/// The fields of [`OwnedInputWire`] as an array (format 5).
type OwnedInputTuple = (
    String,
    String,
    EventKind,
    String,
    Option<String>,
    bool,
    Option<String>,
    i64,
    f64,
    u64,
);

impl<'de> Deserialize<'de> for OwnedInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OwnedInputWire;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a waiting event: an array (format 5) or a map (formats 2 to 4)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                let t =
                    OwnedInputTuple::deserialize(serde::de::value::SeqAccessDeserializer::new(a))?;
                Ok(OwnedInputWire {
                    event_id: t.0,
                    brand: t.1,
                    kind: t.2,
                    author_id: t.3,
                    author_handle: t.4,
                    author_is_org: t.5,
                    in_reply_to: t.6,
                    created_at: t.7,
                    compound: t.8,
                    tag: t.9,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                OwnedInputWire::deserialize(serde::de::value::MapAccessDeserializer::new(a))
            }
        }
        d.deserialize_any(V).map(OwnedInput::from)
    }
}

impl OwnedInput {
    /// An owned copy of `i`.
    pub fn of(i: &LinkInput<'_>) -> Self {
        let parts = [
            i.event_id,
            i.brand,
            i.author_id,
            i.author_handle.unwrap_or(""),
            i.in_reply_to.unwrap_or(""),
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 5];
        for (end, p) in ends.iter_mut().zip(parts) {
            text.push_str(p);
            // Decoded events are far below 4 GiB (`kafka.message_bytes_max`).
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        OwnedInput {
            text: text.into_boxed_str(),
            ends,
            has_handle: i.author_handle.is_some(),
            has_parent: i.in_reply_to.is_some(),
            kind: i.kind,
            author_is_org: i.author_is_org,
            created_at: i.created_at,
            compound: i.compound,
            tag: i.tag,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = i
            .checked_sub(1)
            .and_then(|p| self.ends.get(p))
            .map_or(0, |e| *e as usize);
        let end = self.ends.get(i).map_or(0, |e| *e as usize);
        self.text.get(start..end).unwrap_or("")
    }

    /// The event's id.
    pub fn event_id(&self) -> &str {
        self.part(0)
    }

    /// The event's time, µs.
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// The packed attributes the caller attached.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Replaces the packed attributes (see [`Linker::map_tags`]).
    pub fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }

    /// The borrowed form, for [`Linker::observe`].
    pub fn view(&self) -> LinkInput<'_> {
        LinkInput {
            event_id: self.part(0),
            brand: self.part(1),
            kind: self.kind,
            author_id: self.part(2),
            author_handle: self.has_handle.then(|| self.part(3)),
            author_is_org: self.author_is_org,
            in_reply_to: self.has_parent.then(|| self.part(4)),
            created_at: self.created_at,
            compound: self.compound,
            tag: self.tag,
        }
    }
}

/// Checkpoints write it as the array `[last_by_brand, turns, last_at, awaiting_effect]`
/// (field names per conversation were a fifth of a checkpoint); the map with field names of
/// format 3 still reads.
#[derive(Debug, Clone, Default)]
struct Conversation {
    last_by_brand: Option<bool>,
    /// Messages in linkage with this conversation as their root ([`Linker::restored`] counts
    /// them again; not checkpointed). At 0 nothing can reach the conversation any more (a
    /// message joins one through its parent, a node), so it goes: without that, conversations
    /// whose messages `linkage.entries_max` evicted stayed until the horizon's sweep, unbounded
    /// (the 10-minute soak at 43,000 messages/s, 2026-12-07: RSS +330 MiB a minute with linkage
    /// at its bound). Sticky at `u16::MAX` (a thread that large stays until its sweep): the
    /// conversation stays 24 bytes.
    live: u16,
    turns: u32,
    last_at: i64,
    /// Answered inbound messages waiting for their author's next message: (author, id).
    awaiting_effect: Awaiting,
}

impl Serialize for Conversation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.last_by_brand)?;
        t.serialize_element(&self.turns)?;
        t.serialize_element(&self.last_at)?;
        t.serialize_element(&self.awaiting_effect)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Conversation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Conversation;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a conversation")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Conversation, A::Error> {
                let len = |i| de::Error::invalid_length(i, &"4 fields");
                Ok(Conversation {
                    live: 0,
                    last_by_brand: a.next_element()?.ok_or_else(|| len(0))?,
                    turns: a.next_element()?.ok_or_else(|| len(1))?,
                    last_at: a.next_element()?.ok_or_else(|| len(2))?,
                    awaiting_effect: a.next_element()?.ok_or_else(|| len(3))?,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Conversation, A::Error> {
                let mut c = Conversation::default();
                while let Some(k) = a.next_key::<String>()? {
                    match k.as_str() {
                        "last_by_brand" => c.last_by_brand = a.next_value()?,
                        "turns" => c.turns = a.next_value()?,
                        "last_at" => c.last_at = a.next_value()?,
                        "awaiting_effect" => c.awaiting_effect = a.next_value()?,
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_any(V)
    }
}

/// A conversation's answered messages waiting for their author's next message, boxed: most
/// conversations have none, and an empty `Vec` is 24 bytes in every bucket of the map of
/// conversations (8 here). Checkpoints write the list, empty or not, as before.
#[derive(Debug, Clone, Default)]
#[allow(clippy::box_collection)] // the point: 8 bytes in the conversation, not a Vec's 24
struct Awaiting(Option<Box<Vec<(AuthorKey, Shared)>>>);

impl Awaiting {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    fn push(&mut self, author: AuthorKey, id: Shared) {
        self.0.get_or_insert_default().push((author, id));
    }

    /// Takes out the first message of `author`; returns its id.
    fn take(&mut self, author: AuthorKey) -> Option<Shared> {
        let v = self.0.as_mut()?;
        let i = v.iter().position(|(a, _)| *a == author)?;
        let (_, id) = v.remove(i);
        if v.is_empty() {
            self.0 = None;
        }
        Some(id)
    }
}

impl Serialize for Awaiting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0
            .as_deref()
            .map_or(&[][..], Vec::as_slice)
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Awaiting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<(AuthorKey, Shared)>::deserialize(d)?;
        Ok(Awaiting((!v.is_empty()).then(|| Box::new(v))))
    }
}

/// The parent of a message being linked, as linking reads it.
struct Parent {
    slot: Slot,
    id: Shared,
    root: Shared,
    by_brand: bool,
    role: Role,
    brand: u32,
}

/// Bound on answered messages per conversation waiting for a next message (response effect).
const AWAITING_EFFECT_MAX: usize = 16;

/// Linkage state of one partition.
///
/// Serialisable for checkpoints: the state goes, the settings do not (a restored linker takes
/// the settings of the process that restores it, [`Linker::restored`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct Linker {
    #[serde(skip)]
    cfg: LinkerConfig,
    /// The messages of the last horizon (see `nodes.rs`).
    nodes: Nodes,
    /// (created_at, slot) of every node, oldest first: expiry and eviction order (equal times
    /// go in slot order). Derived from `nodes`, so not written to checkpoints.
    #[serde(skip)]
    age: BTreeSet<(i64, Slot)>,
    /// Replies waiting for their parent, by parent id.
    held: FastMap<String, Vec<Held>>,
    held_count: usize,
    conversations: FastMap<Shared, Conversation>,
    stats: LinkStats,
    /// Changes since the last checkpoint; `None` until the first one (and without
    /// checkpoints): nothing is tracked then.
    #[serde(skip)]
    changes: Option<Changes>,
    /// Expiry scans, derived (not checkpointed; the first advance after a restore scans).
    #[serde(skip)]
    scans: Scans,
}

/// What spares [`Linker::advance`] a walk over every held reply and every conversation per
/// batch (8.4 % of the pipeline's CPU in the profile of the 1,000,000-event bench, where
/// nothing was old enough to expire): lower bounds of what could expire, and when
/// conversations were last swept.
#[derive(Debug, Clone, Copy)]
struct Scans {
    /// At most the smallest, over held parents, of their newest held reply's time: no parent
    /// is released as an orphan while the cutoff is at or below it.
    held_floor: i64,
    /// At most the smallest `last_at` of the conversations.
    conversations_floor: i64,
    /// The cutoff of the last sweep of conversations.
    conversations_swept: i64,
    /// The cutoff of the last advance.
    cutoff: i64,
}

impl Default for Scans {
    fn default() -> Self {
        Scans {
            held_floor: i64::MIN,
            conversations_floor: i64::MIN,
            conversations_swept: i64::MIN,
            cutoff: i64::MIN,
        }
    }
}

/// Conversations past the horizon are swept at most once per this share of the horizon
/// (1/64: 22.5 min of event time for 24 h), not at every batch. One that waits for its sweep
/// is out of reach (every message of it has expired, see [`Linker::advance`]), so nothing
/// reads it; it holds at most that much more memory.
const CONVERSATION_SWEEP_DIVISOR: i64 = 64;

/// At the bound with held replies dominating, each pass over them releases at least this
/// fraction (1/n) of them.
const HELD_RELEASE_SHARE: usize = 64;

impl Linker {
    /// An empty linker.
    pub fn new(cfg: LinkerConfig) -> Self {
        Linker {
            cfg,
            nodes: Nodes::default(),
            age: BTreeSet::new(),
            held: FastMap::default(),
            held_count: 0,
            conversations: FastMap::default(),
            stats: LinkStats::default(),
            changes: None,
            scans: Scans::default(),
        }
    }

    /// The state as it is now has been written to a checkpoint: changes are tracked from here,
    /// for the next incremental one ([`Linker::delta`]).
    pub fn checkpointed(&mut self) {
        self.changes = Some(Changes::default());
    }

    /// What changed since the last [`Linker::checkpointed`], for an incremental checkpoint on
    /// top of that one; `None` when that is not known (never checkpointed, or more removals
    /// than `entries_max` since): write the whole state then.
    pub fn delta(&self) -> Option<LinkerDeltaRef<'_>> {
        let c = self.changes.as_ref().filter(|c| !c.overflowed)?;
        let (mut held_changed, mut held_removed) = (Vec::new(), Vec::new());
        for parent in &c.held {
            match self.held.get_key_value(parent.as_str()) {
                Some(kv) => held_changed.push(kv),
                None => held_removed.push(parent),
            }
        }
        Some(LinkerDeltaRef {
            nodes: c
                .nodes
                .iter()
                .filter_map(|s| self.nodes.get(*s))
                .map(|n| (&n.id, self.nodes.wire(n)))
                .collect(),
            removed_nodes: c.removed_nodes.iter().collect(),
            conversations: c
                .conversations
                .iter()
                .filter_map(|r| self.conversations.get_key_value(r))
                .collect(),
            removed_conversations: c.removed_conversations.iter().collect(),
            held_changed,
            held_removed,
            stats: self.stats,
        })
    }

    /// Applies an incremental checkpoint read back on top of the state it was taken after
    /// (restore: the full checkpoint, then each delta in order, then [`Linker::restored`]).
    pub fn apply(&mut self, d: LinkerDelta) {
        for id in &d.removed_nodes {
            if let Some(s) = self.nodes.find(id)
                && let Some(n) = self.nodes.remove(s)
            {
                self.age.remove(&(n.created_at, s));
            }
        }
        for r in &d.removed_conversations {
            self.conversations.remove(r);
        }
        for (id, w) in d.nodes {
            self.nodes.upsert(id, w);
        }
        self.conversations.extend(d.conversations);
        if let Some(held) = d.held {
            self.held = held;
        }
        for parent in &d.held_removed {
            self.held.remove(parent);
        }
        self.held.extend(d.held_changed);
        self.stats = d.stats;
        self.scans = Scans::default();
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// A linker read back from a checkpoint, with this process's settings; derived indexes
    /// are rebuilt.
    #[must_use]
    pub fn restored(mut self, cfg: LinkerConfig) -> Self {
        self.cfg = cfg;
        // Deserialised strings are one allocation each: share a root's id with its replies
        // again as `link` does.
        let roots: Vec<(Slot, Shared)> = self
            .nodes
            .iter()
            .filter(|(_, n)| !Arc::ptr_eq(&n.root, &n.id))
            .filter_map(|(s, n)| Some((s, self.nodes.by_id(&n.root)?.id.clone())))
            .collect();
        for (s, root) in roots {
            if let Some(n) = self.nodes.get_mut(s) {
                n.root = root;
            }
        }
        self.age = self.nodes.iter().map(|(s, n)| (n.created_at, s)).collect();
        self.held_count = self.held.values().map(Vec::len).sum();
        // Each conversation's messages, counted again; one without any (a checkpoint written
        // before conversations went with their last message) can no longer be reached.
        for c in self.conversations.values_mut() {
            c.live = 0;
        }
        for (_, n) in self.nodes.iter() {
            if let Some(c) = self.conversations.get_mut(&*n.root) {
                c.live = c.live.saturating_add(1);
            }
        }
        self.conversations.retain(|_, c| c.live > 0);
        self
    }

    /// Rewrites every stored tag (the enrichment's packed per-event attributes) with `f`: a
    /// restored state's tags refer to the table of the process that wrote it.
    pub fn map_tags(&mut self, f: impl Fn(u64) -> u64) {
        for n in self.nodes.values_mut() {
            n.tag = f(n.tag);
        }
        for h in self.held.values_mut().flatten() {
            h.input.tag = f(h.input.tag);
        }
    }

    /// Messages remembered plus replies held.
    pub fn entries(&self) -> usize {
        self.nodes.len() + self.held_count
    }

    /// The inbound messages still waiting for their brand's first response (within the
    /// horizon: older ones have expired), in no particular order.
    pub fn open_inbound(&self) -> impl Iterator<Item = OpenInbound<'_>> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role == Role::Inbound && !n.answered)
            .map(|(_, n)| OpenInbound {
                event_id: &n.id,
                brand: self.nodes.brand(n.brand),
                created_at: n.created_at,
                tag: n.tag,
            })
    }

    fn is_brand_author(&self, e: &LinkInput<'_>) -> bool {
        match self.cfg.accounts.get(e.brand).filter(|a| !a.is_empty()) {
            Some(accounts) => {
                accounts.contains(e.author_id)
                    || e.author_handle
                        .is_some_and(|h| accounts.iter().any(|a| a.eq_ignore_ascii_case(h)))
            }
            None => self.cfg.org_rule == OrgAuthorRule::ConfiguredElseIsOrg && e.author_is_org,
        }
    }

    /// Links one event; appends what became known to `out`.
    pub fn observe(&mut self, e: &LinkInput<'_>, out: &mut Vec<Linked>) {
        if self.nodes.find(e.event_id).is_some() {
            self.stats.duplicates += 1;
            return;
        }
        match e.in_reply_to {
            Some(parent) if parent != e.event_id && self.nodes.find(parent).is_none() => {
                // The parent may still come: hold the reply until it does (or the horizon ends).
                if self
                    .held
                    .get(parent)
                    .is_some_and(|v| v.iter().any(|h| h.input.event_id() == e.event_id))
                {
                    self.stats.duplicates += 1;
                    return;
                }
                let list = self.held.entry(parent.to_string()).or_default();
                if list.is_empty() {
                    self.scans.held_floor = self.scans.held_floor.min(e.created_at);
                }
                list.push(Held {
                    input: OwnedInput::of(e),
                });
                self.held_count += 1;
                if let Some(c) = self.changes.as_mut() {
                    c.held_changed(parent, self.cfg.entries_max);
                }
                self.enforce_bound(out);
            }
            _ => {
                self.link(e, out);
                self.enforce_bound(out);
            }
        }
    }

    /// Links `e` and the held replies it resolves. It does not enforce the bound: `observe`
    /// does, once per event. The replies linked here were counted while held, so linking them
    /// leaves the entries as they were; enforcing from here made `enforce_bound`, which links
    /// released replies, recurse once per parent while held replies dominated (a stack overflow
    /// at 6,400 entries in a debug test).
    fn link(&mut self, e: &LinkInput<'_>, out: &mut Vec<Linked>) {
        let by_brand = self.is_brand_author(e);
        let brand_i = self.nodes.brand_index(e.brand);
        let brand = self.nodes.brand(brand_i).clone();
        // What linking needs of the parent, copied out of the state it is about to change.
        let parent = e
            .in_reply_to
            .and_then(|p| self.nodes.find(p))
            .and_then(|s| {
                let p = self.nodes.get(s)?;
                Some(Parent {
                    slot: s,
                    id: p.id.clone(),
                    root: p.root.clone(),
                    by_brand: p.by_brand,
                    role: p.role,
                    brand: p.brand,
                })
            });
        let id: Shared = Arc::from(e.event_id);
        let root = parent
            .as_ref()
            .map_or_else(|| id.clone(), |p| p.root.clone());
        let root_node = self.nodes.by_id(&root);
        let root_by_brand = root_node.is_some_and(|r| r.by_brand);
        let root_inbound = root_node.is_some_and(|r| r.role == Role::Inbound);
        let is_reply = matches!(
            e.kind,
            EventKind::Reply | EventKind::Comment | EventKind::DirectMessage
        );
        // For a response: the answered message (the parent), its slot and id.
        let (role, answers) = if by_brand {
            match &parent {
                None => (Role::Broadcast, None),
                Some(p) if p.by_brand => (Role::FollowUp, None),
                // Only the brand the message addressed answers it (another company replying
                // in the thread is not that brand's response).
                Some(p) if p.role == Role::Inbound && p.brand == brand_i => {
                    (Role::Response, Some((p.slot, p.id.clone())))
                }
                Some(_) => (Role::Other, None),
            }
        } else {
            let addressed = match e.kind {
                EventKind::Mention => true,
                EventKind::DirectMessage => true,
                EventKind::Reply | EventKind::Comment => {
                    parent.as_ref().is_some_and(|p| p.by_brand) || root_by_brand || root_inbound
                }
                EventKind::Post | EventKind::Share | EventKind::Reaction => false,
            };
            (
                if addressed {
                    Role::Inbound
                } else {
                    Role::Other
                },
                None,
            )
        };
        let replies_to_broadcast = !by_brand
            && is_reply
            && parent
                .as_ref()
                .is_some_and(|p| p.by_brand && p.role == Role::Broadcast);

        let author = AuthorKey::of(e.author_id);
        if let Some(c) = self.changes.as_mut() {
            c.conversation(&root);
        }
        // Conversation turns: a change of speaker between the brand and others.
        let conv = self.conversations.entry(root.clone()).or_default();
        if parent.is_none() && conv.last_at < self.scans.cutoff {
            // A new root whose id is that of a conversation past the horizon, waiting for its
            // sweep: it starts over, as it would had the sweep run already. (A reply's
            // conversation is reachable only through a message of it linked since the last
            // advance or within the horizon: never one waiting for its sweep.)
            *conv = Conversation::default();
        }
        // The message is stored below, with this root.
        conv.live = conv.live.saturating_add(1);
        if matches!(
            role,
            Role::Inbound | Role::Response | Role::Broadcast | Role::FollowUp
        ) {
            if conv.last_by_brand.is_some_and(|b| b != by_brand) {
                conv.turns += 1;
            }
            conv.last_by_brand = Some(by_brand);
        }
        conv.last_at = conv.last_at.max(e.created_at);
        self.scans.conversations_floor = self.scans.conversations_floor.min(conv.last_at);
        let turns = conv.turns;

        // Response effect: the author of an answered inbound message speaks again.
        if role == Role::Inbound
            && let Some(answered_id) = conv.awaiting_effect.take(author)
            && let Some(m) = self.nodes.by_id(&answered_id)
        {
            out.push(Linked::Effect {
                brand: self.nodes.brand(m.brand).clone(),
                inbound_id: answered_id,
                inbound_created_at: m.created_at,
                delta: e.compound - m.compound,
                tag: m.tag,
            });
        }

        out.push(Linked::Event {
            event_id: id.clone(),
            brand: brand.clone(),
            author_id: Arc::from(e.author_id),
            created_at: e.created_at,
            role,
            answers: answers.as_ref().map(|(_, a)| a.clone()),
            root: root.clone(),
            replies_to_broadcast,
            turns,
            compound: e.compound,
            tag: e.tag,
        });
        self.stats.linked += 1;

        if let Some((slot, inbound_id)) = &answers
            && let Some(m) = self.nodes.get_mut(*slot)
            && !m.answered
            && e.created_at >= m.created_at
        {
            m.answered = true;
            out.push(Linked::FirstResponse {
                inbound_id: inbound_id.clone(),
                brand: brand.clone(),
                inbound_created_at: m.created_at,
                responded_at: e.created_at,
                tag: m.tag,
            });
            let inbound_author = m.author;
            if let Some(c) = self.changes.as_mut() {
                c.node_changed(*slot);
            }
            if let Some(conv) = self.conversations.get_mut(&root)
                && conv.awaiting_effect.len() < AWAITING_EFFECT_MAX
            {
                conv.awaiting_effect
                    .push(inbound_author, inbound_id.clone());
            }
        }

        let slot = self.nodes.insert(Node {
            id: id.clone(),
            root,
            author,
            created_at: e.created_at,
            compound: e.compound,
            tag: e.tag,
            brand: brand_i,
            role,
            by_brand,
            answered: false,
        });
        if let Some(c) = self.changes.as_mut() {
            c.node_added(slot, &id);
        }
        self.age.insert((e.created_at, slot));

        // Replies that were waiting for this message can be linked now, in time order.
        if let Some(mut children) = self.held.remove(e.event_id) {
            self.held_count -= children.len();
            if let Some(c) = self.changes.as_mut() {
                c.held_changed(e.event_id, self.cfg.entries_max);
            }
            children.sort_by_key(|h| h.input.created_at);
            for h in children {
                self.stats.resolved_late += 1;
                let input = h.input;
                self.link(&input.view(), out);
            }
        }
    }

    /// Removes the oldest message (by the age index); `expired` or `evicted` counts it.
    fn pop_oldest(&mut self) -> bool {
        let Some((_, slot)) = self.age.pop_first() else {
            return false;
        };
        let Some(n) = self.nodes.remove(slot) else {
            return true;
        };
        if let Some(c) = self.changes.as_mut() {
            c.node_removed(slot, &n.id, self.cfg.entries_max);
        }
        if let Some(conv) = self.conversations.get_mut(&n.root)
            && conv.live < u16::MAX
        {
            // Saturating: a count below its messages would be a bug, not a reason to panic.
            conv.live = conv.live.saturating_sub(1);
            if conv.live == 0 {
                self.conversations.remove(&n.root);
                if let Some(c) = self.changes.as_mut() {
                    c.conversation_removed(&n.root, self.cfg.entries_max);
                }
            }
        }
        true
    }

    /// Advances event time: drops state older than `watermark - horizon` and releases replies
    /// whose parent never came.
    pub fn advance(&mut self, watermark: i64, out: &mut Vec<Linked>) {
        let cutoff = watermark.saturating_sub(self.cfg.horizon_micros);
        self.scans.cutoff = self.scans.cutoff.max(cutoff);
        if cutoff > self.scans.held_floor {
            let mut floor = i64::MAX;
            let mut orphans: Vec<String> = Vec::new();
            for (k, v) in &self.held {
                let newest = v
                    .iter()
                    .map(|h| h.input.created_at)
                    .max()
                    .unwrap_or(i64::MIN);
                if newest < cutoff {
                    orphans.push(k.clone());
                } else {
                    floor = floor.min(newest);
                }
            }
            self.scans.held_floor = floor;
            for parent in orphans {
                self.release_held(&parent, out);
            }
        }
        if self.age.last().is_some_and(|(t, _)| *t < cutoff) {
            // Every message is past the cutoff (the end of a bounded run moves event time
            // past everything: `force_watermark`): dropped at once, not one by one through
            // the index and the age order (a fifth of a bounded run's end in `perf`). The
            // next checkpoint is a full one of what is left, not a delta naming each message.
            self.stats.expired += self.nodes.len() as u64;
            self.nodes.clear();
            self.age.clear();
            // Every conversation's messages went with them (see `Conversation::live`).
            self.conversations.clear();
            if let Some(c) = self.changes.as_mut() {
                c.overflow();
            }
        }
        while self.age.first().is_some_and(|(t, _)| *t < cutoff) {
            self.pop_oldest();
            self.stats.expired += 1;
        }
        // A conversation's `last_at` is its newest message's time, so once it is below the
        // cutoff every message of it has expired above: nothing can reach it any more.
        let sweep_every = (self.cfg.horizon_micros / CONVERSATION_SWEEP_DIVISOR).max(1);
        if cutoff > self.scans.conversations_floor
            && cutoff.saturating_sub(self.scans.conversations_swept) >= sweep_every
        {
            let changes = &mut self.changes;
            let bound = self.cfg.entries_max;
            let mut floor = i64::MAX;
            self.conversations.retain(|root, c| {
                let keep = c.last_at >= cutoff;
                if keep {
                    floor = floor.min(c.last_at);
                } else if let Some(ch) = changes.as_mut() {
                    ch.conversation_removed(root, bound);
                }
                keep
            });
            self.scans.conversations_floor = floor;
            self.scans.conversations_swept = cutoff;
        }
    }

    /// Links the replies held for `parent` as conversation roots, counted as orphans: their
    /// parent did not come within the horizon, or the state bound forced them out first. They
    /// become ordinary entries (which the bound may then evict), so nothing is counted twice.
    fn release_held(&mut self, parent: &str, out: &mut Vec<Linked>) {
        if let Some(children) = self.held.remove(parent) {
            self.held_count -= children.len();
            if let Some(c) = self.changes.as_mut() {
                c.held_changed(parent, self.cfg.entries_max);
            }
            for h in children {
                self.stats.orphans += 1;
                // Link as a root: its parent is unknown. A reply or comment becomes a post;
                // other kinds keep theirs.
                let mut input = h.input.view();
                input.in_reply_to = None;
                if matches!(input.kind, EventKind::Reply | EventKind::Comment) {
                    input.kind = EventKind::Post;
                }
                self.link(&input, out);
            }
        }
    }

    /// At the bound with held replies dominating, takes out the oldest message or a batch of
    /// held replies until the bound holds.
    fn enforce_bound(&mut self, out: &mut Vec<Linked>) {
        while self.entries() > self.cfg.entries_max {
            // Held replies first if they dominate, else the oldest message.
            if self.held_count > self.nodes.len() {
                // A batch per pass over the map: its first parents, together at least the
                // excess and 1/64 of the held replies. Finding each first parent anew scans the
                // buckets emptied before it from the map's start every time: one reply per
                // scan was quadratic (`enforce_bound` 11 % of the pipeline task 14 minutes
                // into a soak at the bound, replies to evicted parents dominating; the
                // pipeline fell behind, 2026-12-07).
                let want = (self.entries() - self.cfg.entries_max)
                    .max(self.held_count / HELD_RELEASE_SHARE);
                let mut parents = Vec::new();
                let mut replies = 0;
                for (parent, children) in &self.held {
                    if replies >= want {
                        break;
                    }
                    replies += children.len();
                    parents.push(parent.clone());
                }
                if parents.is_empty() {
                    break;
                }
                for parent in &parents {
                    self.release_held(parent, out);
                }
                continue;
            }
            if !self.pop_oldest() {
                break;
            }
            self.stats.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn linker(entries_max: usize) -> Linker {
        let mut accounts = HashMap::default();
        accounts.insert(
            "acme".to_string(),
            ["acme_help".to_string(), "AcmeNews".to_string()]
                .into_iter()
                .collect(),
        );
        Linker::new(LinkerConfig {
            horizon_micros: 24 * 60 * MIN,
            entries_max,
            org_rule: OrgAuthorRule::ConfiguredElseIsOrg,
            accounts,
        })
    }

    fn ev<'a>(
        id: &'a str,
        kind: EventKind,
        author: &'a str,
        parent: Option<&'a str>,
        t: i64,
    ) -> LinkInput<'a> {
        LinkInput {
            event_id: id,
            brand: "acme",
            kind,
            author_id: author,
            author_handle: None,
            author_is_org: author.starts_with("acme") || author == "AcmeNews",
            in_reply_to: parent,
            created_at: t,
            compound: if author.starts_with('u') { -0.5 } else { 0.4 },
            tag: 0,
        }
    }

    fn roles(out: &[Linked]) -> Vec<(String, Role)> {
        out.iter()
            .filter_map(|l| match l {
                Linked::Event { event_id, role, .. } => Some((event_id.to_string(), *role)),
                _ => None,
            })
            .collect()
    }

    fn first_responses(out: &[Linked]) -> Vec<(String, i64)> {
        out.iter()
            .filter_map(|l| match l {
                Linked::FirstResponse {
                    inbound_id,
                    inbound_created_at,
                    responded_at,
                    ..
                } => Some((inbound_id.to_string(), responded_at - inbound_created_at)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn open_inbound_lists_what_waits_for_an_answer_until_it_expires() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(&ev("m1", EventKind::Mention, "u1", None, 0), &mut out);
        l.observe(&ev("m2", EventKind::Mention, "u2", None, MIN), &mut out);
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("m1"), 2 * MIN),
            &mut out,
        );
        let open: Vec<(&str, i64)> = l
            .open_inbound()
            .map(|o| (o.event_id, o.created_at))
            .collect();
        assert_eq!(open, vec![("m2", MIN)], "m1 was answered, r1 is no inbound");
        let authors: Vec<&str> = out
            .iter()
            .filter_map(|x| match x {
                Linked::Event { author_id, .. } => Some(&**author_id),
                _ => None,
            })
            .collect();
        assert_eq!(authors, vec!["u1", "u2", "acme_help"]);
        // Past the horizon the message has expired: no longer open.
        l.advance(MIN + 24 * 60 * MIN + 1, &mut out);
        assert_eq!(l.open_inbound().count(), 0);
    }

    #[test]
    fn roles_follow_the_definitions() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(&ev("p1", EventKind::Post, "acme_help", None, 0), &mut out);
        l.observe(
            &ev("c1", EventKind::Comment, "u1", Some("p1"), MIN),
            &mut out,
        );
        l.observe(&ev("m1", EventKind::Mention, "u2", None, 2 * MIN), &mut out);
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("m1"), 12 * MIN),
            &mut out,
        );
        l.observe(
            &ev("r2", EventKind::Reply, "acme_help", Some("m1"), 13 * MIN),
            &mut out,
        );
        l.observe(
            &ev("f1", EventKind::Reply, "acme_help", Some("p1"), 14 * MIN),
            &mut out,
        );
        l.observe(
            &ev("s1", EventKind::Share, "u3", Some("p1"), 15 * MIN),
            &mut out,
        );
        l.observe(&ev("x1", EventKind::Post, "u4", None, 16 * MIN), &mut out);
        l.observe(
            &ev("x2", EventKind::Reply, "u5", Some("x1"), 17 * MIN),
            &mut out,
        );
        l.observe(
            &ev("o1", EventKind::Reply, "u6", Some("m1"), 18 * MIN),
            &mut out,
        );
        assert_eq!(
            roles(&out),
            vec![
                ("p1".into(), Role::Broadcast),
                ("c1".into(), Role::Inbound),
                ("m1".into(), Role::Inbound),
                ("r1".into(), Role::Response),
                ("r2".into(), Role::Response),
                ("f1".into(), Role::FollowUp),
                ("s1".into(), Role::Other),
                ("x1".into(), Role::Other),
                ("x2".into(), Role::Other),
                ("o1".into(), Role::Inbound),
            ]
        );
        // Only the first response counts, and it is 10 minutes after the mention.
        assert_eq!(first_responses(&out), vec![("m1".to_string(), 10 * MIN)]);
        let to_broadcast = out.iter().any(|l| matches!(l, Linked::Event { event_id, replies_to_broadcast: true, .. } if &**event_id == "c1"));
        assert!(to_broadcast, "conversation rate counts c1");
    }

    #[test]
    fn replies_before_parents_are_resolved_when_the_parent_arrives() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("m1"), 30 * MIN),
            &mut out,
        );
        assert!(out.is_empty(), "held until its parent arrives");
        l.observe(&ev("m1", EventKind::Mention, "u1", None, 5 * MIN), &mut out);
        assert_eq!(
            roles(&out),
            vec![("m1".into(), Role::Inbound), ("r1".into(), Role::Response)]
        );
        assert_eq!(first_responses(&out), vec![("m1".to_string(), 25 * MIN)]);
        assert_eq!(l.stats().resolved_late, 1);
    }

    #[test]
    fn orphans_are_released_after_the_horizon_and_counted() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(&ev("r1", EventKind::Reply, "u1", Some("gone"), 0), &mut out);
        l.advance(23 * 60 * MIN, &mut out);
        assert!(out.is_empty());
        l.advance(25 * 60 * MIN, &mut out);
        assert_eq!(roles(&out), vec![("r1".into(), Role::Other)]);
        assert_eq!(l.stats().orphans, 1);
    }

    #[test]
    fn duplicates_count_once() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        let m = ev("m1", EventKind::Mention, "u1", None, 0);
        l.observe(&m, &mut out);
        l.observe(&m, &mut out);
        let r = ev("r1", EventKind::Reply, "acme_help", Some("m9"), 0);
        l.observe(&r, &mut out);
        l.observe(&r, &mut out);
        assert_eq!(roles(&out).len(), 1);
        assert_eq!(l.stats().duplicates, 2);
    }

    #[test]
    fn state_is_bounded_and_expires() {
        let mut l = linker(10);
        let mut out = Vec::new();
        for i in 0..50 {
            let id = format!("m{i}");
            l.observe(&ev(&id, EventKind::Mention, "u1", None, i * MIN), &mut out);
        }
        assert!(l.entries() <= 10);
        assert_eq!(l.stats().evicted, 40);
        // Conversations go with their last message: bounded with them, not by the horizon.
        assert_eq!(l.conversations.len(), 10);
        // A reply joins its root's conversation; evicting the root alone keeps it for the
        // reply, evicting both ends it.
        l.observe(
            &ev("r40", EventKind::Reply, "acme_help", Some("m40"), 50 * MIN),
            &mut out,
        );
        assert_eq!(
            l.conversations.len(),
            10,
            "m40 was evicted for r40: r40 keeps it"
        );
        let live = |l: &Linker, root: &str| l.conversations.get(root).map(|c| c.live);
        assert_eq!(live(&l, "m40"), Some(1));
        // Restored, the counts are the same.
        let back: Linker = ciborium::from_reader(cbor(&l).as_slice()).expect("decoding");
        let back = back.restored(linker(10).cfg);
        assert_eq!(live(&back, "m40"), Some(1));
        assert_eq!(back.conversations.len(), l.conversations.len());
        // m41 to m49 expire one by one (r40 is younger), then r40.
        l.advance(49 * MIN + 24 * 60 * MIN + 1, &mut out);
        assert_eq!((l.entries(), l.conversations.len()), (1, 1));
        l.advance(50 * MIN + 24 * 60 * MIN + 1, &mut out);
        assert_eq!((l.entries(), l.conversations.len()), (0, 0));
        assert_eq!(l.stats().expired, 10);
    }

    /// Event time past every message drops them all at once; what follows must be as if they
    /// had expired one by one, and the next checkpoint is a full one.
    #[test]
    fn expiring_everything_at_once_equals_expiring_one_by_one() {
        let fill = |l: &mut Linker| {
            let mut out = Vec::new();
            for i in 0..40 {
                let id = format!("m{i}");
                l.observe(&ev(&id, EventKind::Mention, "u1", None, i * MIN), &mut out);
                if i % 3 == 0 {
                    let r = format!("r{i}");
                    l.observe(
                        &ev(&r, EventKind::Reply, "acme_help", Some(&id), i * MIN + 1),
                        &mut out,
                    );
                }
            }
            // A reply whose parent never comes: released as an orphan by the advance.
            l.observe(
                &ev("r-x", EventKind::Reply, "acme_help", Some("gone"), 5 * MIN),
                &mut out,
            );
            l.checkpointed();
        };
        let day = 24 * 60 * MIN;
        let (mut at_once, mut one_by_one) = (linker(1000), linker(1000));
        fill(&mut at_once);
        fill(&mut one_by_one);
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        // Part of the messages first: expired one by one, tracked for a delta.
        one_by_one.advance(20 * MIN + day, &mut out_b);
        assert!(one_by_one.entries() > 0);
        assert!(one_by_one.delta().is_some(), "a partial expiry is a delta");
        one_by_one.advance(41 * MIN + day, &mut out_b);
        at_once.advance(41 * MIN + day, &mut out_a);
        assert_eq!(at_once.entries(), 0);
        assert_eq!(at_once.stats(), one_by_one.stats());
        assert_eq!(at_once.stats().expired, 40 + 14 + 1);
        assert!(
            at_once.delta().is_none(),
            "the next checkpoint is a full one"
        );
        assert_eq!(roles(&out_a), roles(&out_b), "the orphan is released alike");
        // Both go on alike, also from a checkpoint of the emptied state.
        let back: Linker = ciborium::from_reader(cbor(&at_once).as_slice()).expect("decoding");
        let mut back = back.restored(linker(1000).cfg);
        let then = |l: &mut Linker| {
            let mut out = Vec::new();
            let t = 42 * MIN + day;
            l.observe(&ev("n1", EventKind::Mention, "u2", None, t), &mut out);
            l.observe(&ev("m3", EventKind::Mention, "u3", None, t), &mut out);
            l.observe(
                &ev("n2", EventKind::Reply, "acme_help", Some("n1"), t + MIN),
                &mut out,
            );
            (roles(&out), first_responses(&out), l.entries())
        };
        let expected = then(&mut one_by_one);
        assert_eq!(then(&mut at_once), expected);
        assert_eq!(then(&mut back), expected);
        assert_eq!(expected.1, [("n1".to_string(), MIN)]);
    }

    #[test]
    fn held_replies_beyond_the_bound_are_released_and_each_counted_once() {
        let mut l = linker(10);
        let mut out = Vec::new();
        for i in 0..30 {
            let (id, parent) = (format!("r{i}"), format!("missing{i}"));
            l.observe(
                &ev(&id, EventKind::Reply, "u1", Some(&parent), i * MIN),
                &mut out,
            );
        }
        assert!(l.entries() <= 10);
        let s = l.stats();
        assert_eq!(
            s.orphans,
            roles(&out).len() as u64,
            "each released reply is reported once"
        );
        assert_eq!(
            s.evicted + l.entries() as u64,
            30,
            "every reply is still held or linked, or was evicted once"
        );
    }

    /// Past the bound with thousands held, replies go in batches (one pass over the map for
    /// many parents), and still each exactly once, without the bound ever exceeded after an
    /// event.
    #[test]
    fn held_replies_at_a_large_bound_go_in_batches_each_counted_once() {
        let mut l = linker(6400);
        let mut out = Vec::new();
        let mut most = 0;
        for i in 0..20_000 {
            let (id, parent) = (format!("r{i}"), format!("missing{i}"));
            l.observe(
                &ev(&id, EventKind::Reply, "u1", Some(&parent), i * 1_000_000),
                &mut out,
            );
            assert!(l.entries() <= 6400, "after event {i}: {}", l.entries());
            most = most.max(l.entries());
        }
        let s = l.stats();
        assert_eq!(s.orphans, roles(&out).len() as u64);
        assert_eq!(s.evicted + l.entries() as u64, 20_000);
        // Batches of 1/64 of those held: the bound is reached, and nothing is released far
        // below it.
        assert_eq!(most, 6400);
        assert!(l.entries() >= 6400 - 6400 / 64 - 1, "{}", l.entries());
    }

    /// Held replies go into an incremental checkpoint as changes per parent, and a chain of
    /// them restores what was held: a delta names only the parents whose replies changed.
    #[test]
    fn held_replies_go_into_deltas_as_changes_and_restore_through_the_chain() {
        fn delta_of(l: &Linker) -> LinkerDelta {
            let bytes = cbor(&l.delta().expect("changes are tracked"));
            ciborium::from_reader(bytes.as_slice()).expect("decoding a delta")
        }
        fn keys<T>(v: &[(String, T)]) -> Vec<&str> {
            let mut k: Vec<&str> = v.iter().map(|(p, _)| p.as_str()).collect();
            k.sort_unstable();
            k
        }
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(&ev("m0", EventKind::Mention, "u0", None, 0), &mut out);
        l.checkpointed();
        let full = cbor(&l);
        // First interval: replies to p1 and p2, which are not known yet.
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("p1"), MIN),
            &mut out,
        );
        l.observe(
            &ev("r2", EventKind::Reply, "acme_help", Some("p2"), MIN),
            &mut out,
        );
        l.observe(
            &ev("r2b", EventKind::Reply, "u9", Some("p2"), MIN),
            &mut out,
        );
        let d1 = delta_of(&l);
        assert_eq!(keys(&d1.held_changed), ["p1", "p2"]);
        assert!(d1.held_removed.is_empty() && d1.held.is_none());
        l.checkpointed();
        // Second: p1 arrives (its reply is linked), a reply to p3 is held; p2 is unchanged.
        l.observe(&ev("p1", EventKind::Mention, "u1", None, MIN / 2), &mut out);
        l.observe(
            &ev("r3", EventKind::Reply, "acme_help", Some("p3"), 2 * MIN),
            &mut out,
        );
        let d2 = delta_of(&l);
        assert_eq!(
            keys(&d2.held_changed),
            ["p3"],
            "p2's replies did not change"
        );
        assert_eq!(d2.held_removed, ["p1"]);

        let mut back: Linker = ciborium::from_reader(full.as_slice()).expect("decoding");
        back.apply(d1);
        back.apply(d2);
        let mut back = back.restored(linker(1000).cfg);
        assert_eq!(back.entries(), l.entries());
        // Both go on alike: p2 and p3 arrive and release what was held for them.
        let then = |l: &mut Linker| {
            let mut out = Vec::new();
            l.observe(&ev("p2", EventKind::Mention, "u2", None, MIN / 2), &mut out);
            l.observe(&ev("p3", EventKind::Mention, "u3", None, MIN), &mut out);
            let mut r = roles(&out);
            r.sort_by(|a, b| a.0.cmp(&b.0));
            (r, first_responses(&out))
        };
        let (expected, got) = (then(&mut l), then(&mut back));
        assert_eq!(got, expected);
        assert_eq!(got.0.len(), 5, "p2, r2, r2b, p3, r3");
        assert_eq!(back.entries(), l.entries());
    }

    /// A delta of formats 3 and 4 carried every held reply whole; it still applies.
    #[test]
    fn a_format_4_delta_with_every_held_reply_still_applies() {
        #[derive(Serialize)]
        struct V4Delta {
            // Empty here: only the held replies matter.
            nodes: Vec<(String, u8)>,
            removed_nodes: Vec<String>,
            conversations: Vec<(String, u8)>,
            removed_conversations: Vec<String>,
            held: HashMap<String, Vec<Held>>,
            stats: LinkStats,
        }
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("p1"), MIN),
            &mut out,
        );
        let held: HashMap<String, Vec<Held>> =
            l.held.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let v4 = V4Delta {
            nodes: Vec::new(),
            removed_nodes: Vec::new(),
            conversations: Vec::new(),
            removed_conversations: Vec::new(),
            held,
            stats: l.stats(),
        };
        let d: LinkerDelta = ciborium::from_reader(cbor(&v4).as_slice()).expect("decoding v4");
        let mut back = linker(1000);
        back.apply(d);
        let mut back = back.restored(linker(1000).cfg);
        assert_eq!(back.entries(), 1, "r1 is held");
        let mut out = Vec::new();
        back.observe(&ev("p1", EventKind::Mention, "u1", None, 0), &mut out);
        assert_eq!(first_responses(&out), [("p1".to_string(), MIN)]);
    }

    /// The state after "m1 (u1) asks, r1 (the brand) answers": what a checkpoint holds.
    fn asked_and_answered() -> (Linker, Vec<Linked>) {
        let mut l = linker(1000);
        let mut out = Vec::new();
        l.observe(&ev("m1", EventKind::Mention, "u1", None, 0), &mut out);
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("m1"), MIN),
            &mut out,
        );
        (l, out)
    }

    /// u1 writes again after the answer: the response effect and the turns need the state.
    fn asks_again(l: &mut Linker) -> Vec<Linked> {
        let mut out = Vec::new();
        let mut again = ev("m2", EventKind::Reply, "u1", Some("r1"), 2 * MIN);
        again.compound = 0.6;
        l.observe(&again, &mut out);
        // A re-delivered m1 is still known.
        l.observe(&ev("m1", EventKind::Mention, "u1", None, 0), &mut out);
        out
    }

    fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        ciborium::into_writer(v, &mut b).expect("encoding to memory");
        b
    }

    #[test]
    fn an_owned_input_gives_back_what_it_took_and_reads_the_format_4_struct() {
        let mut base = ev("m1", EventKind::Reply, "u1", Some("p0"), 5);
        base.author_handle = Some("ünïcode_handle");
        let mut cases = vec![base];
        for (handle, parent) in [(None, None), (Some(""), None), (None, Some("p0"))] {
            let mut c = base;
            c.author_handle = handle;
            c.in_reply_to = parent;
            cases.push(c);
        }
        for c in cases {
            let o = OwnedInput::of(&c);
            assert_eq!(o.view(), c);
            assert_eq!((o.event_id(), o.created_at()), ("m1", 5));
            // Format 5: an array, which reads back as it was.
            let back: OwnedInput = ciborium::from_reader(cbor(&o).as_slice()).expect("format 5");
            assert_eq!(back, o);
            // Formats 2 to 4 wrote the struct with its field names; it still reads.
            #[derive(Serialize)]
            struct V4<'a> {
                event_id: &'a str,
                brand: &'a str,
                kind: EventKind,
                author_id: &'a str,
                author_handle: Option<&'a str>,
                author_is_org: bool,
                in_reply_to: Option<&'a str>,
                created_at: i64,
                compound: f64,
                tag: u64,
            }
            let v4 = V4 {
                event_id: c.event_id,
                brand: c.brand,
                kind: c.kind,
                author_id: c.author_id,
                author_handle: c.author_handle,
                author_is_org: c.author_is_org,
                in_reply_to: c.in_reply_to,
                created_at: c.created_at,
                compound: c.compound,
                tag: c.tag,
            };
            let old = cbor(&v4);
            let back: OwnedInput = ciborium::from_reader(old.as_slice()).expect("format 4");
            assert_eq!(back, o);
            assert!(
                cbor(&o).len() * 10 < old.len() * 7,
                "the array is under 70 % of the map: {} against {} bytes",
                cbor(&o).len(),
                old.len()
            );
        }
    }

    #[test]
    fn a_checkpointed_linker_goes_on_as_if_uninterrupted() {
        let (mut l, _) = asked_and_answered();
        let bytes = cbor(&l);
        let mut back: Linker = ciborium::from_reader(bytes.as_slice()).expect("decoding");
        back = back.restored(linker(1000).cfg);
        let (expected, got) = (asks_again(&mut l), asks_again(&mut back));
        assert_eq!(got, expected);
        assert!(got.iter().any(|o| matches!(o, Linked::Effect { .. })));
        assert_eq!(back.stats().duplicates, 1);
        assert_eq!(back.entries(), 3);
    }

    #[test]
    fn a_linker_in_checkpoint_format_3_still_restores() {
        // Format 3 wrote a node as a struct (a CBOR map with field names) and authors as
        // strings; these are its types as they were.
        #[derive(Serialize)]
        struct V3Node {
            brand: String,
            author_id: String,
            by_brand: bool,
            role: Role,
            root: String,
            created_at: i64,
            compound: f64,
            answered: bool,
            tag: u64,
        }
        #[derive(Serialize)]
        struct V3Conversation {
            last_by_brand: Option<bool>,
            turns: u32,
            last_at: i64,
            awaiting_effect: Vec<(String, String)>,
        }
        #[derive(Serialize)]
        struct V3Linker {
            nodes: HashMap<String, V3Node>,
            held: HashMap<String, Vec<Held>>,
            held_count: usize,
            conversations: HashMap<String, V3Conversation>,
            stats: LinkStats,
        }
        let node = |author: &str, by_brand, role, t, compound, answered| V3Node {
            brand: "acme".into(),
            author_id: author.into(),
            by_brand,
            role,
            root: "m1".into(),
            created_at: t,
            compound,
            answered,
            tag: 0,
        };
        let (mut now, _) = asked_and_answered();
        let v3 = V3Linker {
            nodes: HashMap::from([
                ("m1".into(), node("u1", false, Role::Inbound, 0, -0.5, true)),
                (
                    "r1".into(),
                    node("acme_help", true, Role::Response, MIN, 0.4, false),
                ),
            ]),
            held: HashMap::new(),
            held_count: 0,
            conversations: HashMap::from([(
                "m1".into(),
                V3Conversation {
                    last_by_brand: Some(true),
                    turns: 1,
                    last_at: MIN,
                    awaiting_effect: vec![("u1".into(), "m1".into())],
                },
            )]),
            stats: now.stats(),
        };
        let old: Linker = ciborium::from_reader(cbor(&v3).as_slice()).expect("decoding v3");
        let mut old = old.restored(linker(1000).cfg);
        assert_eq!(asks_again(&mut old), asks_again(&mut now));
        assert_eq!(old.open_inbound().count(), now.open_inbound().count());
    }

    #[test]
    fn the_sizes_the_docs_give_hold() {
        // linkage/nodes.rs, OwnedInput and ARCHITECTURE.md give these; a field added changes
        // what a million waiting or remembered messages cost.
        let sizes = (
            std::mem::size_of::<Node>(),
            std::mem::size_of::<OwnedInput>(),
            std::mem::size_of::<Conversation>(),
        );
        assert_eq!(sizes, (72, 64, 24));
    }

    #[test]
    fn turns_and_response_effect() {
        let (mut l, mut out) = asked_and_answered();
        let mut happy = ev("m2", EventKind::Reply, "u1", Some("r1"), 2 * MIN);
        happy.compound = 0.6;
        l.observe(&happy, &mut out);
        let effect: Vec<f64> = out
            .iter()
            .filter_map(|o| match o {
                Linked::Effect { delta, .. } => Some(*delta),
                _ => None,
            })
            .collect();
        assert_eq!(effect.len(), 1);
        assert!((effect[0] - 1.1).abs() < 1e-12, "0.6 - (-0.5)");
        let last_turns = out.iter().rev().find_map(|o| match o {
            Linked::Event { turns, .. } => Some(*turns),
            _ => None,
        });
        assert_eq!(last_turns, Some(2), "u1 → brand → u1");
    }

    #[test]
    fn conversations_past_the_horizon_are_swept_and_a_new_root_of_the_same_id_starts_over() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        let horizon = 24 * 60 * MIN;
        // A first sweep (nothing to sweep) at a cutoff of 30 s.
        l.advance(horizon + MIN / 2, &mut out);
        l.observe(&ev("m1", EventKind::Mention, "u1", None, MIN), &mut out);
        l.observe(
            &ev("r1", EventKind::Reply, "acme_help", Some("m1"), 2 * MIN),
            &mut out,
        );
        l.observe(
            &ev("m2", EventKind::Reply, "u1", Some("r1"), 3 * MIN),
            &mut out,
        );
        l.checkpointed();
        // Past the horizon of every message, within one sweep interval (22.5 min) of the
        // last sweep: the messages expire, all at once, so the next checkpoint is a full one
        // (`expiring_everything_at_once_equals_expiring_one_by_one`); the conversation waits
        // for its sweep.
        l.advance(3 * MIN + horizon + 1, &mut out);
        assert_eq!(l.entries(), 0);
        assert_eq!(
            l.delta().map(|d| d.len()),
            None,
            "every message expired: a full checkpoint next"
        );
        // A root with the old root's id (seen again later) is a new conversation: turns 0,
        // not the 2 of the old one.
        out.clear();
        l.observe(
            &ev("m1", EventKind::Mention, "u1", None, 3 * MIN + horizon + 2),
            &mut out,
        );
        let turns = out.iter().find_map(|o| match o {
            Linked::Event { turns, .. } => Some(*turns),
            _ => None,
        });
        assert_eq!(turns, Some(0));
        // The next sweep, once the cutoff moved 1/64 of the horizon on: the new m1 is live.
        l.checkpointed();
        l.advance(3 * MIN + horizon + horizon / 64 + 1, &mut out);
        assert_eq!(
            l.delta().map(|d| d.len()),
            Some(0),
            "m1's conversation is live"
        );
        // A later message stays, so the new m1 expires on its own, into the delta.
        l.observe(
            &ev("m9", EventKind::Mention, "u9", None, 5 * MIN + horizon),
            &mut out,
        );
        l.advance(4 * MIN + 2 * horizon, &mut out);
        assert_eq!(
            l.delta().map(|d| d.len()),
            Some(4),
            "the new m1 and its conversation removed, m9 and its conversation added"
        );
    }

    #[test]
    fn is_org_counts_as_the_brand_only_for_unconfigured_brands() {
        let mut l = linker(1000);
        let mut out = Vec::new();
        // acme is configured: an is_org author that is not one of its accounts is not acme.
        let mut other_org = ev("p1", EventKind::Post, "acme_partner", None, 0);
        other_org.author_is_org = true;
        l.observe(&other_org, &mut out);
        // "globex" has no configured accounts: its is_org authors are the brand.
        let mut g = ev("p2", EventKind::Post, "globex_official", None, 0);
        g.brand = "globex";
        g.author_is_org = true;
        l.observe(&g, &mut out);
        assert_eq!(
            roles(&out),
            vec![("p1".into(), Role::Other), ("p2".into(), Role::Broadcast)]
        );
    }
}
