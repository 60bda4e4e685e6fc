//! Notifications: the event model, routing to channels, de-duplication and
//! delivery.
//!
//! Whichever process finishes a run sends its events (a backup started by the
//! daemon runs in a child process, a cron job in its own): the alert states
//! therefore live in the state store, never in memory. Delivery never fails
//! the run that emits it: every channel tries a bounded number of times within
//! a time cap (in parallel with the other channels) and failures are logged
//! with the channel's name only.

pub mod alert;
pub mod email;
pub mod ping;
pub mod webhook;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

pub use crate::config::EventKind;
use crate::config::{Channel, ChannelConfig, Config, Delivery, Route};
use crate::state::StateStore;

/// One event, as every channel renders it. The JSON form (`cairn.event/1`) is
/// the documented webhook schema.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: EventKind,
    /// The job it is about (also for checks that watch a job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub time: Timestamp,
    pub host: String,
    /// One sentence: what happened.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// A success that ends a failure that was alerted.
    pub recovery: bool,
    /// How long the run or check took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Kind-specific facts (a check's rows, a backup's size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// The end of the run's log (ping `/fail` bodies); not in webhooks.
    #[serde(skip)]
    pub log_tail: Option<String>,
}

impl Event {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            kind,
            job: None,
            check: None,
            time: Timestamp::now(),
            host: crate::state::host(),
            message: message.into(),
            error: None,
            artifact_id: None,
            next_step: None,
            recovery: false,
            duration_seconds: None,
            details: None,
            log_tail: None,
        }
    }

    pub fn job(mut self, job: &str) -> Event {
        self.job = Some(job.to_string());
        self
    }

    pub fn check(mut self, check: &str) -> Event {
        self.check = Some(check.to_string());
        self
    }

    pub fn error(mut self, error: Option<String>) -> Event {
        self.error = error;
        self
    }

    pub fn next_step(mut self, step: impl Into<String>) -> Event {
        self.next_step = Some(step.into());
        self
    }

    /// The condition whose alerts are de-duplicated, or `None` when every
    /// event is sent (verification failures have no recovery event).
    pub fn condition(&self) -> Option<String> {
        let job = self.job.as_deref().unwrap_or("");
        match self.kind {
            EventKind::BackupSucceeded | EventKind::BackupFailed => Some(format!("backup:{job}")),
            EventKind::DrillSucceeded | EventKind::DrillFailed => Some(format!("drill:{job}")),
            EventKind::RepairSucceeded | EventKind::RepairFailed => Some(format!("repair:{job}")),
            EventKind::CheckFailing | EventKind::CheckRecovered | EventKind::ArtifactStale => {
                Some(format!("check:{}", self.check.as_deref().unwrap_or(job)))
            }
            // The store that holds alert states is what is down.
            EventKind::VerifyFailed
            | EventKind::Test
            | EventKind::StateStoreDown
            | EventKind::StateStoreRecovered => None,
        }
    }

    /// The subject line: e.g. "backup of `app` FAILED on host".
    pub fn title(&self) -> String {
        let job = self.job.as_deref().unwrap_or("?");
        let check = self.check.as_deref().unwrap_or("?");
        let what = match self.kind {
            EventKind::BackupSucceeded if self.recovery => format!("backup of `{job}` recovered"),
            EventKind::BackupSucceeded => format!("backup of `{job}` succeeded"),
            EventKind::BackupFailed => format!("backup of `{job}` FAILED"),
            EventKind::VerifyFailed => format!("verification of `{job}` FAILED"),
            EventKind::DrillSucceeded if self.recovery => {
                format!("restore drill of `{job}` recovered")
            }
            EventKind::DrillSucceeded => format!("restore drill of `{job}` succeeded"),
            EventKind::DrillFailed => format!("restore drill of `{job}` FAILED"),
            EventKind::CheckFailing => format!("check `{check}` FAILING"),
            EventKind::CheckRecovered => format!("check `{check}` recovered"),
            EventKind::ArtifactStale => format!("backups of `{job}` are STALE"),
            EventKind::Test => "test notification".to_string(),
            EventKind::RepairSucceeded if self.recovery => format!("repair of `{job}` recovered"),
            EventKind::RepairSucceeded => format!("repair of `{job}` succeeded"),
            EventKind::RepairFailed => format!("repair of `{job}` FAILED"),
            EventKind::StateStoreDown => "the state store is UNREACHABLE".to_string(),
            EventKind::StateStoreRecovered => "the state store is reachable again".to_string(),
        };
        format!("cairn: {what} on {}", self.host)
    }

    /// The plain-text body shared by email, chat and ntfy messages.
    pub fn text(&self) -> String {
        let mut lines = vec![format!("What happened: {}", self.message)];
        if let Some(job) = &self.job {
            lines.push(format!("Job: {job}"));
        }
        if let Some(check) = &self.check {
            lines.push(format!("Check: {check}"));
        }
        lines.push(format!("When: {} (host {})", self.time, self.host));
        if let Some(d) = self.duration_seconds {
            lines.push(format!("Duration: {d:.1}s"));
        }
        if let Some(error) = &self.error {
            lines.push(format!("Error: {error}"));
        }
        if let Some(id) = &self.artifact_id {
            lines.push(format!("Artifact: {id}"));
        }
        if let Some(rows) = self.details.as_ref().and_then(|d| d.get("rows")) {
            lines.push(format!("Rows: {rows}"));
        }
        if let Some(step) = &self.next_step {
            lines.push(format!("Next step: {step}"));
        }
        lines.join("\n")
    }
}

