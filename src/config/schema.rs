//! The TOML schema of `cairn.toml`, as written by users. Every table rejects
//! unknown keys so that a typo is an error with a line number, not a silent default.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::interpolate as interp;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub destinations: IndexMap<String, DestinationConfig>,
    #[serde(default)]
    pub jobs: IndexMap<String, JobConfig>,
    /// Notification channels (`[notify.NAME]`), see `notify_schema.rs`.
    #[serde(default)]
    pub notify: IndexMap<String, super::notify_schema::ChannelConfig>,
    /// Health checks (`[checks.NAME]`).
    #[serde(default)]
    pub checks: IndexMap<String, super::notify_schema::CheckConfig>,
    #[serde(default)]
    pub metrics: super::notify_schema::MetricsConfig,
    /// Manifest signatures for every job that sets none of its own.
    #[serde(default)]
    pub signing: Option<Spanned<SigningConfig>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DestinationConfig {
    /// A folder on a local or mounted file system.
    Fs {
        #[serde(deserialize_with = "interp::path")]
        path: PathBuf,
    },
    /// AWS S3 or any S3-compatible store (MinIO, SeaweedFS, Ceph, R2, B2, …).
    S3 {
        #[serde(deserialize_with = "interp::string")]
        bucket: String,
        #[serde(default, deserialize_with = "interp::string")]
        prefix: String,
        #[serde(default, deserialize_with = "interp::opt_string")]
        endpoint: Option<String>,
        #[serde(default, deserialize_with = "interp::opt_string")]
        region: Option<String>,
        /// Without keys, the standard AWS environment and profile chain is used.
        #[serde(default, deserialize_with = "interp::opt_string")]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<Secret>,
        #[serde(default, deserialize_with = "interp::opt_path")]
        secret_access_key_file: Option<PathBuf>,
        /// `bucket.host/key` instead of `host/bucket/key` (default: path style).
        #[serde(default)]
        virtual_host_style: bool,
        #[serde(default)]
        transfer: Transfer,
    },
    /// Azure Blob Storage (or Azurite).
    Azblob {
        #[serde(deserialize_with = "interp::string")]
        container: String,
        #[serde(default, deserialize_with = "interp::string")]
        prefix: String,
        #[serde(default, deserialize_with = "interp::opt_string")]
        account_name: Option<String>,
        #[serde(default)]
        account_key: Option<Secret>,
        #[serde(default, deserialize_with = "interp::opt_path")]
        account_key_file: Option<PathBuf>,
        #[serde(default)]
        sas_token: Option<Secret>,
        #[serde(default, deserialize_with = "interp::opt_string")]
        endpoint: Option<String>,
        #[serde(default)]
        transfer: Transfer,
    },
    /// Google Cloud Storage.
    Gcs {
        #[serde(deserialize_with = "interp::string")]
        bucket: String,
        #[serde(default, deserialize_with = "interp::string")]
        prefix: String,
        /// A service-account JSON key file (else the environment's default credentials).
        #[serde(default, deserialize_with = "interp::opt_path")]
        credential_file: Option<PathBuf>,
        #[serde(default, deserialize_with = "interp::opt_string")]
        endpoint: Option<String>,
        /// Unsigned requests, loading no credentials: public buckets and
        /// local emulators (fake-gcs-server).
        #[serde(default)]
        anonymous: bool,
        #[serde(default)]
        transfer: Transfer,
    },
    /// A folder on an SSH server (uses the `ssh` program).
    Sftp {
        #[serde(deserialize_with = "interp::string")]
        host: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(deserialize_with = "interp::string")]
        user: String,
        /// Private key file.
        #[serde(default, deserialize_with = "interp::opt_path")]
        key: Option<PathBuf>,
        #[serde(deserialize_with = "interp::string")]
        folder: String,
        /// `strict` (default: the host must be in known_hosts), `add` or `accept`.
        #[serde(default, deserialize_with = "interp::opt_string")]
        known_hosts: Option<String>,
        #[serde(default)]
        transfer: Transfer,
    },
    /// A WebDAV server (Nextcloud, ownCloud, rclone, nginx, Apache).
    Webdav {
        #[serde(deserialize_with = "interp::string")]
        url: String,
        #[serde(default, deserialize_with = "interp::opt_string")]
        user: Option<String>,
        #[serde(default)]
        password: Option<Secret>,
        #[serde(default, deserialize_with = "interp::opt_path")]
        password_file: Option<PathBuf>,
        #[serde(default, deserialize_with = "interp::string")]
        prefix: String,
        #[serde(default)]
        transfer: Transfer,
    },
}

