//! A forwarded client action through the EventBridge port against moto's EventBridge: the
//! event a rule delivers (here to an SQS queue, as a backend's target would see it) has the
//! documented shape. Needs `AWS_ENDPOINT_URL_EVENTBRIDGE` and `AWS_ENDPOINT_URL_SQS` (moto):
//! `scripts/test.sh` sets both.

mod common;

use serde_json::{json, Value};
use wshub::forward::{Detail, EventBridgeBus, EventBus, SOURCE};

fn endpoint(service: &str) -> String {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}")).expect("moto endpoint")
}

#[tokio::test]
#[ignore = "needs moto in AWS_ENDPOINT_URL_EVENTBRIDGE and AWS_ENDPOINT_URL_SQS: run scripts/test.sh"]
async fn a_forwarded_action_reaches_a_rule_target_with_the_documented_shape() {
    let sdk = common::sdk_config().await;
    let events_sdk = sdk.to_builder().endpoint_url(endpoint("EVENTBRIDGE")).build();
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(endpoint("SQS"))
            .build(),
    );
    let events = aws_sdk_eventbridge::Client::new(&events_sdk);
    let suffix = wshub::local::events::message_id();
    let bus = format!("forward-{}", &suffix[..8]);
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("forwarded-{}", &suffix[..8]))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("forwarded")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [SOURCE], "detail-type": [{"prefix": "order."}]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("forwarded")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let detail = Detail {
        connection_id: "Tq8ZsdsyIAMCJyA=".into(),
        user_id: "alice".into(),
        action: "order.create".into(),
        data: json!({"sku": "A-42"}),
        id: json!("o-1"),
        request_time: 1_795_244_405_321,
    };
    EventBridgeBus::new(&events_sdk).put(&bus, &detail).await.unwrap();

    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let body = received.messages()[0].body().unwrap();
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["source"], SOURCE);
    assert_eq!(event["detail-type"], "order.create");
    assert_eq!(
        event["detail"],
        json!({"connectionId": "Tq8ZsdsyIAMCJyA=", "userId": "alice", "action": "order.create",
               "data": {"sku": "A-42"}, "id": "o-1", "requestTime": 1_795_244_405_321_i64})
    );
    // A bus that does not exist: the error reaches the caller (the client gets `internal`).
    let missing = EventBridgeBus::new(&events_sdk).put("no-such-bus", &detail).await;
    assert!(missing.is_err(), "{missing:?}");
}