/// How one delivery went.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    pub channel: String,
    pub event: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<alert::Decision>,
    pub delivered: bool,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An error of one attempt: whether trying again can help.
pub struct AttemptError {
    pub message: String,
    pub retry: bool,
}

impl AttemptError {
    pub fn retry(message: impl Into<String>) -> Self {
        AttemptError {
            message: message.into(),
            retry: true,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        AttemptError {
            message: message.into(),
            retry: false,
        }
    }
}

/// Tries `attempt` up to `1 + retries` times with exponential backoff (0.5 s,
/// 1 s, 2 s, …), each with at most `timeout`, all within `max_time`. Returns
/// the number of attempts made and the last error.
pub fn with_retries(
    delivery: &Delivery,
    mut attempt: impl FnMut(Duration) -> Result<(), AttemptError>,
) -> (u32, Result<(), String>) {
    let deadline = Instant::now() + delivery.max_time;
    let mut backoff = Duration::from_millis(500);
    let mut attempts = 0;
    let mut last = String::from("no attempt was made within max_time");
    while attempts <= delivery.retries {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        attempts += 1;
        match attempt(delivery.timeout.min(remaining)) {
            Ok(()) => return (attempts, Ok(())),
            Err(e) => {
                last = e.message;
                if !e.retry {
                    break;
                }
            }
        }
        if attempts <= delivery.retries {
            let remaining = deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(backoff.min(remaining));
            backoff *= 2;
        }
    }
    (
        attempts,
        Err(format!(
            "{last} ({attempts} attempt{})",
            if attempts == 1 { "" } else { "s" }
        )),
    )
}

/// Sends `event` to one channel now, with its retries; no routing, no
/// de-duplication. Returns attempts and the outcome.
pub fn send(channel: &Channel, event: &Event) -> (u32, Result<(), String>) {
    let delivery = channel.config.delivery();
    match &channel.config {
        ChannelConfig::Webhook {
            url,
            format,
            headers,
            ..
        } => webhook::send(url, *format, headers, event, &delivery),
        ChannelConfig::Email { .. } => email::send(&channel.config, event, &delivery),
        ChannelConfig::Ping { url, .. } => {
            ping::send(url, ping::Signal::of(event), event, &delivery)
        }
    }
}

/// What keeps a channel from working on this host, without sending anything
/// (for `cairn check`): unset password variables, unreadable CA files.
pub fn channel_problems(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for channel in config.notify.values() {
        if let ChannelConfig::Email {
            password_env,
            ca_file,
            ..
        } = &channel.config
        {
            let subject = format!("notify `{}`", channel.name);
            if let Some(var) = password_env
                && std::env::var_os(var).is_none()
            {
                problems.push((
                    subject.clone(),
                    format!("the password variable `{var}` (password_env) is not set"),
                ));
            }
            if let Some(file) = ca_file
                && let Err(e) = std::fs::read(file)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| {
                        lettre::transport::smtp::client::Certificate::from_pem(&pem)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
            {
                problems.push((subject, format!("ca_file {}: {e}", file.display())));
            }
        }
    }
    problems
}

/// Whether a route sends an event of this kind (recoveries count as such).
fn route_wants(route: &Route, event: &Event) -> bool {
    match &route.events {
        Some(kinds) => kinds.contains(&event.kind),
        None => event.kind.is_failure() || event.recovery || event.kind == EventKind::Test,
    }
}

/// The routes of the event's check, else of its job; for the state store's
/// events every job's and check's routes, each channel once.
fn routes_for<'a>(config: &'a Config, event: &Event) -> Vec<&'a Route> {
    if event.kind.is_about_the_state_store() {
        let mut seen = std::collections::HashSet::new();
        return config
            .jobs
            .values()
            .flat_map(|j| &j.notify)
            .chain(config.checks.values().flat_map(|c| &c.notify))
            .filter(|r| route_wants(r, event) && seen.insert(r.channel.as_str()))
            .collect();
    }
    if let Some(check) = event.check.as_deref().and_then(|c| config.checks.get(c)) {
        return check.notify.iter().collect();
    }
    event
        .job
        .as_deref()
        .and_then(|j| config.jobs.get(j))
        .map_or(Vec::new(), |j| j.notify.iter().collect())
}

