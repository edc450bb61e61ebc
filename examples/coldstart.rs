//! Cold start of the release `wshub` binary beside a minimal `lambda_runtime` hello-world
//! (`examples/hello.rs`, same profile), launched alternately in one run so both see the same
//! machine noise. Each launch gets a fresh Runtime API served here and is measured from `exec`:
//!
//! - `poll`: to the function's first `GET …/invocation/next` (init done);
//! - `first`: to the response to a first `$connect` event (against the DynamoDB endpoint given,
//!   normally moto), i.e. init plus everything the first request pays for;
//! - `warm`: a second `$connect` on the same process, from handing it out to its response.
//!
//! `scripts/bench-coldstart.sh` starts moto, builds both binaries and runs this. The Runtime API
//! is `tests/common/runtime_api.rs`, the one the tests drive the binary through.

#[path = "../tests/common/runtime_api.rs"]
mod runtime_api;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use runtime_api::{Answer, RuntimeApi};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    wshub: PathBuf,
    #[arg(long)]
    hello: PathBuf,
    /// DynamoDB endpoint (moto) for `wshub`'s `$connect`.
    #[arg(long)]
    dynamodb: String,
    /// Also launch wshub with its secrets in Parameter Store (`AUTH_TOKENS_PARAMETER`) and
    /// Secrets Manager (`SECRETS_MANAGER_SECRET_ID`, holding `JWT_SECRET`) at this endpoint
    /// (moto), to compare with the environment-variable path.
    #[arg(long)]
    secrets: Option<String>,
    /// Launches of each binary (after one discarded warm-up launch each).
    #[arg(long, default_value_t = 30)]
    runs: usize,
}

struct Launch {
    poll: Duration,
    first: Duration,
    warm: Duration,
}

fn connect_event(template: &Value) -> Value {
    let mut event = template.clone();
    let id = format!("cold{:012x}=", fastrand::u64(..) >> 16);
    event["requestContext"]["connectionId"] = Value::String(id);
    event
}

async fn launch(binary: &PathBuf, env: &[(String, String)], template: &Value, expect_connect: bool) -> Launch {
    let api = RuntimeApi::default();
    let runtime = api.start().await;
    // Both queued up front: the second goes out on the process's next poll after the first.
    let deadline = Duration::from_secs(30);
    let pending = [
        api.enqueue(connect_event(template), deadline),
        api.enqueue(connect_event(template), deadline),
    ];

    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn");

    let mut answers: Vec<Answer> = Vec::new();
    for pending in pending {
        match tokio::time::timeout(Duration::from_secs(30), pending.answer()).await {
            Ok(answer) => answers.push(answer),
            Err(_) => panic!(
                "{} did not answer within 30 s; init error: {:?}",
                binary.display(),
                api.init_error()
            ),
        }
    }
    let _ = child.kill().await;
    drop(runtime);
    for answer in &answers {
        // A reported error fails the check below as a response would.
        let (Ok(v) | Err(v)) = &answer.outcome;
        if expect_connect {
            assert_eq!(v["statusCode"], 200, "$connect failed: {v}");
        } else {
            assert!(v["requestContext"].is_object(), "hello did not echo: {v}");
        }
    }
    Launch {
        poll: api.first_poll().expect("answered without polling") - started,
        first: answers[0].answered - started,
        warm: answers[1].answered - answers[1].served,
    }
}

