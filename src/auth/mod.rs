//! Credential checks for the `$connect` authorizer: static tokens, HS256 JWTs signed with
//! `JWT_SECRET`, and RS256/ES256 JWTs verified with keys from `JWT_JWKS_URL` ([`jwks`]).
//! Knows tokens; knows nothing of events.

pub mod jwks;

use std::sync::Arc;

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::topics::{self, Pattern};

/// User id given to a connection authenticated by a bare static token.
pub const ANONYMOUS: &str = "anonymous";
/// API Gateway caps request headers at 10 KB; no honest token is larger than this.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_USER_ID_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("AUTH_TOKENS entry {index}: {reason}")]
    BadToken { index: usize, reason: String },
}

/// Why a credential was refused. Never carries the credential itself: these are logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials are configured (set AUTH_TOKENS, JWT_SECRET or JWT_JWKS_URL); denying everything")]
    NotConfigured,
    #[error("no token in the request")]
    NoToken,
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token matches no configured credential")]
    UnknownToken,
    #[error("JWT rejected: {0}")]
    Jwt(String),
    #[error("JWT has no usable userId or sub claim")]
    NoUserClaim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Token,
    Jwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::Jwt => "jwt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub method: AuthMethod,
    /// Topic patterns granted by the JWT's `topics` claim (see [`crate::topics`]).
    pub topics: Vec<Pattern>,
}

struct StaticToken {
    user_id: String,
    /// Only the digest is kept: comparing digests in constant time hides the token's length
    /// too, and the plaintext never sits in a long-lived struct that might get printed.
    digest: [u8; 32],
}

#[derive(Clone)]
struct Hs256 {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies tokens against `AUTH_TOKENS`, `JWT_SECRET` and `JWT_JWKS_URL`. With none, verifies nothing.
#[derive(Clone)]
pub struct AuthConfig {
    tokens: Arc<[StaticToken]>,
    hs256: Option<Hs256>,
    jwks: Option<Arc<jwks::Jwks>>,
    rules: Arc<ClaimRules>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of Debug output on purpose.
        f.debug_struct("AuthConfig")
            .field("static_tokens", &self.tokens.len())
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| j.url()))
            .finish()
    }
}

/// Which Cognito token a deployment accepts (`JWT_TOKEN_USE`): the `token_use` claim must
/// match, and an access token's app client is its `client_id` claim, since Cognito access
/// tokens carry no `aud` (AWS: "Verifying JSON web tokens", Amazon Cognito Developer Guide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Id,
    Access,
}

impl TokenUse {
    pub fn parse(value: &str) -> Option<TokenUse> {
        match value {
            "id" => Some(TokenUse::Id),
            "access" => Some(TokenUse::Access),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Id => "id",
            TokenUse::Access => "access",
        }
    }
}

/// The registered claims a deployment insists on, whoever signed the token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    /// `JWT_ISSUER`: `iss` must be present, a string, and equal to it.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: `aud` must be present and be (or, as an array, contain) it; for
    /// `JWT_TOKEN_USE=access`, `client_id` must be present and equal to it instead.
    pub audience: Option<String>,
    /// `JWT_TOKEN_USE`: `token_use` must be present and equal to it.
    pub token_use: Option<TokenUse>,
}

impl ClaimRules {
    pub fn new(issuer: Option<String>, audience: Option<String>) -> ClaimRules {
        ClaimRules {
            issuer,
            audience,
            token_use: None,
        }
    }

    /// Whether the audience is checked against `client_id` rather than `aud`.
    fn audience_is_client_id(&self) -> bool {
        self.token_use == Some(TokenUse::Access)
    }

