//! The hub: configuration plus the ports (store, notifier, optional queue), built once per process and
//! shared by every event.

use std::sync::Arc;

use tokio::time::Instant;

use crate::aws;
use crate::config::Config;
use crate::fanout::{Fanout, RetryPolicy};
use crate::forward::{EventBridgeBus, EventBus};
use crate::notify::apigw::ApiGatewayNotifier;
use crate::notify::Notifier;
use crate::queue::{Queue, SqsQueue};
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
    /// configured from Lambda's environment ([`crate::aws`]; `AWS_ENDPOINT_URL_DYNAMODB` and
    /// `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL_EVENTBRIDGE` included).
    /// Also fetches the JWKS, when one is configured, so the first connection need not wait.
    pub async fn from_aws(config: Config) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let sdk = aws::sdk_config(env);
        config.auth.warm_up().await;
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
        hub
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

/// Epoch seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