/// Sends `event` to the channels its job or check routes it to, after
/// de-duplication against the alert states in `store`. Never fails: problems
/// are logged and returned in the reports. Channels are served in parallel.
pub fn emit(config: &Config, store: Option<&dyn StateStore>, event: &Event) -> Vec<DeliveryReport> {
    let routes = routes_for(config, event);
    let now = event.time;
    let condition = event.condition();
    struct Planned<'a> {
        channel: &'a Channel,
        event: Event,
        decision: Option<alert::Decision>,
        previous: Option<alert::AlertState>,
        next: Option<alert::AlertState>,
        send: bool,
        /// The new state is in the store already (this process won its
        /// compare-and-set, so it alone sends).
        stored: bool,
    }
    let mut planned = Vec::new();
    for route in routes {
        let Some(channel) = config.notify.get(&route.channel) else {
            continue;
        };
        // Ping URLs are told about every run: they expect a signal each time
        // (and only about runs).
        if let ChannelConfig::Ping { .. } = channel.config {
            if event.kind.is_about_the_state_store() {
                continue;
            }
            planned.push(Planned {
                channel,
                event: event.clone(),
                decision: None,
                previous: None,
                next: None,
                send: event.kind != EventKind::Test,
                stored: false,
            });
            continue;
        }
        let mut event = event.clone();
        let mut raw_previous = None;
        let (decision, previous, next) = match (&condition, store) {
            (Some(condition), Some(store)) => {
                let key = format!("{condition}@{}", channel.name);
                raw_previous = store.get_value(alert::NAMESPACE, &key).ok().flatten();
                let previous = raw_previous
                    .clone()
                    .and_then(|v| serde_json::from_value::<alert::AlertState>(v).ok());
                let (next, decision) = alert::step(
                    previous.as_ref(),
                    event.kind.is_failure(),
                    now,
                    channel.config.delivery().repeat,
                );
                (Some(decision), previous, Some(next))
            }
            _ => (None, None, None),
        };
        if decision == Some(alert::Decision::Recover) {
            event.recovery = true;
            if event.message.is_empty() {
                event.message = "recovered".into();
            }
        }
        let wanted = route_wants(route, &event);
        let send = match decision {
            // Failures and recoveries go out only when the state machine says so;
            // plain successes only to routes that asked for them. A passing check
            // is news only as a recovery.
            Some(d) if event.kind.is_failure() || event.recovery => d.sends() && wanted,
            Some(_) if event.kind == EventKind::CheckRecovered => false,
            _ => wanted,
        };
        // Several replicas may see one condition: the one whose
        // compare-and-set moves the alert state sends, the others do not.
        let mut stored = false;
        let mut lost = false;
        let mut send = send;
        if let (true, Some(store), Some(condition), Some(next)) = (send, store, &condition, &next) {
            let key = format!("{condition}@{}", channel.name);
            let value = serde_json::to_value(next).unwrap_or_default();
            match store.swap_value(alert::NAMESPACE, &key, raw_previous.as_ref(), &value) {
                Ok(true) => stored = true,
                Ok(false) => {
                    tracing::info!(channel = %channel.name, "another process already sent this alert");
                    send = false;
                    lost = true;
                }
                Err(e) => {
                    tracing::warn!(channel = %channel.name, error = %e, "alert state not compared; sending")
                }
            }
        }
        planned.push(Planned {
            channel,
            event,
            decision,
            previous,
            next: if lost { None } else { next },
            send,
            stored,
        });
    }
    let outcomes: Vec<(u32, Result<(), String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = planned
            .iter()
            .map(|p| {
                scope.spawn(move || {
                    if p.send {
                        send(p.channel, &p.event)
                    } else {
                        (0, Ok(()))
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (0, Err("the delivery thread panicked".into())))
            })
            .collect()
    });
    let mut reports = Vec::new();
    for (p, (attempts, outcome)) in planned.iter().zip(outcomes) {
        let subject = p
            .event
            .check
            .as_deref()
            .or(p.event.job.as_deref())
            .unwrap_or("");
        let already = p.stored && outcome.is_ok();
        if let (false, Some(store), Some(condition), Some(next)) =
            (already, store, &condition, &p.next)
        {
            // A failure the route does not take counts as seen: a route that
            // takes only recoveries (or successes) still hears of the recovery.
            let state = if outcome.is_ok() {
                next.clone()
            } else {
                alert::undelivered(p.previous.as_ref(), p.event.kind.is_failure(), now)
            };
            let key = format!("{condition}@{}", p.channel.name);
            if let Err(e) = store.put_value(
                alert::NAMESPACE,
                &key,
                &serde_json::to_value(&state).unwrap_or_default(),
            ) {
                tracing::warn!(channel = %p.channel.name, error = %e, "alert state not saved");
            }
        }
        if !p.send {
            continue;
        }
        match &outcome {
            Ok(()) => tracing::info!(
                job = %subject,
                channel = %p.channel.name,
                event = %p.event.kind,
                "notification sent"
            ),
            Err(e) => tracing::warn!(
                job = %subject,
                channel = %p.channel.name,
                event = %p.event.kind,
                "notification not delivered: {e}"
            ),
        }
        reports.push(DeliveryReport {
            channel: p.channel.name.clone(),
            event: p.event.kind,
            decision: p.decision,
            delivered: outcome.is_ok(),
            attempts,
            error: outcome.err(),
        });
    }
    reports
}

