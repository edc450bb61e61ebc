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
    /// `PUBLISH_KEYS`, as given (the HTTP publish API parses it).
    pub publish_keys: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth", &self.auth)
            .field("publish_keys", &self.publish_keys.is_some())
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

/// Parameter Store and Secrets Manager through the AWS SDK.
pub struct AwsSecretStore {
    ssm: aws_sdk_ssm::Client,
    secrets_manager: aws_sdk_secretsmanager::Client,
}

impl AwsSecretStore {
    /// `ssm` and `secrets_manager`: SDK configurations with their endpoint overrides
    /// (`AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, see [`crate::aws`]).
    pub fn new(ssm: &aws_config::SdkConfig, secrets_manager: &aws_config::SdkConfig) -> Self {
        AwsSecretStore {
            ssm: aws_sdk_ssm::Client::new(ssm),
            secrets_manager: aws_sdk_secretsmanager::Client::new(secrets_manager),
        }
    }
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    async fn parameters(&self, names: &[String]) -> Result<HashMap<String, String>, SecretError> {
        let output = self
            .ssm
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            // The error context names the service's error code and message, never a value.
            .map_err(|e| SecretError::ParameterStore(aws_sdk_ssm::error::DisplayErrorContext(&e).to_string()))?;
        Ok(output
            .parameters()
            .iter()
            .filter_map(|p| Some((p.name()?.to_owned(), p.value()?.to_owned())))
            .collect())
    }

    async fn secret_string(&self, id: &str) -> Result<String, SecretError> {
        let output = self
            .secrets_manager
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                SecretError::SecretsManager(aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())
            })?;
        output
            .secret_string()
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
                publish_keys: values.get("PUBLISH_KEYS").map(str::to_owned),
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
