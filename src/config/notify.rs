//! Validation of `[notify.NAME]` channels, `[checks.NAME]` health checks and
//! the `notify = […]` routes of jobs and checks.

use super::resolve;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::EventKind;
use super::notify_schema::{ChannelConfig, CheckConfig, RouteConfig};
use super::{ConfigError, Job, Locator};

/// Where one job's or check's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub channel: String,
    /// `None`: failures and recoveries.
    pub events: Option<Vec<EventKind>>,
}

/// A validated channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub config: ChannelConfig,
}

/// A validated check, with its defaults applied.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    /// The check as written (paths made absolute).
    pub config: CheckConfig,
    pub interval: Duration,
    pub timeout: Duration,
    pub notify: Vec<Route>,
    /// `backup_age`/`drill_age`: the limit (the default resolved).
    pub max_age: Option<Duration>,
    /// `disk`: `min_free` in bytes.
    pub min_free_bytes: Option<u64>,
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match &self.config {
            CheckConfig::Http { .. } => "http",
            CheckConfig::BackupAge { .. } => "backup_age",
            CheckConfig::DrillAge { .. } => "drill_age",
            CheckConfig::Disk { .. } => "disk",
            CheckConfig::Destination { .. } => "destination",
            CheckConfig::Sql { .. } => "sql",
        }
    }

    /// The job the check is about, if any.
    pub fn job(&self) -> Option<&str> {
        match &self.config {
            CheckConfig::BackupAge { job, .. }
            | CheckConfig::DrillAge { job, .. }
            | CheckConfig::Sql { job, .. } => Some(job),
            _ => None,
        }
    }
}

fn error_at(located: &Locator, needle: &str, key: String, message: String) -> ConfigError {
    let mut err = located.error(located.find(needle), message);
    err.key = Some(key);
    err
}

pub(super) fn validate_channels(
    located: &Locator,
    base: &Path,
    raw: IndexMap<String, ChannelConfig>,
) -> Result<IndexMap<String, Channel>, ConfigError> {
    let mut channels = IndexMap::new();
    for (name, mut config) in raw {
        if let ChannelConfig::Email {
            ca_file: Some(file),
            ..
        } = &mut config
        {
            *file = resolve(base, &*file);
        }
        super::check_name(located, "notify", &name)?;
        let table = format!("notify.{name}");
        let fail = |key: &str, message: String| {
            error_at(located, &table, format!("{table}.{key}"), message)
        };
        match &config {
            ChannelConfig::Webhook { url, headers, .. } => {
                check_url(url.expose()).map_err(|m| fail("url", m))?;
                for header in headers.keys() {
                    reqwest::header::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        fail(
                            "headers",
                            format!("`{header}` is not a valid HTTP header name"),
                        )
                    })?;
                }
            }
            ChannelConfig::Ping { url, .. } => {
                check_url(url.expose()).map_err(|m| fail("url", m))?;
            }
            ChannelConfig::Email {
                smtp_host,
                username,
                password_env,
                from,
                to,
                ..
            } => {
                if smtp_host.trim().is_empty() {
                    return Err(fail("smtp_host", "must name the SMTP server".into()));
                }
                from.parse::<lettre::message::Mailbox>()
                    .map_err(|e| fail("from", format!("`{from}` is not an email address ({e})")))?;
                if to.is_empty() {
                    return Err(fail("to", "name at least one recipient".into()));
                }
                for address in to {
                    address.parse::<lettre::message::Mailbox>().map_err(|e| {
                        fail("to", format!("`{address}` is not an email address ({e})"))
                    })?;
                }
                if password_env.is_some() && username.is_none() {
                    return Err(fail(
                        "password_env",
                        "a password needs a `username` too".into(),
                    ));
                }
            }
        }
        channels.insert(name.clone(), Channel { name, config });
    }
    Ok(channels)
}

/// The URL must parse; the message never quotes it (it may hold a token).
fn check_url(text: &str) -> Result<(), String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => Err(format!(
            "only http and https URLs are supported, not `{}`",
            url.scheme()
        )),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

