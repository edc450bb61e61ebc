//! The shared secrets (`AUTH_TOKENS`, `JWT_SECRET`, `PUBLISH_KEYS`) from outside the function's
//! environment, where anyone who may read its configuration would read them.
//!
//! Sources (the variable names are public contract, README "Secrets"):
//! - `AUTH_TOKENS_PARAMETER`, `JWT_SECRET_PARAMETER`, `PUBLISH_KEYS_PARAMETER`: names of
//!   Parameter Store `SecureString` parameters holding what the variable would hold. All are read
//!   with one `GetParameters` call (`WithDecryption`; up to 10 names per call, AWS Systems Manager
//!   API Reference "GetParameters").
//! - `SECRETS_MANAGER_SECRET_ID`: a Secrets Manager secret (name or ARN) whose `SecretString` is
//!   a JSON object with any of the keys `AUTH_TOKENS`, `JWT_SECRET`, `PUBLISH_KEYS` (one
//!   `GetSecretValue` call, AWS Secrets Manager API Reference "GetSecretValue").
//!
//! Each value comes from its parameter, else the secret, else the environment variable; a
//! variable and its `_PARAMETER` both set is a configuration error.
//!
//! Behaviour: the two calls run concurrently, under one bounded timeout
//! (`SECRETS_TIMEOUT_MS`), so a cold start waits for at most one added round trip (and the JWKS
//! warm-up runs beside them). Values are cached and re-read once older than
//! `SECRETS_MAX_AGE_SECONDS`, so a rotation takes effect without a redeploy. A failed fetch fails
//! closed: no credentials, every connection denied, until a fetch succeeds (at most one attempt
//! per [`RETRY_AFTER`]). Errors are logged without any value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::auth::AuthConfig;

/// The keys a source may supply: the environment variables they stand in for.
pub const KEYS: [&str; 3] = ["AUTH_TOKENS", "JWT_SECRET", "PUBLISH_KEYS"];
/// The variables naming a Parameter Store parameter for each key (in [`KEYS`] order).
pub const PARAMETER_VARIABLES: [&str; 3] = [
    "AUTH_TOKENS_PARAMETER",
    "JWT_SECRET_PARAMETER",
    "PUBLISH_KEYS_PARAMETER",
];
pub const SECRET_ID_VARIABLE: &str = "SECRETS_MANAGER_SECRET_ID";
pub const DEFAULT_MAX_AGE_SECONDS: u64 = 300;
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// After a failed fetch, requests within this interval are denied without another attempt, so a
/// burst of connections during an outage does not become a burst of Parameter Store calls.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where the secrets come from, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSources {
    /// `(key, parameter name)` for each `<KEY>_PARAMETER` set.
    pub parameters: Vec<(&'static str, String)>,
    /// `SECRETS_MANAGER_SECRET_ID`.
    pub secret_id: Option<String>,
    /// `SECRETS_MAX_AGE_SECONDS`: how long fetched values are used before they are re-read.
    pub max_age: Duration,
    /// `SECRETS_TIMEOUT_MS`: bound on one fetch (both calls together, retries included).
    pub timeout: Duration,
}

impl Default for SecretSources {
    fn default() -> Self {
        SecretSources {
            parameters: Vec::new(),
            secret_id: None,
            max_age: Duration::from_secs(DEFAULT_MAX_AGE_SECONDS),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
        }
    }
}

impl SecretSources {
    pub fn is_configured(&self) -> bool {
        !self.parameters.is_empty() || self.secret_id.is_some()
    }
}

/// Fetched values by key. Its `Debug` names the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(BTreeMap<&'static str, String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretValues {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Why the secrets could not be read. Never carries a value: these are logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("fetching the secrets took longer than {0:?}")]
    Timeout(Duration),
    #[error("Parameter Store: {0}")]
    ParameterStore(String),
    #[error("parameter {0} does not exist")]
    MissingParameter(String),
    #[error("Secrets Manager: {0}")]
    SecretsManager(String),
    #[error("secret {id}: {reason}")]
    BadSecret { id: String, reason: String },
    #[error("the fetched secrets are not valid configuration: {0}")]
    Invalid(String),
    #[error("the last fetch failed less than {RETRY_AFTER:?} ago")]
    BackingOff,
}

