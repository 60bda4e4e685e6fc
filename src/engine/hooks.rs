//! Job hooks: shell commands run before and after a backup.

use std::process::Command;

use crate::config::Job;
use crate::source::external::redact;
use crate::{Error, Result};

/// What the `after` hooks learn about the run.
pub struct Outcome<'a> {
    pub success: bool,
    pub artifact_id: Option<&'a str>,
    pub error: Option<String>,
}

fn run(job: &Job, phase: &str, command: &str, outcome: Option<&Outcome>) -> Result<()> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("CAIRN_JOB", &job.name)
        .env("CAIRN_HOOK", phase);
    match outcome {
        None => {
            cmd.env("CAIRN_STATUS", "running");
        }
        Some(o) => {
            cmd.env(
                "CAIRN_STATUS",
                if o.success { "success" } else { "failure" },
            )
            .env("CAIRN_ARTIFACT_ID", o.artifact_id.unwrap_or_default())
            .env("CAIRN_ERROR", o.error.as_deref().unwrap_or_default());
        }
    }
    let output = cmd
        .output()
        .map_err(|e| Error::Run(format!("job `{}`: cannot run {phase} hook: {e}", job.name)))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(job = %job.name, hook = phase, "{line}");
    }
    if output.status.success() {
        return Ok(());
    }
    // The command text may hold interpolated secrets; name the hook by position instead.
    let detail = redact(stderr.trim(), &[]);
    Err(Error::Run(format!(
        "job `{}`: {phase} hook `{}` failed ({}){}",
        job.name,
        command.split_whitespace().next().unwrap_or_default(),
        output.status,
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        }
    )))
}

/// Runs every `before` hook in order; the first failure stops the run.
pub fn before(job: &Job) -> Result<()> {
    job.hooks
        .before
        .iter()
        .try_for_each(|c| run(job, "before", c, None))
}

/// Runs every `after` hook, whatever happens; returns their failures.
pub fn after(job: &Job, outcome: &Outcome) -> Vec<String> {
    job.hooks
        .after
        .iter()
        .filter_map(|c| {
            run(job, "after", c, Some(outcome))
                .err()
                .map(|e| e.to_string())
        })
        .collect()
}
