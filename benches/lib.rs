//! Criterion benchmarks for cluetrain, one bench target per pipeline stage.
//!
//! Run them all with `cargo xtask bench` (or `cargo bench -p cluetrain-benches`). Each reports
//! throughput in elements (events or texts) per second on one core, so a regression shows which
//! stage it is in. The inputs come from the deterministic generator, so runs are comparable.

use model::{EventKind, SocialAuthor, SocialEvent, Stakeholder};

/// `n` realistic event payloads (JSON), deterministic. Built here rather than with the
/// `cluetrain` generator so the benches compile without the binary crate.
pub fn generated_payloads(n: usize) -> Vec<Vec<u8>> {
    let texts = [
        "@AcmeAir my flight is delayed AGAIN!!! worst service ever :( #delay",
        "@NorthwindCare how do I change my card pin?",
        "@Initech thanks, the new dashboard is the bomb 😍",
        "Big news: our new app is here! Find out more at https://example.com/news #app",
        "@sam_rivers we're so sorry about this. Please DM us your details and we'll sort it out.",
    ];
    (0..n)
        .map(|i| {
            let e = SocialEvent {
                event_id: format!("bench-{i:09}"),
                platform: "x".into(),
                kind: if i % 3 == 0 {
                    EventKind::Reply
                } else {
                    EventKind::Mention
                },
                created_at: format!("2026-01-05T10:{:02}:{:02}.123Z", (i / 60) % 60, i % 60),
                brand: ["acme_air", "northwind_bank", "initech_cloud"][i % 3].into(),
                author: SocialAuthor {
                    id: format!("u{:07}", i % 5000),
                    handle: Some(format!("user_{}", i % 5000)),
                    is_org: i % 7 == 0,
                    followers: Some((i * 37 % 10_000) as u64),
                    stakeholder: Some(Stakeholder::Customer),
                },
                conversation_id: Some(format!("bench-{:09}", i - i % 4)),
                in_reply_to: (i % 3 == 0).then(|| format!("bench-{:09}", i.saturating_sub(1))),
                text: texts[i % texts.len()].into(),
                lang: Some("en".into()),
            };
            serde_json::to_vec(&e).unwrap_or_default()
        })
        .collect()
}
