//! The synthetic world: brands with their accounts, a population of people, and the texts
//! they write. Everything here is fixed data; randomness lives in the generator.

use model::Stakeholder;

/// A brand of the synthetic world.
#[derive(Debug, Clone)]
pub struct Brand {
    /// The `brand` field value (also the Kafka key).
    pub name: &'static str,
    /// Its organisation accounts: (author id, handle). The first one broadcasts; the last
    /// one answers (a support account where the brand has one).
    pub accounts: &'static [(&'static str, &'static str)],
    /// Share of inbound messages this brand eventually answers.
    pub answer_rate: f64,
    /// Median first-response delay, in minutes.
    pub median_delay_minutes: f64,
    /// Relative share of the inbound traffic.
    pub weight: f64,
    /// Followers of its accounts (for reach, reported for contrast only).
    pub followers: u64,
    /// Topics people raise with this brand: (hashtag, noun).
    pub topics: &'static [(&'static str, &'static str)],
}

/// Every brand; `generate --brands N` takes the first N.
pub const BRANDS: &[Brand] = &[
    Brand {
        name: "acme_air",
        accounts: &[("acme_air", "AcmeAir"), ("acme_air_help", "AcmeAirHelp")],
        answer_rate: 0.82,
        median_delay_minutes: 25.0,
        weight: 3.0,
        followers: 1_250_000,
        topics: &[
            ("#delay", "flight"),
            ("#refund", "refund"),
            ("#baggage", "bag"),
            ("#app", "app"),
        ],
    },
    Brand {
        name: "northwind_bank",
        accounts: &[
            ("northwind_bank", "NorthwindBank"),
            ("northwind_care", "NorthwindCare"),
        ],
        answer_rate: 0.64,
        median_delay_minutes: 95.0,
        weight: 2.0,
        followers: 480_000,
        topics: &[
            ("#billing", "card"),
            ("#outage", "online banking"),
            ("#fees", "fee"),
            ("#app", "app"),
        ],
    },
    Brand {
        name: "contoso_mobile",
        accounts: &[("contoso_mobile", "ContosoMobile")],
        answer_rate: 0.41,
        median_delay_minutes: 240.0,
        weight: 2.5,
        followers: 2_100_000,
        topics: &[
            ("#outage", "signal"),
            ("#billing", "bill"),
            ("#5g", "5G"),
            ("#roaming", "roaming"),
        ],
    },
    Brand {
        name: "globex_energy",
        accounts: &[("globex_energy", "GlobexEnergy")],
        answer_rate: 0.18,
        median_delay_minutes: 600.0,
        weight: 1.0,
        followers: 95_000,
        topics: &[
            ("#billing", "meter reading"),
            ("#outage", "power"),
            ("#solar", "solar panel"),
        ],
    },
    Brand {
        name: "initech_cloud",
        accounts: &[
            ("initech_cloud", "Initech"),
            ("initech_status", "InitechStatus"),
        ],
        answer_rate: 0.9,
        median_delay_minutes: 12.0,
        weight: 1.5,
        followers: 310_000,
        topics: &[
            ("#outage", "API"),
            ("#bug", "dashboard"),
            ("#billing", "invoice"),
            ("#feature", "SDK"),
        ],
    },
];

/// Platforms and their relative shares.
pub const PLATFORMS: &[(&str, f64)] = &[
    ("x", 0.55),
    ("facebook", 0.25),
    ("instagram", 0.15),
    ("bluesky", 0.05),
];

/// Stakeholder mix of the people who write to brands.
pub const STAKEHOLDERS: &[(Stakeholder, f64)] = &[
    (Stakeholder::Customer, 0.78),
    (Stakeholder::Employee, 0.05),
    (Stakeholder::Partner, 0.04),
    (Stakeholder::Supplier, 0.02),
    (Stakeholder::Investor, 0.02),
    (Stakeholder::Press, 0.03),
    (Stakeholder::Unknown, 0.06),
];

/// Inbound complaints. `{b}` = brand handle, `{t}` = topic noun, `{h}` = hashtag.
pub const COMPLAINTS: &[&str] = &[
    "@{b} my {t} is broken AGAIN!!! worst service ever :( {h}",
    "@{b} still waiting for my {t}, 3 days now. not happy {h}",
    "@{b} I have never been so disappointed. the {t} does not work",
    "@{b} your {t} is a joke. cancelling my account {h}",
    "@{b} why is the {t} down again?? this is terrible",
    "@{b} no one answers the phone and my {t} is still wrong. awful",
    "Seriously @{b}, the {t} failed twice today. Not good enough. {h}",
    "@{b} I'm really frustrated with the {t}, nothing works :-(",
    "@{b} the {t} is kind of useless lately",
    "@{b} worst {t} experience I've had, DO NOT recommend {h} https://example.com/pic/1",
];

/// Inbound questions.
pub const QUESTIONS: &[&str] = &[
    "@{b} how do I change my {t}?",
    "@{b} is there a problem with the {t} today? {h}",
    "@{b} can you help me with my {t} please?",
    "hey @{b}, where can I find the {t} settings?",
    "@{b} quick question about the {t}: is it included?",
    "@{b} any update on the {t}? {h}",
];

/// Inbound praise.
pub const PRAISE: &[&str] = &[
    "@{b} thanks, the new {t} is the bomb 😍",
    "@{b} love the {t}! great job :)",
    "Shout out to @{b} for fixing my {t} so fast. Excellent service! {h}",
    "@{b} the {t} works perfectly now, thank you!!",
    "@{b} really impressed with the {t} 👍",
];

/// Brand responses to negative or neutral inbound messages. `{u}` = the person's handle.
pub const RESPONSES: &[&str] = &[
    "@{u} we're so sorry about this. Please DM us your details and we'll sort it out.",
    "@{u} sorry to hear that! Our team is looking into your {t} right now.",
    "@{u} thanks for flagging this, we've passed it to the right team. {h}",
    "@{u} apologies for the trouble with the {t}. Could you send us a DM?",
    "@{u} hi, the {t} issue should be fixed now. Let us know if not!",
];

/// Brand responses to praise.
pub const THANKS: &[&str] = &[
    "@{u} thank you so much, that made our day! :)",
    "@{u} glad you like the {t}! Thanks for the kind words.",
];

/// Follow-ups after a response, better mood.
pub const FOLLOW_UPS_HAPPY: &[&str] = &[
    "@{b} thanks, that fixed it :)",
    "@{b} great, works now. Appreciate the quick help!",
    "@{b} ok thanks, much better",
];

/// Follow-ups after a response, no better.
pub const FOLLOW_UPS_UNHAPPY: &[&str] = &[
    "@{b} still not working...",
    "@{b} I sent the DM yesterday and nobody replied. Useless.",
    "@{b} that did not help at all",
];

/// Brand broadcasts.
pub const BROADCASTS: &[&str] = &[
    "Big news: our new {t} is here! Find out more at https://example.com/news {h}",
    "Happy Friday everyone! What are your weekend plans?",
    "We're hiring! Join the team that builds the {t}.",
    "Scheduled maintenance on the {t} tonight from 1-3am. Thanks for your patience.",
    "Did you know? You can manage your {t} in the app.",
];

/// Public comments under broadcasts.
pub const COMMENTS: &[&str] = &[
    "Nice! Finally 🎉",
    "Meh. Fix the {t} first.",
    "Looks great",
    "When will this be available in Europe?",
    "lol ok",
];

/// Languages with their shares (texts stay English; the tag varies like real data).
pub const LANGS: &[(&str, f64)] = &[("en", 0.85), ("es", 0.05), ("de", 0.05), ("fr", 0.05)];
