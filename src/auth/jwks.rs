//! RS256 / ES256 verification with keys published as a JWKS (Cognito, Auth0, Okta, Keycloak, any
//! OIDC provider): `JWT_JWKS_URL`.
//!
//! Keys are fetched at cold start and cached by `kid`. A token naming an unknown `kid` (the
//! provider rotated its keys) triggers one refetch, at most once a minute, so a flood of made-up
//! `kid`s cannot turn the authorizer into a load generator against the provider.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use super::{jwt_error, validation, AuthError, Claims};

/// The least time between two fetches triggered by unknown `kid`s.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS is a few KB; anything this large is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

pub struct Jwks {
    url: String,
    client: HttpsClient,
    issuer: Option<String>,
    audience: Option<String>,
    keys: RwLock<HashMap<String, Key>>,
    /// When the last fetch started; held while fetching so concurrent misses fetch once.
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl Jwks {
    pub fn new(url: &str, issuer: Option<&str>, audience: Option<&str>) -> Jwks {
        Jwks {
            url: url.to_owned(),
            client: https_client(),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            min_refresh: MIN_REFRESH_INTERVAL,
        }
    }

    /// Tests shorten the refresh interval rather than wait a minute.
    pub fn with_min_refresh(mut self, interval: Duration) -> Jwks {
        self.min_refresh = interval;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn warm_up(&self) {
        let mut last = self.last_fetch.lock().await;
        self.fetch(&mut last).await;
    }

    /// Verifies `token` (whose header said `kid` and `alg`) and returns its claims.
    pub(crate) async fn decode(&self, token: &str, kid: Option<&str>, alg: Algorithm) -> Result<Claims, AuthError> {
        let kid = kid.ok_or_else(|| AuthError::Jwt("no kid in the header".into()))?;
        let validation = self.validation_for(kid, alg).await?;
        let keys = self.keys.read().await;
        let key = keys.get(kid).ok_or_else(|| AuthError::Jwt("unknown kid".into()))?;
        Ok(jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(jwt_error)?
            .claims)
    }

    /// The validation for `kid`'s key, refreshing the set once if `kid` is unknown. The
    /// algorithm comes from the key, not the token: a header claiming another one is refused.
    async fn validation_for(&self, kid: &str, alg: Algorithm) -> Result<Validation, AuthError> {
        let known = |keys: &HashMap<String, Key>| keys.get(kid).map(|k| k.algorithm);
        let mut algorithm = known(&*self.keys.read().await);
        if algorithm.is_none() {
            let mut last = self.last_fetch.lock().await;
            // Another request may have refreshed while this one waited for the lock.
            algorithm = known(&*self.keys.read().await);
            if algorithm.is_none() && last.is_none_or(|at| at.elapsed() >= self.min_refresh) {
                self.fetch(&mut last).await;
                algorithm = known(&*self.keys.read().await);
            }
        }
        match algorithm {
            None => Err(AuthError::Jwt("unknown kid".into())),
            Some(expected) if expected != alg => Err(AuthError::Jwt("algorithm not allowed".into())),
            Some(expected) => Ok(validation(expected, self.issuer.as_deref(), self.audience.as_deref())),
        }
    }

    /// Replaces the cached keys with a fresh copy of the set; on failure keeps the old ones.
    async fn fetch(&self, last: &mut Option<Instant>) {
        *last = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
                *self.keys.write().await = keys;
            }
            Err(e) => tracing::error!(url = %self.url, error = %e, "JWKS fetch failed; keeping the keys already known"),
        }
    }

    async fn get(&self) -> Result<HashMap<String, Key>, String> {
        let uri: hyper::Uri = self.url.parse().map_err(|e| format!("bad JWT_JWKS_URL: {e}"))?;
        let response = self.client.get(uri).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok(usable_keys(&set))
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
