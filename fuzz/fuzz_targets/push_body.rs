//! An SQS message body → `PushRequest::parse`. The property: no panic; an accepted body names at
//! most one valid audience, and its topic (if any) is the one the frame will carry: the topic
//! pushed to, or `user:<id>` for a user push.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub::fanout::Audience;
use wshub::protocol::validate_topic;
use wshub::push::PushRequest;
use wshub::store::Group;

fuzz_target!(|data: &[u8]| {
    // SQS bodies are UTF-8 strings; aws_lambda_events would refuse anything else earlier.
    let body = String::from_utf8_lossy(data);
    let Ok(request) = PushRequest::parse(&body) else {
        return;
    };
    match &request.audience {
        Audience::Group(Group::Topic(topic)) => {
            validate_topic(topic).unwrap();
            assert_eq!(request.topic.as_deref(), Some(topic.as_str()));
        }
        Audience::Group(Group::User(user)) => {
            assert!(wshub::auth::valid_user_id(user), "invalid userId accepted: {user:?}");
            // A user push is a publication on the user's own stream (`topic` `user:<id>`).
            assert_eq!(request.topic, Some(wshub::topics::user_stream(user)));
        }
        Audience::Connection(id) => {
            assert!(
                !id.is_empty() && id.len() <= 128,
                "invalid connectionId accepted: {id:?}"
            );
            assert!(request.topic.is_none());
        }
        Audience::Group(Group::Everyone) => assert!(request.topic.is_none()),
    }
});