/// How large objects travel to remote stores.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Multipart part / block size in MiB.
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: u32,
    /// Parts in flight at once per upload.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Tries per request on transient errors (with exponential backoff).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds one request may take before it is retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_part_size_mib() -> u32 {
    8
}
fn default_concurrency() -> u32 {
    4
}
fn default_retries() -> u32 {
    4
}
fn default_timeout_secs() -> u64 {
    120
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            part_size_mib: default_part_size_mib(),
            concurrency: default_concurrency(),
            retries: default_retries(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

/// A secret config value: `${VAR}` is substituted, it never prints, and it is
/// registered for redaction (`crate::redact`) as soon as it is read.
#[derive(Clone)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        interp::string(d).map(Secret::new)
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn new(value: String) -> Self {
        crate::redact::register(&value);
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub source: SourceConfig,
    pub destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub compression: CompressionKind,
    /// zstd: 1..=19 (default 3); gzip: 1..=9 (default 6).
    pub compression_level: Option<i32>,
    /// zstd worker threads; 0 (default) uses every core.
    #[serde(default)]
    pub compression_threads: u32,
    pub encryption: EncryptionConfig,
    #[serde(default)]
    pub hooks: Hooks,
    /// When the daemon backs the job up; each schedule may tag its artifacts.
    #[serde(default)]
    pub schedules: Vec<Spanned<ScheduleConfig>>,
    /// Time zone of the job's schedules and retention periods (default: the daemon's).
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub timezone: Option<String>,
    /// What the daemon does at start about fires it missed while it was down.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Up to this much random delay before each scheduled run (e.g. `5m`).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub jitter: Option<std::time::Duration>,
    #[serde(default)]
    pub retention: Option<RetentionConfig>,
    /// Per destination: a policy that replaces `retention` there.
    #[serde(default)]
    pub destination_retention: IndexMap<String, RetentionConfig>,
    /// Prune even when the job's latest backup failed.
    #[serde(default)]
    pub prune_on_failure: bool,
    /// Notification channels for this job's events: names, or
    /// `{ channel = "ops", events = [...] }`.
    #[serde(default)]
    pub notify: Vec<super::notify_schema::RouteConfig>,
    /// Read-back after each backup: `full` (default), `quick` or `off`.
    #[serde(default)]
    pub verify: VerifyMode,
    /// Restore drills: scratch restores checked by integrity checks and assertions.
    #[serde(default)]
    pub drill: Option<Spanned<DrillConfig>>,
    /// Live data validation rules (`cairn validate`, optionally before each backup).
    #[serde(default)]
    pub validate: Option<Spanned<ValidateConfig>>,
    /// Manifest signatures (replaces the top-level `signing`).
    #[serde(default)]
    pub signing: Option<Spanned<SigningConfig>>,
    /// When the daemon runs `cairn repair` for this job.
    #[serde(default)]
    pub repair: Option<Spanned<RepairConfig>>,
}

/// `repair = { cron = "…" }` of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairConfig {
    #[serde(deserialize_with = "interp::string")]
    pub cron: String,
}

/// `signing = { … }`: minisign signatures of manifests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The unencrypted minisign secret key that signs each new manifest.
    #[serde(default, deserialize_with = "interp::opt_path")]
    pub key_file: Option<PathBuf>,
    /// The `RW…` public key that artifacts must be signed with to be trusted.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub public_key: Option<String>,
}

/// What the backup reads back after committing an artifact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Every copy: stored SHA-256, decrypt, decompress, plaintext SHA-256.
    #[default]
    Full,
    /// Every copy: size and stored SHA-256 only.
    Quick,
    Off,
}

/// `drill = { … }` of a job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// When the daemon drills the newest artifact.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub cron: Option<String>,
    /// SQL expressions run on the restored database; each must return true.
    #[serde(default, deserialize_with = "interp::strings")]
    pub assert: Vec<String>,
    /// Tables the restored database must hold.
    #[serde(default, deserialize_with = "interp::strings")]
    pub expect_tables: Vec<String>,
    /// Allowed relative difference of a table's row count from the manifest (default 0.1).
    pub row_count_tolerance: Option<f64>,
    /// Another server for the scratch database (default: the source's server).
    #[serde(default)]
    pub url: Option<Secret>,
    /// A job whose last good drill is older than this is reported as stale.
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub max_age: Option<std::time::Duration>,
    /// Folder for scratch files and folders (default: the system temp dir).
    #[serde(default, deserialize_with = "interp::opt_path")]
    pub scratch_dir: Option<PathBuf>,
}