fn stats(mut xs: Vec<Duration>) -> (f64, f64, f64) {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| ms(xs[((xs.len() - 1) as f64 * q).round() as usize]);
    (at(0.0), at(0.5), at(0.9))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let table = format!("wshub-cold-{:08x}", fastrand::u32(..));
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&args.dynamodb)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    wshub::store::table::create_table(&client, &table)
        .await
        .expect("create table");

    let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let template: Value = serde_json::from_str(&std::fs::read_to_string(events.join("connect.json")).unwrap()).unwrap();
    let lambda_env: Vec<(String, String)> = [
        ("PATH", "/usr/bin:/bin"),
        ("AWS_LAMBDA_FUNCTION_NAME", "wshub"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/wshub"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[$LATEST]0123456789abcdef"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        // As Lambda provides them: from the environment, no profile files, no IMDS.
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut wshub_env = lambda_env.clone();
    wshub_env.extend(
        [
            ("CONNECTIONS_TABLE", table.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", args.dynamodb.as_str()),
            ("AUTH_TOKENS", "alice=alice-token,bob=bob-token"),
            ("APIGW_MANAGEMENT_ENDPOINT", "http://127.0.0.1:9/local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );

    let secrets_env = match &args.secrets {
        Some(endpoint) => Some(seed_secrets(endpoint, &wshub_env).await),
        None => None,
    };

    let mut hello = Vec::new();
    let mut ours = Vec::new();
    let mut with_secrets = Vec::new();
    // One discarded launch each: the first exec after a build reads the binary from disk.
    launch(&args.hello, &lambda_env, &template, false).await;
    launch(&args.wshub, &wshub_env, &template, true).await;
    if let Some(env) = &secrets_env {
        launch(&args.wshub, env, &template, true).await;
    }
    for run in 0..args.runs {
        // Alternate the order so neither binary always runs right after the other.
        if run % 2 == 0 {
            hello.push(launch(&args.hello, &lambda_env, &template, false).await);
            ours.push(launch(&args.wshub, &wshub_env, &template, true).await);
            if let Some(env) = &secrets_env {
                with_secrets.push(launch(&args.wshub, env, &template, true).await);
            }
        } else {
            if let Some(env) = &secrets_env {
                with_secrets.push(launch(&args.wshub, env, &template, true).await);
            }
            ours.push(launch(&args.wshub, &wshub_env, &template, true).await);
            hello.push(launch(&args.hello, &lambda_env, &template, false).await);
        }
    }

    println!("{} launches each; milliseconds as min / median / p90", args.runs);
    println!("| figure | hello-world | wshub | ratio of medians |");
    println!("|---|---|---|---|");
    type Pick = fn(&Launch) -> Duration;
    let rows: [(&str, Pick); 3] = [
        ("exec → first Runtime API poll", |l| l.poll),
        ("exec → response to first `$connect`", |l| l.first),
        ("warm `$connect` (same process)", |l| l.warm),
    ];
    for (name, pick) in rows {
        let h = stats(hello.iter().map(pick).collect());
        let w = stats(ours.iter().map(pick).collect());
        println!(
            "| {name} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {:.2}× |",
            h.0,
            h.1,
            h.2,
            w.0,
            w.1,
            w.2,
            w.1 / h.1
        );
    }
    if !with_secrets.is_empty() {
        println!("\nwshub with its secrets in Parameter Store and Secrets Manager (moto) against the same");
        println!("binary with them in the environment:");
        println!("| figure | environment | Parameter Store + Secrets Manager | difference of medians |");
        println!("|---|---|---|---|");
        for (name, pick) in rows {
            let e = stats(ours.iter().map(pick).collect());
            let s = stats(with_secrets.iter().map(pick).collect());
            println!(
                "| {name} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} | {:+.2} ms |",
                e.0,
                e.1,
                e.2,
                s.0,
                s.1,
                s.2,
                s.1 - e.1
            );
        }
    }
    let cold_penalty = stats(ours.iter().map(|l| l.first - l.poll).collect());
    println!(
        "\nwshub's first `$connect` after its poll: median {:.2} ms, against {:.2} ms warm",
        cold_penalty.1,
        stats(ours.iter().map(|l| l.warm).collect()).1
    );
}

/// Puts the tokens in a Parameter Store SecureString and a JWT secret in Secrets Manager at
/// `endpoint` (moto), and returns wshub's environment reading them from there instead.
async fn seed_secrets(endpoint: &str, wshub_env: &[(String, String)]) -> Vec<(String, String)> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let run = format!("{:08x}", fastrand::u32(..));
    let parameter = format!("/wshub-cold-{run}/auth-tokens");
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&parameter)
        .value("alice=alice-token,bob=bob-token")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");
    let secret = format!("wshub-cold-{run}");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret)
        .secret_string(r#"{"JWT_SECRET": "cold-start-jwt-secret-0123456789"}"#)
        .send()
        .await
        .expect("create secret");
    let mut env: Vec<(String, String)> = wshub_env.iter().filter(|(k, _)| k != "AUTH_TOKENS").cloned().collect();
    env.extend(
        [
            ("AUTH_TOKENS_PARAMETER", parameter.as_str()),
            ("SECRETS_MANAGER_SECRET_ID", secret.as_str()),
            ("AWS_ENDPOINT_URL_SSM", endpoint),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}
