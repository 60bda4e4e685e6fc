//! The TOML schema of notification channels (`[notify.NAME]`), health checks
//! (`[checks.NAME]`) and the routes that send events to channels (`notify = […]`).

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;

use super::interpolate as interp;
use super::schema::Secret;

/// One entry of a job's or a check's `notify` list: a channel name, or a table
/// that also picks the events.
#[derive(Debug, Clone)]
pub enum RouteConfig {
    Name(String),
    Detailed(RouteTable),
}

/// A string or a table, with the table's own errors (an untagged enum would
/// only say that nothing matched).
impl<'de> Deserialize<'de> for RouteConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RouteConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a channel name or { channel = \"NAME\", events = [...] }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RouteConfig, E> {
                Ok(RouteConfig::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RouteConfig, A::Error> {
                RouteTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RouteConfig::Detailed)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub channel: String,
    /// Event names, e.g. `["backup_failed", "backup_succeeded"]` (default:
    /// failures and recoveries).
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl RouteConfig {
    pub fn channel(&self) -> &str {
        match self {
            RouteConfig::Name(name) => name,
            RouteConfig::Detailed(table) => &table.channel,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// cairn's own event schema (`cairn.event/1`), documented in the README.
    #[default]
    Json,
    Slack,
    Discord,
    Teams,
    Ntfy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587); refuses servers without it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host or network.
    None,
}

/// `[notify.NAME]`: a channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    Webhook {
        /// Often holds a token (Slack, Discord, Teams): treated as a secret.
        url: Secret,
        #[serde(default)]
        format: WebhookFormat,
        /// Extra request headers, e.g. `{ Authorization = "Bearer ${TOKEN}" }`.
        #[serde(default)]
        headers: IndexMap<String, Secret>,
        #[serde(default)]
        retries: Option<u32>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        max_time: Option<std::time::Duration>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        repeat: Option<std::time::Duration>,
    },
    Email {
        #[serde(deserialize_with = "interp::string")]
        smtp_host: String,
        #[serde(default)]
        smtp_port: Option<u16>,
        #[serde(default)]
        tls: SmtpTls,
        /// PEM file of a CA to trust besides the system's (a private relay).
        #[serde(default, deserialize_with = "interp::opt_path")]
        ca_file: Option<PathBuf>,
        #[serde(default, deserialize_with = "interp::opt_string")]
        username: Option<String>,
        /// Environment variable holding the SMTP password.
        #[serde(default)]
        password_env: Option<String>,
        #[serde(deserialize_with = "interp::string")]
        from: String,
        #[serde(deserialize_with = "interp::strings")]
        to: Vec<String>,
        #[serde(default)]
        retries: Option<u32>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        max_time: Option<std::time::Duration>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        repeat: Option<std::time::Duration>,
    },
    /// healthchecks.io-style ping URL: `URL/start`, `URL`, `URL/fail`.
    Ping {
        url: Secret,
        #[serde(default)]
        retries: Option<u32>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        max_time: Option<std::time::Duration>,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        repeat: Option<std::time::Duration>,
    },
}

/// Every channel also takes `retries` (tries after the first, default 3, with
/// exponential backoff), `timeout` (one attempt, default 5s), `max_time` (all
/// attempts together, default 10s: a backup never waits longer) and `repeat`
/// (while a failure lasts, alert again this often; default 4h, "0" = never).
impl ChannelConfig {
    pub fn delivery(&self) -> Delivery {
        let (ChannelConfig::Webhook {
            retries,
            timeout,
            max_time,
            repeat,
            ..
        }
        | ChannelConfig::Email {
            retries,
            timeout,
            max_time,
            repeat,
            ..
        }
        | ChannelConfig::Ping {
            retries,
            timeout,
            max_time,
            repeat,
            ..
        }) = self;
        Delivery {
            retries: retries.unwrap_or(3),
            timeout: timeout.unwrap_or(std::time::Duration::from_secs(5)),
            max_time: max_time.unwrap_or(std::time::Duration::from_secs(10)),
            repeat: match repeat {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(*d),
                None => Some(std::time::Duration::from_secs(4 * 3600)),
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Webhook { .. } => "webhook",
            ChannelConfig::Email { .. } => "email",
            ChannelConfig::Ping { .. } => "ping",
        }
    }
}

/// A channel's delivery settings with their defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub retries: u32,
    pub timeout: std::time::Duration,
    pub max_time: std::time::Duration,
    pub repeat: Option<std::time::Duration>,
}

/// `[checks.NAME]`: a health check.
/// Every kind also takes `interval`, `timeout` and `notify`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckConfig {
    Http {
        #[serde(deserialize_with = "interp::string")]
        url: String,
        #[serde(default, deserialize_with = "interp::opt_string")]
        method: Option<String>,
        /// Default: any 2xx.
        #[serde(default)]
        expect_status: Option<u16>,
        #[serde(default, deserialize_with = "interp::opt_string")]
        body_contains: Option<String>,
        /// Slower answers fail the check.
        #[serde(default, deserialize_with = "interp::opt_duration")]
        max_latency: Option<std::time::Duration>,
        #[serde(default)]
        headers: IndexMap<String, Secret>,
        /// How often the daemon runs it (default 5m).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        interval: Option<std::time::Duration>,
        /// How long the check may take (default 10s).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default)]
        notify: Vec<RouteConfig>,
    },
    BackupAge {
        #[serde(deserialize_with = "interp::string")]
        job: String,
        /// Default: twice the job's schedule interval.
        #[serde(default, deserialize_with = "interp::opt_duration")]
        max_age: Option<std::time::Duration>,
        /// How often the daemon runs it (default 5m).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        interval: Option<std::time::Duration>,
        /// How long the check may take (default 10s).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default)]
        notify: Vec<RouteConfig>,
    },
    DrillAge {
        #[serde(deserialize_with = "interp::string")]
        job: String,
        #[serde(default, deserialize_with = "interp::opt_duration")]
        max_age: Option<std::time::Duration>,
        /// How often the daemon runs it (default 5m).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        interval: Option<std::time::Duration>,
        /// How long the check may take (default 10s).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default)]
        notify: Vec<RouteConfig>,
    },
    Disk {
        #[serde(deserialize_with = "interp::path")]
        path: PathBuf,
        #[serde(default)]
        min_free_percent: Option<f64>,
        /// A size such as `10GiB`, `500MB`.
        #[serde(default, deserialize_with = "interp::opt_string")]
        min_free: Option<String>,
        /// How often the daemon runs it (default 5m).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        interval: Option<std::time::Duration>,
        /// How long the check may take (default 10s).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default)]
        notify: Vec<RouteConfig>,
    },
    Destination {
        #[serde(deserialize_with = "interp::string")]
        destination: String,
        /// How often the daemon runs it (default 5m).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        interval: Option<std::time::Duration>,
        /// How long the check may take (default 10s).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default)]
        notify: Vec<RouteConfig>,
    },
    Sql {
        #[serde(deserialize_with = "interp::string")]
        job: String,
        /// Must return no rows; the rows it returns are shown in the alert.
        #[serde(deserialize_with = "interp::string")]
        query: String,
        /// How often the daemon runs it (default 5m).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        interval: Option<std::time::Duration>,
        /// How long the check may take (default 10s).
        #[serde(default, deserialize_with = "interp::opt_duration")]
        timeout: Option<std::time::Duration>,
        #[serde(default)]
        notify: Vec<RouteConfig>,
    },
}

/// `[metrics]`: where one-shot runs (`cairn backup`, `cairn health`) also
/// leave their metrics, for hosts without the daemon's `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A node-exporter textfile (e.g. `/var/lib/prometheus/node-exporter/cairn.prom`).
    #[serde(default, deserialize_with = "interp::opt_path")]
    pub textfile: Option<PathBuf>,
    /// A Pushgateway, e.g. `http://pushgateway:9091` (pushed as job `cairn`,
    /// instance = host name; a URL with `/metrics/job/…` is used as it is).
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub push_url: Option<String>,
}
