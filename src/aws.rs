//! The AWS SDK configuration of the Lambda binary, assembled from Lambda's environment.
//!
//! aws-config's loader walks the whole standard chain: profile files, SSO, web identity with
//! its own STS client, container and IMDS credentials, and the system's CA store for TLS. In
//! Lambda none of that can apply: the runtime always sets `AWS_REGION` and the execution
//! role's credentials as environment variables. Building the configuration from those alone
//! took the function's init from 2.7 M to 1.6 M instructions and the binary down by 1.4 MB
//! (BENCHMARKS.md). What is kept from the chain: `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>` (and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`), standard retries,
//! stalled-stream protection, and the latest behavior version.
//!
//! TLS trusts only the Amazon Trust Services roots AWS endpoints chain to, unless
//! `SSL_CERT_FILE` or `SSL_CERT_DIR` asks for the system store (see [`Roots`]).

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};

/// The CAs that AWS service endpoints chain to (Amazon Trust Services: Amazon Root CA 1-4 and
/// the Starfield Services G2 cross-sign root), as published by AWS.
pub(crate) const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// Which roots the SDK clients trust.
#[derive(Debug, PartialEq, Eq)]
pub enum Roots {
    /// Only Amazon Trust Services: five certificates to parse, where the system store is
    /// hundreds read from disk at every cold start; and a narrower trust.
    Amazon,
    /// The system store, when `SSL_CERT_FILE` or `SSL_CERT_DIR` asks for it (a TLS-inspecting
    /// proxy, an HTTPS endpoint override with a private CA).
    System,
}

impl Roots {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Roots {
        if lookup("SSL_CERT_FILE").is_some() || lookup("SSL_CERT_DIR").is_some() {
            Roots::System
        } else {
            Roots::Amazon
        }
    }
}

/// The SDK's HTTPS client (rustls with aws-lc, as its default) trusting `roots`.
pub fn https_client(roots: Roots) -> SharedHttpClient {
    let trust = match roots {
        Roots::Amazon => TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AMAZON_TRUST_SERVICES),
        Roots::System => TrustStore::default(),
    };
    // Building a context only validates options; these are fixed, and the PEM is checked by a test.
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("static TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https()
}

/// The configuration every client of the binary starts from. `lookup` reads the environment.
pub fn sdk_config(lookup: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let region = lookup("AWS_REGION").or_else(|| lookup("AWS_DEFAULT_REGION"));
    if region.is_none() {
        tracing::warn!("AWS_REGION is not set (Lambda always sets it): AWS calls will fail");
    }
    if lookup("AWS_ACCESS_KEY_ID").is_none() {
        tracing::warn!(
            "AWS_ACCESS_KEY_ID is not set: this binary takes credentials from the environment, as Lambda provides them"
        );
    }
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.map(Region::new))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(https_client(Roots::from_lookup(&lookup)))
        .time_source(SharedTimeSource::default())
        .retry_config(RetryConfig::standard())
        .stalled_stream_protection(StalledStreamProtectionConfig::enabled().build());
    if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
        builder = builder.sleep_impl(sleep);
    }
    builder.build()
}

/// `sdk` with the endpoint override for `service` (as in `AWS_ENDPOINT_URL_DYNAMODB`), if any.
pub fn for_service(sdk: &SdkConfig, service: &str, lookup: impl Fn(&str) -> Option<String>) -> SdkConfig {
    match endpoint_override(service, lookup) {
        Some(url) => sdk.to_builder().endpoint_url(url).build(),
        None => sdk.clone(),
    }
}

pub(crate) fn endpoint_override(service: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    if lookup("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    lookup(&format!("AWS_ENDPOINT_URL_{service}")).or_else(|| lookup("AWS_ENDPOINT_URL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn amazon_roots_are_the_five_published_certificates() {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES)
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(certs.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        let (valid, invalid) = store.add_parsable_certificates(certs);
        assert_eq!((valid, invalid), (5, 0));
    }

    #[test]
    fn system_roots_only_when_asked_for() {
        assert_eq!(Roots::from_lookup(env(&[])), Roots::Amazon);
        for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            assert_eq!(
                Roots::from_lookup(env(&[(var, "/etc/ssl/certs")])),
                Roots::System,
                "{var}"
            );
        }
    }

    #[tokio::test]
    async fn config_comes_from_the_lambda_environment() {
        // (The credentials provider reads the process environment itself; tests/lambda_binary.rs
        // runs the binary with Lambda-style credential variables against moto.)
        let lookup = env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
        ]);
        let sdk = sdk_config(&lookup);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        assert!(sdk.credentials_provider().is_some());
        assert!(sdk.http_client().is_some() && sdk.sleep_impl().is_some());
        assert_eq!(
            sdk_config(env(&[("AWS_DEFAULT_REGION", "us-west-2")]))
                .region()
                .map(|r| r.as_ref()),
            Some("us-west-2")
        );
    }

    #[test]
    fn endpoint_overrides_per_service_then_global() {
        let sdk = sdk_config(env(&[("AWS_REGION", "us-east-1")]));
        let url =
            |pairs: &[(&str, &str)], service| for_service(&sdk, service, env(pairs)).endpoint_url().map(str::to_owned);
        assert_eq!(url(&[], "DYNAMODB"), None);
        let both = [
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ];
        assert_eq!(url(&both, "DYNAMODB").as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(url(&both, "SQS").as_deref(), Some("http://127.0.0.1:9"));
        let ignored = [
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ];
        assert_eq!(url(&ignored, "DYNAMODB"), None);
    }
}
