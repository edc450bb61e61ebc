//! Topic authorization: which topics a connection may subscribe and send to.
//!
//! `TOPIC_ACCESS=open` (the default) lets anyone use any valid topic. `TOPIC_ACCESS=restricted`
//! allows a user only:
//! - `user:<their own user id>`,
//! - topics matching `PUBLIC_TOPICS` (comma-separated patterns, for everyone),
//! - topics matching the `topics` claim of their JWT (granted per user by your identity provider).
//!
//! A pattern is a topic name, or a prefix ending in `*` (`chat/*` matches `chat/room-1`; a lone
//! `*` matches everything). Pushes from SQS are never restricted: the backend is trusted.

use crate::protocol::validate_topic;

/// The topic name of a user's private stream is this prefix and the user id.
pub const USER_STREAM_PREFIX: &str = "user:";

pub fn user_stream(user_id: &str) -> String {
    format!("{USER_STREAM_PREFIX}{user_id}")
}

/// The user whose private stream `topic` names, if it names one.
pub fn user_of_stream(topic: &str) -> Option<&str> {
    topic.strip_prefix(USER_STREAM_PREFIX)
}

/// Most patterns one grant may carry; authorizer context values share an 8 KB budget.
pub const MAX_PATTERNS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A valid topic name, or a valid prefix followed by `*`.
    pub fn parse(text: &str) -> Option<Pattern> {
        let text = text.trim();
        let valid = match text.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => validate_topic(prefix).is_ok(),
            None => validate_topic(text).is_ok(),
        };
        valid.then(|| Pattern(text.to_owned()))
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => self.0 == topic,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a list of patterns, keeping the valid ones (at most [`MAX_PATTERNS`]). An invalid
/// pattern grants nothing: it is dropped, never widened.
pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<Pattern> {
    items
        .into_iter()
        .filter_map(Pattern::parse)
        .take(MAX_PATTERNS)
        .collect()
}

/// Patterns carried in the authorizer context as one comma-separated string.
pub fn join(patterns: &[Pattern]) -> String {
    patterns.iter().map(Pattern::as_str).collect::<Vec<_>>().join(",")
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TopicAccess {
    #[default]
    Open,
    Restricted {
        public: Vec<Pattern>,
    },
}

impl TopicAccess {
    /// Whether `user_id`, holding `granted` patterns, may use `topic`.
    /// A user's own stream `user:<id>` is theirs alone in every mode, open included.
    pub fn allows(&self, user_id: Option<&str>, granted: &[Pattern], topic: &str) -> bool {
        if let Some(owner) = user_of_stream(topic) {
            return user_id == Some(owner);
        }
        match self {
            TopicAccess::Open => true,
            TopicAccess::Restricted { public } => public.iter().chain(granted).any(|p| p.matches(topic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("news").matches("news") && !p("news").matches("news2"));
        assert!(p("chat/*").matches("chat/room-1") && !p("chat/*").matches("chatter"));
        assert!(p("*").matches("anything"));
        assert_eq!(Pattern::parse("bad topic"), None);
        assert_eq!(Pattern::parse("a*b"), None, "a star only at the end");
        assert_eq!(parse_list(["ok", "no way", "jobs/*"]), vec![p("ok"), p("jobs/*")]);
        assert_eq!(join(&parse_list(["a", "b/*"])), "a,b/*");
    }

    #[test]
    fn restricted_access() {
        let access = TopicAccess::Restricted {
            public: parse_list(["news", "public/*"]),
        };
        let granted = parse_list(["team-7/*"]);
        assert!(access.allows(Some("alice"), &[], "user:alice"));
        assert!(!access.allows(Some("alice"), &[], "user:bob"));
        assert!(!access.allows(Some("alice"), &[], "user:alice2"));
        assert!(access.allows(Some("alice"), &[], "news"));
        assert!(access.allows(Some("alice"), &[], "public/x"));
        assert!(!access.allows(Some("alice"), &[], "team-7/plans"));
        assert!(access.allows(Some("alice"), &granted, "team-7/plans"));
        assert!(!access.allows(None, &[], "user:"));
        assert!(TopicAccess::Open.allows(None, &[], "anything"));
        // A user stream is private in the open mode too, and no grant opens another's.
        assert!(TopicAccess::Open.allows(Some("alice"), &[], "user:alice"));
        assert!(!TopicAccess::Open.allows(Some("alice"), &[], "user:bob"));
        assert!(!TopicAccess::Open.allows(None, &[], "user:bob"));
        let everything = parse_list(["*"]);
        assert!(!access.allows(Some("alice"), &everything, "user:bob"));
    }
}
