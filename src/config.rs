//! Configuration from the environment. The variable names are public contract (README).

use std::time::Duration;

use crate::auth::{AuthConfig, AuthConfigError, ClaimRules, TokenUse};
use crate::forward::ForwardConfig;
use crate::secrets::{self, SecretSources};
use crate::topics::{self, TopicAccess};

/// A little over API Gateway's 2-hour connection limit, so a row outlives its socket
/// only briefly when `$disconnect` never arrives.
pub const DEFAULT_CONNECTION_TTL_SECONDS: u64 = 2 * 3600 + 5 * 60;
pub const DEFAULT_PUSH_CONCURRENCY: usize = 64;
/// How long a user's last activity is remembered after their last connect or disconnect.
pub const DEFAULT_PRESENCE_TTL_SECONDS: u64 = 30 * 86_400;
/// About two seconds of posting at the default concurrency and a typical post latency: small
/// pushes never touch the queue, and a large one splits into jobs that each finish quickly.
pub const DEFAULT_SHARD_THRESHOLD: usize = 5000;
/// Fifteen minutes of history: longer than API Gateway's 10-minute idle timeout, so a client
/// dropped for idling or by a flaky network comes back within it.
pub const DEFAULT_HISTORY_TTL_SECONDS: u64 = 900;
pub const DEFAULT_HISTORY_SIZE: u64 = 200;
/// Publications a stream may keep: a `history` page reads at most 1,000, and a larger window
/// only stores what clients are unlikely to page through.
pub const MAX_HISTORY_SIZE: u64 = 10_000;
/// Client `sendmessage` frames per second and connection, sustained…
pub const DEFAULT_SEND_RATE_PER_SECOND: u32 = 10;
/// …and at once after a quiet spell.
pub const DEFAULT_SEND_RATE_BURST: u32 = 20;
pub const DEFAULT_MAX_TOPICS_PER_CONNECTION: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
}

/// Everything the handlers need to know that is not a backend.
#[derive(Clone, Debug)]
pub struct Config {
    /// `CONNECTIONS_TABLE`.
    pub table: String,
    /// `APIGW_MANAGEMENT_ENDPOINT`: overrides the @connections endpoint derived from route events;
    /// the only source of it for SQS pushes.
    pub management_endpoint: Option<String>,
    /// `AWS_REGION`, used to derive the @connections endpoint from a route event.
    pub region: Option<String>,
    /// `ALLOW_CLIENT_BROADCAST`.
    pub allow_client_broadcast: bool,
    /// `CONNECTION_TTL_SECONDS`.
    pub connection_ttl: Duration,
    /// `PUSH_CONCURRENCY`: in-flight @connections posts per fan-out.
    pub push_concurrency: usize,
    /// `PRESENCE_TTL_SECONDS`: lifetime of a user's presence record (last activity).
    pub presence_ttl: Duration,
    /// `PUSH_QUEUE_URL`: the push queue itself, where large pushes enqueue their shard jobs.
    /// Unset: every push is delivered by the invocation that receives it.
    pub push_queue_url: Option<String>,
    /// `SHARD_THRESHOLD`: members one invocation lists and delivers before it hands the rest of
    /// the audience to the queue.
    pub shard_threshold: usize,
    /// `SEND_RATE_PER_SECOND`: a connection's sustained `sendmessage` rate (at most 1000).
    pub send_rate_per_second: u32,
    /// `SEND_RATE_BURST`: `sendmessage` frames a quiet connection may send at once.
    pub send_rate_burst: u32,
    /// `AUTH_TOKENS`, `JWT_SECRET`, `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_TOKEN_USE`.
    pub auth: AuthConfig,
    /// `TOPIC_ACCESS` and `PUBLIC_TOPICS`.
    pub topic_access: TopicAccess,
    /// `HISTORY_TTL_SECONDS` and `HISTORY_SIZE`.
    pub history: HistoryConfig,
    /// `PUBLISH_KEYS`: SHA-256 digests of the publisher keys `POST /publish` accepts in
    /// `Authorization: Bearer` (the keys themselves are not kept).
    pub publish_keys: Vec<[u8; 32]>,
    /// `PRESENCE_TOPICS`: topics whose members are tracked, with join and leave frames
    /// ([`crate::presence`]). Empty (the default): none.
    pub presence_topics: Vec<topics::Pattern>,
    /// `AUTH_TOKENS_PARAMETER`, `JWT_SECRET_PARAMETER`, `PUBLISH_KEYS_PARAMETER`,
    /// `SECRETS_MANAGER_SECRET_ID`, `SECRETS_MAX_AGE_SECONDS`, `SECRETS_TIMEOUT_MS`
    /// ([`crate::secrets`]). With a source configured, read [`crate::hub::Hub::credentials`]
    /// for the credentials and publisher keys in force (the fetched values).
    pub secrets: SecretSources,
    /// `FORWARD_ACTIONS` and `FORWARD_EVENT_BUS`: client actions sent on to the backend.
    pub forward: Option<ForwardConfig>,
    /// `MAX_TOPICS_PER_CONNECTION`: subscriptions one connection may hold; past it `subscribe`
    /// answers `too_many_topics`. Bounds what one client costs in storage, `$disconnect` and
    /// `whoami`.
    pub max_topics_per_connection: usize,
}

