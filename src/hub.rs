//! The hub: configuration plus the ports (store, notifier, optional queue), built once per process and
//! shared by every event.

use std::sync::Arc;

use tokio::time::Instant;

use crate::auth::AuthConfig;
use crate::aws;
use crate::config::Config;
use crate::fanout::{Fanout, RetryPolicy};
use crate::forward::{EventBridgeBus, EventBus};
use crate::notify::apigw::ApiGatewayNotifier;
use crate::notify::Notifier;
use crate::queue::{Queue, SqsQueue};
use crate::secrets::{self, AwsSecretStore, Credentials, LiveSecrets, SecretError, SecretStore};
use crate::store::dynamo::DynamoStore;
use crate::store::ConnectionStore;

pub struct Hub {
    pub config: Config,
    pub store: Arc<dyn ConnectionStore>,
    pub notifier: Arc<dyn Notifier>,
    /// Where large pushes enqueue their shard jobs; `None` delivers every push in one invocation.
    pub queue: Option<Arc<dyn Queue>>,
    /// Where forwarded client actions go (`FORWARD_ACTIONS`); `None` refuses them.
    pub events: Option<Arc<dyn EventBus>>,
    pub retry: RetryPolicy,
    /// The secrets from Parameter Store or Secrets Manager, when configured; `None` uses the
    /// environment's (`config.auth`, `config.publish_keys`).
    pub secrets: Option<Arc<LiveSecrets>>,
}

/// The credentials in force for one request: [`Hub::credentials`].
pub enum CurrentCredentials<'a> {
    Environment(&'a Config),
    Fetched(Arc<Credentials>),
}

impl CurrentCredentials<'_> {
    pub fn auth(&self) -> &AuthConfig {
        match self {
            CurrentCredentials::Environment(config) => &config.auth,
            CurrentCredentials::Fetched(credentials) => &credentials.auth,
        }
    }

    /// `PUBLISH_KEYS` (their SHA-256 digests), for the HTTP publish API.
    pub fn publish_keys(&self) -> &[[u8; 32]] {
        match self {
            CurrentCredentials::Environment(config) => &config.publish_keys,
            CurrentCredentials::Fetched(credentials) => &credentials.publish_keys,
        }
    }
}

impl Hub {
    pub fn new(config: Config, store: Arc<dyn ConnectionStore>, notifier: Arc<dyn Notifier>) -> Self {
        Hub {
            config,
            store,
            notifier,
            queue: None,
            events: None,
            retry: RetryPolicy::default(),
            secrets: None,
        }
    }

    /// Reads the secrets through `store` as `config.secrets` says (a no-op when it names no
    /// source). Fetches nothing yet: see [`Self::credentials`].
    pub fn with_secret_store(self, store: Arc<dyn SecretStore>) -> Self {
        self.with_secret_store_and_env(store, |name: &str| std::env::var(name).ok())
    }

    /// As [`Self::with_secret_store`], with the environment given by `lookup` (tests).
    pub fn with_secret_store_and_env(
        mut self,
        store: Arc<dyn SecretStore>,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        if self.config.secrets.is_configured() {
            let builder = secrets_builder(self.config.auth.clone(), lookup);
            self.secrets = Some(Arc::new(LiveSecrets::new(self.config.secrets.clone(), store, builder)));
        }
        self
    }

    /// The credentials in force: the environment's, or the fetched secrets (read at cold
    /// start, re-read when older than `SECRETS_MAX_AGE_SECONDS`). An error means the secrets
    /// are unavailable, and the caller must deny (fail closed).
    pub async fn credentials(&self) -> Result<CurrentCredentials<'_>, SecretError> {
        match &self.secrets {
            None => Ok(CurrentCredentials::Environment(&self.config)),
            Some(live) => live.current().await.map(CurrentCredentials::Fetched),
        }
    }

    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn with_events(mut self, events: Arc<dyn EventBus>) -> Self {
        self.events = Some(events);
        self
    }

    /// The Lambda wiring: DynamoDB, the Management API, (with `PUSH_QUEUE_URL`) SQS and (with
    /// `FORWARD_ACTIONS`) EventBridge,
    /// configured from Lambda's environment ([`crate::aws`]; `AWS_ENDPOINT_URL_DYNAMODB`,
    /// `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL_EVENTBRIDGE` included).
    /// Also fetches the JWKS and the secrets, when configured, so the first connection need not
    /// wait: concurrently, so a cold start waits for one round trip, not two.
    pub async fn from_aws(config: Config) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let sdk = aws::sdk_config(env);
        let secret_store = config
            .secrets
            .is_configured()
            .then(|| AwsSecretStore::from_lookup(|name: &str| std::env::var(name).ok().filter(|v| !v.is_empty())));
        let dynamodb = aws::for_service(&sdk, "DYNAMODB", env);
        let store = DynamoStore::from_sdk(&dynamodb, config.table.clone());
        let queue = (config.push_queue_url.as_ref()).map(|url| SqsQueue::new(&aws::for_service(&sdk, "SQS", env), url));
        let events =
            (config.forward.is_some()).then(|| EventBridgeBus::new(&aws::for_service(&sdk, "EVENTBRIDGE", env)));
        let notifier = ApiGatewayNotifier::new(sdk);
        let mut hub = Hub::new(config, Arc::new(store), Arc::new(notifier));
        if let Some(queue) = queue {
            hub = hub.with_queue(Arc::new(queue));
        }
        if let Some(events) = events {
            hub = hub.with_events(Arc::new(events));
        }
        if let Some(secret_store) = secret_store {
            hub = hub.with_secret_store(Arc::new(secret_store));
        }
        hub.warm_up().await;
        hub
    }

    /// The cold-start fetches: the JWKS and the secrets side by side (the rebuilt credentials
    /// share the JWKS cache warmed here).
    pub async fn warm_up(&self) {
        let secrets = async {
            if let Some(live) = &self.secrets {
                // A failure is logged inside and retried on the first request.
                let _ = live.current().await;
            }
        };
        tokio::join!(self.config.auth.warm_up(), secrets);
    }

    pub(crate) fn fanout(&self, deadline: Option<Instant>) -> Fanout<'_> {
        Fanout {
            store: self.store.as_ref(),
            notifier: self.notifier.as_ref(),
            retry: &self.retry,
            concurrency: self.config.push_concurrency,
            deadline,
        }
    }

    /// Expiry (epoch seconds) for rows written now.
    pub(crate) fn expiry(&self, now: i64) -> i64 {
        now + self.config.connection_ttl.as_secs() as i64
    }

    /// Records that `user_id` was active now. A failure is logged, not returned: presence is
    /// informational and must not refuse a connection or fail a disconnect.
    pub(crate) async fn touch_user(&self, user_id: &str, now: i64) {
        let ttl = now + self.config.presence_ttl.as_secs() as i64;
        if let Err(e) = self.store.touch_user(user_id, now * 1000, ttl).await {
            tracing::warn!(error = %e, "could not record last activity");
        }
    }
}

/// Rebuilds the credentials from fetched values: the whole configuration is read again through
/// [`secrets::overlay`], so the fetched values get exactly the parsing and checks the environment
/// variables get; the JWKS cache of the environment's configuration is kept.
fn secrets_builder(
    env_auth: AuthConfig,
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> secrets::Builder {
    Box::new(move |values| {
        let config = Config::from_lookup(|name| secrets::overlay(values, name, &env)).map_err(|e| e.to_string())?;
        Ok(Credentials {
            auth: config.auth.sharing_jwks_of(&env_auth),
            publish_keys: config.publish_keys,
        })
    })
}

/// Epoch seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