/// `validate = { … }` of a job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Validate before each backup; a failing blocking rule refuses the backup.
    #[serde(default)]
    pub before_backup: bool,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A query that must return no rows.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(deserialize_with = "interp::string")]
    pub name: String,
    #[serde(deserialize_with = "interp::string")]
    pub sql: String,
    /// A backup (with `before_backup`) is refused while this rule fails.
    #[serde(default)]
    pub blocking: bool,
}

/// `[state]`: where the history, pauses and schedule marks are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// A SQLite file (default: `cairn-state.db` beside the config file).
    #[serde(default, deserialize_with = "interp::opt_path")]
    pub path: Option<PathBuf>,
    /// A PostgreSQL store instead (`postgres://user@host:5432/db`), shared by replicas.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub url: Option<String>,
    /// The variable that holds the PostgreSQL password (else the URL, PGPASSWORD, .pgpass).
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub password_env: Option<String>,
    /// libpq's sslmode: disable, prefer (default), require, verify-ca, verify-full.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub sslmode: Option<String>,
    /// The CA certificate (PEM) for verify-ca / verify-full.
    #[serde(default, deserialize_with = "interp::opt_path")]
    pub sslrootcert: Option<PathBuf>,
    /// The daemon forgets finished runs older than this (default: 90d; "0" keeps all).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub keep_history: Option<std::time::Duration>,
}

/// `[state] url` and its connection options, validated.
#[derive(Debug, Clone)]
pub struct StatePostgres {
    pub url: String,
    pub password_env: Option<String>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<PathBuf>,
}

/// `[daemon]`: how `cairn daemon` runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Default time zone of schedules (default: UTC).
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub timezone: Option<String>,
    /// Runs at once; further fires wait in a queue (default: 2).
    pub max_concurrent_runs: Option<u32>,
    /// A web session ends after this long without a request (default: 30m).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub session_idle: Option<std::time::Duration>,
    /// A web session ends this long after login, however active (default: 12h).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub session_lifetime: Option<std::time::Duration>,
    /// How long running jobs may finish after SIGTERM before they are aborted (default: 60s).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub shutdown_grace: Option<std::time::Duration>,
    /// Address of the HTTP server (`/metrics`, `/healthz`), e.g. `127.0.0.1:9464`.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub listen: Option<String>,
    /// Several replicas: how long a claimed run's lease lasts without renewal (default: 30s).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub lease: Option<std::time::Duration>,
    /// Whether a run abandoned by a dead replica runs again: `once` (default) or `never`.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub rerun_abandoned: Option<String>,
    /// TLS certificate chain (PEM) the listener serves; with `tls_key`.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub tls_cert: Option<String>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub tls_key: Option<String>,
    /// The address of the reverse proxy in front of `listen` (it ends TLS; its
    /// `X-Forwarded-For` names the client), e.g. `127.0.0.1`.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub trusted_proxy: Option<String>,
    /// A file holding the bearer token `/metrics` then requires.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub metrics_token_file: Option<String>,
    /// The folder under which the web UI and API may restore artifacts
    /// (besides each job's own source); without it, only the own source.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub restore_root: Option<String>,
}

/// One schedule of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// 5 fields, 6 with seconds first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[serde(deserialize_with = "interp::string")]
    pub cron: String,
    /// Recorded in the artifact's manifest; retention can count by it.
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub tag: Option<String>,
    #[serde(default, deserialize_with = "interp::opt_string")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once at start if any fire was missed (like systemd's Persistent=true).
    #[default]
    Once,
    Skip,
}

/// restic-style keep rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub keep_within: Option<std::time::Duration>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Per tag: keep the newest N carrying it, e.g. `{ weekly = 4 }`.
    #[serde(default)]
    pub keep_tags: std::collections::BTreeMap<String, u32>,
}

