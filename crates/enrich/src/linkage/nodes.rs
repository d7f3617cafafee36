//! The messages linkage remembers: compact nodes in a chunked slab, an index of their ids, and
//! their checkpoint form.
//!
//! One node per message of the last response horizon: 1,000,000 in the end-to-end bench's
//! bounded run, so its size is the linker's size. A heap profile of that run (heaptrack,
//! 2026-12-04) put linkage at 312 MB of a 611 MB heap peak with the messages in a
//! `HashMap<Arc<str>, Node>`: 97 bytes per bucket at twice as many buckets as entries after a
//! growth step, a heap string per author, and an age index keyed by the id. Here:
//!
//! - the index is a table of 4-byte slot numbers (hashing the id the slot holds), so its spare
//!   buckets cost 5 bytes, not 97;
//! - nodes live in fixed chunks of [`CHUNK`] slots: growing never copies the whole (a `Vec` of a
//!   million nodes holds old and new for a moment), and freed slots are reused;
//! - a node keeps its brand as an index into the interned brand names and its author as a
//!   64-bit key ([`AuthorKey`]): the author is only ever compared (response effect), never
//!   shown, so no string per message for it.
//!
//! Checkpoints write a node as a CBOR array (no field names per message); the map form of
//! checkpoint format 3 (a struct per node, author as a string) still reads.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Role;

/// An id or name held by the state: one allocation shared by every place that holds it (a
/// node, the conversation it roots, its children's `root`, the facts emitted about it).
pub(super) type Shared = Arc<str>;

/// A node's place in the slab.
pub(super) type Slot = u32;

/// Slots per chunk: 16,384 nodes of 72 bytes, 1.2 MB.
const CHUNK: usize = 1 << 14;

/// An author id as linkage keeps it: a 64-bit hash, stable across processes and builds (it is
/// checkpointed). Compared only among the answered messages of one conversation waiting for
/// their author's next message (at most 16), so a collision, at odds of about 2⁻⁶⁴ per
/// comparison, is not a concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(super) struct AuthorKey(u64);

impl AuthorKey {
    /// FNV-1a over the bytes, then MurmurHash3's 64-bit finaliser (FNV alone mixes the last
    /// bytes poorly).
    pub(super) fn of(id: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        AuthorKey(h)
    }
}