/// Publisher keys: comma-separated, each 16-4096 bytes without spaces, so a key is never a
/// guessable word and never confused with the list's separator.
fn publish_keys(value: Option<String>) -> Result<Vec<[u8; 32]>, ConfigError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    value
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .enumerate()
        .map(|(i, key)| {
            if !(16..=4096).contains(&key.len()) || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                // The key itself is never echoed.
                return Err(ConfigError::Invalid {
                    name: "PUBLISH_KEYS",
                    reason: format!("key {} must be 16-4096 characters without spaces", i + 1),
                });
            }
            Ok(crate::auth::sha256(key.as_bytes()))
        })
        .collect()
}

/// What streams keep ([`crate::publish`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// `HISTORY_TTL_SECONDS`: how long a publication is kept; `None` (set to 0): recording off,
    /// no seq, no history.
    pub ttl: Option<Duration>,
    /// `HISTORY_SIZE`: publications per stream a read may return.
    pub size: u64,
}

impl HistoryConfig {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let ttl = match get("HISTORY_TTL_SECONDS") {
            None => Some(DEFAULT_HISTORY_TTL_SECONDS),
            Some(v) if v == "0" => None,
            Some(v) => parse_number(Some(v), "HISTORY_TTL_SECONDS")?,
        };
        let size = parse_number(get("HISTORY_SIZE"), "HISTORY_SIZE")?.unwrap_or(DEFAULT_HISTORY_SIZE);
        if size > MAX_HISTORY_SIZE {
            return Err(ConfigError::Invalid {
                name: "HISTORY_SIZE",
                reason: format!("at most {MAX_HISTORY_SIZE}, got {size}"),
            });
        }
        Ok(HistoryConfig {
            ttl: ttl.map(Duration::from_secs),
            size,
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // An empty variable counts as unset: templates often pass "" for an optional parameter.
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let table = get("CONNECTIONS_TABLE").ok_or(ConfigError::Missing("CONNECTIONS_TABLE"))?;
        let management_endpoint = get("APIGW_MANAGEMENT_ENDPOINT").map(|e| e.trim_end_matches('/').to_owned());
        if let Some(endpoint) = &management_endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: "APIGW_MANAGEMENT_ENDPOINT",
                    reason: "must be an http(s) URL".into(),
                });
            }
        }
        let allow_client_broadcast = match get("ALLOW_CLIENT_BROADCAST").as_deref() {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| ConfigError::Invalid {
                name: "ALLOW_CLIENT_BROADCAST",
                reason: format!("expected true or false, got {v:?}"),
            })?,
        };
        let ttl_seconds = parse_number(get("CONNECTION_TTL_SECONDS"), "CONNECTION_TTL_SECONDS")?
            .unwrap_or(DEFAULT_CONNECTION_TTL_SECONDS);
        let push_concurrency = parse_number(get("PUSH_CONCURRENCY"), "PUSH_CONCURRENCY")?
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_PUSH_CONCURRENCY);
        let presence_ttl_seconds =
            parse_number(get("PRESENCE_TTL_SECONDS"), "PRESENCE_TTL_SECONDS")?.unwrap_or(DEFAULT_PRESENCE_TTL_SECONDS);
        let push_queue_url = get("PUSH_QUEUE_URL");
        if let Some(url) = &push_queue_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: "PUSH_QUEUE_URL",
                    reason: "must be an http(s) queue URL".into(),
                });
            }
        }
        let shard_threshold = parse_number(get("SHARD_THRESHOLD"), "SHARD_THRESHOLD")?
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_SHARD_THRESHOLD);
        let send_rate_per_second = parse_number(get("SEND_RATE_PER_SECOND"), "SEND_RATE_PER_SECOND")?.map_or(
            Ok(DEFAULT_SEND_RATE_PER_SECOND),
            |n| {
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 1000)
                    .ok_or(ConfigError::Invalid {
                        name: "SEND_RATE_PER_SECOND",
                        reason: format!("expected 1-1000, got {n}"),
                    })
            },
        )?;
        let send_rate_burst =
            parse_number(get("SEND_RATE_BURST"), "SEND_RATE_BURST")?.map_or(Ok(DEFAULT_SEND_RATE_BURST), |n| {
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 10_000)
                    .ok_or(ConfigError::Invalid {
                        name: "SEND_RATE_BURST",
                        reason: format!("expected 1-10000, got {n}"),
                    })
            })?;
        let max_topics_per_connection = parse_number(get("MAX_TOPICS_PER_CONNECTION"), "MAX_TOPICS_PER_CONNECTION")?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_MAX_TOPICS_PER_CONNECTION);
        let jwks_url = get("JWT_JWKS_URL");
        if let Some(url) = &jwks_url {
            // Keys fetched over plain http could be swapped in transit; loopback is for tests.
            let host = url
                .strip_prefix("http://")
                .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
            let host = host.map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, port)| port.parse::<u16>().is_ok())
                    .map_or(h, |(h, _)| h)
            });
            let local = matches!(host, Some("127.0.0.1" | "localhost" | "[::1]"));
            if !(url.starts_with("https://") || local) {
                return Err(ConfigError::Invalid {
                    name: "JWT_JWKS_URL",
                    reason: "must be an https URL".into(),
                });
            }
        }
        let secrets = secret_sources(&get)?;
        let token_use = match get("JWT_TOKEN_USE") {
            None => None,
            Some(v) => Some(TokenUse::parse(&v).ok_or_else(|| ConfigError::Invalid {
                name: "JWT_TOKEN_USE",
                reason: format!("expected id or access, got {v:?}"),
            })?),
        };
        let auth = AuthConfig::with_rules(
            get("AUTH_TOKENS").as_deref(),
            get("JWT_SECRET").as_deref(),
            jwks_url.as_deref(),
            ClaimRules {
                issuer: get("JWT_ISSUER"),
                audience: get("JWT_AUDIENCE"),
                token_use,
            },
        )?;
        let history = HistoryConfig::from_lookup(get)?;
        let publish_keys = publish_keys(get("PUBLISH_KEYS"))?;
        let presence_topics = {
            let listed = get("PRESENCE_TOPICS").unwrap_or_default();
            let patterns = topics::parse_list(listed.split(','));
            if patterns.len() != listed.split(',').filter(|p| !p.trim().is_empty()).count() {
                return Err(ConfigError::Invalid {
                    name: "PRESENCE_TOPICS",
                    reason: format!(
                        "every entry must be a topic or a prefix ending in *, at most {}",
                        topics::MAX_PATTERNS
                    ),
                });
            }
            patterns
        };
        let topic_access = match get("TOPIC_ACCESS").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("open") => TopicAccess::Open,
            Some("restricted") => {
                let listed = get("PUBLIC_TOPICS").unwrap_or_default();
                let public = topics::parse_list(listed.split(','));
                if public.len() != listed.split(',').filter(|p| !p.trim().is_empty()).count() {
                    return Err(ConfigError::Invalid {
                        name: "PUBLIC_TOPICS",
                        reason: format!(
                            "every entry must be a topic or a prefix ending in *, at most {}",
                            topics::MAX_PATTERNS
                        ),
                    });
                }
                TopicAccess::Restricted { public }
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "TOPIC_ACCESS",
                    reason: format!("expected open or restricted, got {other:?}"),
                })
            }
        };
        let forward = ForwardConfig::from_lookup(get)?;
        Ok(Config {
            table,
            management_endpoint,
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            allow_client_broadcast,
            connection_ttl: Duration::from_secs(ttl_seconds),
            push_concurrency,
            presence_ttl: Duration::from_secs(presence_ttl_seconds),
            push_queue_url,
            shard_threshold,
            send_rate_per_second,
            send_rate_burst,
            auth,
            topic_access,
            history,
            publish_keys,
            presence_topics,
            secrets,
            forward,
            max_topics_per_connection,
        })
    }
}

