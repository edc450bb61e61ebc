//! The cold-start baseline: a minimal `lambda_runtime` function (tracing on, echo the event),
//! built with the same release profile as `wshub`. `scripts/bench-coldstart.sh` runs both.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
