//! Sources produce the plaintext byte stream of a backup, and know how to turn
//! that stream back into a restore target of their kind. They know nothing of
//! compression, encryption or destinations.

mod archive_guard;
pub mod command;
pub mod external;
pub mod files;
pub mod kind;
pub mod mysql;
pub mod postgres;
pub mod read_only;
pub mod server;
pub mod sqlite;

use std::io::{Read, Write};
use std::path::Path;

use crate::Result;
use crate::config::{Job, SourceConfig};

/// The backup side of a source.
pub trait Dump: Send + Sync {
    /// The manifest's `source.kind`.
    fn kind(&self) -> &'static str;
    /// The innermost file extension of the data object (`sqlite`, `tar`, …).
    fn extension(&self) -> &str;
    /// What is being read, for messages.
    fn describe(&self) -> String;
    /// Expected plaintext size, for progress bars.
    fn size_hint(&self) -> Option<u64>;
    /// Writes the plaintext stream to `out` and returns facts for the manifest.
    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value>;
}

pub fn for_job(job: &Job) -> Result<Box<dyn Dump>> {
    kind::of(job).dumper()
}

/// The value of a job's `password_env`, which must be set when named.
pub fn password_from_env(job: &str, var: Option<&str>) -> Result<Option<String>> {
    match var {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .inspect(|password| crate::redact::register(password))
            .map(Some)
            .map_err(|_| {
            crate::Error::Usage(format!(
                "job `{job}`: the password variable `{var}` (source.password_env) is not set in the environment"
            ))
        }),
    }
}

/// Whether artifacts of this source kind restore into a database server (a URL target).
pub fn restores_to_server(kind: &str) -> bool {
    matches!(kind, "postgres" | "mysql")
}

/// The server-side restorer for a manifest's source (`kind` and `facts` as the
/// manifest records them), aimed at `target_url`.
/// The password comes from the URL, else from the job's `password_env`.
pub fn server_restore_for(
    job: &Job,
    kind: &str,
    facts: &serde_json::Value,
    target_url: &str,
) -> Result<Box<dyn server::ServerRestore>> {
    let password_env = match &job.source {
        SourceConfig::Postgres { password_env, .. } | SourceConfig::Mysql { password_env, .. } => {
            password_env.as_deref()
        }
        _ => None,
    };
    let password = password_from_env(&job.name, password_env)?;
    match kind {
        "postgres" => {
            let format = serde_json::from_value(facts["format"].clone()).unwrap_or_default();
            let scope = serde_json::from_value(facts["scope"].clone()).unwrap_or_default();
            Ok(Box::new(postgres::PgRestore {
                target: postgres::PgConn::parse(target_url, password)?,
                format,
                scope,
            }))
        }
        "mysql" => Ok(Box::new(
            mysql::MyRestore::new(mysql::MyConn::parse(target_url, password)?)
                .with_defaults_of(facts),
        )),
        other => Err(crate::Error::Usage(format!(
            "artifacts of source kind `{other}` do not restore into a database server"
        ))),
    }
}

/// What a restore writes: a single file or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetShape {
    File,
    Folder,
}

/// How thoroughly a restored copy is checked, beyond the hashes that every
/// restore checks, before it replaces the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckLevel {
    /// What proves the copy usable quickly (SQLite: `PRAGMA quick_check`). The
    /// plaintext SHA-256 already proves it is the snapshot that was backed up.
    #[default]
    Quick,
    /// Everything a drill checks (SQLite: `integrity_check`, `foreign_key_check`).
    Full,
}

/// The restore side, chosen by the manifest's `source.kind`.
pub trait Restorer {
    fn shape(&self) -> TargetShape;
    /// Writes the plaintext `stream` into `temp` (a new file or an empty folder).
    fn write(&self, stream: &mut dyn Read, temp: &Path) -> Result<()>;
    /// Checks what was written before it replaces the target; says what it
    /// checked (a line of the restore's report), if anything.
    fn check(&self, temp: &Path, level: CheckLevel) -> Result<Option<String>>;
    /// Files that belong with the target and must move with it (e.g. SQLite's -wal).
    fn companions(&self, target: &Path) -> Vec<std::path::PathBuf> {
        let _ = target;
        Vec::new()
    }
}

pub fn restorer_for(kind: &str) -> Result<Box<dyn Restorer>> {
    match kind {
        "sqlite" => Ok(Box::new(sqlite::SqliteRestorer)),
        "files" => Ok(Box::new(files::FilesRestorer)),
        other => Err(crate::Error::Usage(format!(
            "this version of cairn cannot restore artifacts of source kind `{other}`"
        ))),
    }
}