    /// The checks jsonwebtoken does not make: a configured claim must be there, as a string.
    /// (jsonwebtoken accepts an `iss` array that merely contains the issuer; RFC 7519 makes
    /// `iss` a single StringOrURI, so an array is refused here. `aud` may be an array there.)
    fn check(&self, claims: &Claims) -> Result<(), AuthError> {
        let string = |v: &Option<serde_json::Value>| v.as_ref().and_then(serde_json::Value::as_str).map(str::to_owned);
        if let Some(issuer) = &self.issuer {
            match string(&claims.iss) {
                Some(iss) if iss == *issuer => {}
                Some(_) => return Err(AuthError::Jwt("wrong issuer".into())),
                None if claims.iss.is_none() => return Err(AuthError::Jwt("missing required claim".into())),
                None => return Err(AuthError::Jwt("wrong issuer".into())),
            }
        }
        if let (Some(audience), true) = (&self.audience, self.audience_is_client_id()) {
            match string(&claims.client_id) {
                Some(client) if client == *audience => {}
                Some(_) => return Err(AuthError::Jwt("wrong audience".into())),
                None if claims.client_id.is_none() => return Err(AuthError::Jwt("missing required claim".into())),
                None => return Err(AuthError::Jwt("wrong audience".into())),
            }
        }
        if let Some(token_use) = self.token_use {
            match string(&claims.token_use) {
                Some(used) if used == token_use.as_str() => {}
                Some(_) => return Err(AuthError::Jwt("wrong token_use".into())),
                None if claims.token_use.is_none() => return Err(AuthError::Jwt("missing required claim".into())),
                None => return Err(AuthError::Jwt("wrong token_use".into())),
            }
        }
        Ok(())
    }
}

