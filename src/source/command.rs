//! The generic command source: any program whose stdout is the backup (mongodump
//! --archive, redis-cli --rdb -, an application's export), and optionally the
//! program that reads it back on stdin.

use std::io::Write;

use serde_json::json;

use super::Dump;
use super::external::Program;
use crate::{Error, Result};

pub struct CommandSource {
    job: String,
    backup: Vec<String>,
    extension: String,
    /// Variables of cairn's environment the program sees (`source.env`).
    env: Vec<String>,
}

impl CommandSource {
    pub fn new(job: &str, backup: &[String], extension: &str, env: &[String]) -> Self {
        CommandSource {
            job: job.to_string(),
            backup: backup.to_vec(),
            extension: extension.to_string(),
            env: env.to_vec(),
        }
    }
}

impl Dump for CommandSource {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn extension(&self) -> &str {
        &self.extension
    }

    fn describe(&self) -> String {
        format!(
            "command `{}`",
            self.backup.first().map(String::as_str).unwrap_or_default()
        )
    }

    fn size_hint(&self) -> Option<u64> {
        None
    }

    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value> {
        let program = Program::new(self.backup.iter()).inherit(&self.env);
        let stderr = program
            .stream_to(out)
            .map_err(|e| Error::source(&self.job, e))?;
        Ok(json!({
            // Only the program name: arguments may carry secrets from ${VAR}s.
            "program": program.name(),
            "stderr_bytes": stderr.len(),
        }))
    }
}

/// A job's command source as a [`SourceKind`](super::kind::SourceKind).
pub struct CommandKind<'a> {
    pub job: &'a crate::config::Job,
    pub backup: &'a [String],
    pub restore: Option<&'a [String]>,
    pub extension: &'a str,
    pub env: &'a [String],
}

impl super::kind::SourceKind for CommandKind<'_> {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn dumper(&self) -> Result<Box<dyn Dump>> {
        Ok(Box::new(CommandSource::new(
            &self.job.name,
            self.backup,
            self.extension,
            self.env,
        )))
    }

    fn probe(&self) -> Result<String> {
        let missing: Vec<&str> = std::iter::once(self.backup)
            .chain(self.restore)
            .filter_map(|argv| argv.first())
            .map(String::as_str)
            .filter(|program| {
                if program.contains('/') {
                    !std::path::Path::new(program).is_file()
                } else {
                    super::external::find_tool(&[program]).is_none()
                }
            })
            .collect();
        if missing.is_empty() {
            Ok("the backup (and restore) programs are installed".to_string())
        } else {
            Err(Error::Run(format!("not found: {}", missing.join(", "))))
        }
    }

    fn live_checks(&self) -> Result<super::kind::LiveChecks> {
        Ok(super::kind::LiveChecks {
            checks: vec![super::kind::Check::new(
                "source",
                true,
                "command sources have nothing cairn can validate",
            )],
            rules_can_run: false,
        })
    }

    fn no_database(&self) -> Error {
        super::kind::no_database(self.job)
    }
}