impl RetentionConfig {
    pub fn policy(&self) -> crate::retention::Policy {
        crate::retention::Policy {
            keep_last: self.keep_last,
            keep_within: self.keep_within,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_tags: self.keep_tags.clone(),
        }
    }
}

/// Shell commands (`sh -c`) run around each backup. They see CAIRN_JOB,
/// CAIRN_HOOK, CAIRN_STATUS (`running`, then `success` or `failure`),
/// CAIRN_ARTIFACT_ID and CAIRN_ERROR in their environment, besides PATH, HOME,
/// USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR, the variables their
/// `${VAR}`s name (expanded by the shell) and those listed in `env`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run before the backup; a failure fails the run.
    #[serde(default, deserialize_with = "interp::shell_strings")]
    pub before: Vec<String>,
    /// Always run after the backup, successful or not.
    #[serde(default, deserialize_with = "interp::shell_strings")]
    pub after: Vec<String>,
    /// How long one hook may run before its process group is killed (default 5m).
    #[serde(default, deserialize_with = "interp::opt_duration")]
    pub timeout: Option<std::time::Duration>,
    /// Further variables of cairn's environment the hooks see.
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A SQLite database file, snapshotted consistently while the application runs.
    Sqlite {
        #[serde(deserialize_with = "interp::path")]
        path: PathBuf,
    },
    /// A folder, stored as a tar stream.
    Files {
        #[serde(deserialize_with = "interp::path")]
        path: PathBuf,
        #[serde(default, deserialize_with = "interp::strings")]
        exclude: Vec<String>,
    },
    /// One PostgreSQL database (`pg_dump`) or a whole server (`pg_dumpall`).
    Postgres {
        #[serde(deserialize_with = "interp::string")]
        url: String,
        /// Environment variable holding the password (else the URL's, else ~/.pgpass).
        password_env: Option<String>,
        #[serde(default)]
        format: PgFormat,
        #[serde(default)]
        scope: PgScope,
        /// Folder holding pg_dump/pg_dumpall of the right version.
        #[serde(default, deserialize_with = "interp::opt_path")]
        tool_dir: Option<PathBuf>,
    },
    /// One MySQL/MariaDB database.
    Mysql {
        #[serde(deserialize_with = "interp::string")]
        url: String,
        password_env: Option<String>,
    },
    /// Any program whose stdout is the backup.
    Command {
        #[serde(deserialize_with = "interp::strings")]
        backup: Vec<String>,
        /// The program that reads a backup back on stdin.
        #[serde(default, deserialize_with = "interp::opt_strings")]
        restore: Option<Vec<String>>,
        /// The data object's innermost extension.
        #[serde(default = "default_command_extension")]
        extension: String,
        /// Variables of cairn's environment the programs see besides PATH,
        /// HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ and TMPDIR.
        #[serde(default)]
        env: Vec<String>,
    },
}

fn default_command_extension() -> String {
    "out".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PgFormat {
    /// `pg_dump -Fc`: restored with pg_restore (selective, --clean).
    #[default]
    Custom,
    /// SQL text: restored with psql.
    Plain,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PgScope {
    #[default]
    Database,
    /// Every database plus roles and tablespaces (`pg_dumpall`).
    Server,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    #[default]
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum EncryptionConfig {
    /// age with X25519 recipients: the backing-up machine needs no secret.
    #[serde(rename = "age")]
    Age {
        #[serde(default, deserialize_with = "interp::strings")]
        recipients: Vec<String>,
        /// A file of recipients, one per line (like `age -R`).
        #[serde(default, deserialize_with = "interp::opt_path")]
        recipients_file: Option<PathBuf>,
        /// Only needed to decrypt: restore, full verify, cat.
        #[serde(default, deserialize_with = "interp::opt_path")]
        identity_file: Option<PathBuf>,
    },
    /// age with a passphrase (scrypt).
    #[serde(rename = "age-passphrase")]
    AgePassphrase(PassphraseSource),
    /// OpenPGP symmetric encryption that stock `gpg --decrypt` reads.
    #[serde(rename = "openpgp")]
    OpenPgp(PassphraseSource),
    /// No encryption, chosen explicitly.
    #[serde(rename = "none")]
    None {},
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassphraseSource {
    /// Name of the environment variable that holds the passphrase.
    pub passphrase_env: Option<String>,
    /// A file whose first line is the passphrase.
    #[serde(default, deserialize_with = "interp::opt_path")]
    pub passphrase_file: Option<PathBuf>,
}
