//! `sendmessage`: a client pushes to a topic's subscribers, or to everyone when allowed.
//! A topic message is a publication on the topic's stream ([`crate::publish`]): recorded with
//! its seq before it fans out, so subscribers who are away recover it.
//!
//! It runs inline only while its audience is small: a route is answered within API Gateway's
//! 29 s integration timeout and never retried, so a large fan-out would deliver partly in
//! silence. With a push queue, a larger audience goes to the queue as shard jobs carrying the
//! same seq, and the reply says `queued: true`.

use serde_json::Value;

use super::{forbidden_topic, store_failure, RouteContext};
use crate::fanout::Audience;
use crate::protocol::{ErrorCode, Frame, MAX_FRAME_BYTES};
use crate::publish::{self, Publication, Stamp};
use crate::shard;
use crate::store::Group;

pub async fn handle(ctx: &RouteContext<'_>, topic: Option<String>, data: Value, id: Option<Value>) -> Frame {
    let audience = match &topic {
        Some(t) if !ctx.may_use_topic(t) => return forbidden_topic(t, id),
        // `user:<own id>` is the user's stream: it reaches their other connections.
        Some(t) => match publish::audience_of_topic(t) {
            Ok(audience) => audience,
            Err(e) => return Frame::error(ErrorCode::InvalidTopic, e, id),
        },
        None if ctx.hub.config.allow_client_broadcast => Audience::Group(Group::Everyone),
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
    match ctx
        .hub
        .store
        .take_send_token(ctx.connection_id, now_ms(), interval_ms, config.send_rate_burst)
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
    let publication = Publication {
        stream: topic.clone(),
        audience,
        data,
        from: ctx.user_id.map(str::to_owned),
        id: ctx.request.request_context.message_id.clone(),
        // A route is not retried: API Gateway's messageId is unique, so no key is needed.
        key: None,
    };
    if !publication.fits() {
        return Frame::error(
            ErrorCode::PayloadTooLarge,
            format!("message frame would exceed {MAX_FRAME_BYTES} bytes"),
            id,
        );
    }
    // Recorded first: a subscriber that is away finds it in history even if the fan-out fails.
    let stamp = match publish::record(ctx.hub, &publication, ctx.now).await {
        Ok(stamp) => stamp,
        Err(e) => return store_failure(e, id),
    };
    let push = publication.frame(stamp.pos());
    let (seq, epoch) = match &stamp {
        Stamp::At(pos) => (Some(pos.seq), Some(pos.epoch.clone())),
        _ => (None, None),
    };
    // With a queue, a large audience goes to it like any push; the listed small one is posted
    // here. Without a message id to name the push by, the queue cannot be used.
    let message_id = (publication.id.as_deref()).filter(|m| shard::valid_connection_id(m));
    if let (Some(message_id), Some(_), Audience::Group(group)) = (message_id, &ctx.hub.queue, &publication.audience) {
        let job = shard::Job {
            from: publication.from.clone(),
            except: Some(ctx.connection_id.to_owned()),
            ..shard::root(message_id, group, publication.data.clone(), stamp.pos())
        };
        let handed = shard::client_send(ctx.hub, job, ctx.deadline).await;
        return match handed {
            Ok(shard::ClientSend::Queued) => {
                tracing::info!(topic, "sendmessage handed to the push queue");
                Frame::Sent {
                    topic,
                    recipients: 0,
                    failed: 0,
                    queued: true,
                    seq,
                    epoch,
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
                    seq,
                    epoch,
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
            publication.audience,
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
        seq,
        epoch,
        id,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
