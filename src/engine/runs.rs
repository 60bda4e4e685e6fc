//! Recording runs in the history: the same wrapper for the CLI and the daemon.

use crate::Result;
use crate::state::runlog::Capture;
use crate::state::{NewRun, RunEnd, RunKind, StateStore, Trigger};

/// Records the runs of processes that died without finishing (kill -9, the
/// OOM killer) as interrupted, and alerts about them like failures. Every
/// process that opens the store for work calls this; each such run is
/// settled by exactly one of them.
pub fn settle_orphans(
    config: &crate::config::Config,
    store: &dyn StateStore,
    events: &dyn super::events::EventSink,
) {
    let runs = match store.interrupt_orphaned_runs() {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check for interrupted runs");
            return;
        }
    };
    for run in &runs {
        tracing::warn!(
            job = %run.job,
            run_id = run.id,
            kind = %run.kind,
            pid = run.pid,
            "a run whose process ended without finishing is recorded as interrupted"
        );
        events.emit(
            config,
            Some(store),
            &super::events::Event::Interrupted { run },
        );
    }
}

/// What a finished operation tells the history about itself.
pub trait Summary {
    fn run_end(&self) -> RunEnd;
}

/// How a run that returned `result` ended, with every registered secret masked: this is what the
/// history keeps and what the event sinks are given.
pub fn end_of<T: Summary>(result: &Result<T>) -> RunEnd {
    redacted(match result {
        Ok(value) => value.run_end(),
        Err(e) => RunEnd {
            success: false,
            error: Some(e.to_string()),
            ..RunEnd::default()
        },
    })
}

/// Runs `operation` as one recorded run of `job`: its start, its end and the log
/// lines logged for the job meanwhile go to `store`. Without a store the
/// operation just runs. A store that fails to record is logged, never fatal.
pub fn recorded<T: Summary>(
    store: Option<&dyn StateStore>,
    job: &str,
    kind: RunKind,
    trigger: Trigger,
    operation: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some(store) = store else {
        return operation();
    };
    let capture = Capture::start(job);
    let origin = crate::state::replicas::origin();
    let run_id = store
        .start_run(&NewRun {
            job: job.to_string(),
            kind,
            trigger,
            started_at: jiff::Timestamp::now(),
            replica: origin.replica.clone(),
            scheduled_for: origin.scheduled_for,
            claim: origin.claim.map(|c| c.id),
        })
        .map_err(|e| tracing::warn!(job = %job, error = %e, "run not recorded"))
        .ok();
    capture.line("INFO", &format!("{kind} of `{job}` started ({trigger})"));
    // Every line logged on this thread during the run carries job and run id.
    let span = tracing::info_span!("run", job = %job, run_id = run_id.unwrap_or(0), kind = %kind);
    let result = std::thread::scope(|scope| {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        if let Some(id) = run_id {
            let capture = &capture;
            scope.spawn(move || publish_live_log(store, job, id, capture, &stopped));
        }
        let result = span.in_scope(operation);
        drop(stop);
        result
    });
    let end = end_of(&result);
    if let Some(error) = &end.error {
        capture.line("ERROR", error);
    }
    if let Some(id) = run_id
        && let Err(e) = crate::fault_point::reached("state.before_finish_run")
            .map_err(|e| crate::Error::Run(e.to_string()))
            .and_then(|()| store.finish_run(id, &end, &capture.text()))
    {
        tracing::warn!(job = %job, error = %e, "run end not recorded");
    }
    result
}

/// Where the log of a job's running run is kept while it runs (key: the job):
/// `{"run_id", "log"}`. One entry per job, replaced by its next run, so the
/// web UI can show a run's log growing from any process or replica.
pub const LIVE_LOG_NAMESPACE: &str = "run_log";
/// How often a running run's log is written to the store (when it grew).
const LIVE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the capture to the store each period it grew, until `stopped`. A
/// run shorter than one period writes nothing here.
fn publish_live_log(
    store: &dyn StateStore,
    job: &str,
    run_id: i64,
    capture: &Capture,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    let mut written = 0;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LIVE_LOG_EVERY)
    {
        let text = capture.text();
        if text.len() != written {
            written = text.len();
            let value = serde_json::json!({"run_id": run_id, "log": text});
            if let Err(e) = store.put_value(LIVE_LOG_NAMESPACE, job, &value) {
                tracing::debug!(error = %e, "the live log was not written");
            }
        }
    }
}

/// The log so far of run `run_id` of `job` while it runs, if its process
/// published one.
pub fn live_log(store: &dyn StateStore, job: &str, run_id: i64) -> Option<String> {
    let value = store.get_value(LIVE_LOG_NAMESPACE, job).ok()??;
    (value.get("run_id")?.as_i64()? == run_id)
        .then(|| value.get("log")?.as_str().map(str::to_string))
        .flatten()
}

/// The history never holds a secret, whatever a tool or server echoed.
fn redacted(mut end: RunEnd) -> RunEnd {
    end.error = end.error.map(|e| crate::redact::redact(&e));
    end.details = end.details.map(|details| {
        let text = crate::redact::redact(&details.to_string());
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    });
    end
}
