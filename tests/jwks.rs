//! JWT verification with keys from a JWKS (`JWT_JWKS_URL`), served by a local HTTP server, and
//! the JWT attack matrix: every forged, confused, stale or malformed token is denied, and no
//! token or secret reaches the logs.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use wshub::auth::{AuthConfig, AuthError};
use wshub::notify::memory::MemoryNotifier;
use wshub::store::memory::MemoryStore;
use wshub::{Config, Hub};

const RSA_1: &[u8] = include_bytes!("fixtures/jwt/rsa-1.pem");
const RSA_2: &[u8] = include_bytes!("fixtures/jwt/rsa-2.pem");
const EC_1: &[u8] = include_bytes!("fixtures/jwt/ec-1.pem");
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");
const JWKS_ROTATED: &str = include_str!("fixtures/jwt/jwks-rotated.json");
const HS_SECRET: &str = "hs256-secret-for-the-attack-matrix-0123456789";

/// A JWKS endpoint whose body and `Cache-Control` can change (key rotation) and which counts
/// its fetches.
#[derive(Clone)]
struct JwksServer {
    body: Arc<Mutex<String>>,
    cache_control: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: &str) -> (JwksServer, String) {
        let server = JwksServer {
            body: Arc::new(Mutex::new(body.to_owned())),
            cache_control: Arc::default(),
            fetches: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/.well-known/jwks.json",
                get(|State(s): State<JwksServer>| async move {
                    s.fetches.fetch_add(1, Ordering::SeqCst);
                    let mut response = s.body.lock().unwrap().clone().into_response();
                    if let Some(value) = s.cache_control.lock().unwrap().clone() {
                        response
                            .headers_mut()
                            .insert(header::CACHE_CONTROL, value.parse().unwrap());
                    }
                    response
                }),
            )
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (server, url)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn serve(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }

    fn cache_control(&self, value: &str) {
        *self.cache_control.lock().unwrap() = Some(value.to_owned());
    }
}

/// A clock for the JWKS cache that moves only when a test moves it.
#[derive(Clone)]
struct HandClock {
    start: tokio::time::Instant,
    offset: Arc<Mutex<Duration>>,
}

impl HandClock {
    fn new() -> HandClock {
        HandClock {
            start: tokio::time::Instant::now(),
            offset: Arc::default(),
        }
    }

    /// Sets the time to `seconds` after the test started.
    fn at(&self, seconds: u64) {
        *self.offset.lock().unwrap() = Duration::from_secs(seconds);
    }

    fn clock(&self) -> wshub::auth::jwks::Clock {
        let this = self.clone();
        Arc::new(move || this.start + *this.offset.lock().unwrap())
    }
}

/// The rotated set without `rsa-1`: the provider has withdrawn that key.
fn without_rsa_1() -> String {
    let mut set: Value = serde_json::from_str(JWKS_ROTATED).unwrap();
    set["keys"].as_array_mut().unwrap().retain(|k| k["kid"] != "rsa-1");
    set.to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "dana", "exp": now() + 300, "iss": "https://idp.example.com", "aud": "wshub"});
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    c
}

/// Honest claims but for one left out.
fn without(claim: &str) -> Value {
    let mut c = claims(json!({}));
    c.as_object_mut().unwrap().remove(claim);
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn rsa(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).unwrap()
}

