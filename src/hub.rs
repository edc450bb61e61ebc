//! The hub: configuration plus the two ports, built once per process and shared by every event.

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::Config;
use crate::fanout::{Fanout, RetryPolicy};
use crate::notify::apigw::ApiGatewayNotifier;
use crate::notify::Notifier;
use crate::store::dynamo::DynamoStore;
use crate::store::ConnectionStore;

pub struct Hub {
    pub config: Config,
    pub store: Arc<dyn ConnectionStore>,
    pub notifier: Arc<dyn Notifier>,
    pub retry: RetryPolicy,
}

impl Hub {
    pub fn new(config: Config, store: Arc<dyn ConnectionStore>, notifier: Arc<dyn Notifier>) -> Self {
        Hub {
            config,
            store,
            notifier,
            retry: RetryPolicy::default(),
        }
    }

    /// The Lambda wiring: DynamoDB and the Management API with the standard AWS configuration
    /// chain (`AWS_ENDPOINT_URL_DYNAMODB` included).
    /// Also fetches the JWKS, when one is configured, so the first connection need not wait.
    pub async fn from_aws(config: Config) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Roots::Amazon = Roots::from_lookup(|name| std::env::var_os(name)) {
            loader = loader.http_client(amazon_https_client());
        }
        let (sdk, ()) = tokio::join!(loader.load(), config.auth.warm_up());
        let store = DynamoStore::new(crate::store::dynamo::client(&sdk), config.table.clone());
        let notifier = ApiGatewayNotifier::new(sdk);
        Hub::new(config, Arc::new(store), Arc::new(notifier))
    }

    pub(crate) fn fanout(&self, deadline: Option<Instant>) -> Fanout<'_> {
        Fanout {
            store: self.store.as_ref(),
            notifier: self.notifier.as_ref(),
            retry: &self.retry,
            concurrency: self.config.push_concurrency,
            deadline,
        }
    }

    /// Expiry (epoch seconds) for rows written now.
    pub(crate) fn expiry(&self, now: i64) -> i64 {
        now + self.config.connection_ttl.as_secs() as i64
    }
}

/// The CAs that AWS service endpoints chain to (Amazon Trust Services: Amazon Root CA 1-4 and
/// the Starfield Services G2 cross-sign root), as published by AWS.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// Which roots the SDK clients trust.
#[derive(Debug, PartialEq, Eq)]
enum Roots {
    /// Only Amazon Trust Services: five certificates to parse at cold start, and a narrower trust.
    Amazon,
    /// The system store, when `SSL_CERT_FILE` or `SSL_CERT_DIR` asks for it (a TLS-inspecting
    /// proxy, an HTTPS endpoint override with a private CA).
    System,
}

impl Roots {
    fn from_lookup(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Roots {
        if lookup("SSL_CERT_FILE").is_some() || lookup("SSL_CERT_DIR").is_some() {
            Roots::System
        } else {
            Roots::Amazon
        }
    }
}

/// The SDK's default HTTPS client reads and parses the whole system CA store during
/// `load_defaults` (2.5 ms of a 6 ms init on the benchmark machine, see BENCHMARKS.md); this
/// one parses five certificates. Same TLS stack (rustls, aws-lc) and connection settings.
fn amazon_https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AMAZON_TRUST_SERVICES);
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("static TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https()
}

/// Epoch seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{pem::PemObject, CertificateDer};

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
        use std::ffi::OsString;
        assert_eq!(Roots::from_lookup(|_| None), Roots::Amazon);
        for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            let roots = Roots::from_lookup(|name| (name == var).then(|| OsString::from("/etc/ssl/certs")));
            assert_eq!(roots, Roots::System, "{var}");
        }
    }
}