/// The port to Parameter Store and Secrets Manager.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The decrypted values of these parameters, by name (names that do not exist are absent).
    async fn parameters(&self, names: &[String]) -> Result<HashMap<String, String>, SecretError>;
    /// The `SecretString` of this secret.
    async fn secret_string(&self, id: &str) -> Result<String, SecretError>;
}

/// Reads every configured source once: both calls concurrently, under `sources.timeout`.
pub async fn fetch(store: &dyn SecretStore, sources: &SecretSources) -> Result<SecretValues, SecretError> {
    let names: Vec<String> = sources.parameters.iter().map(|(_, name)| name.clone()).collect();
    let parameters = async {
        if names.is_empty() {
            Ok(HashMap::new())
        } else {
            store.parameters(&names).await
        }
    };
    let secret = async {
        match &sources.secret_id {
            Some(id) => store.secret_string(id).await.map(Some),
            None => Ok(None),
        }
    };
    let (parameters, secret) = tokio::time::timeout(sources.timeout, async { tokio::join!(parameters, secret) })
        .await
        .map_err(|_| SecretError::Timeout(sources.timeout))?;
    let (parameters, secret) = (parameters?, secret?);
    let mut values = BTreeMap::new();
    if let (Some(id), Some(text)) = (&sources.secret_id, secret) {
        let bad = |reason: &str| SecretError::BadSecret {
            id: id.clone(),
            reason: reason.to_owned(),
        };
        let serde_json::Value::Object(object) =
            serde_json::from_str(&text).map_err(|_| bad("SecretString is not a JSON object"))?
        else {
            return Err(bad("SecretString is not a JSON object"));
        };
        for key in KEYS {
            match object.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(v)) => {
                    if !v.trim().is_empty() {
                        values.insert(key, v.clone());
                    }
                }
                Some(_) => return Err(bad(&format!("{key} must be a string"))),
            }
        }
        if !KEYS.iter().any(|k| object.contains_key(*k)) {
            return Err(bad("has none of the keys AUTH_TOKENS, JWT_SECRET, PUBLISH_KEYS"));
        }
    }
    for (key, name) in &sources.parameters {
        let value = parameters
            .get(name)
            .ok_or_else(|| SecretError::MissingParameter(name.clone()))?;
        values.insert(*key, value.clone());
    }
    Ok(SecretValues(values))
}

/// The environment as the configuration sees it once the secrets are fetched: each key from the
/// fetched values, else the environment; the source variables hidden, so the rebuilt
/// configuration does not see them again.
pub fn overlay(values: &SecretValues, name: &str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    if KEYS.contains(&name) {
        return values.get(name).map(str::to_owned).or_else(|| env(name));
    }
    if PARAMETER_VARIABLES.contains(&name) || name == SECRET_ID_VARIABLE {
        return None;
    }
    env(name)
}

/// What the secrets configure: the authorizer's credentials and the publish keys.
#[derive(Clone)]
pub struct Credentials {
    pub auth: AuthConfig,
    /// `PUBLISH_KEYS`, as SHA-256 digests ([`crate::config::Config::publish_keys`]).
    pub publish_keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth", &self.auth)
            .field("publish_keys", &self.publish_keys.len())
            .finish()
    }
}

/// Turns fetched values into credentials (the hub's builder re-reads the configuration through
/// [`overlay`]). Its error must not contain a value.
pub type Builder = Box<dyn Fn(&SecretValues) -> Result<Credentials, String> + Send + Sync>;

struct Fresh {
    values: SecretValues,
    credentials: Arc<Credentials>,
    fetched_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Fresh>,
    failed_at: Option<Instant>,
}

/// The cache: fetched once, served until `max_age`, re-read on the first request after.
pub struct LiveSecrets {
    sources: SecretSources,
    store: Arc<dyn SecretStore>,
    build: Builder,
    // A tokio mutex held across the fetch: concurrent requests wait for one fetch, not start many.
    state: Mutex<State>,
}