fn auth(url: &str, secret: Option<&str>) -> AuthConfig {
    AuthConfig::with_jwks(
        None,
        secret,
        Some(url),
        Some("https://idp.example.com".into()),
        Some("wshub".into()),
    )
    .unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_jwks() {
    let (server, url) = JwksServer::start(JWKS).await;
    let auth = auth(&url, None);
    auth.warm_up().await;
    assert_eq!(server.fetches(), 1, "keys are fetched at cold start");
    let rs = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    assert_eq!(auth.verify(&rs).await.unwrap().user_id, "dana");
    let es = sign(
        Algorithm::ES256,
        Some("ec-1"),
        &EncodingKey::from_ec_pem(EC_1).unwrap(),
        &claims(json!({"userId": "eve"})),
    );
    assert_eq!(auth.verify(&es).await.unwrap().user_id, "eve");
    assert_eq!(server.fetches(), 1, "known kids are served from the cache");
}

#[tokio::test]
async fn unknown_kid_refreshes_at_most_once_a_minute() {
    let (server, url) = JwksServer::start(JWKS).await;
    let auth = auth(&url, None);
    auth.warm_up().await;
    server.serve(JWKS_ROTATED);
    // Fetched a moment ago: an unknown kid does not refetch within the minute.
    let rotated = sign(Algorithm::RS256, Some("rsa-2"), &rsa(RSA_2), &claims(json!({})));
    assert_eq!(auth.verify(&rotated).await, Err(AuthError::Jwt("unknown kid".into())));
    let made_up = sign(Algorithm::RS256, Some("made-up"), &rsa(RSA_2), &claims(json!({})));
    assert_eq!(auth.verify(&made_up).await, Err(AuthError::Jwt("unknown kid".into())));
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn rotation_is_picked_up_on_the_first_unknown_kid() {
    let (server, url) = JwksServer::start(JWKS).await;
    // The minute is shortened to nothing here rather than waited out.
    let auth = auth(&url, None).with_jwks_min_refresh(Duration::ZERO);
    auth.warm_up().await;
    server.serve(JWKS_ROTATED);
    let rotated = sign(Algorithm::RS256, Some("rsa-2"), &rsa(RSA_2), &claims(json!({})));
    assert_eq!(auth.verify(&rotated).await.unwrap().user_id, "dana");
    assert_eq!(server.fetches(), 2);
    // Symmetric keys in a published set are ignored: anyone could sign with them.
    server.serve(r#"{"keys":[{"kty":"oct","kid":"shared","k":"c2VjcmV0"}]}"#);
    let hs = sign(
        Algorithm::HS256,
        Some("shared"),
        &EncodingKey::from_secret(b"secret"),
        &claims(json!({})),
    );
    assert_eq!(
        auth.verify(&hs).await,
        Err(AuthError::Jwt("algorithm not allowed".into()))
    );
}

#[tokio::test]
async fn failed_cold_start_fetch_is_retried_after_a_short_back_off() {
    let (server, url) = JwksServer::start(JWKS).await;
    let clock = HandClock::new();
    // Cold start with the JWKS endpoint down: the first tokens trigger the retries instead.
    server.serve("not json");
    let auth = auth(&url, None).with_jwks_clock(clock.clock());
    auth.warm_up().await;
    assert_eq!(server.fetches(), 1);
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    // Within the first back-off step (1 s): refused, and no fetch however many tokens come.
    for _ in 0..3 {
        assert_eq!(auth.verify(&token).await, Err(AuthError::Jwt("unknown kid".into())));
    }
    assert_eq!(server.fetches(), 1);
    // Still down a second later: one retry, and the next step is 2 s.
    clock.at(1);
    assert!(auth.verify(&token).await.is_err());
    assert_eq!(server.fetches(), 2);
    clock.at(2);
    assert!(auth.verify(&token).await.is_err());
    assert_eq!(server.fetches(), 2, "the back-off doubles");
    // Back up: the next retry loads the keys, seconds after the cold start, not a minute.
    server.serve(JWKS);
    clock.at(3);
    assert_eq!(auth.verify(&token).await.unwrap().user_id, "dana");
    assert_eq!(server.fetches(), 3);
    assert_eq!(auth.verify(&token).await.unwrap().user_id, "dana");
    assert_eq!(server.fetches(), 3, "loaded keys are served from the cache");
}

#[tokio::test]
async fn keys_age_out_at_the_sets_max_age_so_a_withdrawn_key_stops_verifying() {
    let (server, url) = JwksServer::start(JWKS).await;
    server.cache_control("public, max-age=600");
    let clock = HandClock::new();
    let auth = auth(&url, None).with_jwks_clock(clock.clock());
    auth.warm_up().await;
    let old = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    let new = sign(Algorithm::RS256, Some("rsa-2"), &rsa(RSA_2), &claims(json!({})));
    assert_eq!(auth.verify(&old).await.unwrap().user_id, "dana");
    // The provider withdraws rsa-1; the cached set is trusted until its max-age.
    server.serve(&without_rsa_1());
    clock.at(599);
    assert_eq!(auth.verify(&old).await.unwrap().user_id, "dana");
    assert_eq!(server.fetches(), 1);
    clock.at(600);
    assert_eq!(auth.verify(&old).await, Err(AuthError::Jwt("unknown kid".into())));
    assert_eq!(server.fetches(), 2, "an aged-out set is fetched again");
    assert_eq!(auth.verify(&new).await.unwrap().user_id, "dana");
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn without_cache_control_keys_age_out_after_an_hour() {
    let (server, url) = JwksServer::start(JWKS).await;
    let clock = HandClock::new();
    let auth = auth(&url, None).with_jwks_clock(clock.clock());
    auth.warm_up().await;
    let old = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    server.serve(&without_rsa_1());
    clock.at(3599);
    assert!(auth.verify(&old).await.is_ok());
    assert_eq!(server.fetches(), 1);
    clock.at(3600);
    assert_eq!(auth.verify(&old).await, Err(AuthError::Jwt("unknown kid".into())));
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_max_age_is_clamped_to_a_day() {
    let (server, url) = JwksServer::start(JWKS).await;
    server.cache_control("max-age=31536000");
    let clock = HandClock::new();
    let auth = auth(&url, None).with_jwks_clock(clock.clock());
    auth.warm_up().await;
    let old = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    server.serve(&without_rsa_1());
    clock.at(24 * 3600 - 1);
    assert!(auth.verify(&old).await.is_ok());
    clock.at(24 * 3600);
    assert!(
        auth.verify(&old).await.is_err(),
        "a year's max-age is trusted for a day only"
    );
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn aged_out_keys_serve_a_short_grace_while_the_provider_is_down_then_fail_closed() {
    let (server, url) = JwksServer::start(JWKS).await;
    server.cache_control("max-age=600");
    let clock = HandClock::new();
    let auth = auth(&url, None).with_jwks_clock(clock.clock());
    auth.warm_up().await;
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    server.serve("not json");
    clock.at(600);
    assert!(
        auth.verify(&token).await.is_ok(),
        "the provider is down: the old keys still serve"
    );
    assert_eq!(server.fetches(), 2);
    let grace = wshub::auth::jwks::STALE_GRACE.as_secs();
    clock.at(600 + grace);
    assert_eq!(auth.verify(&token).await, Err(AuthError::Jwt("unknown kid".into())));
}

/// The log lines of this test binary, captured once for all its tests.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(writer.clone()))
            .init();
        buffer
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn authorizer_event(token: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/authorizer-jwt.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let bearer = format!("Bearer {token}");
    event["headers"]["Authorization"] = json!(bearer);
    event["multiValueHeaders"]["Authorization"] = json!([bearer]);
    event
}

#[tokio::test]
async fn attack_matrix_is_denied_and_nothing_secret_is_logged() {
    let logs = logs();
    let (_server, url) = JwksServer::start(JWKS).await;
    let config = Config::from_lookup(|name| match name {
        "CONNECTIONS_TABLE" => Some("t".into()),
        "JWT_SECRET" => Some(HS_SECRET.into()),
        "JWT_JWKS_URL" => Some(url.clone()),
        "JWT_ISSUER" => Some("https://idp.example.com".into()),
        "JWT_AUDIENCE" => Some("wshub".into()),
        _ => None,
    })
    .unwrap();
    config.auth.warm_up().await;
    let hub = Hub::new(config, Arc::new(MemoryStore::new()), Arc::new(MemoryNotifier::new()));
    let hs = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let good_rs = sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({})));
    let rsa_1_n = serde_json::from_str::<Value>(JWKS).unwrap()["keys"][0]["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let tampered = {
        let mut parts: Vec<&str> = good_rs.split('.').collect();
        let evil = sign(
            Algorithm::RS256,
            Some("rsa-1"),
            &rsa(RSA_2),
            &claims(json!({"sub": "root"})),
        );
        let payload = evil.split('.').nth(1).unwrap().to_owned();
        parts[1] = Box::leak(payload.into_boxed_str());
        parts.join(".")
    };
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let matrix: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(claims(json!({})))
            ),
        ),
        // RS256 header, HMAC'd with the public key material as the secret: the classic confusion.
        (
            "HS256 signed with the RSA public key",
            sign(
                Algorithm::HS256,
                Some("rsa-1"),
                &EncodingKey::from_secret(rsa_1_n.as_bytes()),
                &claims(json!({})),
            ),
        ),
        (
            "RS256 header on the EC key",
            sign(Algorithm::RS256, Some("ec-1"), &rsa(RSA_1), &claims(json!({}))),
        ),
        (
            "RS256 signed by a key not in the set",
            sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_2), &claims(json!({}))),
        ),
        (
            "RS256 without kid",
            sign(Algorithm::RS256, None, &rsa(RSA_1), &claims(json!({}))),
        ),
        (
            "HS384",
            sign(
                Algorithm::HS384,
                None,
                &EncodingKey::from_secret(HS_SECRET.as_bytes()),
                &claims(json!({})),
            ),
        ),
        (
            "expired",
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa(RSA_1),
                &claims(json!({"exp": now() - 3600})),
            ),
        ),
        (
            "nbf in the future",
            sign(Algorithm::HS256, None, &hs, &claims(json!({"nbf": now() + 3600}))),
        ),
        (
            "wrong iss",
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa(RSA_1),
                &claims(json!({"iss": "https://evil.example.com"})),
            ),
        ),
        (
            "wrong aud",
            sign(Algorithm::HS256, None, &hs, &claims(json!({"aud": "someone-else"}))),
        ),
        ("HS256 no iss", sign(Algorithm::HS256, None, &hs, &without("iss"))),
        ("HS256 no aud", sign(Algorithm::HS256, None, &hs, &without("aud"))),
        (
            "HS256 iss a number",
            sign(Algorithm::HS256, None, &hs, &claims(json!({"iss": 1}))),
        ),
        (
            "HS256 iss an array naming the issuer",
            sign(
                Algorithm::HS256,
                None,
                &hs,
                &claims(json!({"iss": ["https://idp.example.com", "https://evil.example.com"]})),
            ),
        ),
        (
            "HS256 aud a number",
            sign(Algorithm::HS256, None, &hs, &claims(json!({"aud": 1}))),
        ),
        (
            "HS256 aud null",
            sign(Algorithm::HS256, None, &hs, &claims(json!({"aud": null}))),
        ),
        (
            "RS256 no iss",
            sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &without("iss")),
        ),
        (
            "RS256 no aud",
            sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &without("aud")),
        ),
        (
            "RS256 iss a number",
            sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({"iss": 1}))),
        ),
        (
            "RS256 iss an array naming the issuer",
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa(RSA_1),
                &claims(json!({"iss": ["https://idp.example.com", "https://evil.example.com"]})),
            ),
        ),
        (
            "RS256 aud a number",
            sign(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &claims(json!({"aud": 1}))),
        ),
        (
            "RS256 aud null",
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa(RSA_1),
                &claims(json!({"aud": null})),
            ),
        ),
        ("tampered payload", tampered),
        (
            "bad signature",
            sign(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(b"guessed"),
                &claims(json!({})),
            ),
        ),
        (
            "over 8 KB",
            sign(Algorithm::HS256, None, &hs, &claims(json!({"pad": "x".repeat(9000)}))),
        ),
        ("garbage", "garbage-token-value-123".into()),
        ("three dots of garbage", "eyJ.garbage.sig".into()),
    ];
    for (name, token) in &matrix {
        let response = wshub::handle(&hub, authorizer_event(token), None).await.unwrap();
        assert_eq!(
            response["policyDocument"]["Statement"][0]["Effect"], "Deny",
            "{name} must be denied"
        );
    }
    // The matrix is not vacuous: the same hub allows honest tokens of both kinds.
    for token in [good_rs.clone(), sign(Algorithm::HS256, None, &hs, &claims(json!({})))] {
        let response = wshub::handle(&hub, authorizer_event(&token), None).await.unwrap();
        assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Allow");
    }
    // Algorithm confusion across configurations: an RS256 token where only HS256 is configured,
    // and an HS256 token where only the JWKS is.
    let hs_only = AuthConfig::from_parts(
        None,
        Some(HS_SECRET),
        Some("https://idp.example.com".into()),
        Some("wshub".into()),
    )
    .unwrap();
    assert_eq!(
        hs_only.verify(&good_rs).await,
        Err(AuthError::Jwt("algorithm not allowed".into()))
    );
    let jwks_only = auth(&url, None);
    let hs_token = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(rsa_1_n.as_bytes()),
        &claims(json!({})),
    );
    assert_eq!(
        jwks_only.verify(&hs_token).await,
        Err(AuthError::Jwt("algorithm not allowed".into()))
    );

    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("connection denied"),
        "the denials were logged: {logged}"
    );
    for (name, token) in matrix
        .iter()
        .map(|(n, t)| (*n, t.as_str()))
        .chain([("good", good_rs.as_str())])
    {
        // Any long-enough piece of the token (its signature, say) would do as a leak.
        let tail = &token[token.len().saturating_sub(16)..];
        assert!(!logged.contains(tail), "{name}: token leaked into the logs");
    }
    assert!(!logged.contains(HS_SECRET), "the secret leaked into the logs");
}
