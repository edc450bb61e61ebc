//! Test tokens: `cargo run -- token --user alice [--ttl 1h] [--topics news,room:1]` prints an
//! HS256 JWT signed with `JWT_SECRET`, with `JWT_ISSUER` / `JWT_AUDIENCE` as `iss` / `aud` when
//! they are set, so the hub configured with the same variables accepts it.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

use crate::auth::valid_user_id;
use crate::topics::Pattern;

/// The longest lifetime a test token may have.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("JWT_SECRET is not set: a test token is signed with the hub's HS256 secret")]
    NoSecret,
    #[error("{0}")]
    Invalid(String),
}

/// What goes into the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub user: String,
    pub ttl: Duration,
    /// Topics or prefixes ending in `*` (the `topics` claim).
    pub topics: Vec<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// `90`, `90s`, `15m`, `1h`, `7d`: at least a second, at most [`MAX_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: expected a number with s, m, h or d, e.g. 1h")),
    };
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (1..=MAX_TTL.as_secs()).contains(s))
        .ok_or_else(|| format!("{text:?}: between 1s and {}d", MAX_TTL.as_secs() / 86_400))?;
    Ok(Duration::from_secs(seconds))
}

/// Signs the token; `now` is epoch seconds.
pub fn mint(secret: Option<&str>, request: &TokenRequest, now: u64) -> Result<String, TokenError> {
    let secret = secret.filter(|s| !s.trim().is_empty()).ok_or(TokenError::NoSecret)?;
    if !valid_user_id(&request.user) {
        return Err(TokenError::Invalid(format!(
            "--user {:?} is not a valid user id",
            request.user
        )));
    }
    if let Some(bad) = request.topics.iter().find(|t| Pattern::parse(t).is_none()) {
        return Err(TokenError::Invalid(format!(
            "--topics: {bad:?} is not a topic or a prefix ending in *"
        )));
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(request.user));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + request.ttl.as_secs()));
    if !request.topics.is_empty() {
        claims.insert("topics".into(), json!(request.topics));
    }
    if let Some(iss) = &request.issuer {
        claims.insert("iss".into(), json!(iss));
    }
    if let Some(aud) = &request.audience {
        claims.insert("aud".into(), json!(aud));
    }
    encode(
        &Header::new(Algorithm::HS256),
        &Value::Object(claims),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| TokenError::Invalid(format!("cannot sign: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthConfig;

    fn request(user: &str, topics: &[&str]) -> TokenRequest {
        TokenRequest {
            user: user.into(),
            ttl: Duration::from_secs(3600),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            issuer: Some("https://issuer.example".into()),
            audience: Some("wshub".into()),
        }
    }

    fn now() -> u64 {
        crate::hub::now_secs() as u64
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("30d"), Ok(MAX_TTL));
        for bad in ["0", "31d", "1w", "h", "", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_hub_accepts_the_token() {
        let secret = "a-local-secret";
        let token = mint(Some(secret), &request("alice", &["news", "room:*"]), now()).unwrap();
        let auth = AuthConfig::from_parts(
            None,
            Some(secret),
            Some("https://issuer.example".into()),
            Some("wshub".into()),
        )
        .unwrap();
        let identity = auth.verify(&token).await.unwrap();
        assert_eq!(identity.user_id, "alice");
        let granted: Vec<&str> = identity.topics.iter().map(Pattern::as_str).collect();
        assert_eq!(granted, ["news", "room:*"]);
        // Another secret, or an expired token, is refused.
        let other = AuthConfig::from_parts(None, Some("another"), None, None).unwrap();
        assert!(other.verify(&token).await.is_err());
        let old = mint(Some(secret), &request("alice", &[]), now() - 7200).unwrap();
        assert!(auth.verify(&old).await.is_err());
    }

    #[test]
    fn refusals() {
        assert_eq!(mint(None, &request("alice", &[]), 0), Err(TokenError::NoSecret));
        assert_eq!(mint(Some(" "), &request("alice", &[]), 0), Err(TokenError::NoSecret));
        assert!(matches!(
            mint(Some("s"), &request("", &[]), 0),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            mint(Some("s"), &request("alice", &["bad topic"]), 0),
            Err(TokenError::Invalid(_))
        ));
    }
}
