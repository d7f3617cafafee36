//! Routing inbound messages to the department that can fix their cause.
//!
//! Complaints about a wrong invoice belong with billing, an outage with engineering; a support
//! team that only answers cannot fix either. Rules are tried in configuration order; the first
//! rule with a matching keyword, hashtag or regular expression decides. Messages no rule
//! matches go to the default department (`support`).
//!
//! Matching is case-insensitive. Keywords match whole words or phrases (so `bill` does not
//! match `billion`); hashtags match whole tags (`#billing` does not match `#billingissue`);
//! regular expressions match anywhere unless anchored.

use regex::{Regex, RegexBuilder};

/// A routing rule as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DepartmentRule {
    /// Department name (a metric label value: keep the set small).
    pub department: String,
    /// Words or phrases.
    pub keywords: Vec<String>,
    /// Hashtags, with or without the leading `#`.
    pub hashtags: Vec<String>,
    /// Regular expressions (Rust `regex` syntax).
    pub patterns: Vec<String>,
}

/// A rule that cannot be compiled: a user error in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "department {department:?}: pattern {pattern:?} is not a valid regular expression: {reason}"
)]
pub struct RuleError {
    /// The rule's department.
    pub department: String,
    /// The offending pattern.
    pub pattern: String,
    /// What the regex compiler said.
    pub reason: String,
}

/// Bound on the compiled size of one rule's regular expression (bytes), so a configuration
/// cannot make routing arbitrarily slow or large.
pub const RULE_REGEX_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Compiled {
    department: String,
    matcher: Regex,
}

/// Routes texts to departments.
#[derive(Debug, Clone)]
pub struct DepartmentRouter {
    rules: Vec<Compiled>,
    default: String,
}

impl DepartmentRouter {
    /// The default department when no rule matches.
    pub const DEFAULT: &'static str = "support";

    /// Compiles `rules` (in order) with `default` for messages no rule matches.
    pub fn new(rules: &[DepartmentRule], default: &str) -> Result<Self, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for r in rules {
            // One alternation per rule: keywords and hashtags become escaped, bounded terms.
            let mut alternatives: Vec<String> = Vec::new();
            for k in r.keywords.iter().filter(|k| !k.trim().is_empty()) {
                alternatives.push(format!(r"\b{}\b", regex::escape(k.trim())));
            }
            for h in r.hashtags.iter().filter(|h| !h.trim().is_empty()) {
                let tag = h.trim().trim_start_matches('#');
                alternatives.push(format!(r"#{}\b", regex::escape(tag)));
            }
            for p in &r.patterns {
                // Validate each pattern alone, so the error names it.
                RegexBuilder::new(p)
                    .size_limit(RULE_REGEX_BYTES_MAX)
                    .build()
                    .map_err(|e| RuleError {
                        department: r.department.clone(),
                        pattern: p.clone(),
                        reason: e.to_string(),
                    })?;
                alternatives.push(format!("(?:{p})"));
            }
            if alternatives.is_empty() {
                continue;
            }
            let matcher = RegexBuilder::new(&alternatives.join("|"))
                .case_insensitive(true)
                .size_limit(RULE_REGEX_BYTES_MAX)
                .build()
                .map_err(|e| RuleError {
                    department: r.department.clone(),
                    pattern: alternatives.join("|"),
                    reason: e.to_string(),
                })?;
            compiled.push(Compiled {
                department: r.department.clone(),
                matcher,
            });
        }
        Ok(DepartmentRouter {
            rules: compiled,
            default: default.to_string(),
        })
    }

    /// The department for `text`.
    pub fn route(&self, text: &str) -> &str {
        self.rules
            .iter()
            .find(|r| r.matcher.is_match(text))
            .map_or(self.default.as_str(), |r| r.department.as_str())
    }

    /// Every department a message can be routed to, default included (for metric labels).
    pub fn departments(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.rules.iter().map(|r| r.department.as_str()).collect();
        v.push(&self.default);
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> DepartmentRouter {
        DepartmentRouter::new(
            &[
                DepartmentRule {
                    department: "billing".into(),
                    keywords: vec!["refund".into(), "charged twice".into(), "bill".into()],
                    hashtags: vec!["#billing".into()],
                    patterns: vec![],
                },
                DepartmentRule {
                    department: "engineering".into(),
                    keywords: vec!["crash".into()],
                    hashtags: vec!["outage".into(), "bug".into()],
                    patterns: vec![r"error\s+\d{3}".into()],
                },
            ],
            DepartmentRouter::DEFAULT,
        )
        .unwrap()
    }

    #[test]
    fn first_matching_rule_wins_else_support() {
        let r = router();
        assert_eq!(r.route("@acme I was CHARGED TWICE this month"), "billing");
        assert_eq!(
            r.route("@acme app shows Error 503 again #outage"),
            "engineering"
        );
        assert_eq!(
            r.route("@acme where is my refund? the app crashed #bug"),
            "billing",
            "rule order decides"
        );
        assert_eq!(r.route("@acme how do I change my seat?"), "support");
        assert_eq!(r.departments(), vec!["billing", "engineering", "support"]);
    }

    #[test]
    fn words_and_tags_match_whole() {
        let r = router();
        assert_eq!(
            r.route("that's a billion dollar company"),
            "support",
            "bill ≠ billion"
        );
        assert_eq!(
            r.route("#billingissue"),
            "support",
            "#billing ≠ #billingissue"
        );
        assert_eq!(r.route("my bill, again"), "billing");
        assert_eq!(r.route("crash."), "engineering");
    }

    #[test]
    fn bad_patterns_name_the_department() {
        let e = DepartmentRouter::new(
            &[DepartmentRule {
                department: "x".into(),
                patterns: vec!["(unclosed".into()],
                ..Default::default()
            }],
            "support",
        )
        .unwrap_err();
        assert!(e.to_string().contains("department \"x\""), "{e}");
    }
}
