//! Secrets from SSM Parameter Store and Secrets Manager (moto server, as scripts/test.sh starts
//! it), read by the signed calls the Lambda binary makes, with its endpoint overrides
//! (`AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`), and decided by the authorizer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use wshub::notify::memory::MemoryNotifier;
use wshub::secrets::AwsSecretStore;
use wshub::store::memory::MemoryStore;
use wshub::{Config, Hub};

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// SDK clients for seeding moto (from `wshub::aws`), and the store the hub reads with, configured
/// from the same environment as the binary's.
fn clients() -> (aws_sdk_ssm::Client, aws_sdk_secretsmanager::Client, AwsSecretStore) {
    assert!(
        process_env("AWS_ENDPOINT_URL_SSM").is_some() && process_env("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_some(),
        "run scripts/test.sh (moto): AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_SECRETS_MANAGER"
    );
    let sdk = wshub::aws::sdk_config(process_env);
    let ssm = wshub::aws::for_service(&sdk, "SSM", process_env);
    let secrets_manager = wshub::aws::for_service(&sdk, "SECRETS_MANAGER", process_env);
    (
        aws_sdk_ssm::Client::new(&ssm),
        aws_sdk_secretsmanager::Client::new(&secrets_manager),
        AwsSecretStore::from_lookup(process_env),
    )
}

async fn put_parameter(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

fn hub(vars: &[(&str, &str)], store: AwsSecretStore) -> Hub {
    let vars: HashMap<String, String> = [("CONNECTIONS_TABLE", "t")]
        .iter()
        .chain(vars)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    let config = Config::from_lookup(&lookup).unwrap();
    Hub::new(config, Arc::new(MemoryStore::new()), Arc::new(MemoryNotifier::new()))
        .with_secret_store_and_env(Arc::new(store), lookup)
}

fn authorizer_event(token: &str) -> Value {
    json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/$connect",
        "headers": {"token": token},
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c1"}
    })
}

/// (Effect, principal) the authorizer answers for `token`.
async fn decide(hub: &Hub, token: &str) -> (String, String) {
    let r = wshub::handle(hub, authorizer_event(token), None).await.unwrap();
    (
        r["policyDocument"]["Statement"][0]["Effect"]
            .as_str()
            .unwrap()
            .to_owned(),
        r["principalId"].as_str().unwrap().to_owned(),
    )
}

fn allow(user: &str) -> (String, String) {
    ("Allow".into(), user.into())
}

fn deny() -> (String, String) {
    ("Deny".into(), "unauthorized".into())
}

fn jwt(secret: &str, sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    encode(
        &Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs moto in AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_SECRETS_MANAGER: run scripts/test.sh"]
async fn parameters_and_a_secret_configure_the_authorizer_and_rotate_without_a_redeploy() {
    let (ssm, secrets_manager, store) = clients();
    let run = format!("{:08x}", fastrand::u32(..));
    let tokens = format!("/wshub-test-{run}/auth-tokens");
    let publish = format!("/wshub-test-{run}/publish-keys");
    put_parameter(&ssm, &tokens, "alice=from-parameter-store").await;
    put_parameter(&ssm, &publish, "publish-key-from-parameter-store").await;
    let secret_id = format!("wshub-test-{run}");
    let jwt_secret = "jwt-secret-from-secrets-manager-0123456789";
    secrets_manager
        .create_secret()
        .name(&secret_id)
        .secret_string(json!({"JWT_SECRET": jwt_secret, "AUTH_TOKENS": "alice=shadowed"}).to_string())
        .send()
        .await
        .unwrap();
    let hub = hub(
        &[
            ("AUTH_TOKENS_PARAMETER", &tokens),
            ("PUBLISH_KEYS_PARAMETER", &publish),
            ("SECRETS_MANAGER_SECRET_ID", &secret_id),
            ("SECRETS_MAX_AGE_SECONDS", "1"),
        ],
        store,
    );
    hub.warm_up().await;
    assert_eq!(decide(&hub, "from-parameter-store").await, allow("alice"));
    assert_eq!(
        decide(&hub, "shadowed").await,
        deny(),
        "the parameter wins over the secret's key"
    );
    assert_eq!(decide(&hub, &jwt(jwt_secret, "carol")).await, allow("carol"));
    assert_eq!(decide(&hub, &jwt("another-secret", "carol")).await, deny());
    let credentials = hub.credentials().await.unwrap();
    assert_eq!(
        credentials.publish_keys(),
        [wshub::auth::sha256(b"publish-key-from-parameter-store")]
    );
    drop(credentials);

    // Rotation: a new value in Parameter Store takes over once the cached one is a second old.
    put_parameter(&ssm, &tokens, "alice=rotated").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(decide(&hub, "rotated").await, allow("alice"));
    assert_eq!(
        decide(&hub, "from-parameter-store").await,
        deny(),
        "the old token stops working"
    );
}

#[tokio::test]
#[ignore = "needs moto in AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_SECRETS_MANAGER: run scripts/test.sh"]
async fn unreadable_secrets_fail_closed() {
    let (_, _, store) = clients();
    let run = format!("{:08x}", fastrand::u32(..));
    let missing_parameter = hub(
        &[("AUTH_TOKENS_PARAMETER", &format!("/wshub-test-{run}/missing"))],
        store,
    );
    assert_eq!(decide(&missing_parameter, "anything").await, deny());
    assert!(missing_parameter.credentials().await.is_err());
    let (_, _, store) = clients();
    let missing_secret = hub(
        &[("SECRETS_MANAGER_SECRET_ID", &format!("wshub-test-{run}-missing"))],
        store,
    );
    assert_eq!(decide(&missing_secret, "anything").await, deny());
}
