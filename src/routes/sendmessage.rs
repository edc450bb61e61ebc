//! `sendmessage`: a client pushes to a topic's subscribers, or to everyone when allowed.
//! A topic message is a publication on the topic's stream ([`crate::publish`]): recorded with
//! its seq before it fans out, so subscribers who are away recover it.

use serde_json::Value;

use super::{forbidden_topic, RouteContext};
use crate::fanout::Audience;
use crate::protocol::{ErrorCode, Frame, MAX_FRAME_BYTES};
use crate::publish::{self, Publication, Stamp};
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
        Err(e) => return super::store_failure(e, id),
    };
    let push = publication.frame(stamp.pos());
    let (seq, epoch) = match &stamp {
        Stamp::At(pos) => (Some(pos.seq), Some(pos.epoch.clone())),
        _ => (None, None),
    };
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
        seq,
        epoch,
        id,
    }
}
