//! RS256 / ES256 verification with keys published as a JWKS (Cognito, Auth0, Okta, Keycloak, any
//! OIDC provider): `JWT_JWKS_URL`.
//!
//! Keys are fetched at cold start and cached by `kid`, for the set's `Cache-Control: max-age`
//! (clamped to [`MIN_MAX_AGE`]..=[`MAX_MAX_AGE`]; [`DEFAULT_MAX_AGE`] without one). Past that
//! age the set is fetched again on the next token, so a key the provider withdrew stops
//! verifying; if that fetch fails the old keys serve for at most [`STALE_GRACE`] more while
//! retries go on, then nothing verifies (fail closed).
//!
//! A token naming an unknown `kid` (the provider rotated its keys) triggers one refetch, at
//! most once a minute, so a flood of made-up `kid`s cannot turn the authorizer into a load
//! generator against the provider. A failed fetch (at cold start, say) is retried after a
//! short back-off ([`RETRY_BASE`], doubling up to the minute) instead of locking every JWT out
//! of the sandbox for a minute; still at most one fetch at a time and one per back-off step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::CACHE_CONTROL;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use super::{jwt_error, validation, AuthError, ClaimRules, Claims};

/// The least time between two fetches triggered by unknown `kid`s.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// How long a set is trusted when its response names no `max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// A `max-age` below this (or `no-cache`) is raised to it: a refetch per token would make
/// the authorizer a load generator against the provider.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// A `max-age` above this is lowered to it, so a withdrawn key stops working within a day.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long expired keys still verify while the provider cannot be reached.
pub const STALE_GRACE: Duration = Duration::from_secs(300);
/// The first retry after a failed fetch; each further failure doubles it, up to the minute.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS is a few KB; anything this large is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Where the cache reads the time: [`Instant::now`], or a test's hand-moved clock.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// The keys of the last successful fetch, and how long they may be trusted.
struct Cache {
    keys: HashMap<String, Key>,
    fetched_at: Option<Instant>,
    max_age: Duration,
}

impl Cache {
    fn age(&self, now: Instant) -> Option<Duration> {
        self.fetched_at.map(|at| now.saturating_duration_since(at))
    }

    /// Due for a refetch: never fetched, or older than its `max-age`.
    fn expired(&self, now: Instant) -> bool {
        self.age(now).is_none_or(|age| age >= self.max_age)
    }

    /// `kid`'s algorithm while its key may still verify (within the grace after expiry).
    fn algorithm(&self, kid: &str, now: Instant) -> Option<Algorithm> {
        let usable = self.age(now).is_some_and(|age| age < self.max_age + STALE_GRACE);
        usable.then(|| self.keys.get(kid).map(|k| k.algorithm)).flatten()
    }
}

/// The fetch schedule, held while fetching so concurrent misses fetch once.
#[derive(Default)]
struct Attempts {
    last: Option<Instant>,
    /// Failed fetches since the last success.
    failures: u32,
}

pub struct Jwks {
    url: String,
    client: HttpsClient,
    rules: Arc<ClaimRules>,
    cache: RwLock<Cache>,
    attempts: Mutex<Attempts>,
    min_refresh: Duration,
    clock: Clock,
}

