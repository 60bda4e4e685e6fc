//! Loading and validating `cairn.toml`.
//!
//! Errors name the file, line, column and key. Relative paths in the file are
//! resolved against the folder that holds it, so a config means the same thing
//! whichever directory cairn is started from.

pub mod connection;
mod drill;
mod event_kind;
mod interpolate;
pub mod notify;
mod notify_schema;
mod schema;
pub mod template;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use drill::{DEFAULT_ROW_COUNT_TOLERANCE, Drill, Validate};
pub use event_kind::EventKind;
pub use interpolate::{for_shell, substitute};
pub use schema::{
    CatchUp, CompressionKind, DaemonConfig, DestinationConfig, EncryptionConfig, Hooks, JobConfig,
    PassphraseSource, PgFormat, PgScope, RetentionConfig, RuleConfig, Secret, SigningConfig,
    SourceConfig, StatePostgres, Transfer, VerifyMode,
};

pub use notify::{Channel, Check, Route};
pub use notify_schema::{
    ChannelConfig, CheckConfig, Delivery, MetricsConfig, SmtpTls, WebhookFormat,
};

pub use crate::error::ConfigError;

use crate::cron::{self, Schedule};
use crate::retention::Policy;

/// The state store's file name when `[state] path` is not set.
pub const DEFAULT_STATE_FILE: &str = "cairn-state.db";

/// The name of the config file looked for in the current directory.
pub const DEFAULT_FILE: &str = "cairn.toml";

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// The state store (history, pauses, schedule marks).
    pub state_path: PathBuf,
    /// `[state] url`: a PostgreSQL store instead of the SQLite file.
    pub state_postgres: Option<StatePostgres>,
    /// How long finished runs stay in the history; zero keeps them all.
    pub keep_history: std::time::Duration,
    pub daemon: Daemon,
    pub destinations: IndexMap<String, DestinationConfig>,
    pub jobs: IndexMap<String, Job>,
    /// Notification channels, `[notify.NAME]`.
    pub notify: IndexMap<String, Channel>,
    /// Health checks, `[checks.NAME]`.
    pub checks: IndexMap<String, Check>,
    /// `[metrics]`: textfile and Pushgateway for one-shot runs.
    pub metrics: MetricsConfig,
}

/// `[daemon]`, validated.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub timezone_name: String,
    pub max_concurrent_runs: usize,
    /// Web sessions: idle and absolute lifetimes.
    pub session_idle: std::time::Duration,
    pub session_lifetime: std::time::Duration,
    pub shutdown_grace: std::time::Duration,
    pub listen: Option<std::net::SocketAddr>,
    /// The lease of a claimed fire (several replicas).
    pub lease: std::time::Duration,
    pub rerun_abandoned: RerunAbandoned,
    /// Certificate chain and key files (both or neither).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted_proxy: Option<std::net::IpAddr>,
    pub metrics_token_file: Option<PathBuf>,
    /// Where the web UI and API may restore to besides a job's own source.
    pub restore_root: Option<PathBuf>,
}

/// `[daemon] rerun_abandoned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunAbandoned {
    /// Once, unless the schedule's next fire comes within half its interval.
    Once,
    Never,
}

/// One job, with its references checked and its paths made absolute.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub source: SourceConfig,
    pub destinations: Vec<String>,
    pub compression: Compression,
    pub encryption: EncryptionConfig,
    pub hooks: Hooks,
    pub schedules: Vec<Schedule>,
    /// Time zone of retention periods (the job's, else the daemon's).
    pub timezone: jiff::tz::TimeZone,
    pub catch_up: CatchUp,
    pub jitter: Option<std::time::Duration>,
    pub retention: Policy,
    /// Policies that replace `retention` in particular destinations.
    pub destination_retention: IndexMap<String, Policy>,
    pub prune_on_failure: bool,
    pub verify: VerifyMode,
    pub drill: Drill,
    pub validate: Validate,
    /// `repair.cron`: when the daemon repairs the job's copies.
    pub repair_schedule: Option<crate::cron::Schedule>,
    /// Where the job's events are sent.
    pub notify: Vec<Route>,
    /// Manifest signatures: the job's `signing`, else the top-level one.
    pub signing: Signing,
}