/// The checks every JWT gets, whatever signed it: `exp` required and enforced, `nbf`, and
/// `iss` / `aud` required and matched when configured (a token without them is refused, not
/// waved through). Exactly one algorithm, so `alg: none` and confusion between algorithm
/// families are refused before any signature math. [`ClaimRules::check`] adds what
/// jsonwebtoken leaves out.
fn validation(algorithm: Algorithm, rules: &ClaimRules) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    match &rules.issuer {
        Some(iss) => {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match &rules.audience {
        Some(aud) if !rules.audience_is_client_id() => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        _ => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The digest secrets are compared by (in constant time), so their length leaks nothing.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl AuthConfig {
    /// `tokens`: `AUTH_TOKENS`, comma-separated `TOKEN` or `USER=TOKEN` (split at the first `=`,
    /// so a token containing `=` needs a user prefix). `secret`: `JWT_SECRET` for HS256.
    pub fn from_parts(
        tokens: Option<&str>,
        secret: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, AuthConfigError> {
        Self::with_jwks(tokens, secret, None, issuer, audience)
    }

    /// As [`Self::from_parts`], plus `jwks_url`: `JWT_JWKS_URL` for RS256/ES256 tokens.
    pub fn with_jwks(
        tokens: Option<&str>,
        secret: Option<&str>,
        jwks_url: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Result<Self, AuthConfigError> {
        Self::with_rules(tokens, secret, jwks_url, ClaimRules::new(issuer, audience))
    }

    /// As [`Self::with_jwks`], with every claim rule (`JWT_TOKEN_USE` included).
    pub fn with_rules(
        tokens: Option<&str>,
        secret: Option<&str>,
        jwks_url: Option<&str>,
        rules: ClaimRules,
    ) -> Result<Self, AuthConfigError> {
        let mut parsed = Vec::new();
        for (index, entry) in tokens.unwrap_or("").split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let (user_id, token) = match entry.split_once('=') {
                Some((user, token)) if !user.is_empty() => (user.trim(), token.trim()),
                _ => (ANONYMOUS, entry),
            };
            if token.is_empty() {
                return Err(AuthConfigError::BadToken {
                    index,
                    reason: "empty token".into(),
                });
            }
            if !valid_user_id(user_id) {
                return Err(AuthConfigError::BadToken {
                    index,
                    reason: "user id must be 1-128 printable characters".into(),
                });
            }
            parsed.push(StaticToken {
                user_id: user_id.to_owned(),
                digest: sha256(token.as_bytes()),
            });
        }
        let rules = Arc::new(rules);
        let hs256 = secret.map(|secret| Hs256 {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation: validation(Algorithm::HS256, &rules),
        });
        let jwks = jwks_url.map(|url| Arc::new(jwks::Jwks::new(url, rules.clone())));
        Ok(AuthConfig {
            tokens: parsed.into(),
            hs256,
            jwks,
            rules,
        })
    }

    /// Shortens the JWKS refresh interval, so tests need not wait out the minute.
    pub fn with_jwks_min_refresh(mut self, interval: std::time::Duration) -> Self {
        if let Some(jwks) = self.jwks.take() {
            // Only a config not yet cloned can change; a shared one keeps its interval.
            self.jwks = Some(match Arc::try_unwrap(jwks) {
                Ok(jwks) => Arc::new(jwks.with_min_refresh(interval)),
                Err(shared) => shared,
            });
        }
        self
    }

    /// Shares `other`'s JWKS cache when both read the same URL, so a configuration rebuilt
    /// with rotated secrets ([`crate::secrets`]) keeps the keys already fetched.
    pub fn sharing_jwks_of(mut self, other: &AuthConfig) -> Self {
        if let (Some(mine), Some(theirs)) = (&self.jwks, &other.jwks) {
            if mine.url() == theirs.url() {
                self.jwks = Some(theirs.clone());
            }
        }
        self
    }

    /// Reads the JWKS cache's time from `clock`, so tests can age keys without waiting.
    #[doc(hidden)]
    pub fn with_jwks_clock(mut self, clock: jwks::Clock) -> Self {
        if let Some(jwks) = self.jwks.take() {
            self.jwks = Some(match Arc::try_unwrap(jwks) {
                Ok(jwks) => Arc::new(jwks.with_clock(clock)),
                Err(shared) => shared,
            });
        }
        self
    }

    /// False means every request is denied (fail closed).
    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty() || self.hs256.is_some() || self.jwks.is_some()
    }

    /// Fetches the JWKS, if one is configured: call once at cold start so the first
    /// connection does not wait for it. A failure is logged and retried on demand.
    pub async fn warm_up(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.warm_up().await;
        }
    }

    /// Decides who presented `token`.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if !self.is_configured() {
            return Err(AuthError::NotConfigured);
        }
        if token.is_empty() {
            return Err(AuthError::NoToken);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let digest = sha256(token.as_bytes());
        // Every configured token is compared, match or not, so timing does not tell how far down
        // the list a guess got.
        let mut found: Option<&str> = None;
        for candidate in self.tokens.iter() {
            if bool::from(candidate.digest.ct_eq(&digest)) && found.is_none() {
                found = Some(&candidate.user_id);
            }
        }
        if let Some(user_id) = found {
            return Ok(Identity {
                user_id: user_id.to_owned(),
                method: AuthMethod::Token,
                topics: Vec::new(),
            });
        }
        let looks_like_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        if !looks_like_jwt || (self.hs256.is_none() && self.jwks.is_none()) {
            return Err(AuthError::UnknownToken);
        }
        let header = jsonwebtoken::decode_header(token).map_err(jwt_error)?;
        // The header only picks which configured verifier to try; each verifier then accepts
        // exactly its own algorithm, so the header cannot talk one into another's.
        let claims: Claims = match (header.alg, &self.hs256, &self.jwks) {
            (Algorithm::HS256, Some(hs), _) => {
                jsonwebtoken::decode(token, &hs.key, &hs.validation)
                    .map_err(jwt_error)?
                    .claims
            }
            (Algorithm::RS256 | Algorithm::ES256, _, Some(jwks)) => {
                jwks.decode(token, header.kid.as_deref(), header.alg).await?
            }
            _ => return Err(AuthError::Jwt("algorithm not allowed".into())),
        };
        self.rules.check(&claims)?;
        identity(claims)
    }
}

/// The claims wshub reads; the signature and registered claims are checked by jsonwebtoken.
#[derive(Deserialize)]
pub(crate) struct Claims {
    #[serde(rename = "userId")]
    user_id: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    /// Topic patterns this user may use: an array of strings, or one space/comma-separated string.
    topics: Option<serde_json::Value>,
    /// Read again (jsonwebtoken has checked them when present) to insist on their shape.
    iss: Option<serde_json::Value>,
    client_id: Option<serde_json::Value>,
    token_use: Option<serde_json::Value>,
}

fn identity(claims: Claims) -> Result<Identity, AuthError> {
    let user_id = [claims.user_id, claims.sub]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str().filter(|s| valid_user_id(s)).map(str::to_owned))
        .ok_or(AuthError::NoUserClaim)?;
    let topics = match &claims.topics {
        Some(serde_json::Value::Array(items)) => topics::parse_list(items.iter().filter_map(|v| v.as_str())),
        Some(serde_json::Value::String(list)) => topics::parse_list(list.split([' ', ','])),
        _ => Vec::new(),
    };
    Ok(Identity {
        user_id,
        method: AuthMethod::Jwt,
        topics,
    })
}

