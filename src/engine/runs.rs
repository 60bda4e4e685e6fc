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
    let result = span.in_scope(operation);
    let end = end_of(&result);
    if let Some(error) = &end.error {
        capture.line("ERROR", error);
    }
    if let Some(id) = run_id
        && let Err(e) = store.finish_run(id, &end, &capture.text())
    {
        tracing::warn!(job = %job, error = %e, "run end not recorded");
    }
    result
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
