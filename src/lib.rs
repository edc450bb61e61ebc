//! wshub: a serverless WebSocket hub for API Gateway, Lambda, DynamoDB and SQS.
//!
//! One binary receives every event. [`event::handle`] classifies the raw JSON into an
//! [`event::Event`] and applies it:
//!
//! | event                                    | goes to                | answers                     |
//! |------------------------------------------|------------------------|-----------------------------|
//! | `type: REQUEST` + `methodArn`, `$connect`| [`authorizer`]         | IAM Allow/Deny policy       |
//! | `requestContext.connectionId` + route    | [`routes`] (a module per route) | status + reply frame |
//! | `Records[]` from `aws:sqs`               | [`push`]               | `batchItemFailures`         |
//! | `detail-type` + `source` + `detail`      | [`eventbridge`]        | counts, or `wshub.DeliveryFailed` |
//! | `version: "2.0"` + `requestContext.http` | [`http`]               | HTTP status + JSON body     |
//! | anything else                            | error naming its keys  | `wshub.UnrecognizedEvent`   |
//!
//! Layout (hexagonal: handlers see ports, never backends):
//! - [`hub::Hub`]: configuration plus the ports, built once per process; [`aws`]: the AWS
//!   SDK configuration it builds them with, straight from Lambda's environment.
//! - [`store`]: the [`store::ConnectionStore`] port; DynamoDB and in-memory implementations;
//!   [`store::table`] defines the table once for code, tests, local hub and template.
//! - [`notify`]: the [`notify::Notifier`] port; Management API and in-memory implementations.
//! - [`publish`]: every push's pipeline (SQS, EventBridge, `sendmessage`): record it on its
//!   stream (seq, epoch, history, idempotency), then fan it out; and history reads.
//! - [`fanout`]: one frame to an audience, paged, bounded, retried, 410s cleaned up.
//! - [`shard`]: a push too large for one invocation, split into jobs on the [`queue::Queue`] port.
//! - [`forward`]: client actions sent on to EventBridge (`FORWARD_ACTIONS`), the
//!   [`forward::EventBus`] port.
//! - [`presence`]: who is subscribed to a `PRESENCE_TOPICS` topic, `join`/`leave` frames.
//! - [`protocol`]: client frames in, reply and push frames out, stable error codes.
//! - [`metrics`]: per-invocation counters, flushed as one CloudWatch EMF document;
//!   [`secrets`]: `AUTH_TOKENS`, `JWT_SECRET`, `PUBLISH_KEYS` from Parameter Store or Secrets Manager.
//! - [`auth`]: static tokens and JWTs (HS256, or RS256/ES256 from a JWKS); [`topics`]: who may
//!   use which topic; [`config`]: the environment contract.
//!
//! `src/main.rs` is the Lambda bootstrap: it builds a [`hub::Hub`] and hands each event to
//! [`event::handle`]. The local hub calls the same function with the same JSON:
//! - [`local`]: `cargo run` (`src/bin/wshub-local.rs`) plays API Gateway (WebSocket and
//!   Management APIs) and SQS on one port, with an in-memory or DynamoDB store.

pub mod auth;
pub mod authorizer;
pub mod aws;
pub mod config;
pub mod edge;
pub mod event;
pub mod eventbridge;
pub mod fanout;
pub mod forward;
pub mod http;
pub mod hub;
pub mod local;
pub mod metrics;
pub mod notify;
pub mod presence;
pub mod protocol;
pub mod publish;
pub mod push;
pub mod queue;
pub mod routes;
pub mod secrets;
pub mod shard;
pub mod store;
pub mod token;
pub mod topics;

pub use config::Config;
pub use event::{handle, Event, RouterError};
pub use hub::Hub;