/// The secret sources; a key set both in the environment and by its parameter is refused, so
/// nobody wonders which one is in force.
fn secret_sources(get: &impl Fn(&str) -> Option<String>) -> Result<SecretSources, ConfigError> {
    let mut sources = SecretSources::default();
    for (key, variable) in secrets::KEYS.into_iter().zip(secrets::PARAMETER_VARIABLES) {
        let Some(name) = get(variable) else { continue };
        if get(key).is_some() {
            return Err(ConfigError::Invalid {
                name: variable,
                reason: format!("{key} is set too; set one of them"),
            });
        }
        // Parameter names: letters, digits and . - _ / (AWS Systems Manager User Guide,
        // "Requirements and constraints for parameter names"), at most 2048 characters with a path.
        let valid = name.len() <= 2048
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
        if !valid {
            return Err(ConfigError::Invalid {
                name: variable,
                reason: "a parameter name has only letters, digits and . - _ /".into(),
            });
        }
        sources.parameters.push((key, name));
    }
    sources.secret_id = get(secrets::SECRET_ID_VARIABLE);
    if let Some(seconds) = parse_number(get("SECRETS_MAX_AGE_SECONDS"), "SECRETS_MAX_AGE_SECONDS")? {
        sources.max_age = Duration::from_secs(seconds);
    }
    if let Some(ms) = parse_number(get("SECRETS_TIMEOUT_MS"), "SECRETS_TIMEOUT_MS")? {
        sources.timeout = Duration::from_millis(ms);
    }
    Ok(sources)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// A positive whole number, or `None` when unset.
fn parse_number(value: Option<String>, name: &'static str) -> Result<Option<u64>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("expected a positive whole number, got {v:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[("CONNECTIONS_TABLE", "t")]).unwrap();
        assert_eq!(c.table, "t");
        assert!(!c.allow_client_broadcast);
        assert_eq!(c.connection_ttl, Duration::from_secs(DEFAULT_CONNECTION_TTL_SECONDS));
        assert_eq!(c.push_concurrency, DEFAULT_PUSH_CONCURRENCY);
        assert_eq!(c.presence_ttl, Duration::from_secs(DEFAULT_PRESENCE_TTL_SECONDS));
        assert!(c.management_endpoint.is_none());
        assert!(
            c.push_queue_url.is_none(),
            "no queue: every push is delivered in one invocation"
        );
        assert_eq!(c.shard_threshold, DEFAULT_SHARD_THRESHOLD);
        assert_eq!(
            (c.send_rate_per_second, c.send_rate_burst),
            (DEFAULT_SEND_RATE_PER_SECOND, DEFAULT_SEND_RATE_BURST)
        );
        assert_eq!(c.max_topics_per_connection, DEFAULT_MAX_TOPICS_PER_CONNECTION);
        assert!(!c.auth.is_configured(), "no auth variables means nothing is accepted");
        assert_eq!(
            c.history,
            HistoryConfig {
                ttl: Some(Duration::from_secs(900)),
                size: 200
            }
        );
        assert!(
            c.publish_keys.is_empty(),
            "no publisher key: POST /publish refuses keys"
        );
    }

    #[test]
    fn history_and_publish_keys() {
        let off = config(&[("CONNECTIONS_TABLE", "t"), ("HISTORY_TTL_SECONDS", "0")]).unwrap();
        assert_eq!(off.history.ttl, None, "0 turns recording off");
        for (name, value) in [
            ("HISTORY_TTL_SECONDS", "-1"),
            ("HISTORY_SIZE", "0"),
            ("HISTORY_SIZE", "10001"),
        ] {
            let err = config(&[("CONNECTIONS_TABLE", "t"), (name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let keys = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("PUBLISH_KEYS", "0123456789abcdef, fedcba9876543210fedcba"),
        ])
        .unwrap();
        assert_eq!(keys.publish_keys.len(), 2);
        assert_eq!(keys.publish_keys[0], crate::auth::sha256(b"0123456789abcdef"));
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("PUBLISH_KEYS", "short-secret")]).unwrap_err();
        assert!(
            err.to_string().contains("PUBLISH_KEYS") && !err.to_string().contains("short-secret"),
            "{err}"
        );
    }

    #[test]
    fn table_is_required_and_bad_values_are_named() {
        assert!(matches!(config(&[]), Err(ConfigError::Missing("CONNECTIONS_TABLE"))));
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("CONNECTION_TTL_SECONDS", "soon")]).unwrap_err();
        assert!(err.to_string().contains("CONNECTION_TTL_SECONDS"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("PRESENCE_TTL_SECONDS", "0")]).unwrap_err();
        assert!(err.to_string().contains("PRESENCE_TTL_SECONDS"), "{err}");
        let c = config(&[("CONNECTIONS_TABLE", "t"), ("PRESENCE_TTL_SECONDS", "3600")]).unwrap();
        assert_eq!(c.presence_ttl, Duration::from_secs(3600));
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("ALLOW_CLIENT_BROADCAST", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("ALLOW_CLIENT_BROADCAST"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("APIGW_MANAGEMENT_ENDPOINT", "ftp://x")]).unwrap_err();
        assert!(err.to_string().contains("APIGW_MANAGEMENT_ENDPOINT"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("PUSH_QUEUE_URL", "wshub-push")]).unwrap_err();
        assert!(err.to_string().contains("PUSH_QUEUE_URL"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("SEND_RATE_PER_SECOND", "1001")]).unwrap_err();
        assert!(err.to_string().contains("SEND_RATE_PER_SECOND"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("SEND_RATE_BURST", "0")]).unwrap_err();
        assert!(err.to_string().contains("SEND_RATE_BURST"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("SHARD_THRESHOLD", "0")]).unwrap_err();
        assert!(err.to_string().contains("SHARD_THRESHOLD"), "{err}");
    }

    #[test]
    fn topic_access() {
        let c = config(&[("CONNECTIONS_TABLE", "t")]).unwrap();
        assert_eq!(c.topic_access, TopicAccess::Open);
        let c = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("TOPIC_ACCESS", "restricted"),
            ("PUBLIC_TOPICS", "news, chat/*"),
        ])
        .unwrap();
        assert_eq!(
            c.topic_access,
            TopicAccess::Restricted {
                public: topics::parse_list(["news", "chat/*"])
            }
        );
        let err = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("TOPIC_ACCESS", "restricted"),
            ("PUBLIC_TOPICS", "a b"),
        ]);
        assert!(err.unwrap_err().to_string().contains("PUBLIC_TOPICS"));
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("TOPIC_ACCESS", "closed")]).unwrap_err();
        assert!(err.to_string().contains("TOPIC_ACCESS"));
        let err = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("JWT_JWKS_URL", "http://idp.example.com/jwks"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("JWT_JWKS_URL"));
    }

    #[test]
    fn secret_sources() {
        let c = config(&[("CONNECTIONS_TABLE", "t"), ("PUBLISH_KEYS", "publisher-key-k1-0123")]).unwrap();
        assert!(!c.secrets.is_configured());
        assert_eq!(c.publish_keys, [crate::auth::sha256(b"publisher-key-k1-0123")]);
        assert_eq!(c.secrets.max_age, Duration::from_secs(secrets::DEFAULT_MAX_AGE_SECONDS));
        let c = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("JWT_SECRET_PARAMETER", "/wshub/jwt"),
            ("PUBLISH_KEYS_PARAMETER", "/wshub/publish"),
            ("SECRETS_MANAGER_SECRET_ID", "wshub/prod"),
            ("SECRETS_MAX_AGE_SECONDS", "60"),
            ("SECRETS_TIMEOUT_MS", "500"),
        ])
        .unwrap();
        assert_eq!(
            c.secrets.parameters,
            [
                ("JWT_SECRET", "/wshub/jwt".into()),
                ("PUBLISH_KEYS", "/wshub/publish".into())
            ]
        );
        assert_eq!(c.secrets.secret_id.as_deref(), Some("wshub/prod"));
        assert_eq!(
            (c.secrets.max_age, c.secrets.timeout),
            (Duration::from_secs(60), Duration::from_millis(500))
        );
        let err = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("AUTH_TOKENS", "a"),
            ("AUTH_TOKENS_PARAMETER", "/p"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("AUTH_TOKENS_PARAMETER"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("JWT_SECRET_PARAMETER", "a b")]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET_PARAMETER"), "{err}");
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("SECRETS_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("SECRETS_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn topic_cap_and_token_use() {
        let c = config(&[("CONNECTIONS_TABLE", "t"), ("MAX_TOPICS_PER_CONNECTION", "7")]).unwrap();
        assert_eq!(c.max_topics_per_connection, 7);
        for bad in ["0", "-1", "many"] {
            let err = config(&[("CONNECTIONS_TABLE", "t"), ("MAX_TOPICS_PER_CONNECTION", bad)]).unwrap_err();
            assert!(err.to_string().contains("MAX_TOPICS_PER_CONNECTION"), "{err}");
        }
        for good in ["id", "access", ""] {
            config(&[("CONNECTIONS_TABLE", "t"), ("JWT_TOKEN_USE", good)]).unwrap();
        }
        let err = config(&[("CONNECTIONS_TABLE", "t"), ("JWT_TOKEN_USE", "refresh")]).unwrap_err();
        assert!(err.to_string().contains("JWT_TOKEN_USE"), "{err}");
    }

    #[test]
    fn endpoint_trailing_slash_is_dropped() {
        let c = config(&[
            ("CONNECTIONS_TABLE", "t"),
            ("APIGW_MANAGEMENT_ENDPOINT", "http://127.0.0.1:3001/local/"),
        ])
        .unwrap();
        assert_eq!(c.management_endpoint.as_deref(), Some("http://127.0.0.1:3001/local"));
    }
}