impl LiveSecrets {
    pub fn new(sources: SecretSources, store: Arc<dyn SecretStore>, build: Builder) -> Self {
        LiveSecrets {
            sources,
            store,
            build,
            state: Mutex::new(State::default()),
        }
    }

    pub fn sources(&self) -> &SecretSources {
        &self.sources
    }

    /// The current credentials, fetching them if they are missing or older than the max age.
    pub async fn current(&self) -> Result<Arc<Credentials>, SecretError> {
        let mut state = self.state.lock().await;
        if let Some(fresh) = &state.current {
            if fresh.fetched_at.elapsed() < self.sources.max_age {
                return Ok(fresh.credentials.clone());
            }
        }
        if state.failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(SecretError::BackingOff);
        }
        let fetched_at = Instant::now();
        let result = fetch(self.store.as_ref(), &self.sources).await.and_then(|values| {
            // Unchanged values keep their credentials (and the JWKS cache inside them).
            match &state.current {
                Some(fresh) if fresh.values == values => Ok((values, fresh.credentials.clone())),
                _ => (self.build)(&values)
                    .map(|c| (values, Arc::new(c)))
                    .map_err(SecretError::Invalid),
            }
        });
        match result {
            Ok((values, credentials)) => {
                tracing::info!(keys = ?values, "secrets loaded");
                state.current = Some(Fresh {
                    values,
                    credentials: credentials.clone(),
                    fetched_at,
                });
                state.failed_at = None;
                Ok(credentials)
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read the secrets: denying every credential until a fetch succeeds");
                state.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }
}

/// Parameter Store and Secrets Manager over their JSON APIs (`GetParameters`,
/// `GetSecretValue`: POST with `X-Amz-Target`, `application/x-amz-json-1.1`), signed with SigV4
/// (aws-sigv4, the SDK's own signer) and sent over the hyper/rustls stack the binary already has.
/// The two SDK crates cost 1.9 MB of binary for two calls, these 1.0 MB (BENCHMARKS.md, 1c).
pub struct AwsSecretStore {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    region: String,
    ssm_endpoint: String,
    secrets_manager_endpoint: String,
    /// Reads the environment (the credentials, at each call).
    env: Lookup,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A secret or a page of parameters is a few KB (a secret at most 64 KB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Attempts per call: a 5xx, a 429 or a transport failure is tried once more, within the fetch
/// timeout.
const ATTEMPTS: usize = 2;

impl AwsSecretStore {
    /// From Lambda's environment: `AWS_REGION`, the endpoint overrides `AWS_ENDPOINT_URL_SSM`,
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER` and `AWS_ENDPOINT_URL` (as [`crate::aws`] reads them),
    /// and the roots [`crate::aws::Roots`] picks. Credentials are read from the environment at
    /// each call, as the SDK's environment provider does.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        let region = lookup("AWS_REGION")
            .or_else(|| lookup("AWS_DEFAULT_REGION"))
            .unwrap_or_default();
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let endpoint = |service: &str, host: &str| {
            crate::aws::endpoint_override(service, &lookup)
                .unwrap_or_else(|| format!("https://{host}.{region}.{suffix}"))
        };
        AwsSecretStore {
            ssm_endpoint: endpoint("SSM", "ssm"),
            secrets_manager_endpoint: endpoint("SECRETS_MANAGER", "secretsmanager"),
            client: https_client(crate::aws::Roots::from_lookup(&lookup)),
            region,
            env: Box::new(lookup),
        }
    }

    /// One JSON API call; `Err` names the status and the service's error type and message
    /// (which name a parameter or secret at most, never a value).
    async fn call(&self, endpoint: &str, service: &str, target: &str, body: &Value) -> Result<Value, String> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self.call_once(endpoint, service, target, body).await {
                Ok(value) => return Ok(value),
                Err((retryable, e)) if retryable => last = e,
                Err((_, e)) => return Err(e),
            }
        }
        Err(last)
    }

    async fn call_once(
        &self,
        endpoint: &str,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, (bool, String)> {
        let fatal = |e: String| (false, e);
        let body = serde_json::to_vec(body).map_err(|e| fatal(e.to_string()))?;
        let uri: http::Uri = format!("{}/", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|e| fatal(format!("bad endpoint {endpoint}: {e}")))?;
        let host = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(uri.clone())
            .header("host", &host)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|e| fatal(e.to_string()))?;
        let env = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) else {
            return Err(fatal("no credentials in the environment (AWS_ACCESS_KEY_ID)".into()));
        };
        let identity =
            aws_credential_types::Credentials::new(key, secret, env("AWS_SESSION_TOKEN"), None, "environment").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(std::time::SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| fatal(e.to_string()))?
            .into();
        let uri_text = uri.to_string();
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            uri_text.as_str(),
            headers.into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(&body),
        )
        .map_err(|e| fatal(e.to_string()))?;
        let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| fatal(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        let response = self.client.request(request).await.map_err(|e| (true, e.to_string()))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| (true, format!("reading the response: {e}")))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let kind = value["__type"].as_str().unwrap_or("").rsplit('#').next().unwrap_or("");
        let message = value["message"].as_str().or(value["Message"].as_str()).unwrap_or("");
        let retryable = status.is_server_error() || status.as_u16() == 429;
        Err((retryable, format!("{status} {kind}: {message}")))
    }
}

fn https_client(roots: crate::aws::Roots) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    // The same trust as the SDK clients (src/aws.rs): Amazon Trust Services only, unless
    // SSL_CERT_FILE or SSL_CERT_DIR asks for the system store.
    let builder = match roots {
        crate::aws::Roots::Amazon => {
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            let mut store = rustls::RootCertStore::empty();
            store
                .add_parsable_certificates(CertificateDer::pem_slice_iter(crate::aws::AMAZON_TRUST_SERVICES).flatten());
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(store)
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
        crate::aws::Roots::System => match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates; https secret endpoints will fail");
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        },
    };
    Client::builder(TokioExecutor::new()).build(builder.https_or_http().enable_http1().build())
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    async fn parameters(&self, names: &[String]) -> Result<HashMap<String, String>, SecretError> {
        let body = serde_json::json!({"Names": names, "WithDecryption": true});
        let output = self
            .call(&self.ssm_endpoint, "ssm", "AmazonSSM.GetParameters", &body)
            .await
            .map_err(SecretError::ParameterStore)?;
        Ok(output["Parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["Name"].as_str()?.to_owned(), p["Value"].as_str()?.to_owned())))
            .collect())
    }

    async fn secret_string(&self, id: &str) -> Result<String, SecretError> {
        let body = serde_json::json!({"SecretId": id});
        let output = self
            .call(
                &self.secrets_manager_endpoint,
                "secretsmanager",
                "secretsmanager.GetSecretValue",
                &body,
            )
            .await
            .map_err(SecretError::SecretsManager)?;
        output["SecretString"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SecretError::BadSecret {
                id: id.to_owned(),
                reason: "has no SecretString (a binary secret)".into(),
            })
    }
}

/// An in-memory store for tests: values can be rotated and failures scripted.
#[derive(Default)]
pub struct MemorySecretStore {
    parameters: std::sync::Mutex<HashMap<String, String>>,
    secrets: std::sync::Mutex<HashMap<String, String>>,
    failing: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
}

impl MemorySecretStore {
    pub fn put_parameter(&self, name: &str, value: &str) {
        self.parameters.lock().unwrap().insert(name.into(), value.into());
    }

    pub fn put_secret(&self, id: &str, value: &str) {
        self.secrets.lock().unwrap().insert(id.into(), value.into());
    }

    /// Every call fails while set.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Calls made so far (a `parameters` and a `secret_string` call count one each).
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn call(&self) -> Result<(), SecretError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SecretError::ParameterStore("scripted failure".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for MemorySecretStore {
    async fn parameters(&self, names: &[String]) -> Result<HashMap<String, String>, SecretError> {
        self.call()?;
        let stored = self.parameters.lock().unwrap();
        Ok(names
            .iter()
            .filter_map(|n| stored.get(n).map(|v| (n.clone(), v.clone())))
            .collect())
    }

    async fn secret_string(&self, id: &str) -> Result<String, SecretError> {
        self.call()?;
        let stored = self.secrets.lock().unwrap();
        stored
            .get(id)
            .cloned()
            .ok_or_else(|| SecretError::SecretsManager(format!("ResourceNotFoundException: {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(parameters: &[(&'static str, &str)], secret_id: Option<&str>) -> SecretSources {
        SecretSources {
            parameters: parameters.iter().map(|(k, n)| (*k, n.to_string())).collect(),
            secret_id: secret_id.map(str::to_owned),
            ..SecretSources::default()
        }
    }

    /// Credentials whose static tokens are the fetched AUTH_TOKENS (the hub's builder does the
    /// same through the whole configuration).
    fn builder() -> Builder {
        Box::new(|values: &SecretValues| {
            let auth = AuthConfig::from_parts(values.get("AUTH_TOKENS"), values.get("JWT_SECRET"), None, None)
                .map_err(|e| e.to_string())?;
            Ok(Credentials {
                auth,
                publish_keys: values
                    .get("PUBLISH_KEYS")
                    .map(|k| vec![crate::auth::sha256(k.as_bytes())])
                    .unwrap_or_default(),
            })
        })
    }

    #[tokio::test]
    async fn a_parameter_wins_over_the_secret_and_both_are_read() {
        let store = MemorySecretStore::default();
        store.put_parameter("/wshub/tokens", "alice=from-parameter");
        store.put_secret(
            "wshub",
            r#"{"AUTH_TOKENS": "alice=from-secret", "JWT_SECRET": "s", "other": 1}"#,
        );
        let values = fetch(&store, &sources(&[("AUTH_TOKENS", "/wshub/tokens")], Some("wshub")))
            .await
            .unwrap();
        assert_eq!(values.get("AUTH_TOKENS"), Some("alice=from-parameter"));
        assert_eq!(values.get("JWT_SECRET"), Some("s"));
        assert_eq!(values.get("PUBLISH_KEYS"), None);
        assert_eq!(store.calls(), 2, "one GetParameters, one GetSecretValue");
        assert_eq!(
            format!("{values:?}"),
            r#"{"AUTH_TOKENS", "JWT_SECRET"}"#,
            "Debug names keys only"
        );
    }

    #[tokio::test]
    async fn missing_or_malformed_sources_are_errors_without_values() {
        let store = MemorySecretStore::default();
        let err = fetch(&store, &sources(&[("JWT_SECRET", "/nope")], None))
            .await
            .unwrap_err();
        assert_eq!(err, SecretError::MissingParameter("/nope".into()));
        for (text, why) in [
            ("not json", "not a JSON object"),
            ("[1]", "not a JSON object"),
            (r#"{"AUTH_TOKENS": 5}"#, "AUTH_TOKENS must be a string"),
            (r#"{"auth_tokens": "x"}"#, "none of the keys"),
        ] {
            store.put_secret("s", text);
            let err = fetch(&store, &sources(&[], Some("s"))).await.unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        store.put_secret("s", r#"{"AUTH_TOKENS": 5, "JWT_SECRET": "hunter2"}"#);
        let err = fetch(&store, &sources(&[], Some("s"))).await.unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    /// A store that never answers.
    struct Stalled;

    #[async_trait]
    impl SecretStore for Stalled {
        async fn parameters(&self, _: &[String]) -> Result<HashMap<String, String>, SecretError> {
            std::future::pending().await
        }
        async fn secret_string(&self, _: &str) -> Result<String, SecretError> {
            std::future::pending().await
        }
    }

    /// Answers each call only once both calls have arrived: a fetch that made them one after
    /// the other would wait forever.
    struct BothAtOnce(tokio::sync::Barrier);

    #[async_trait]
    impl SecretStore for BothAtOnce {
        async fn parameters(&self, names: &[String]) -> Result<HashMap<String, String>, SecretError> {
            self.0.wait().await;
            Ok(names.iter().map(|n| (n.clone(), "alice=t".to_owned())).collect())
        }
        async fn secret_string(&self, _: &str) -> Result<String, SecretError> {
            self.0.wait().await;
            Ok(r#"{"JWT_SECRET": "s"}"#.into())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn parameter_store_and_secrets_manager_are_asked_concurrently() {
        // One round trip at cold start, not two: with sequential calls this ends in Timeout.
        let store = BothAtOnce(tokio::sync::Barrier::new(2));
        let values = fetch(&store, &sources(&[("AUTH_TOKENS", "/t")], Some("s")))
            .await
            .unwrap();
        assert_eq!(
            (values.get("AUTH_TOKENS"), values.get("JWT_SECRET")),
            (Some("alice=t"), Some("s"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_fetch_ends_at_the_timeout_and_denies() {
        let mut s = sources(&[("AUTH_TOKENS", "/p")], Some("s"));
        s.timeout = Duration::from_millis(250);
        let live = LiveSecrets::new(s, Arc::new(Stalled), builder());
        assert_eq!(
            live.current().await.unwrap_err(),
            SecretError::Timeout(Duration::from_millis(250))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_the_max_age_then_re_read_so_a_rotation_takes_effect() {
        let store = Arc::new(MemorySecretStore::default());
        store.put_parameter("/t", "alice=old");
        let mut s = sources(&[("AUTH_TOKENS", "/t")], None);
        s.max_age = Duration::from_secs(60);
        let live = LiveSecrets::new(s, store.clone(), builder());
        let first = live.current().await.unwrap();
        assert!(first.auth.verify("old").await.is_ok());
        store.put_parameter("/t", "alice=new");
        tokio::time::advance(Duration::from_secs(59)).await;
        let cached = live.current().await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &cached) && store.calls() == 1,
            "served from the cache"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let rotated = live.current().await.unwrap();
        assert_eq!(store.calls(), 2);
        assert!(rotated.auth.verify("new").await.is_ok());
        assert!(rotated.auth.verify("old").await.is_err(), "the old token stops working");
        // Re-read but unchanged: the same credentials (and JWKS cache) are kept.
        tokio::time::advance(Duration::from_secs(61)).await;
        let again = live.current().await.unwrap();
        assert!(Arc::ptr_eq(&rotated, &again) && store.calls() == 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_fails_closed_backs_off_and_recovers() {
        let store = Arc::new(MemorySecretStore::default());
        store.put_parameter("/t", "alice=tok");
        let mut s = sources(&[("AUTH_TOKENS", "/t")], None);
        s.max_age = Duration::from_secs(60);
        let live = LiveSecrets::new(s, store.clone(), builder());
        store.set_failing(true);
        assert!(matches!(live.current().await, Err(SecretError::ParameterStore(_))));
        // Within the back-off nothing is fetched; still denied.
        assert_eq!(live.current().await.unwrap_err(), SecretError::BackingOff);
        assert_eq!(store.calls(), 1);
        store.set_failing(false);
        tokio::time::advance(RETRY_AFTER).await;
        assert!(live.current().await.unwrap().auth.verify("tok").await.is_ok());
        // Expired values are not served when the re-read fails: fail closed, not stale.
        store.set_failing(true);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(live.current().await.is_err());
    }

    /// A fake Parameter Store / Secrets Manager recording what it was sent.
    async fn fake_aws(answer: Value) -> (String, Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>) {
        use axum::{extract::State, routing::post, Router};
        type Seen = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;
        let seen: Seen = Arc::default();
        let app = Router::new()
            .route(
                "/",
                post(
                    |State((seen, answer)): State<(Seen, Value)>, headers: axum::http::HeaderMap, body: String| async move {
                        seen.lock().unwrap().push((headers, body));
                        axum::Json(answer)
                    },
                ),
            )
            .with_state((seen.clone(), answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), seen)
    }

    fn aws_env(endpoint: &str) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let vars: HashMap<&str, String> = [
            ("AWS_REGION", "eu-west-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI".to_owned()),
            ("AWS_SESSION_TOKEN", "session-token".to_owned()),
            ("AWS_ENDPOINT_URL_SSM", endpoint.to_owned()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.to_owned()),
        ]
        .into_iter()
        .collect();
        move |name| vars.get(name).cloned()
    }

    #[tokio::test]
    async fn calls_are_signed_json_requests_for_each_service() {
        let (endpoint, seen) = fake_aws(serde_json::json!({
            "Parameters": [{"Name": "/p", "Value": "v", "Type": "SecureString"}],
            "InvalidParameters": [],
            "SecretString": "{\"JWT_SECRET\": \"s\"}"
        }))
        .await;
        let store = AwsSecretStore::from_lookup(aws_env(&endpoint));
        let got = store.parameters(&["/p".into()]).await.unwrap();
        assert_eq!(got.get("/p").map(String::as_str), Some("v"));
        assert_eq!(store.secret_string("arn:s").await.unwrap(), r#"{"JWT_SECRET": "s"}"#);
        let seen = seen.lock().unwrap();
        for ((headers, body), (service, target, expected_body)) in seen.iter().zip([
            (
                "ssm",
                "AmazonSSM.GetParameters",
                r#"{"Names":["/p"],"WithDecryption":true}"#,
            ),
            (
                "secretsmanager",
                "secretsmanager.GetSecretValue",
                r#"{"SecretId":"arn:s"}"#,
            ),
        ]) {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
            assert_eq!(header("x-amz-target"), target);
            assert_eq!(header("content-type"), "application/x-amz-json-1.1");
            assert_eq!(body, expected_body);
            let authorization = header("authorization");
            assert!(
                authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
                "{authorization}"
            );
            assert!(
                authorization.contains(&format!("/eu-west-1/{service}/aws4_request")),
                "{authorization}"
            );
            for signed in [
                "content-type",
                "host",
                "x-amz-date",
                "x-amz-target",
                "x-amz-security-token",
            ] {
                assert!(authorization.contains(signed), "{signed} is signed: {authorization}");
            }
            assert_eq!(header("x-amz-security-token"), "session-token");
            assert!(!authorization.contains("wJalrXUtnFEMI"));
        }
    }

    #[tokio::test]
    async fn service_errors_name_the_type_never_a_value() {
        let (endpoint, _) = fake_aws(serde_json::json!({})).await;
        // An endpoint answering {} to GetSecretValue: no SecretString.
        let store = AwsSecretStore::from_lookup(aws_env(&endpoint));
        assert!(matches!(
            store.secret_string("s").await,
            Err(SecretError::BadSecret { .. })
        ));
        let no_credentials =
            AwsSecretStore::from_lookup(move |name: &str| (name == "AWS_ENDPOINT_URL_SSM").then(|| endpoint.clone()));
        let err = no_credentials.parameters(&["/p".into()]).await.unwrap_err();
        assert!(err.to_string().contains("no credentials"), "{err}");
    }

    #[test]
    fn endpoints_default_to_the_regional_hosts() {
        let store = AwsSecretStore::from_lookup(|name: &str| (name == "AWS_REGION").then(|| "cn-north-1".into()));
        assert_eq!(store.ssm_endpoint, "https://ssm.cn-north-1.amazonaws.com.cn");
        let store = AwsSecretStore::from_lookup(|name: &str| (name == "AWS_REGION").then(|| "eu-west-1".into()));
        assert_eq!(
            store.secrets_manager_endpoint,
            "https://secretsmanager.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn overlay_hides_the_sources_and_prefers_fetched_values() {
        let mut values = SecretValues::default();
        values.0.insert("JWT_SECRET", "fetched".into());
        let env = |name: &str| match name {
            "AUTH_TOKENS" => Some("from-env".to_owned()),
            "JWT_SECRET_PARAMETER" => Some("/p".to_owned()),
            "CONNECTIONS_TABLE" => Some("t".to_owned()),
            _ => None,
        };
        assert_eq!(overlay(&values, "JWT_SECRET", env).as_deref(), Some("fetched"));
        assert_eq!(overlay(&values, "AUTH_TOKENS", env).as_deref(), Some("from-env"));
        assert_eq!(overlay(&values, "JWT_SECRET_PARAMETER", env), None);
        assert_eq!(overlay(&values, "CONNECTIONS_TABLE", env).as_deref(), Some("t"));
    }
}