impl Serialize for AuthorKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// Reads the key, or an author id as format 3 wrote it (hashed here).
impl<'de> Deserialize<'de> for AuthorKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AuthorKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an author key (u64) or an author id (string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AuthorKey, E> {
                Ok(AuthorKey(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AuthorKey, E> {
                Ok(AuthorKey::of(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// One remembered message (72 bytes).
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) id: Shared,
    pub(super) root: Shared,
    pub(super) author: AuthorKey,
    pub(super) created_at: i64,
    pub(super) compound: f64,
    pub(super) tag: u64,
    /// Index into [`Nodes::brand`].
    pub(super) brand: u32,
    pub(super) role: Role,
    pub(super) by_brand: bool,
    pub(super) answered: bool,
}

/// The messages of one linker: slab, index by id, interned brand names.
#[derive(Debug, Default)]
pub(super) struct Nodes {
    chunks: Vec<Box<[Option<Node>]>>,
    /// Slots below `next` that are empty.
    free: Vec<Slot>,
    /// Slots at or above this were never used.
    next: usize,
    len: usize,
    index: HashTable<Slot>,
    hasher: foldhash::fast::RandomState,
    brands: Vec<Shared>,
    brand_ids: std::collections::HashMap<Shared, u32, foldhash::fast::RandomState>,
}

impl Nodes {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn slot_ref(&self, s: Slot) -> Option<&Option<Node>> {
        let s = s as usize;
        self.chunks.get(s / CHUNK)?.get(s % CHUNK)
    }

    fn slot_mut(&mut self, s: Slot) -> Option<&mut Option<Node>> {
        let s = s as usize;
        self.chunks.get_mut(s / CHUNK)?.get_mut(s % CHUNK)
    }

    pub(super) fn get(&self, s: Slot) -> Option<&Node> {
        self.slot_ref(s)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, s: Slot) -> Option<&mut Node> {
        self.slot_mut(s)?.as_mut()
    }

    /// The slot of the message `id`.
    pub(super) fn find(&self, id: &str) -> Option<Slot> {
        let chunks = &self.chunks;
        self.index
            .find(self.hash(id), |&s| {
                let s = s as usize;
                chunks
                    .get(s / CHUNK)
                    .and_then(|c| c.get(s % CHUNK))
                    .and_then(Option::as_ref)
                    .is_some_and(|n| &*n.id == id)
            })
            .copied()
    }

    pub(super) fn by_id(&self, id: &str) -> Option<&Node> {
        self.find(id).and_then(|s| self.get(s))
    }

    /// The interned index of the brand `b` (looked up once per message linked; a partition
    /// may carry many brands, so a map, not a scan). Brands are never dropped.
    pub(super) fn brand_index(&mut self, b: &str) -> u32 {
        if let Some(i) = self.brand_ids.get(b) {
            return *i;
        }
        let name: Shared = Arc::from(b);
        let i = u32::try_from(self.brands.len()).unwrap_or(u32::MAX);
        self.brands.push(name.clone());
        self.brand_ids.insert(name, i);
        i
    }

    /// The brand name of index `i` (from [`Nodes::brand_index`]).
    pub(super) fn brand(&self, i: u32) -> &Shared {
        static NONE: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
        self.brands
            .get(i as usize)
            .unwrap_or_else(|| NONE.get_or_init(|| Arc::from("")))
    }

    /// Adds a message whose id is not in the set yet; returns its slot.
    pub(super) fn insert(&mut self, n: Node) -> Slot {
        let hash = self.hash(&n.id);
        let slot = if let Some(s) = self.free.pop() {
            s
        } else {
            let s = self.next;
            self.next += 1;
            if s / CHUNK == self.chunks.len() {
                self.chunks.push((0..CHUNK).map(|_| None).collect());
            }
            // Linkage holds at most `linkage.entries_max` messages per partition, validated
            // far below 2³² at load.
            Slot::try_from(s).unwrap_or(Slot::MAX)
        };
        if let Some(place) = self.slot_mut(slot) {
            *place = Some(n);
        }
        let Nodes {
            index,
            chunks,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, slot, |&s| {
            let s = s as usize;
            chunks
                .get(s / CHUNK)
                .and_then(|c| c.get(s % CHUNK))
                .and_then(Option::as_ref)
                .map_or(0, |n| hasher.hash_one(&*n.id))
        });
        self.len += 1;
        slot
    }

    /// Removes every message (the interned brands stay: they are never dropped).
    pub(super) fn clear(&mut self) {
        self.chunks = Vec::new();
        self.free = Vec::new();
        self.next = 0;
        self.len = 0;
        self.index = HashTable::new();
    }

    /// Removes the message in slot `s`.
    pub(super) fn remove(&mut self, s: Slot) -> Option<Node> {
        let n = self.slot_mut(s)?.take()?;
        if let Ok(e) = self
            .index
            .find_entry(self.hasher.hash_one(&*n.id), |&x| x == s)
        {
            e.remove();
        }
        self.free.push(s);
        self.len -= 1;
        Some(n)
    }

    /// Every message with its slot, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, &Node)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .enumerate()
            .filter_map(|(s, n)| Some((Slot::try_from(s).ok()?, n.as_ref()?)))
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.chunks
            .iter_mut()
            .flat_map(|c| c.iter_mut())
            .filter_map(Option::as_mut)
    }

    /// Adds or replaces the message `id` as a checkpoint has it; returns its slot.
    pub(super) fn upsert(&mut self, id: Shared, w: NodeWire) -> Slot {
        let brand = self.brand_index(&w.brand);
        let n = Node {
            id,
            root: w.root,
            author: w.author,
            created_at: w.created_at,
            compound: w.compound,
            tag: w.tag,
            brand,
            role: w.role,
            by_brand: w.by_brand,
            answered: w.answered,
        };
        match self.find(&n.id) {
            Some(s) => {
                if let Some(place) = self.get_mut(s) {
                    *place = n;
                }
                s
            }
            None => self.insert(n),
        }
    }

    /// The checkpoint form of `n` (one of these nodes).
    pub(super) fn wire<'a>(&'a self, n: &'a Node) -> NodeOut<'a> {
        NodeOut {
            n,
            brand: self.brand(n.brand),
        }
    }
}

/// A node as a checkpoint writes it: the array `[brand, author, by_brand, role, root,
/// created_at, compound, answered, tag]` (its id is the key beside it).
#[derive(Debug)]
pub(super) struct NodeOut<'a> {
    n: &'a Node,
    brand: &'a str,
}

impl Serialize for NodeOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.n;
        let mut t = s.serialize_tuple(9)?;
        t.serialize_element(self.brand)?;
        t.serialize_element(&n.author)?;
        t.serialize_element(&n.by_brand)?;
        t.serialize_element(&n.role)?;
        t.serialize_element(&*n.root)?;
        t.serialize_element(&n.created_at)?;
        t.serialize_element(&n.compound)?;
        t.serialize_element(&n.answered)?;
        t.serialize_element(&n.tag)?;
        t.end()
    }
}

/// A node as a checkpoint has it: the array [`NodeOut`] writes, or the struct (a map with
/// field names, the author id as a string) of format 3.
#[derive(Debug)]
pub(super) struct NodeWire {
    brand: Shared,
    author: AuthorKey,
    by_brand: bool,
    role: Role,
    root: Shared,
    created_at: i64,
    compound: f64,
    answered: bool,
    tag: u64,
}

impl<'de> Deserialize<'de> for NodeWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NodeWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a linkage node")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<NodeWire, A::Error> {
                let len = |i| de::Error::invalid_length(i, &"9 fields");
                Ok(NodeWire {
                    brand: a.next_element()?.ok_or_else(|| len(0))?,
                    author: a.next_element()?.ok_or_else(|| len(1))?,
                    by_brand: a.next_element()?.ok_or_else(|| len(2))?,
                    role: a.next_element()?.ok_or_else(|| len(3))?,
                    root: a.next_element()?.ok_or_else(|| len(4))?,
                    created_at: a.next_element()?.ok_or_else(|| len(5))?,
                    compound: a.next_element()?.ok_or_else(|| len(6))?,
                    answered: a.next_element()?.ok_or_else(|| len(7))?,
                    tag: a.next_element()?.ok_or_else(|| len(8))?,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<NodeWire, A::Error> {
                let (mut brand, mut author, mut by_brand, mut role, mut root) =
                    (None, None, None, None, None);
                let (mut created_at, mut compound, mut answered, mut tag) =
                    (None, None, None, None);
                while let Some(k) = a.next_key::<String>()? {
                    match k.as_str() {
                        "brand" => brand = Some(a.next_value()?),
                        "author_id" | "author" => author = Some(a.next_value()?),
                        "by_brand" => by_brand = Some(a.next_value()?),
                        "role" => role = Some(a.next_value()?),
                        "root" => root = Some(a.next_value()?),
                        "created_at" => created_at = Some(a.next_value()?),
                        "compound" => compound = Some(a.next_value()?),
                        "answered" => answered = Some(a.next_value()?),
                        "tag" => tag = Some(a.next_value()?),
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let missing = de::Error::missing_field;
                Ok(NodeWire {
                    brand: brand.ok_or_else(|| missing("brand"))?,
                    author: author.ok_or_else(|| missing("author_id"))?,
                    by_brand: by_brand.ok_or_else(|| missing("by_brand"))?,
                    role: role.ok_or_else(|| missing("role"))?,
                    root: root.ok_or_else(|| missing("root"))?,
                    created_at: created_at.ok_or_else(|| missing("created_at"))?,
                    compound: compound.ok_or_else(|| missing("compound"))?,
                    answered: answered.ok_or_else(|| missing("answered"))?,
                    tag: tag.ok_or_else(|| missing("tag"))?,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole set: a map of id → node.
impl Serialize for Nodes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len))?;
        for (_, n) in self.iter() {
            m.serialize_entry(&*n.id, &self.wire(n))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Nodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Nodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of message id to linkage node")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Nodes, A::Error> {
                let mut nodes = Nodes::default();
                while let Some((id, w)) = a.next_entry::<Shared, NodeWire>()? {
                    nodes.upsert(id, w);
                }
                Ok(nodes)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, t: i64) -> Node {
        Node {
            id: Arc::from(id),
            root: Arc::from(id),
            author: AuthorKey::of("u1"),
            created_at: t,
            compound: 0.5,
            tag: 7,
            brand: 0,
            role: Role::Inbound,
            by_brand: false,
            answered: false,
        }
    }

    #[test]
    fn slots_are_reused_and_ids_stay_findable_across_chunks() {
        let mut n = Nodes::default();
        n.brand_index("acme");
        let total = CHUNK * 2 + 10;
        for i in 0..total {
            n.insert(node(&format!("m{i}"), i as i64));
        }
        assert_eq!(n.len(), total);
        for i in (0..total).step_by(3) {
            let s = n.find(&format!("m{i}")).expect("inserted");
            assert_eq!(n.remove(s).map(|x| x.created_at), Some(i as i64));
        }
        assert!(n.find("m0").is_none());
        let before = n.chunks.len();
        for i in 0..total / 3 {
            n.insert(node(&format!("new{i}"), 0));
        }
        assert_eq!(n.chunks.len(), before, "freed slots are reused first");
        for i in 0..total {
            assert_eq!(n.find(&format!("m{i}")).is_some(), i % 3 != 0, "m{i}");
        }
        assert_eq!(n.iter().count(), n.len());
    }

    #[test]
    fn author_keys_are_stable() {
        // Checkpointed: a change of this function breaks restores of existing checkpoints.
        assert_eq!(AuthorKey::of("u0000001"), AuthorKey::of("u0000001"));
        assert_ne!(AuthorKey::of("u0000001"), AuthorKey::of("u0000002"));
        // FNV-1a 64 with MurmurHash3's fmix64, as computed independently (Python).
        assert_eq!(AuthorKey::of("u0000001").0, 0x7c83_66e6_3715_3fa5);
        assert_eq!(AuthorKey::of("").0, 17_280_346_270_528_514_342);
    }
}
