//! Credential checks shared by the `$connect` authorizer (and, later, anything else that
//! must decide who a caller is). Knows tokens and JWTs; knows nothing of events.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    #[error("no credentials are configured (set AUTH_TOKENS or JWT_SECRET); denying everything")]
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
}

struct StaticToken {
    user_id: String,
    /// Only the digest is kept: comparing digests in constant time hides the token's length
    /// too, and the plaintext never sits in a long-lived struct that might get printed.
    digest: [u8; 32],
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies tokens against `AUTH_TOKENS` and `JWT_SECRET`. With neither, verifies nothing.
pub struct AuthConfig {
    tokens: Vec<StaticToken>,
    jwt: Option<Jwt>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of Debug output on purpose.
        f.debug_struct("AuthConfig")
            .field("static_tokens", &self.tokens.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

impl Clone for AuthConfig {
    fn clone(&self) -> Self {
        AuthConfig {
            tokens: self
                .tokens
                .iter()
                .map(|t| StaticToken {
                    user_id: t.user_id.clone(),
                    digest: t.digest,
                })
                .collect(),
            jwt: self.jwt.as_ref().map(|j| Jwt {
                key: j.key.clone(),
                validation: j.validation.clone(),
            }),
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
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
        let jwt = secret.map(|secret| {
            // Exactly one algorithm: `alg: none`, RS256-with-our-secret-as-key and every other
            // confusion is refused before any signature math.
            let mut validation = Validation::new(Algorithm::HS256);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp"]);
            match issuer {
                Some(iss) => validation.set_issuer(&[iss]),
                None => validation.iss = None,
            }
            match audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            Jwt {
                key: DecodingKey::from_secret(secret.as_bytes()),
                validation,
            }
        });
        Ok(AuthConfig { tokens: parsed, jwt })
    }

    /// False means every request is denied (fail closed).
    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// Decides who presented `token`.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
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
        for candidate in &self.tokens {
            if bool::from(candidate.digest.ct_eq(&digest)) && found.is_none() {
                found = Some(&candidate.user_id);
            }
        }
        if let Some(user_id) = found {
            return Ok(Identity {
                user_id: user_id.to_owned(),
                method: AuthMethod::Token,
            });
        }
        match &self.jwt {
            Some(jwt) if token.bytes().filter(|b| *b == b'.').count() == 2 => verify_jwt(jwt, token),
            _ => Err(AuthError::UnknownToken),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "userId")]
    user_id: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
}

fn verify_jwt(jwt: &Jwt, token: &str) -> Result<Identity, AuthError> {
    let data = jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation).map_err(|e| {
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
    })?;
    let user_id = [data.claims.user_id, data.claims.sub]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str().filter(|s| valid_user_id(s)).map(str::to_owned))
        .ok_or(AuthError::NoUserClaim)?;
    Ok(Identity {
        user_id,
        method: AuthMethod::Jwt,
    })
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

    #[test]
    fn static_tokens_with_and_without_user() {
        let auth = config("alice=s3cret, plain ,bob=b=64==", None);
        assert_eq!(auth.verify("s3cret").unwrap().user_id, "alice");
        assert_eq!(auth.verify("plain").unwrap().user_id, ANONYMOUS);
        assert_eq!(auth.verify("b=64==").unwrap().user_id, "bob");
        assert_eq!(auth.verify("s3cre"), Err(AuthError::UnknownToken));
        assert_eq!(auth.verify(""), Err(AuthError::NoToken));
        assert_eq!(auth.verify(&"x".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::TooLong));
    }

    #[test]
    fn nothing_configured_denies_everything() {
        let auth = AuthConfig::from_parts(None, None, None, None).unwrap();
        assert_eq!(auth.verify("anything"), Err(AuthError::NotConfigured));
    }

    #[test]
    fn empty_token_in_config_is_an_error() {
        let err = AuthConfig::from_parts(Some("alice="), None, None, None).unwrap_err();
        assert!(err.to_string().contains("entry 0"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let auth = config("alice=s3cret", Some(SECRET));
        let shown = format!("{auth:?}");
        assert!(!shown.contains("s3cret") && !shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn jwt_user_from_user_id_claim_then_sub() {
        let auth = config("", Some(SECRET));
        let base = json!({"exp": now() + 60, "iss": "wshub-tests", "aud": "wshub"});
        let mut with_user = base.clone();
        with_user["userId"] = json!("carol");
        with_user["sub"] = json!("ignored");
        assert_eq!(
            auth.verify(&jwt(with_user)).unwrap(),
            Identity {
                user_id: "carol".into(),
                method: AuthMethod::Jwt
            }
        );
        let mut with_sub = base.clone();
        with_sub["sub"] = json!("dave");
        assert_eq!(auth.verify(&jwt(with_sub)).unwrap().user_id, "dave");
        assert_eq!(auth.verify(&jwt(base)), Err(AuthError::NoUserClaim));
    }

    #[test]
    fn jwt_rejections() {
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
            assert_eq!(auth.verify(&token), Err(AuthError::Jwt(why.into())), "{why}");
        }
        // Signed with another key.
        let forged = encode(&Header::new(Algorithm::HS256), &ok, &EncodingKey::from_secret(b"other")).unwrap();
        assert_eq!(auth.verify(&forged), Err(AuthError::Jwt("bad signature".into())));
        // `alg: none` with no signature.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let payload = jwt(ok.clone()).split('.').nth(1).unwrap().to_owned();
        assert!(matches!(
            auth.verify(&format!("{header}.{payload}.")),
            Err(AuthError::Jwt(_))
        ));
        // HS384 with the right secret is still the wrong algorithm.
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &ok,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(auth.verify(&hs384), Err(AuthError::Jwt("algorithm not allowed".into())));
        // A JWT without exp is refused.
        let no_exp = jwt(json!({"sub": "u", "iss": "wshub-tests", "aud": "wshub"}));
        assert_eq!(
            auth.verify(&no_exp),
            Err(AuthError::Jwt("missing required claim".into()))
        );
        assert_eq!(auth.verify("not.a.jwt"), Err(AuthError::Jwt("malformed".into())));
        assert_eq!(auth.verify("garbage"), Err(AuthError::UnknownToken));
    }
}