/// Tells the ping channels of `job` (or check) that a run starts (`URL/start`).
pub fn run_started(config: &Config, job: Option<&str>, check: Option<&str>) {
    let mut event = Event::new(EventKind::Test, "started");
    event.job = job.map(str::to_string);
    event.check = check.map(str::to_string);
    let routes = routes_for(config, &event);
    std::thread::scope(|scope| {
        for route in routes {
            if let Some(channel) = config.notify.get(&route.channel)
                && let ChannelConfig::Ping { url, .. } = &channel.config
            {
                let event = &event;
                scope.spawn(move || {
                    let (_, outcome) =
                        ping::send(url, ping::Signal::Start, event, &channel.config.delivery());
                    if let Err(e) = outcome {
                        tracing::warn!(channel = %channel.name, "start ping not delivered: {e}");
                    }
                });
            }
        }
    });
}

/// After a recorded run of `job` that ended as `end`: sends the backup,
/// verify, drill, repair or copy event it yields, with the run's duration and
/// log tail from the history. Other kinds send nothing.
pub fn run_finished(
    config: &Config,
    store: Option<&dyn StateStore>,
    job: &str,
    kind: crate::state::RunKind,
    end: &crate::state::RunEnd,
) -> Vec<DeliveryReport> {
    use crate::state::RunKind;
    let mut event = match kind {
        RunKind::Backup => backup_event(job, end, None),
        RunKind::Drill => drill_event(job, end),
        RunKind::Verify if !end.success => Event::new(
            EventKind::VerifyFailed,
            format!("verification of `{job}` failed"),
        )
        .job(job)
        .error(end.error.clone())
        .next_step(format!(
            "the artifact may be damaged: run `cairn verify {job}` again, then take a new backup with `cairn backup {job}`"
        )),
        RunKind::Repair | RunKind::Copy => repair_event(job, kind, end),
        _ => return Vec::new(),
    };
    let record = store.and_then(|s| {
        s.runs(&crate::state::RunFilter {
            job: Some(job.to_string()),
            kind: Some(kind),
            status: None,
            limit: Some(1),
            with_log: true,
        })
        .ok()?
        .into_iter()
        .next()
    });
    if let Some(record) = &record {
        event.duration_seconds = record.duration_secs();
        event.log_tail = record.log.as_deref().map(|l| log_tail(l, 8_000));
    }
    // The delivery log lines belong to the run, like its other lines.
    let span = tracing::info_span!(
        "run",
        job = %job,
        run_id = record.as_ref().map_or(0, |r| r.id),
        kind = %kind
    );
    span.in_scope(|| emit(config, store, &event))
}

/// A run whose process died (settled as interrupted by the engine): its failure
/// event, as if the run had failed with the recorded error.
pub fn run_interrupted(config: &Config, store: &dyn StateStore, run: &crate::state::RunRecord) {
    use crate::state::RunKind;
    let end = crate::state::RunEnd {
        success: false,
        error: run.error.clone(),
        ..Default::default()
    };
    let event = match run.kind {
        RunKind::Backup => backup_event(&run.job, &end, run.duration_secs()),
        RunKind::Drill => drill_event(&run.job, &end),
        _ => return,
    };
    emit(config, Some(store), &event);
}