pub(super) fn validate_routes(
    located: &Locator,
    owner: &str,
    channels: &IndexMap<String, Channel>,
    raw: &[RouteConfig],
) -> Result<Vec<Route>, ConfigError> {
    let mut routes: Vec<Route> = Vec::new();
    for route in raw {
        let channel = route.channel();
        let fail = |message: String| error_at(located, channel, format!("{owner}.notify"), message);
        if !channels.contains_key(channel) {
            let known: Vec<&str> = channels.keys().map(String::as_str).collect();
            return Err(fail(format!(
                "unknown notification channel `{channel}` (defined: {})",
                if known.is_empty() {
                    "none; add a [notify.NAME] table".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        if routes.iter().any(|r| r.channel == channel) {
            return Err(fail(format!("channel `{channel}` is listed twice")));
        }
        let events = match route {
            RouteConfig::Name(_) => None,
            RouteConfig::Detailed(table) => match &table.events {
                None => None,
                Some(names) => Some(
                    names
                        .iter()
                        .map(|n| n.parse::<EventKind>().map_err(&fail))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            },
        };
        routes.push(Route {
            channel: channel.to_string(),
            events,
        });
    }
    Ok(routes)
}

pub(super) fn validate_checks(
    located: &Locator,
    base: &Path,
    jobs: &IndexMap<String, Job>,
    destinations: &[String],
    channels: &IndexMap<String, Channel>,
    raw: IndexMap<String, CheckConfig>,
) -> Result<IndexMap<String, Check>, ConfigError> {
    let mut checks = IndexMap::new();
    for (name, mut config) in raw {
        super::check_name(located, "checks", &name)?;
        let table = format!("checks.{name}");
        let fail = |key: &str, needle: &str, message: String| {
            let mut err = located.error(located.find(needle).or(located.find(&table)), message);
            err.key = Some(format!("{table}.{key}"));
            err
        };
        let job_ref = |job: &str| -> Result<&Job, ConfigError> {
            jobs.get(job).ok_or_else(|| {
                fail(
                    "job",
                    job,
                    format!(
                        "unknown job `{job}` (defined: {})",
                        jobs.keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        };
        let mut max_age = None;
        let mut min_free_bytes = None;
        let (interval, timeout, notify) = match &mut config {
            CheckConfig::Http {
                url,
                method,
                headers,
                interval,
                timeout,
                notify,
                ..
            } => {
                check_url(url).map_err(|m| fail("url", &table, m))?;
                if let Some(m) = method {
                    reqwest::Method::from_bytes(m.as_bytes())
                        .map_err(|_| fail("method", m, format!("`{m}` is not an HTTP method")))?;
                }
                for header in headers.keys() {
                    reqwest::header::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        fail(
                            "headers",
                            header,
                            format!("`{header}` is not a valid HTTP header name"),
                        )
                    })?;
                }
                (*interval, *timeout, notify.clone())
            }
            CheckConfig::BackupAge {
                job,
                max_age: limit,
                interval,
                timeout,
                notify,
            }
            | CheckConfig::DrillAge {
                job,
                max_age: limit,
                interval,
                timeout,
                notify,
            } => {
                let job = job_ref(job)?;
                max_age = match limit {
                    Some(d) => Some(*d),
                    None => {
                        let now = jiff::Timestamp::now();
                        let hint = job
                            .schedules
                            .iter()
                            .filter_map(|s| s.interval_hint(now))
                            .min();
                        match hint {
                            Some(h) => Some(h * 2),
                            None => {
                                return Err(fail(
                                    "max_age",
                                    &table,
                                    format!(
                                        "job `{}` has no schedule to derive a default from: set `max_age` (e.g. \"26h\")",
                                        job.name
                                    ),
                                ));
                            }
                        }
                    }
                };
                (*interval, *timeout, notify.clone())
            }
            CheckConfig::Disk {
                path,
                min_free_percent,
                min_free,
                interval,
                timeout,
                notify,
            } => {
                *path = resolve(base, &*path);
                if min_free_percent.is_none() && min_free.is_none() {
                    return Err(fail(
                        "min_free",
                        &table,
                        "set `min_free_percent` (e.g. 10) or `min_free` (e.g. \"5GiB\")".into(),
                    ));
                }
                if let Some(p) = min_free_percent
                    && !(0.0..=100.0).contains(p)
                {
                    return Err(fail(
                        "min_free_percent",
                        "min_free_percent",
                        format!("{p} is not a percentage from 0 to 100"),
                    ));
                }
                if let Some(text) = min_free {
                    min_free_bytes = Some(parse_size(text).map_err(|m| fail("min_free", text, m))?);
                }
                (*interval, *timeout, notify.clone())
            }
            CheckConfig::Destination {
                destination,
                interval,
                timeout,
                notify,
            } => {
                if !destinations.iter().any(|d| d == destination) {
                    return Err(fail(
                        "destination",
                        destination,
                        format!(
                            "unknown destination `{destination}` (defined: {})",
                            destinations.join(", ")
                        ),
                    ));
                }
                (*interval, *timeout, notify.clone())
            }
            CheckConfig::Sql {
                job,
                query,
                interval,
                timeout,
                notify,
            } => {
                let job = job_ref(job)?;
                if query.trim().is_empty() {
                    return Err(fail("query", &table, "the query is empty".into()));
                }
                if !matches!(
                    job.source,
                    super::SourceConfig::Sqlite { .. }
                        | super::SourceConfig::Postgres { .. }
                        | super::SourceConfig::Mysql { .. }
                ) {
                    return Err(fail(
                        "job",
                        &job.name,
                        format!("job `{}` has no database to query", job.name),
                    ));
                }
                (*interval, *timeout, notify.clone())
            }
        };
        let notify = validate_routes(located, &table, channels, &notify)?;
        checks.insert(
            name.clone(),
            Check {
                name,
                config,
                interval: interval.unwrap_or(Duration::from_secs(300)),
                timeout: timeout.unwrap_or(Duration::from_secs(10)),
                notify,
                max_age,
                min_free_bytes,
            },
        );
    }
    Ok(checks)
}

/// `10GiB`, `500MB`, `1024` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 10GiB or 500MB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{text}` is not a size such as 10GiB or 500MB")),
    };
    Ok((number * factor) as u64)
}

pub(super) fn validate_metrics(
    located: &Locator,
    base: &Path,
    mut raw: super::notify_schema::MetricsConfig,
) -> Result<super::notify_schema::MetricsConfig, ConfigError> {
    if let Some(url) = &raw.push_url {
        check_url(url).map_err(|m| error_at(located, "metrics", "metrics.push_url".into(), m))?;
    }
    raw.textfile = raw.textfile.map(|p| resolve(base, p));
    Ok(raw)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("10GiB"), Ok(10 * 1024 * 1024 * 1024));
        assert_eq!(super::parse_size("500MB"), Ok(500_000_000));
        assert_eq!(super::parse_size("1024"), Ok(1024));
        assert!(super::parse_size("lots").is_err());
    }
}
