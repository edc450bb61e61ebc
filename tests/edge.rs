//! The `EdgePath` CloudFront Function (`edge/path-to-header.js`) run under Node against sample
//! CloudFront viewer-request events, compared with its Rust mirror (`wshub::edge`), which the
//! local hub uses: the local hub hands a path over exactly as the edge does.

use std::process::Command;

use serde_json::{json, Value};
use wshub::edge::{viewer_request, FUNCTION_CODE, PATH_HEADER};

/// A viewer-request event as CloudFront Functions receive it (event structure, version 1.0).
fn viewer_event(uri: &str, extra_headers: Value) -> Value {
    let mut headers = json!({
        "host": {"value": "d111111abcdef8.cloudfront.net"},
        "upgrade": {"value": "websocket"},
        "sec-websocket-key": {"value": "dGhlIHNhbXBsZSBub25jZQ=="},
        "sec-websocket-version": {"value": "13"}
    });
    for (k, v) in extra_headers.as_object().unwrap() {
        headers[k] = v.clone();
    }
    json!({
        "version": "1.0",
        "context": {"distributionDomainName": "d111111abcdef8.cloudfront.net", "eventType": "viewer-request", "requestId": "r1"},
        "viewer": {"ip": "198.51.100.7"},
        "request": {
            "method": "GET",
            "uri": uri,
            "querystring": {"token": {"value": "t"}},
            "headers": headers,
            "cookies": {}
        }
    })
}

/// Runs the function's `handler` under Node on each event; its results, in order.
fn run_in_node(events: &[Value]) -> Vec<Value> {
    let script = format!(
        "{FUNCTION_CODE}\nconst events = JSON.parse(process.argv[1]);\n\
         console.log(JSON.stringify(events.map(e => handler(e))));\n"
    );
    let output = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(Value::from(events.to_vec()).to_string())
        .output()
        .expect("node is on PATH");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_function_moves_the_path_into_the_header_as_the_local_hub_does() {
    let long = format!("/{}", "a".repeat(1024));
    let uris = ["/", "/ocpp/CP001", "/ocpp/CP%20001/", "/a", long.as_str()];
    let mut events: Vec<Value> = uris.iter().map(|u| viewer_event(u, json!({}))).collect();
    // A client's own header is replaced, or removed at the root.
    events.push(viewer_event("/room/7", json!({PATH_HEADER: {"value": "/forged"}})));
    events.push(viewer_event("/", json!({PATH_HEADER: {"value": "/forged"}})));
    let results = run_in_node(&events);
    for (event, result) in events.iter().zip(&results) {
        let uri = event["request"]["uri"].as_str().unwrap();
        match viewer_request(uri) {
            Err(status) => {
                assert_eq!(result["statusCode"], status, "{uri}");
            }
            Ok(header) => {
                // To the stage itself (the origin path), with the path in the header.
                assert_eq!(result["uri"], "/", "{uri}");
                assert_eq!(
                    result["headers"][PATH_HEADER]["value"].as_str(),
                    header.as_deref(),
                    "{uri}"
                );
                // Everything else passes through: the token, the WebSocket headers.
                assert_eq!(result["querystring"], event["request"]["querystring"]);
                assert_eq!(
                    result["headers"]["sec-websocket-key"],
                    event["request"]["headers"]["sec-websocket-key"]
                );
            }
        }
    }
    assert_eq!(results[1]["headers"][PATH_HEADER]["value"], "/ocpp/CP001");
    assert_eq!(results[4]["statusCode"], 414);
    assert_eq!(results[5]["headers"][PATH_HEADER]["value"], "/room/7");
    assert!(results[6]["headers"].get(PATH_HEADER).is_none());
}

#[test]
fn the_template_deploys_this_very_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    let t: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let function = &t["Resources"]["EdgePathFunction"];
    assert_eq!(function["Type"].as_str(), Some("AWS::CloudFront::Function"));
    assert_eq!(
        function["Properties"]["FunctionConfig"]["Runtime"].as_str(),
        Some("cloudfront-js-2.0")
    );
    assert_eq!(function["Properties"]["FunctionCode"].as_str(), Some(FUNCTION_CODE));
}