/// A reason for a log line, never the token.
pub(crate) fn jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    AuthError::Jwt(
        match e.kind() {
            ErrorKind::ExpiredSignature => "expired",
            ErrorKind::ImmatureSignature => "not valid yet (nbf)",
            ErrorKind::InvalidSignature => "bad signature",
            ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm | ErrorKind::InvalidAlgorithmName => {
                "algorithm not allowed"
            }
            ErrorKind::InvalidIssuer => "wrong issuer",
            ErrorKind::InvalidAudience => "wrong audience",
            ErrorKind::MissingRequiredClaim(_) => "missing required claim",
            _ => "malformed",
        }
        .to_owned(),
    )
}

/// User ids become DynamoDB key values and frame fields: bounded and free of control characters.
pub fn valid_user_id(id: &str) -> bool {
    let chars = id.chars().count();
    (1..=MAX_USER_ID_CHARS).contains(&chars) && !id.chars().any(char::is_control)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    pub const SECRET: &str = "test-secret-with-enough-entropy-0123456789";

    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    pub fn jwt(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn config(tokens: &str, secret: Option<&str>) -> AuthConfig {
        AuthConfig::from_parts(Some(tokens), secret, Some("wshub-tests".into()), Some("wshub".into())).unwrap()
    }

    #[tokio::test]
    async fn static_tokens_with_and_without_user() {
        let auth = config("alice=s3cret, plain ,bob=b=64==", None);
        assert_eq!(auth.verify("s3cret").await.unwrap().user_id, "alice");
        assert_eq!(auth.verify("plain").await.unwrap().user_id, ANONYMOUS);
        assert_eq!(auth.verify("b=64==").await.unwrap().user_id, "bob");
        assert_eq!(auth.verify("s3cre").await, Err(AuthError::UnknownToken));
        assert_eq!(auth.verify("").await, Err(AuthError::NoToken));
        assert_eq!(
            auth.verify(&"x".repeat(MAX_TOKEN_BYTES + 1)).await,
            Err(AuthError::TooLong)
        );
    }

    #[tokio::test]
    async fn nothing_configured_denies_everything() {
        let auth = AuthConfig::from_parts(None, None, None, None).unwrap();
        assert_eq!(auth.verify("anything").await, Err(AuthError::NotConfigured));
    }

    #[tokio::test]
    async fn empty_token_in_config_is_an_error() {
        let err = AuthConfig::from_parts(Some("alice="), None, None, None).unwrap_err();
        assert!(err.to_string().contains("entry 0"), "{err}");
    }

    #[tokio::test]
    async fn debug_output_holds_no_secret() {
        let auth = config("alice=s3cret", Some(SECRET));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("s3cret") && !shown.contains(SECRET), "{shown}");
    }

    #[tokio::test]
    async fn jwt_user_from_user_id_claim_then_sub() {
        let auth = config("", Some(SECRET));
        let base = json!({"exp": now() + 60, "iss": "wshub-tests", "aud": "wshub"});
        let mut with_user = base.clone();
        with_user["userId"] = json!("carol");
        with_user["sub"] = json!("ignored");
        assert_eq!(
            auth.verify(&jwt(with_user)).await.unwrap(),
            Identity {
                user_id: "carol".into(),
                method: AuthMethod::Jwt,
                topics: vec![],
            }
        );
        let mut with_sub = base.clone();
        with_sub["sub"] = json!("dave");
        assert_eq!(auth.verify(&jwt(with_sub)).await.unwrap().user_id, "dave");
        assert_eq!(auth.verify(&jwt(base)).await, Err(AuthError::NoUserClaim));
    }

    #[tokio::test]
    async fn jwt_topics_claim_grants_patterns() {
        let auth = config("", Some(SECRET));
        let base = json!({"sub": "u", "exp": now() + 60, "iss": "wshub-tests", "aud": "wshub"});
        let mut listed = base.clone();
        listed["topics"] = json!(["team-7/*", "bad topic", "news"]);
        let got: Vec<String> = auth
            .verify(&jwt(listed))
            .await
            .unwrap()
            .topics
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        assert_eq!(got, ["team-7/*", "news"], "invalid patterns grant nothing");
        let mut spaced = base.clone();
        spaced["topics"] = json!("a b/*");
        assert_eq!(auth.verify(&jwt(spaced)).await.unwrap().topics.len(), 2);
        assert!(auth.verify(&jwt(base)).await.unwrap().topics.is_empty());
    }

    #[tokio::test]
    async fn jwt_rejections() {
        let auth = config("", Some(SECRET));
        let ok = json!({"sub": "u", "exp": now() + 60, "iss": "wshub-tests", "aud": "wshub"});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = ok.clone();
            c[k] = v;
            jwt(c)
        };
        let cases = [
            (with("exp", json!(now() - 3600)), "expired"),
            (with("nbf", json!(now() + 3600)), "not valid yet (nbf)"),
            (with("iss", json!("someone-else")), "wrong issuer"),
            (with("aud", json!("other")), "wrong audience"),
        ];
        for (token, why) in cases {
            assert_eq!(auth.verify(&token).await, Err(AuthError::Jwt(why.into())), "{why}");
        }
        // Signed with another key.
        let forged = encode(&Header::new(Algorithm::HS256), &ok, &EncodingKey::from_secret(b"other")).unwrap();
        assert_eq!(auth.verify(&forged).await, Err(AuthError::Jwt("bad signature".into())));
        // `alg: none` with no signature.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let payload = jwt(ok.clone()).split('.').nth(1).unwrap().to_owned();
        assert!(matches!(
            auth.verify(&format!("{header}.{payload}.")).await,
            Err(AuthError::Jwt(_))
        ));
        // HS384 with the right secret is still the wrong algorithm.
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &ok,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            auth.verify(&hs384).await,
            Err(AuthError::Jwt("algorithm not allowed".into()))
        );
        // A JWT without exp is refused.
        let no_exp = jwt(json!({"sub": "u", "iss": "wshub-tests", "aud": "wshub"}));
        assert_eq!(
            auth.verify(&no_exp).await,
            Err(AuthError::Jwt("missing required claim".into()))
        );
        assert_eq!(auth.verify("not.a.jwt").await, Err(AuthError::Jwt("malformed".into())));
        // A payload edited after signing: the signature no longer matches.
        let token = jwt(ok.clone());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged_payload = jwt(json!({"sub": "admin", "exp": now() + 60, "iss": "wshub-tests", "aud": "wshub"}));
        parts[1] = forged_payload.split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            auth.verify(&parts.join(".")).await,
            Err(AuthError::Jwt("bad signature".into()))
        );
        assert_eq!(auth.verify("garbage").await, Err(AuthError::UnknownToken));
    }

    /// A configured issuer or audience is required: a token that leaves the claim out, or
    /// gives it a type the check cannot compare, is refused like a wrong one.
    #[tokio::test]
    async fn configured_iss_and_aud_are_required_and_must_be_strings() {
        let auth = config("", Some(SECRET));
        let exp = now() + 60;
        let cases = [
            (
                json!({"sub": "u", "exp": exp, "aud": "wshub"}),
                "missing required claim",
            ),
            (
                json!({"sub": "u", "exp": exp, "iss": "wshub-tests"}),
                "missing required claim",
            ),
            (json!({"sub": "u", "exp": exp}), "missing required claim"),
            (
                json!({"sub": "u", "exp": exp, "iss": 7, "aud": "wshub"}),
                "missing required claim",
            ),
            (
                json!({"sub": "u", "exp": exp, "iss": null, "aud": "wshub"}),
                "missing required claim",
            ),
            (
                json!({"sub": "u", "exp": exp, "iss": "wshub-tests", "aud": 7}),
                "missing required claim",
            ),
            (
                json!({"sub": "u", "exp": exp, "iss": "wshub-tests", "aud": {"a": 1}}),
                "missing required claim",
            ),
            (
                json!({"sub": "u", "exp": exp, "iss": "wshub-tests", "aud": [1, 2]}),
                "missing required claim",
            ),
            // jsonwebtoken alone would accept an array that contains the issuer.
            (
                json!({"sub": "u", "exp": exp, "iss": ["wshub-tests", "evil"], "aud": "wshub"}),
                "wrong issuer",
            ),
            (
                json!({"sub": "u", "exp": exp, "iss": "wshub-tests", "aud": ["other"]}),
                "wrong audience",
            ),
        ];
        for (claims, why) in cases {
            assert_eq!(
                auth.verify(&jwt(claims.clone())).await,
                Err(AuthError::Jwt(why.into())),
                "{claims}"
            );
        }
        // `aud` may be an array (RFC 7519, 4.1.3) as long as it names this audience.
        let listed = json!({"sub": "u", "exp": exp, "iss": "wshub-tests", "aud": ["other", "wshub"]});
        assert_eq!(auth.verify(&jwt(listed)).await.unwrap().user_id, "u");
        // Unconfigured, neither is required.
        let open = AuthConfig::from_parts(None, Some(SECRET), None, None).unwrap();
        assert!(open.verify(&jwt(json!({"sub": "u", "exp": exp}))).await.is_ok());
    }

    /// Cognito: ID tokens name the app client in `aud`; access tokens have no `aud` but
    /// `client_id`, and `token_use` tells the two apart.
    #[tokio::test]
    async fn cognito_token_use_and_client_id() {
        let pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example";
        let rules = |token_use| ClaimRules {
            issuer: Some(pool.into()),
            audience: Some("app-client".into()),
            token_use: Some(token_use),
        };
        let access = AuthConfig::with_rules(None, Some(SECRET), None, rules(TokenUse::Access)).unwrap();
        let id = AuthConfig::with_rules(None, Some(SECRET), None, rules(TokenUse::Id)).unwrap();
        let exp = now() + 60;
        let access_token =
            json!({"sub": "u", "exp": exp, "iss": pool, "client_id": "app-client", "token_use": "access"});
        let id_token = json!({"sub": "u", "exp": exp, "iss": pool, "aud": "app-client", "token_use": "id"});
        assert!(access.verify(&jwt(access_token.clone())).await.is_ok());
        assert!(id.verify(&jwt(id_token.clone())).await.is_ok());
        let refused = |v: &str| Err(AuthError::Jwt(v.into()));
        assert_eq!(
            access.verify(&jwt(id_token.clone())).await,
            refused("missing required claim")
        );
        assert_eq!(
            id.verify(&jwt(access_token.clone())).await,
            refused("missing required claim")
        );
        let with = |mut c: serde_json::Value, k: &str, v: serde_json::Value| {
            c[k] = v;
            jwt(c)
        };
        let without = |mut c: serde_json::Value, k: &str| {
            c.as_object_mut().unwrap().remove(k);
            jwt(c)
        };
        assert_eq!(
            access
                .verify(&with(access_token.clone(), "client_id", json!("other")))
                .await,
            refused("wrong audience")
        );
        assert_eq!(
            access
                .verify(&with(access_token.clone(), "client_id", json!(["app-client"])))
                .await,
            refused("wrong audience")
        );
        assert_eq!(
            access.verify(&without(access_token.clone(), "client_id")).await,
            refused("missing required claim")
        );
        assert_eq!(
            access
                .verify(&with(access_token.clone(), "token_use", json!("id")))
                .await,
            refused("wrong token_use")
        );
        assert_eq!(
            access.verify(&without(access_token.clone(), "token_use")).await,
            refused("missing required claim")
        );
        assert_eq!(
            access.verify(&without(access_token, "iss")).await,
            refused("missing required claim")
        );
        assert_eq!(
            id.verify(&with(id_token.clone(), "token_use", json!("access"))).await,
            refused("wrong token_use")
        );
        assert_eq!(
            id.verify(&with(id_token, "aud", json!("other"))).await,
            refused("wrong audience")
        );
    }
}
