//! Forwarded client actions on the local hub: no EventBridge, so each event is kept for
//! `GET /_local/events` and, with `--forward-url`, POSTed there as the JSON an EventBridge rule's
//! target would receive. A failed POST answers the client with an error frame, as a failed
//! PutEvents does on AWS.

use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::events;
use crate::forward::{BusError, Detail, EventBus};

/// Account id in local events: EventBridge always puts one there.
const ACCOUNT: &str = "000000000000";
/// Events `GET /_local/events` keeps, newest last.
pub const KEPT_EVENTS: usize = 1000;

pub struct LocalBus {
    region: String,
    forward_url: Option<hyper::Uri>,
    client: Client<HttpConnector, Full<Bytes>>,
    events: Mutex<Vec<Value>>,
}

impl LocalBus {
    /// `forward_url` must be an `http://` URL (the local backend).
    pub fn new(region: Option<String>, forward_url: Option<&str>) -> Result<Self, String> {
        let forward_url = match forward_url {
            None => None,
            Some(url) if url.starts_with("http://") => Some(
                url.parse::<hyper::Uri>()
                    .map_err(|e| format!("--forward-url {url:?}: {e}"))?,
            ),
            Some(url) => return Err(format!("--forward-url must be an http:// URL, got {url:?}")),
        };
        Ok(LocalBus {
            region: region.unwrap_or_else(|| "local".into()),
            forward_url,
            client: Client::builder(TokioExecutor::new()).build_http(),
            events: Mutex::new(Vec::new()),
        })
    }

    /// The events forwarded so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn post(&self, url: &hyper::Uri, event: &Value) -> Result<(), BusError> {
        let request = hyper::Request::post(url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(event.to_string())))
            .map_err(|e| BusError(e.to_string()))?;
        let send = self.client.request(request);
        let response = tokio::time::timeout(std::time::Duration::from_secs(10), send)
            .await
            .map_err(|_| BusError(format!("{url} did not answer within 10 s")))?
            .map_err(|e| BusError(format!("{url}: {e}")))?;
        let status = response.status();
        // Read the body to the end so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(BusError(format!("{url} answered {status}")))
        }
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn put(&self, bus: &str, detail: &Detail) -> Result<(), BusError> {
        let event = detail.envelope(&events::message_id(), ACCOUNT, &self.region);
        tracing::info!(bus, action = %detail.action, "forwarded event");
        if let Some(url) = &self.forward_url {
            self.post(url, &event).await?;
        }
        let mut kept = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT_EVENTS {
            kept.remove(0);
        }
        kept.push(event);
        Ok(())
    }
}
