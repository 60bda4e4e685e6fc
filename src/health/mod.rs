//! Health checks: each kind in its own file; every check reports ok or
//! failing with a reason and its duration. `cairn health` records each as a
//! `check` run and feeds the outcome to the alert state machine.

pub mod age;
pub mod destination;
pub mod disk;
pub mod http;
pub mod sql;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Check, CheckConfig, Config};
use crate::notify::{self, Event, EventKind};
use crate::state::{RunEnd, StateStore};

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub check: String,
    pub kind: &'static str,
    pub ok: bool,
    /// Why it is failing, or what was seen when ok.
    pub reason: String,
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Kind-specific facts: the rows of a `sql` check, a status code, free bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl crate::engine::runs::Summary for CheckOutcome {
    fn run_end(&self) -> RunEnd {
        RunEnd {
            success: self.ok,
            bytes: None,
            artifact_id: None,
            error: (!self.ok).then(|| self.reason.clone()),
            details: Some(serde_json::json!({
                "kind": self.kind,
                "reason": self.reason,
                "duration_seconds": self.duration_seconds,
                "details": self.details,
            })),
        }
    }
}

/// What a check kind returns: ok or not, the reason, optional details.
pub struct Finding {
    pub ok: bool,
    pub reason: String,
    pub details: Option<serde_json::Value>,
}

impl Finding {
    pub fn ok(reason: impl Into<String>) -> Finding {
        Finding {
            ok: true,
            reason: reason.into(),
            details: None,
        }
    }

    pub fn failing(reason: impl Into<String>) -> Finding {
        Finding {
            ok: false,
            reason: reason.into(),
            details: None,
        }
    }

    pub fn with(mut self, details: serde_json::Value) -> Finding {
        self.details = Some(details);
        self
    }
}

/// Runs one check within its timeout (a check that hangs is failing; its
/// thread is left behind and ends with the process).
pub fn run(config: &Config, check: &Check, store: Option<&dyn StateStore>) -> CheckOutcome {
    let start = Instant::now();
    let finding = match &check.config {
        CheckConfig::BackupAge { job, .. } => age::backup_age(config, check, job, store),
        CheckConfig::DrillAge { job, .. } => age::drill_age(check, job, store),
        _ => {
            let (tx, rx) = std::sync::mpsc::channel();
            let config = config.clone();
            let owned = check.clone();
            std::thread::spawn(move || {
                let finding = match &owned.config {
                    CheckConfig::Http { .. } => http::run(&owned),
                    CheckConfig::Disk { .. } => disk::run(&owned),
                    CheckConfig::Destination { destination, .. } => {
                        destination::run(&config, destination)
                    }
                    CheckConfig::Sql { job, query, .. } => sql::run(&config, job, query),
                    CheckConfig::BackupAge { .. } | CheckConfig::DrillAge { .. } => {
                        Finding::failing("not a threaded check")
                    }
                };
                let _ = tx.send(finding);
            });
            rx.recv_timeout(check.timeout + Duration::from_millis(250))
                .unwrap_or_else(|_| {
                    Finding::failing(format!(
                        "no answer within {}s (timeout)",
                        check.timeout.as_secs_f64()
                    ))
                })
        }
    };
    CheckOutcome {
        check: check.name.clone(),
        kind: check.kind(),
        ok: finding.ok,
        reason: finding.reason,
        duration_seconds: start.elapsed().as_secs_f64(),
        job: check.job().map(str::to_string),
        details: finding.details,
    }
}

/// The event a check outcome yields: failing (`artifact_stale` for
/// `backup_age`), or recovered when ok (sent only if an alert went out).
pub fn event(check: &Check, outcome: &CheckOutcome) -> Event {
    let mut event = if outcome.ok {
        Event::new(
            EventKind::CheckRecovered,
            format!("check `{}` passes again: {}", check.name, outcome.reason),
        )
    } else if matches!(check.config, CheckConfig::BackupAge { .. }) {
        let job = check.job().unwrap_or("?");
        Event::new(EventKind::ArtifactStale, outcome.reason.clone())
            .error(Some(outcome.reason.clone()))
            .next_step(format!(
                "check that the daemon runs (`cairn status`) and that backups of `{job}` succeed (`cairn history {job}`); run `cairn backup {job}` now"
            ))
    } else {
        Event::new(
            EventKind::CheckFailing,
            format!("check `{}` ({}) is failing", check.name, check.kind()),
        )
        .error(Some(outcome.reason.clone()))
        .next_step(format!(
            "run `cairn health {}` to see the current state; `cairn history {}` shows earlier results",
            check.name, check.name
        ))
    };
    event = event.check(&check.name);
    event.job = outcome.job.clone();
    event.duration_seconds = Some(outcome.duration_seconds);
    event.details = outcome.details.clone();
    event
}

/// Sends the notifications for a check outcome (de-duplicated).
pub fn notify(
    config: &Config,
    store: Option<&dyn StateStore>,
    check: &Check,
    outcome: &CheckOutcome,
) -> Vec<notify::DeliveryReport> {
    notify::emit(config, store, &event(check, outcome))
}

/// `1h 5m`-style text of a duration in seconds.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h, m) {
        (0, 0, m) => format!("{m}m{}s", s % 60),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}
