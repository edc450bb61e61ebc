//! Helpers shared by the integration tests.

/// SDK configuration for local endpoints: a fixed region and fake credentials, never the
/// machine's own (nothing in the tests may reach AWS).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await
}