impl Jwks {
    pub fn new(url: &str, rules: Arc<ClaimRules>) -> Jwks {
        Jwks {
            url: url.to_owned(),
            client: https_client(),
            rules,
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                fetched_at: None,
                max_age: DEFAULT_MAX_AGE,
            }),
            attempts: Mutex::new(Attempts::default()),
            min_refresh: MIN_REFRESH_INTERVAL,
            clock: Arc::new(Instant::now),
        }
    }

    /// Tests shorten the refresh interval rather than wait a minute.
    pub fn with_min_refresh(mut self, interval: Duration) -> Jwks {
        self.min_refresh = interval;
        self
    }

    /// Tests move time by hand rather than wait for ages to pass.
    pub fn with_clock(mut self, clock: Clock) -> Jwks {
        self.clock = clock;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn warm_up(&self) {
        let mut attempts = self.attempts.lock().await;
        self.fetch(&mut attempts).await;
    }

    /// Verifies `token` (whose header said `kid` and `alg`) and returns its claims.
    pub(crate) async fn decode(&self, token: &str, kid: Option<&str>, alg: Algorithm) -> Result<Claims, AuthError> {
        let kid = kid.ok_or_else(|| AuthError::Jwt("no kid in the header".into()))?;
        let (key, validation) = self.key_for(kid, alg).await?;
        Ok(jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(jwt_error)?
            .claims)
    }

    /// `kid`'s key and validation, refreshing the set first when it has aged out or does not
    /// know `kid` (as the schedule allows). The algorithm comes from the key, not the token:
    /// a header claiming another one is refused.
    async fn key_for(&self, kid: &str, alg: Algorithm) -> Result<(DecodingKey, Validation), AuthError> {
        let now = (self.clock)();
        let needs_fetch = |cache: &Cache| cache.expired(now) || cache.algorithm(kid, now).is_none();
        if needs_fetch(&*self.cache.read().await) {
            let mut attempts = self.attempts.lock().await;
            // Another request may have refreshed while this one waited for the lock.
            let (due, expired) = {
                let cache = self.cache.read().await;
                (needs_fetch(&cache), cache.expired(now))
            };
            if due && self.may_fetch(&attempts, expired, now) {
                self.fetch(&mut attempts).await;
            }
        }
        let cache = self.cache.read().await;
        let now = (self.clock)();
        match cache.algorithm(kid, now) {
            None => Err(AuthError::Jwt("unknown kid".into())),
            Some(expected) if expected != alg => Err(AuthError::Jwt("algorithm not allowed".into())),
            Some(expected) => {
                let key = cache.keys.get(kid).map(|k| k.key.clone());
                let key = key.ok_or_else(|| AuthError::Jwt("unknown kid".into()))?;
                Ok((key, validation(expected, &self.rules)))
            }
        }
    }

    /// Whether a fetch may start now: after a failure, once the back-off has passed; for an
    /// aged-out set, at once; for an unknown `kid` in a fresh set, once a minute.
    fn may_fetch(&self, attempts: &Attempts, expired: bool, now: Instant) -> bool {
        let Some(last) = attempts.last else { return true };
        let wait = if attempts.failures > 0 {
            retry_after(attempts.failures, self.min_refresh)
        } else if expired {
            Duration::ZERO
        } else {
            self.min_refresh
        };
        now.saturating_duration_since(last) >= wait
    }

    /// Replaces the cached keys with a fresh copy of the set; on failure keeps the old ones
    /// (which still age out) and counts the failure for the back-off.
    async fn fetch(&self, attempts: &mut Attempts) {
        let started = (self.clock)();
        attempts.last = Some(started);
        match tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok((keys, max_age)) => {
                tracing::info!(url = %self.url, keys = keys.len(), max_age_s = max_age.as_secs(), "JWKS loaded");
                attempts.failures = 0;
                *self.cache.write().await = Cache {
                    keys,
                    fetched_at: Some(started),
                    max_age,
                };
            }
            Err(e) => {
                attempts.failures = attempts.failures.saturating_add(1);
                let retry = retry_after(attempts.failures, self.min_refresh);
                tracing::error!(url = %self.url, error = %e, retry_in_s = retry.as_secs_f64(),
                    "JWKS fetch failed; keeping the keys already known until they age out");
            }
        }
    }

    async fn get(&self) -> Result<(HashMap<String, Key>, Duration), String> {
        let uri: hyper::Uri = self.url.parse().map_err(|e| format!("bad JWT_JWKS_URL: {e}"))?;
        let response = self.client.get(uri).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let max_age = max_age(
            response
                .headers()
                .get_all(CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok((usable_keys(&set), max_age))
    }
}

/// The wait after the `failures`-th failed fetch in a row: [`RETRY_BASE`], doubling, at most
/// `cap` (the unknown-`kid` interval).
fn retry_after(failures: u32, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (RETRY_BASE * 2u32.pow(doublings)).min(cap)
}

/// How long a fetched set is trusted, from its `Cache-Control` header values: `max-age`
/// clamped to [`MIN_MAX_AGE`]..=[`MAX_MAX_AGE`]; `no-cache` / `no-store` count as zero (so
/// the minimum); none at all (or an unreadable one) gives [`DEFAULT_MAX_AGE`].
pub fn max_age<'a>(values: impl IntoIterator<Item = &'a str>) -> Duration {
    let mut found: Option<u64> = None;
    for directive in values.into_iter().flat_map(|v| v.split(',')) {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            found = Some(0);
        } else if name.eq_ignore_ascii_case("max-age") {
            if let Some(seconds) = value.and_then(|v| v.parse::<u64>().ok()) {
                found = Some(found.map_or(seconds, |f| f.min(seconds)));
            }
        }
    }
    match found {
        None => DEFAULT_MAX_AGE,
        Some(seconds) => Duration::from_secs(seconds).clamp(MIN_MAX_AGE, MAX_MAX_AGE),
    }
}

