//! A client's text frame → `Request::parse`. The property: no panic; an accepted frame carries a
//! valid topic and an echoable id; a rejected one becomes an error frame that is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wshub::protocol::{validate_topic, Action, Request};

fuzz_target!(|data: &[u8]| {
    // The local hub passes text lossily decoded, and API Gateway only delivers valid UTF-8.
    let body = String::from_utf8_lossy(data);
    match Request::parse(&body) {
        Ok(request) => {
            match &request.id {
                None | Some(Value::Number(_)) => {}
                Some(Value::String(s)) => assert!(s.chars().count() <= 128, "id too long"),
                Some(other) => panic!("id of the wrong type accepted: {other}"),
            }
            match &request.action {
                Action::Subscribe { topic, .. } | Action::Unsubscribe { topic } | Action::Presence { topic } => {
                    validate_topic(topic).unwrap()
                }
                Action::History { topic, limit, .. } => {
                    validate_topic(topic).unwrap();
                    assert!((1..=1000).contains(limit), "limit {limit} accepted");
                }
                Action::SendMessage { topic: Some(topic), .. } => validate_topic(topic).unwrap(),
                Action::SendMessage { topic: None, .. } | Action::Ping | Action::Whoami => {}
            }
        }
        Err(rejection) => {
            let frame: Value = serde_json::from_str(&rejection.into_frame().to_json()).expect("error frame is JSON");
            assert_eq!(frame["action"], "error");
            assert!(frame["code"].is_string(), "{frame}");
        }
    }
});