/// `signing`, validated: the key file's path made absolute, the public key parsed.
#[derive(Debug, Clone, Default)]
pub struct Signing {
    /// Signs each new manifest.
    pub key_file: Option<PathBuf>,
    /// Artifacts not signed by this key are untrusted.
    pub public_key: Option<crate::keys::signing::PublicKey>,
}

impl Job {
    /// The retention policy that applies in `destination`.
    pub fn retention_for(&self, destination: &str) -> &Policy {
        self.destination_retention
            .get(destination)
            .unwrap_or(&self.retention)
    }
}

impl crate::keys::JobKeys for Job {
    fn job_name(&self) -> &str {
        &self.name
    }

    fn key_source(&self) -> crate::keys::KeySource<'_> {
        use crate::keys::{KeySource, Passphrase};
        fn passphrase(source: &PassphraseSource) -> Passphrase<'_> {
            Passphrase {
                env: source.passphrase_env.as_deref(),
                file: source.passphrase_file.as_deref(),
            }
        }
        match &self.encryption {
            EncryptionConfig::None {} => KeySource::None,
            EncryptionConfig::Age {
                recipients,
                recipients_file,
                identity_file,
            } => KeySource::Age {
                recipients,
                recipients_file: recipients_file.as_deref(),
                identity_file: identity_file.as_deref(),
            },
            EncryptionConfig::AgePassphrase(source) => KeySource::AgePassphrase(passphrase(source)),
            EncryptionConfig::OpenPgp(source) => KeySource::OpenPgp(passphrase(source)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub kind: CompressionKind,
    pub level: i32,
    /// 0 means one worker per core.
    pub threads: u32,
}

impl Compression {
    pub fn default_level(kind: CompressionKind) -> i32 {
        match kind {
            CompressionKind::Zstd => 3,
            CompressionKind::Gzip => 6,
            CompressionKind::None => 0,
        }
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "no config file here: write one with `cairn init`, or pass --config PATH / set CAIRN_CONFIG".into()
            } else {
                format!("cannot read the config file: {e}")
            },
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` is used for messages and to resolve relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let located = Locator { file: path, text };
        let raw: schema::ConfigFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_string();
            let offset = e.span().map(|s| located.refine(s.start, &message));
            located.error(offset, message)
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);

        let mut destinations = IndexMap::new();
        for (name, dest) in raw.destinations {
            check_name(&located, "destinations", &name)?;
            if let DestinationConfig::Fs { path } = &dest
                && path.as_os_str().is_empty()
            {
                let mut err = located.error(
                    located.find(&format!("destinations.{name}")),
                    format!("{EMPTY_PATH} (the folder that holds the backups)"),
                );
                err.key = Some(format!("destinations.{name}.path"));
                return Err(err);
            }
            let dest = resolve_destination_paths(&base, dest);
            destinations.insert(name, dest);
        }

        let daemon = validate_daemon(&located, &base, raw.daemon)?;
        let signing = validate_signing(&located, &base, "signing", raw.signing)?;
        let channels = notify::validate_channels(&located, &base, raw.notify)?;
        let mut jobs = IndexMap::new();
        for (name, job) in raw.jobs {
            check_name(&located, "jobs", &name)?;
            let routes =
                notify::validate_routes(&located, &format!("jobs.{name}"), &channels, &job.notify)?;
            let own_signing = job.signing.clone();
            let mut job = validate_job(&located, &base, &destinations, &daemon, name.clone(), job)?;
            job.notify = routes;
            if own_signing.is_some() {
                job.signing = validate_signing(
                    &located,
                    &base,
                    &format!("jobs.{name}.signing"),
                    own_signing,
                )?;
            } else {
                job.signing = signing.clone();
            }
            jobs.insert(name, job);
        }
        let destination_names: Vec<String> = destinations.keys().cloned().collect();
        let checks = notify::validate_checks(
            &located,
            &base,
            &jobs,
            &destination_names,
            &channels,
            raw.checks,
        )?;
        let state_postgres = validate_state_url(&located, &base, &raw.state)?;
        let keep_history = raw
            .state
            .keep_history
            .unwrap_or(std::time::Duration::from_secs(90 * 86_400));
        let state_path = resolve(
            &base,
            raw.state
                .path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_FILE)),
        );
        if state_path.is_dir() || state_path.file_name().is_none() {
            let mut err = located.error(
                located
                    .find("state")
                    .and_then(|o| text.get(o..)?.find("path").map(|i| o + i))
                    .or(located.find("state")),
                format!(
                    "`{}` is a folder: the state store is a file, e.g. /var/lib/cairn/cairn-state.db",
                    state_path.display()
                ),
            );
            err.key = Some("state.path".into());
            return Err(err);
        }
        let config = Config {
            file: path.to_path_buf(),
            state_path,
            state_postgres,
            keep_history,
            daemon,
            destinations,
            jobs,
            notify: channels,
            checks,
            metrics: notify::validate_metrics(&located, &base, raw.metrics)?,
        };
        config.register_secrets();
        Ok(config)
    }

    /// Registers for redaction what `Secret` values do not cover: passwords in
    /// URLs and the values of the variables named by `*_env` keys.
    fn register_secrets(&self) {
        let env = |name: &Option<String>| {
            if let Some(value) = name.as_deref().and_then(|n| std::env::var(n).ok()) {
                crate::redact::register(&value);
            }
        };
        for dest in self.destinations.values() {
            match dest {
                DestinationConfig::S3 { endpoint, .. }
                | DestinationConfig::Azblob { endpoint, .. }
                | DestinationConfig::Gcs { endpoint, .. } => {
                    if let Some(endpoint) = endpoint {
                        crate::redact::register_url(endpoint);
                    }
                }
                DestinationConfig::Webdav { url, .. } => crate::redact::register_url(url),
                DestinationConfig::Fs { .. } | DestinationConfig::Sftp { .. } => {}
            }
        }
        if let Some(pg) = &self.state_postgres {
            crate::redact::register_url(&pg.url);
            env(&pg.password_env);
        }
        for job in self.jobs.values() {
            match &job.source {
                SourceConfig::Postgres {
                    url, password_env, ..
                }
                | SourceConfig::Mysql { url, password_env } => {
                    crate::redact::register_url(url);
                    env(password_env);
                }
                _ => {}
            }
            match &job.encryption {
                EncryptionConfig::AgePassphrase(p) | EncryptionConfig::OpenPgp(p) => {
                    env(&p.passphrase_env)
                }
                _ => {}
            }
        }
        for channel in self.notify.values() {
            if let ChannelConfig::Email { password_env, .. } = &channel.config {
                env(password_env);
            }
        }
    }

    pub fn job(&self, name: &str) -> crate::Result<&Job> {
        self.jobs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
            crate::Error::Usage(if known.is_empty() {
                format!(
                    "unknown job `{name}`: {} defines no jobs",
                    self.file.display()
                )
            } else {
                format!(
                    "unknown job `{name}`: {} defines {}",
                    self.file.display(),
                    known.join(", ")
                )
            })
        })
    }
}

/// Makes the local paths of a destination (folders, key files) absolute.
fn resolve_destination_paths(base: &Path, mut dest: DestinationConfig) -> DestinationConfig {
    let absolute = |p: &mut Option<PathBuf>| {
        if let Some(path) = p {
            *path = resolve(base, &*path);
        }
    };
    match &mut dest {
        DestinationConfig::Fs { path } => *path = resolve(base, &*path),
        DestinationConfig::S3 {
            secret_access_key_file: file,
            ..
        }
        | DestinationConfig::Azblob {
            account_key_file: file,
            ..
        }
        | DestinationConfig::Gcs {
            credential_file: file,
            ..
        }
        | DestinationConfig::Sftp { key: file, .. }
        | DestinationConfig::Webdav {
            password_file: file,
            ..
        } => absolute(file),
    }
    dest
}

const EMPTY_PATH: &str =
    "the path is empty: give a path (relative paths start at the config file's folder)";
/// Jitter beyond a day is a mistake: it would push runs past their next fire.
const MAX_JITTER: std::time::Duration = std::time::Duration::from_secs(86_400);
/// Names become parts of file and object names, which file systems limit to 255 bytes.
pub const MAX_NAME_LEN: usize = 100;

/// `path` relative to the config's folder, without `.` components
/// (`/srv/app/./backups` reads as `/srv/app/backups` in every message).
pub(crate) fn resolve(base: &Path, path: impl AsRef<Path>) -> PathBuf {
    base.join(path).components().collect()
}

fn non_empty_path<E>(path: &Path, error: impl FnOnce() -> E) -> Result<&Path, E> {
    if path.as_os_str().is_empty() {
        Err(error())
    } else {
        Ok(path)
    }
}

/// A name as messages show it: escaped, and cut after 60 characters.
fn shortened(name: &str) -> String {
    let escaped: String = name.escape_debug().take(60).collect();
    if escaped.chars().count() < name.escape_debug().count() {
        format!("{escaped}…")
    } else {
        escaped
    }
}

/// Why `name` may not name a job, destination, tag or check, if it may not: it
/// becomes part of file names and object keys, so no `/`, no `..`, no control
/// characters, and not too long.
pub fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "the name `{}` is {} characters long: use at most {MAX_NAME_LEN} (it becomes part of file names)",
            shortened(name),
            name.chars().count()
        ));
    }
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (!ok).then(|| format!(
        "the name `{}` is not allowed: use letters, digits, `_`, `-` and `.`, starting with a letter or digit (it becomes part of file names)",
        shortened(name)
    ))
}

fn check_name(located: &Locator, table: &str, name: &str) -> Result<(), ConfigError> {
    let Some(problem) = name_problem(name) else {
        return Ok(());
    };
    let mut err = located.error(
        located
            .find_table_header(table, name)
            .or_else(|| located.find(&format!("{table}.{name}"))),
        problem,
    );
    err.key = Some(format!("{table}.{}", shortened(name)));
    Err(err)
}

/// `[state] url`: a PostgreSQL URL with a known sslmode, never beside `path`.
fn validate_state_url(
    located: &Locator,
    base: &Path,
    raw: &schema::StateConfig,
) -> Result<Option<StatePostgres>, ConfigError> {
    let at = |key: &str| {
        located
            .find("state")
            .and_then(|o| located.text.get(o..)?.find(key).map(|i| o + i))
            .or(located.find("state"))
    };
    let fail = |key: &str, message: String| {
        let mut err = located.error(at(key), message);
        err.key = Some(format!("state.{key}"));
        err
    };
    let Some(url) = &raw.url else {
        for (key, set) in [
            ("password_env", raw.password_env.is_some()),
            ("sslmode", raw.sslmode.is_some()),
            ("sslrootcert", raw.sslrootcert.is_some()),
        ] {
            if set {
                return Err(fail(
                    key,
                    format!("`{key}` applies to a PostgreSQL store: set `url` too"),
                ));
            }
        }
        return Ok(None);
    };
    if raw.path.is_some() {
        return Err(fail(
            "url",
            "`path` and `url` are both set: the state store is either a SQLite file (`path`) or PostgreSQL (`url`)".into(),
        ));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(fail(
            "url",
            format!(
                "`{}` is not a PostgreSQL URL, e.g. postgres://cairn@db:5432/cairn",
                crate::redact::display_url(url)
            ),
        ));
    }
    const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];
    if let Some(mode) = &raw.sslmode
        && !SSL_MODES.contains(&mode.as_str())
    {
        return Err(fail(
            "sslmode",
            format!("sslmode `{mode}` is not one of {}", SSL_MODES.join(", ")),
        ));
    }
    if let Some(var) = &raw.password_env
        && let Err(e) = check_variable_names(std::slice::from_ref(var))
    {
        return Err(fail("password_env", e));
    }
    Ok(Some(StatePostgres {
        url: url.clone(),
        password_env: raw.password_env.clone(),
        sslmode: raw.sslmode.clone(),
        sslrootcert: raw.sslrootcert.as_ref().map(|p| resolve(base, p)),
    }))
}

fn validate_daemon(
    located: &Locator,
    base: &Path,
    raw: DaemonConfig,
) -> Result<Daemon, ConfigError> {
    let fail = |needle: &str, key: &str, message: String| {
        let mut err = located.error(located.find(needle).or(located.find("daemon")), message);
        err.key = Some(format!("daemon.{key}"));
        err
    };
    let timezone_name = raw.timezone.unwrap_or_else(|| "UTC".to_string());
    cron::timezone(&timezone_name).map_err(|e| fail(&timezone_name, "timezone", e))?;
    let max_concurrent_runs = raw.max_concurrent_runs.unwrap_or(2) as usize;
    if max_concurrent_runs == 0 {
        return Err(fail(
            "max_concurrent_runs",
            "max_concurrent_runs",
            "must be at least 1".into(),
        ));
    }
    let session_idle = raw
        .session_idle
        .unwrap_or(std::time::Duration::from_secs(30 * 60));
    let session_lifetime = raw
        .session_lifetime
        .unwrap_or(std::time::Duration::from_secs(12 * 3600));
    for (key, value) in [
        ("session_idle", session_idle),
        ("session_lifetime", session_lifetime),
    ] {
        if value < std::time::Duration::from_secs(60) {
            return Err(fail(key, key, "must be at least 1m".into()));
        }
    }
    let listen = raw
        .listen
        .map(|text| {
            text.parse::<std::net::SocketAddr>().map_err(|e| {
                fail(
                    &text,
                    "listen",
                    format!("`{text}` is not an address such as 127.0.0.1:9464 ({e})"),
                )
            })
        })
        .transpose()?;
    let lease = raw.lease.unwrap_or(std::time::Duration::from_secs(30));
    if lease < std::time::Duration::from_secs(2) {
        return Err(fail("lease", "lease", "must be at least 2s".into()));
    }
    let rerun_abandoned = match raw.rerun_abandoned.as_deref() {
        None | Some("once") => RerunAbandoned::Once,
        Some("never") => RerunAbandoned::Never,
        Some(other) => {
            return Err(fail(
                "rerun_abandoned",
                "rerun_abandoned",
                format!("`{other}` is not one of once, never"),
            ));
        }
    };
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some((resolve(base, cert), resolve(base, key))),
        (None, None) => None,
        (cert, _) => {
            let (needle, key) = if cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            return Err(fail(
                needle,
                key,
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
    };
    let trusted_proxy = raw
        .trusted_proxy
        .map(|text| {
            text.parse::<std::net::IpAddr>().map_err(|e| {
                fail(
                    &text,
                    "trusted_proxy",
                    format!("`{text}` is not an IP address such as 127.0.0.1 ({e})"),
                )
            })
        })
        .transpose()?;
    Ok(Daemon {
        lease,
        rerun_abandoned,
        tls,
        trusted_proxy,
        metrics_token_file: raw.metrics_token_file.map(|p| resolve(base, p)),
        restore_root: raw.restore_root.map(|p| resolve(base, p)),
        timezone_name,
        max_concurrent_runs,
        session_idle,
        session_lifetime,
        shutdown_grace: raw
            .shutdown_grace
            .unwrap_or(std::time::Duration::from_secs(60)),
        listen,
    })
}

fn validate_job(
    located: &Locator,
    base: &Path,
    destinations: &IndexMap<String, DestinationConfig>,
    daemon: &Daemon,
    name: String,
    job: JobConfig,
) -> Result<Job, ConfigError> {
    let key = |k: &str| format!("jobs.{name}.{k}");
    let header = located.find(&format!("jobs.{name}"));
    let fail = |offset: Option<usize>, k: &str, message: String| {
        let mut err = located.error(offset, message);
        err.key = Some(key(k));
        err
    };

    if job.destinations.is_empty() {
        return Err(fail(
            header,
            "destinations",
            "a job needs at least one destination".into(),
        ));
    }
    let mut dest_names = Vec::new();
    for dest in &job.destinations {
        if !destinations.contains_key(dest.get_ref()) {
            let known: Vec<&str> = destinations.keys().map(String::as_str).collect();
            return Err(fail(
                Some(dest.span().start),
                "destinations",
                format!(
                    "unknown destination `{}` (defined: {})",
                    dest.get_ref(),
                    if known.is_empty() {
                        "none; add a [destinations.NAME] table".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if dest_names.contains(dest.get_ref()) {
            return Err(fail(
                Some(dest.span().start),
                "destinations",
                format!("destination `{}` is listed twice", dest.get_ref()),
            ));
        }
        dest_names.push(dest.get_ref().clone());
    }

    let level = job
        .compression_level
        .unwrap_or_else(|| Compression::default_level(job.compression));
    let range = match job.compression {
        CompressionKind::Zstd => 1..=19,
        CompressionKind::Gzip => 1..=9,
        CompressionKind::None => 0..=0,
    };
    if job.compression_level.is_some() && !range.contains(&level) {
        return Err(fail(
            located.find_key_in_job(&name, "compression_level"),
            "compression_level",
            format!(
                "{level} is out of range for {:?}: use {} to {}",
                job.compression,
                range.start(),
                range.end()
            ),
        ));
    }

    let source = match job.source {
        SourceConfig::Sqlite { path } => SourceConfig::Sqlite {
            path: resolve(
                base,
                non_empty_path(&path, || {
                    fail(
                        located.find_key_in_job(&name, "source"),
                        "source.path",
                        EMPTY_PATH.into(),
                    )
                })?,
            ),
        },
        SourceConfig::Files { path, exclude } => {
            non_empty_path(&path, || {
                fail(
                    located.find_key_in_job(&name, "source"),
                    "source.path",
                    EMPTY_PATH.into(),
                )
            })?;
            for pattern in &exclude {
                if let Err(e) = globset::Glob::new(pattern) {
                    return Err(fail(
                        located.find(pattern),
                        "source.exclude",
                        format!("bad glob `{pattern}`: {e}"),
                    ));
                }
            }
            SourceConfig::Files {
                path: resolve(base, path),
                exclude,
            }
        }
        SourceConfig::Postgres {
            url,
            password_env,
            format,
            scope,
            tool_dir,
        } => {
            connection::PgConn::parse(&url, None).map_err(|e| {
                fail(
                    located.find_key_in_job(&name, "source"),
                    "source.url",
                    e.to_string(),
                )
            })?;
            SourceConfig::Postgres {
                url,
                password_env,
                format,
                scope,
                tool_dir: tool_dir.map(|p| resolve(base, p)),
            }
        }
        SourceConfig::Mysql { url, password_env } => {
            connection::MyConn::parse(&url, None).map_err(|e| {
                fail(
                    located.find_key_in_job(&name, "source"),
                    "source.url",
                    e.to_string(),
                )
            })?;
            SourceConfig::Mysql { url, password_env }
        }
        SourceConfig::Command {
            backup,
            restore,
            extension,
            env,
        } => {
            check_variable_names(&env)
                .map_err(|m| fail(located.find_key_in_job(&name, "source"), "source.env", m))?;
            if backup.is_empty() || restore.as_ref().is_some_and(Vec::is_empty) {
                return Err(fail(
                    located.find_key_in_job(&name, "source"),
                    "source",
                    "`backup` (and `restore`, when given) must name a program: [\"program\", \"arg\", …]".into(),
                ));
            }
            let valid_extension = !extension.is_empty()
                && extension
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
            if !valid_extension {
                return Err(fail(
                    located.find_key_in_job(&name, "source"),
                    "source.extension",
                    format!(
                        "`{extension}` is not a usable file extension (letters, digits, `.`, `-`, `_`)"
                    ),
                ));
            }
            SourceConfig::Command {
                backup,
                restore,
                extension,
                env,
            }
        }
    };

    let encryption = match job.encryption {
        EncryptionConfig::Age {
            recipients,
            recipients_file,
            identity_file,
        } => {
            if recipients.is_empty() && recipients_file.is_none() {
                return Err(fail(
                    located.find_key_in_job(&name, "encryption"),
                    "encryption",
                    "age encryption needs `recipients` or `recipients_file` (create a key with `cairn keygen`)".into(),
                ));
            }
            for recipient in &recipients {
                if let Err(e) = crate::keys::parse_recipient(recipient) {
                    return Err(fail(
                        located.find(recipient),
                        "encryption.recipients",
                        e.to_string(),
                    ));
                }
            }
            EncryptionConfig::Age {
                recipients,
                recipients_file: recipients_file.map(|p| resolve(base, p)),
                identity_file: identity_file.map(|p| resolve(base, p)),
            }
        }
        EncryptionConfig::AgePassphrase(source) => EncryptionConfig::AgePassphrase(
            validate_passphrase(located, &name, base, source, &fail)?,
        ),
        EncryptionConfig::OpenPgp(source) => {
            EncryptionConfig::OpenPgp(validate_passphrase(located, &name, base, source, &fail)?)
        }
        EncryptionConfig::None {} => EncryptionConfig::None {},
    };

    let job_timezone = job
        .timezone
        .clone()
        .unwrap_or_else(|| daemon.timezone_name.clone());
    let timezone = cron::timezone(&job_timezone)
        .map_err(|e| fail(located.find(&job_timezone).or(header), "timezone", e))?;
    if let Some(jitter) = job.jitter
        && jitter > MAX_JITTER
    {
        return Err(fail(
            located.find_key_in_job(&name, "jitter"),
            "jitter",
            format!(
                "{} seconds is too long: jitter delays each run by up to this much; use at most 1d",
                jitter.as_secs()
            ),
        ));
    }
    let mut schedules = Vec::new();
    for spanned in &job.schedules {
        let s = spanned.get_ref();
        let zone = s.timezone.clone().unwrap_or_else(|| job_timezone.clone());
        let schedule = Schedule::parse(&s.cron, s.tag.clone(), &zone)
            .map_err(|e| fail(Some(spanned.span().start), "schedules", e))?;
        if let Some(problem) = s.tag.as_deref().and_then(name_problem) {
            return Err(fail(
                Some(spanned.span().start),
                "schedules.tag",
                problem.replacen("name", "tag", 1),
            ));
        }
        schedules.push(schedule);
    }
    let mut destination_retention = IndexMap::new();
    for (dest, policy) in &job.destination_retention {
        if !dest_names.contains(dest) {
            return Err(fail(
                located.find_key_in_job(&name, "destination_retention"),
                "destination_retention",
                format!(
                    "`{dest}` is not one of the job's destinations ({})",
                    dest_names.join(", ")
                ),
            ));
        }
        destination_retention.insert(dest.clone(), policy.policy());
    }

    let drill = drill::drill(
        job.drill
            .clone()
            .map(|s| (s.get_ref().clone(), s.span().start)),
        &source,
        &job_timezone,
        base,
        &fail,
    )?;
    let validate = drill::validate(
        job.validate
            .clone()
            .map(|s| (s.get_ref().clone(), s.span().start)),
        &source,
        &fail,
    )?;
    check_variable_names(&job.hooks.env)
        .map_err(|m| fail(located.find_key_in_job(&name, "hooks"), "hooks.env", m))?;
    let repair_schedule = job
        .repair
        .as_ref()
        .map(|r| {
            crate::cron::Schedule::parse(&r.get_ref().cron, None, &job_timezone)
                .map_err(|e| fail(Some(r.span().start), "repair.cron", e))
        })
        .transpose()?;
    Ok(Job {
        repair_schedule,
        verify: job.verify,
        drill,
        validate,
        name,
        source,
        destinations: dest_names,
        compression: Compression {
            kind: job.compression,
            level,
            threads: job.compression_threads,
        },
        encryption,
        hooks: job.hooks,
        schedules,
        timezone,
        catch_up: job.catch_up,
        jitter: job.jitter,
        retention: job
            .retention
            .as_ref()
            .map(RetentionConfig::policy)
            .unwrap_or_default(),
        destination_retention,
        prune_on_failure: job.prune_on_failure,
        notify: Vec::new(),
        signing: Signing::default(),
    })
}

fn validate_signing(
    located: &Locator,
    base: &Path,
    key: &str,
    raw: Option<serde_spanned::Spanned<SigningConfig>>,
) -> Result<Signing, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Signing::default());
    };
    let start = raw.span().start;
    let fail = |offset: usize, message: String| {
        let mut err = located.error(Some(offset), message);
        err.key = Some(key.to_string());
        err
    };
    let raw = raw.into_inner();
    if raw.key_file.is_none() && raw.public_key.is_none() {
        return Err(fail(
            start,
            "set `key_file` (to sign new backups) and/or `public_key` (to check signatures); make a key with `cairn keygen --signing`".into(),
        ));
    }
    let public_key = raw
        .public_key
        .map(|text| {
            crate::keys::signing::PublicKey::parse(&text).map_err(|message| {
                let offset = located
                    .text
                    .get(start..)
                    .and_then(|rest| rest.find(&text))
                    .map_or(start, |i| start + i);
                let mut err = fail(offset, message);
                err.key = Some(format!("{key}.public_key"));
                err
            })
        })
        .transpose()?;
    Ok(Signing {
        key_file: raw.key_file.map(|p| base.join(p)),
        public_key,
    })
}

/// `env` lists name variables: letters, digits and `_`.
fn check_variable_names(names: &[String]) -> Result<(), String> {
    match names
        .iter()
        .find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        Some(bad) => Err(format!(
            "`{bad}` is not a variable name: list names such as \"AWS_PROFILE\", not values"
        )),
        None => Ok(()),
    }
}

fn validate_passphrase(
    located: &Locator,
    job: &str,
    base: &Path,
    source: PassphraseSource,
    fail: &dyn Fn(Option<usize>, &str, String) -> ConfigError,
) -> Result<PassphraseSource, ConfigError> {
    match (&source.passphrase_env, &source.passphrase_file) {
        (Some(_), None) | (None, Some(_)) => Ok(PassphraseSource {
            passphrase_env: source.passphrase_env,
            passphrase_file: source.passphrase_file.map(|p| resolve(base, p)),
        }),
        _ => Err(fail(
            located.find_key_in_job(job, "encryption"),
            "encryption",
            "set exactly one of `passphrase_env` (a variable name) or `passphrase_file`".into(),
        )),
    }
}

/// Turns byte offsets into line, column and the dotted key under which they sit.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, offset: Option<usize>, message: String) -> ConfigError {
        let (line, column, key) = match offset {
            Some(offset) => {
                let (line, column) = self.line_column(offset);
                (Some(line), Some(column), self.key_at(offset))
            }
            None => (None, None, None),
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// The table header in force at `offset` plus the key assigned on its line.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let mut table: Option<String> = None;
        let mut line_start = 0;
        for line in self.text.split_inclusive('\n') {
            let line_end = line_start + line.len();
            let trimmed = line.trim();
            if trimmed.starts_with('[') && line_start <= offset {
                table = Some(
                    trimmed
                        .trim_matches(|c| c == '[' || c == ']')
                        .trim()
                        .to_string(),
                );
            }
            if offset < line_end || line_end == self.text.len() {
                let upto = &line[..(offset - line_start).min(line.len())];
                // The key assigned before the offset, or the one the line starts with.
                let assigned = upto
                    .split_once('=')
                    .or_else(|| line.split_once('='))
                    .map(|(k, _)| k.trim().trim_matches('"').to_string())
                    .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
                return match (table, assigned) {
                    (Some(t), Some(k)) => Some(format!("{t}.{k}")),
                    (Some(t), None) => Some(t),
                    (None, Some(k)) => Some(k),
                    (None, None) => None,
                };
            }
            line_start = line_end;
        }
        table
    }

    /// Values inside `kind`-tagged tables are buffered by serde, which loses their
    /// position: the error then points at the table. Find the exact spot from the
    /// message where it names the offending key or variable.
    fn refine(&self, offset: usize, message: &str) -> usize {
        let named = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_string)
        };
        let needle = if let Some(field) = named("unknown field `") {
            Some(field)
        } else {
            message
                .find("environment variable `")
                .and_then(|i| {
                    message[i + "environment variable `".len()..]
                        .split('`')
                        .next()
                })
                .map(|var| format!("${{{var}"))
        };
        needle
            .and_then(|n| self.text.get(offset..)?.find(&n).map(|i| offset + i))
            .unwrap_or(offset)
    }

    /// Offset of a table header or quoted value, for errors found after parsing.
    fn find(&self, needle: &str) -> Option<usize> {
        let header = format!("[{needle}]");
        self.text
            .find(&header)
            .map(|o| o + 1)
            .or_else(|| self.text.find(&format!("\"{needle}\"")))
            .or_else(|| self.text.find(needle))
    }

    /// Offset of the `[table.NAME]` header for any spelling of NAME (quoted,
    /// with escapes): TOML itself decides what each header names.
    fn find_table_header(&self, table: &str, name: &str) -> Option<usize> {
        let mut line_start = 0;
        for line in self.text.split_inclusive('\n') {
            if let Some(inner) = line
                .trim()
                .strip_prefix('[')
                .filter(|rest| !rest.starts_with('['))
                .and_then(|rest| rest.rsplit_once(']'))
                .map(|(inner, _)| inner)
                && let Ok(parsed) = toml::from_str::<toml::Table>(&format!("{inner} = 0"))
                && parsed
                    .get(table)
                    .and_then(toml::Value::as_table)
                    .is_some_and(|t| t.contains_key(name))
            {
                return Some(line_start + line.find('[').unwrap_or(0) + 1);
            }
            line_start += line.len();
        }
        None
    }

    fn find_key_in_job(&self, job: &str, key: &str) -> Option<usize> {
        let start = self.find(&format!("jobs.{job}"))?;
        let rest = &self.text[start..];
        let end = rest[1..].find("\n[").map_or(rest.len(), |e| e + 1);
        rest[..end]
            .find(&format!("\n{key}"))
            .map(|o| start + o + 1)
            .or(Some(start))
    }
}
