//! Job hooks: shell commands run before and after a backup.
//!
//! A hook runs as `sh -c` in a process group of its own, with a minimal
//! environment (`source::external::is_base_env`), the CAIRN_* variables, the
//! variables its `${VAR}`s name (the shell expands them: a value is never
//! pasted into the command) and the job's `hooks.env`. Its stdout and stderr
//! are logged line by line as they come, redacted and bounded; after
//! `hooks.timeout` its whole process group is killed.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::{Job, for_shell};
use crate::redact::redact;
use crate::source::external::is_base_env;
use crate::{Error, Result};

/// How long a hook may run when the job does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Bytes of one output line that are logged; the rest is cut.
const MAX_LINE: usize = 4096;
/// Lines per stream that are logged; later ones are read and dropped.
const MAX_LOGGED_LINES: usize = 1000;
/// Lines of stderr quoted in the error of a failed hook.
const ERROR_LINES: usize = 6;
/// After SIGTERM, how long the group has before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the hook exits, how long its output may still drain (a background
/// child may hold the pipes open; its lines are then logged as they come).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What the `after` hooks learn about the run.
pub struct Outcome<'a> {
    pub success: bool,
    pub artifact_id: Option<&'a str>,
    pub error: Option<String>,
}

fn command(job: &Job, phase: &str, text: &str, outcome: Option<&Outcome>) -> Command {
    let (script, names) = for_shell(text);
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).env_clear();
    crate::descriptor_limit::give_back_to(&mut cmd);
    for (key, value) in std::env::vars_os() {
        let wanted = key.to_str().is_some_and(|k| {
            is_base_env(k) || names.iter().any(|n| n == k) || job.hooks.env.iter().any(|n| n == k)
        });
        if wanted {
            cmd.env(key, value);
        }
    }
    cmd.env("CAIRN_JOB", &job.name).env("CAIRN_HOOK", phase);
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
            .env(
                "CAIRN_ERROR",
                redact(o.error.as_deref().unwrap_or_default()),
            );
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// Logs each line of `stream` as it comes; returns the last lines.
fn stream_lines(
    stream: Option<impl Read + Send + 'static>,
    job: &str,
    phase: &'static str,
    name: &'static str,
) -> mpsc::Receiver<Vec<String>> {
    let (tx, rx) = mpsc::channel();
    let job = job.to_string();
    std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        if let Some(stream) = stream {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            let mut logged = 0;
            loop {
                line.clear();
                // Bounded memory: a longer line is logged in pieces.
                match reader
                    .by_ref()
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = redact(String::from_utf8_lossy(&line).trim_end());
                if text.trim().is_empty() {
                    continue;
                }
                logged += 1;
                if logged <= MAX_LOGGED_LINES {
                    tracing::info!(job = %job, hook = phase, stream = name, "{text}");
                } else if logged == MAX_LOGGED_LINES + 1 {
                    tracing::warn!(job = %job, hook = phase, stream = name, "more output than {MAX_LOGGED_LINES} lines: the rest is not logged");
                }
                tail.push_back(text);
                if tail.len() > ERROR_LINES {
                    tail.pop_front();
                }
            }
        }
        let _ = tx.send(tail.into_iter().collect());
    });
    rx
}

/// Waits for the hook; `None` when it ran out of time (its group is killed).
fn wait(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        let exited = child
            .try_wait()
            .map_err(|e| Error::Run(format!("cannot wait for a hook: {e}")))?;
        if let Some(status) = exited {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill_group(child);
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to the hook's process group, SIGKILL after `KILL_GRACE`.
fn kill_group(child: &mut Child) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    // SAFETY: kill(2) with a negative pid signals the hook's own group only.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; whatever of the group is left dies now.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

fn run(job: &Job, phase: &'static str, text: &str, outcome: Option<&Outcome>) -> Result<()> {
    // The command text may hold secrets; name the hook by its first word.
    let shown = text.split_whitespace().next().unwrap_or_default();
    let mut child = command(job, phase, text, outcome)
        .spawn()
        .map_err(|e| Error::Run(format!("job `{}`: cannot run {phase} hook: {e}", job.name)))?;
    let stdout = stream_lines(child.stdout.take(), &job.name, phase, "stdout");
    let stderr = stream_lines(child.stderr.take(), &job.name, phase, "stderr");
    let timeout = job.hooks.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let status = wait(&mut child, timeout)?;
    let drained = Instant::now() + DRAIN_GRACE;
    let _ = stdout.recv_timeout(drained.saturating_duration_since(Instant::now()));
    let stderr = stderr
        .recv_timeout(drained.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    let Some(status) = status else {
        return Err(Error::Run(format!(
            "job `{}`: {phase} hook `{shown}` timed out after {}s and was killed with its child processes (raise hooks.timeout if it needs longer)",
            job.name,
            timeout.as_secs()
        )));
    };
    if status.success() {
        return Ok(());
    }
    let detail = stderr.join(" | ");
    Err(Error::Run(format!(
        "job `{}`: {phase} hook `{shown}` failed ({status}){}",
        job.name,
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