/// RSA keys for RS256 and P-256 keys for ES256 that have a `kid`; everything else (symmetric
/// keys above all: an `oct` key in a public set would let anyone sign) is ignored.
fn usable_keys(set: &JwkSet) -> HashMap<String, Key> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, Key { key, algorithm });
            }
            Err(e) => tracing::warn!(kid, error = %e, "skipping an unreadable JWKS key"),
        }
    }
    keys
}

fn https_client() -> HttpsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match builder.with_native_roots() {
        Ok(builder) => builder.https_or_http().enable_http1().build(),
        Err(e) => {
            // Without system roots no https JWKS can be fetched; say so once, serve http ones.
            tracing::warn!(error = %e, "no system root certificates; https JWKS URLs will fail");
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .build()
        }
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control_and_clamped() {
        assert_eq!(max_age([]), DEFAULT_MAX_AGE);
        assert_eq!(max_age(["public, max-age=600"]), Duration::from_secs(600));
        assert_eq!(max_age(["public", "Max-Age=\"900\""]), Duration::from_secs(900));
        assert_eq!(max_age(["max-age=5"]), MIN_MAX_AGE);
        assert_eq!(max_age(["no-cache"]), MIN_MAX_AGE);
        assert_eq!(max_age(["max-age=600, no-store"]), MIN_MAX_AGE);
        assert_eq!(max_age(["max-age=31536000"]), MAX_MAX_AGE);
        assert_eq!(max_age(["max-age=soon"]), DEFAULT_MAX_AGE);
        assert_eq!(max_age(["max-age=-1"]), DEFAULT_MAX_AGE);
    }

    #[test]
    fn retries_back_off_up_to_the_minute() {
        let cap = MIN_REFRESH_INTERVAL;
        let waits: Vec<u64> = (1..=8).map(|n| retry_after(n, cap).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_after(u32::MAX, cap), cap);
    }

    #[test]
    fn only_rs256_and_es256_keys_with_a_kid_are_kept() {
        let rsa = serde_json::json!({"kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let mut set = Vec::new();
        let with = |mut v: serde_json::Value, extra: serde_json::Value| {
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        set.push(with(rsa.clone(), serde_json::json!({"kid": "rsa"})));
        set.push(with(rsa.clone(), serde_json::json!({"kid": "rs512", "alg": "RS512"})));
        set.push(rsa.clone()); // no kid
        set.push(serde_json::json!({"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}));
        set.push(serde_json::json!({"kty": "EC", "kid": "p256", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}));
        let set: JwkSet = serde_json::from_value(serde_json::json!({ "keys": set })).unwrap();
        let mut kept: Vec<(String, Algorithm)> = usable_keys(&set)
            .into_iter()
            .map(|(kid, k)| (kid, k.algorithm))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kept,
            [
                ("p256".to_owned(), Algorithm::ES256),
                ("rsa".to_owned(), Algorithm::RS256)
            ]
        );
    }
}
