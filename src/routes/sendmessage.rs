//! `sendmessage`: a client pushes to a topic's subscribers, or to everyone when allowed.

use serde_json::Value;

use super::{forbidden_topic, store_failure, RouteContext};
use crate::fanout::Audience;
use crate::protocol::{ErrorCode, Frame, MAX_FRAME_BYTES};
use crate::shard;
use crate::store::Group;

pub async fn handle(ctx: &RouteContext<'_>, topic: Option<String>, data: Value, id: Option<Value>) -> Frame {
    let group = match &topic {
        Some(t) if !ctx.may_use_topic(t) => return forbidden_topic(t, id),
        Some(t) => Group::Topic(t.clone()),
        None if ctx.hub.config.allow_client_broadcast => Group::Everyone,
        None => {
            return Frame::error(
                ErrorCode::BroadcastDisabled,
                "topic is required (client broadcast is disabled)",
                id,
            )
        }
    };
    // The send bucket lives on the connection's row, so the limit holds across Lambda instances:
    // one or two conditional UpdateItems (1 WCU each) per sendmessage.
    let config = &ctx.hub.config;
    let interval_ms = 1000 / i64::from(config.send_rate_per_second.max(1));
    let now_ms = now_ms();
    match ctx
        .hub
        .store
        .take_send_token(ctx.connection_id, now_ms, interval_ms, config.send_rate_burst)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!("sendmessage rate limited");
            return Frame::error(
                ErrorCode::RateLimited,
                format!(
                    "at most {} messages per second (bursts of {}); retry later",
                    config.send_rate_per_second, config.send_rate_burst
                ),
                id,
            );
        }
        Err(e) => return store_failure(e, id),
    }
    let Some(endpoint) = ctx.management_endpoint() else {
        tracing::error!("cannot derive the @connections endpoint: set APIGW_MANAGEMENT_ENDPOINT or AWS_REGION");
        return Frame::error(ErrorCode::Internal, "push endpoint is not configured", id);
    };
    let push_data = data.clone();
    let push = Frame::Message {
        topic: topic.clone(),
        data,
        from: ctx.user_id.map(str::to_owned),
        id: ctx.request.request_context.message_id.clone(),
    }
    .to_json();
    if push.len() > MAX_FRAME_BYTES {
        return Frame::error(
            ErrorCode::PayloadTooLarge,
            format!("message frame would exceed {MAX_FRAME_BYTES} bytes"),
            id,
        );
    }
    // With a queue, a large audience goes to it like any push; the listed small one is posted
    // here. Without a message id to name the push by, the queue cannot be used.
    let message_id = (ctx.request.request_context.message_id.as_deref()).filter(|m| shard::valid_connection_id(m));
    if let Some(message_id) = message_id.filter(|_| ctx.hub.queue.is_some()) {
        let handed = shard::client_send(
            ctx.hub,
            message_id,
            group,
            push_data,
            ctx.user_id.map(str::to_owned),
            ctx.connection_id,
            ctx.deadline,
        )
        .await;
        return match handed {
            Ok(shard::ClientSend::Queued) => {
                tracing::info!(topic, "sendmessage handed to the push queue");
                Frame::Sent {
                    topic,
                    recipients: 0,
                    failed: 0,
                    queued: true,
                    id,
                }
            }
            Ok(shard::ClientSend::Small(ids)) => {
                let (report, leftover) = ctx
                    .hub
                    .fanout(ctx.deadline)
                    .deliver_ids(&endpoint, ids, push.as_bytes())
                    .await;
                let failed = report.failed + leftover.unsent.len();
                tracing::info!(
                    topic,
                    delivered = report.delivered,
                    gone = report.gone,
                    failed,
                    "sendmessage"
                );
                Frame::Sent {
                    topic,
                    recipients: report.delivered,
                    failed,
                    queued: false,
                    id,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sendmessage could not be handed to the queue");
                Frame::error(
                    ErrorCode::Internal,
                    "temporary failure; the message may have reached only some recipients",
                    id,
                )
            }
        };
    }
    // The sender is told how many got it rather than getting its own message back.
    let report = ctx
        .hub
        .fanout(ctx.deadline)
        .deliver(
            &endpoint,
            Audience::Group(group),
            push.as_bytes(),
            Some(ctx.connection_id),
            ctx.now,
        )
        .await;
    tracing::info!(
        topic,
        delivered = report.delivered,
        gone = report.gone,
        failed = report.failed,
        "sendmessage"
    );
    if let Some(e) = report.store_error {
        tracing::error!(error = %e, "sendmessage audience incomplete");
        return Frame::error(
            ErrorCode::Internal,
            "temporary failure; the message may have reached only some recipients",
            id,
        );
    }
    Frame::Sent {
        topic,
        recipients: report.delivered,
        failed: report.failed,
        queued: false,
        id,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