/// The event for a finished backup run (`end` as its summary says).
pub fn backup_event(job: &str, end: &crate::state::RunEnd, duration: Option<f64>) -> Event {
    let mut event = if end.success {
        Event::new(
            EventKind::BackupSucceeded,
            format!("the backup of `{job}` succeeded"),
        )
    } else {
        Event::new(EventKind::BackupFailed, format!("the backup of `{job}` failed"))
            .next_step(format!(
                "read the run's log with `cairn history {job}`, fix the cause, then run `cairn backup {job}`"
            ))
    };
    event = event.job(job).error(end.error.clone());
    event.artifact_id = end.artifact_id.clone();
    event.duration_seconds = duration;
    if let Some(bytes) = end.bytes {
        event.details = Some(serde_json::json!({ "stored_bytes": bytes }));
    }
    event
}

/// The event for a finished restore drill; for the drill verb to call with
/// [`emit`] once its run is recorded.
pub fn drill_event(job: &str, end: &crate::state::RunEnd) -> Event {
    let event = if end.success {
        Event::new(
            EventKind::DrillSucceeded,
            format!("the restore drill of `{job}` succeeded"),
        )
    } else {
        Event::new(
            EventKind::DrillFailed,
            format!("the restore drill of `{job}` failed: the newest artifact may not restore"),
        )
        .next_step(format!(
            "read the drill's log with `cairn history {job}` and verify the artifact with `cairn verify {job}`"
        ))
    };
    let mut event = event.job(job).error(end.error.clone());
    event.artifact_id = end.artifact_id.clone();
    event.details = end.details.clone();
    event
}

/// The event for a finished `repair` or `copy` run.
pub fn repair_event(job: &str, kind: crate::state::RunKind, end: &crate::state::RunEnd) -> Event {
    let event = if end.success {
        Event::new(
            EventKind::RepairSucceeded,
            format!("the {kind} of `{job}` wrote every copy it had to"),
        )
    } else {
        Event::new(
            EventKind::RepairFailed,
            format!("the {kind} of `{job}` left copies damaged or missing"),
        )
        .next_step(format!(
            "read the run with `cairn history {job}`; an artifact with no good copy left needs a new backup (`cairn backup {job}`)"
        ))
    };
    let mut event = event.job(job).error(end.error.clone());
    event.details = end.details.clone();
    event
}

/// The last `max` bytes of a log, cut at a line start.
pub fn log_tail(log: &str, max: usize) -> String {
    if log.len() <= max {
        return log.to_string();
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let tail = &log[start..];
    tail.find('\n').map_or(tail, |i| &tail[i + 1..]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_send_failures_and_recoveries_only() {
        let route = Route {
            channel: "ops".into(),
            events: None,
        };
        let fail = Event::new(EventKind::BackupFailed, "x");
        let mut ok = Event::new(EventKind::BackupSucceeded, "x");
        assert!(route_wants(&route, &fail));
        assert!(!route_wants(&route, &ok));
        ok.recovery = true;
        assert!(route_wants(&route, &ok));
        let picky = Route {
            channel: "ops".into(),
            events: Some(vec![EventKind::BackupSucceeded]),
        };
        assert!(!route_wants(&picky, &fail));
    }

    #[test]
    fn retries_stop_at_the_cap_and_on_fatal_errors() {
        let delivery = Delivery {
            retries: 10,
            timeout: Duration::from_millis(50),
            max_time: Duration::from_millis(1200),
            repeat: None,
        };
        let start = Instant::now();
        let (attempts, outcome) = with_retries(&delivery, |_| Err(AttemptError::retry("down")));
        assert!(outcome.is_err());
        assert!(
            start.elapsed() < Duration::from_millis(1600),
            "{:?}",
            start.elapsed()
        );
        assert!((2..=4).contains(&attempts), "{attempts}");
        let (attempts, _) = with_retries(&delivery, |_| Err(AttemptError::fatal("404")));
        assert_eq!(attempts, 1);
        let mut n = 0;
        let (attempts, outcome) = with_retries(&delivery, |_| {
            n += 1;
            if n < 2 {
                Err(AttemptError::retry("once"))
            } else {
                Ok(())
            }
        });
        assert_eq!((attempts, outcome), (2, Ok(())));
    }

    #[test]
    fn log_tail_keeps_whole_lines() {
        assert_eq!(log_tail("a\nbb\ncc\n", 5), "cc\n");
        assert_eq!(log_tail("short", 100), "short");
    }
}
