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
    pub destinations: IndexMap<String, DestinationConfig>,
    #[serde(default)]
    pub jobs: IndexMap<String, JobConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DestinationConfig {
    /// A folder on a local or mounted file system.
    Fs {
        #[serde(deserialize_with = "interp::path")]
        path: PathBuf,
    },
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
}

/// Shell commands (`sh -c`) run around each backup. They see CAIRN_JOB,
/// CAIRN_STATUS (`running`, then `success` or `failure`), CAIRN_ARTIFACT_ID and
/// CAIRN_ERROR in their environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run before the backup; a failure fails the run.
    #[serde(default, deserialize_with = "interp::strings")]
    pub before: Vec<String>,
    /// Always run after the backup, successful or not.
    #[serde(default, deserialize_with = "interp::strings")]
    pub after: Vec<String>,
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
