//! Social events: the owned form used by producers (the generator, replay) and the borrowed
//! form ([`EventRef`]) that the decoder fills without copying strings.
//!
//! Field meanings are documented once, in `schemas/social-event.v1.json`; the doc comments here
//! summarise them.

use serde::{Deserialize, Serialize};

/// What kind of message an event is. Closed set: a value outside it is a schema violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A top-level message by its author, replying to nothing.
    Post,
    /// A public reply to another message.
    Reply,
    /// A message that names the brand (an @mention) without replying to it.
    Mention,
    /// A private message to or from the brand.
    DirectMessage,
    /// A comment under another message (platforms that distinguish comments from replies).
    Comment,
    /// A re-share / retweet / repost.
    Share,
    /// A like or other reaction.
    Reaction,
}

impl EventKind {
    /// Every kind, in schema order.
    pub const ALL: [EventKind; 7] = [
        EventKind::Post,
        EventKind::Reply,
        EventKind::Mention,
        EventKind::DirectMessage,
        EventKind::Comment,
        EventKind::Share,
        EventKind::Reaction,
    ];

    /// The kind with wire name `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The wire name, as in the JSON schema.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Post => "post",
            EventKind::Reply => "reply",
            EventKind::Mention => "mention",
            EventKind::DirectMessage => "direct_message",
            EventKind::Comment => "comment",
            EventKind::Share => "share",
            EventKind::Reaction => "reaction",
        }
    }
}

/// Who an author is to the brand. Closed set, optional on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stakeholder {
    /// Buys or uses the brand's products.
    Customer,
    /// Works for the brand.
    Employee,
    /// A business partner.
    Partner,
    /// Supplies the brand.
    Supplier,
    /// Holds or considers a stake.
    Investor,
    /// Journalists and media.
    Press,
    /// Explicitly not known.
    Unknown,
}

impl Stakeholder {
    /// Every stakeholder type, in schema order.
    pub const ALL: [Stakeholder; 7] = [
        Stakeholder::Customer,
        Stakeholder::Employee,
        Stakeholder::Partner,
        Stakeholder::Supplier,
        Stakeholder::Investor,
        Stakeholder::Press,
        Stakeholder::Unknown,
    ];

    /// The wire name, as in the JSON schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Stakeholder::Customer => "customer",
            Stakeholder::Employee => "employee",
            Stakeholder::Partner => "partner",
            Stakeholder::Supplier => "supplier",
            Stakeholder::Investor => "investor",
            Stakeholder::Press => "press",
            Stakeholder::Unknown => "unknown",
        }
    }
}

/// The author of an event (owned form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialAuthor {
    /// Platform-stable author id. Required.
    pub id: String,
    /// Display handle, without the platform's prefix character if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// True when the author is an organisation's account. Required.
    pub is_org: bool,
    /// Follower count at the time of the event, when the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followers: Option<u64>,
    /// The author's relation to the brand, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stakeholder: Option<Stakeholder>,
}

/// One social event (owned form), as produced to the input topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialEvent {
    /// Globally unique id; duplicates are counted once.
    pub event_id: String,
    /// Source platform ("x", "facebook", "instagram", ...).
    pub platform: String,
    /// What kind of message this is.
    pub kind: EventKind,
    /// Event time, RFC 3339 (kept as text: the decoder is the one place that parses it).
    pub created_at: String,
    /// The organisation the event concerns; the input topic is keyed by it.
    pub brand: String,
    /// Who wrote it.
    pub author: SocialAuthor,
    /// Thread id, when the platform provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The event_id this one answers, when it is a reply or comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The message text; may be empty (reactions, shares).
    pub text: String,
    /// BCP 47 language tag, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

impl SocialEvent {
    /// The event time in microseconds since the Unix epoch, parsed from `created_at`.
    pub fn created_at_micros(&self) -> Result<i64, chrono::ParseError> {
        chrono::DateTime::parse_from_rfc3339(&self.created_at).map(|t| t.timestamp_micros())
    }

    /// A borrowed view with an already parsed event time (microseconds since the Unix epoch),
    /// for appending to an [`crate::EventBatchBuilder`].
    pub fn as_ref_with_time(&self, created_at_micros: i64) -> EventRef<'_> {
        EventRef {
            event_id: &self.event_id,
            platform: &self.platform,
            kind: self.kind,
            created_at_micros,
            brand: &self.brand,
            author: AuthorRef {
                id: &self.author.id,
                handle: self.author.handle.as_deref(),
                is_org: self.author.is_org,
                followers: self.author.followers,
                stakeholder: self.author.stakeholder,
            },
            conversation_id: self.conversation_id.as_deref(),
            in_reply_to: self.in_reply_to.as_deref(),
            text: &self.text,
            lang: self.lang.as_deref(),
        }
    }
}

/// A borrowed, validated author.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthorRef<'a> {
    /// See [`SocialAuthor::id`].
    pub id: &'a str,
    /// See [`SocialAuthor::handle`].
    pub handle: Option<&'a str>,
    /// See [`SocialAuthor::is_org`].
    pub is_org: bool,
    /// See [`SocialAuthor::followers`].
    pub followers: Option<u64>,
    /// See [`SocialAuthor::stakeholder`].
    pub stakeholder: Option<Stakeholder>,
}

/// A borrowed, validated event with its event time parsed: what the decoder hands to the
/// batch builder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    /// See [`SocialEvent::event_id`].
    pub event_id: &'a str,
    /// See [`SocialEvent::platform`].
    pub platform: &'a str,
    /// See [`SocialEvent::kind`].
    pub kind: EventKind,
    /// Event time in microseconds since the Unix epoch (UTC).
    pub created_at_micros: i64,
    /// See [`SocialEvent::brand`].
    pub brand: &'a str,
    /// See [`SocialEvent::author`].
    pub author: AuthorRef<'a>,
    /// See [`SocialEvent::conversation_id`].
    pub conversation_id: Option<&'a str>,
    /// See [`SocialEvent::in_reply_to`].
    pub in_reply_to: Option<&'a str>,
    /// See [`SocialEvent::text`].
    pub text: &'a str,
    /// See [`SocialEvent::lang`].
    pub lang: Option<&'a str>,
}
