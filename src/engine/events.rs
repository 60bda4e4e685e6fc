//! What the engine tells the world about its runs. The engine emits; the
//! caller installs the sink that decides where events go (the CLI and the
//! daemon deliver them through `notify`, tests record them, a web layer may
//! push them to a browser). The engine itself never delivers anything.

use std::sync::Mutex;

use crate::config::Config;
use crate::state::{RunEnd, RunKind, RunRecord, StateStore};

/// One thing that happened to a job's run.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A backup of `job` starts (before anything is read).
    Started { job: &'a str },
    /// A recorded run ended (`end` as the run's summary says, registered
    /// secrets already masked).
    Finished {
        job: &'a str,
        kind: RunKind,
        end: &'a RunEnd,
    },
    /// The run of a process that died was settled as interrupted.
    Interrupted { run: &'a RunRecord },
}

/// Receives the engine's events. The config and the state store are the ones
/// the run used: a sink needs no state of its own to route an event, so one
/// sink serves a daemon across reloads.
pub trait EventSink: Sync {
    fn emit(&self, config: &Config, store: Option<&dyn StateStore>, event: &Event<'_>);
}

/// Drops every event.
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _: &Config, _: Option<&dyn StateStore>, _: &Event<'_>) {}
}

/// Keeps a one-line description of each event, in order (tests, and callers
/// that show what a run announced).
#[derive(Default)]
pub struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl EventSink for Recorder {
    fn emit(&self, _: &Config, _: Option<&dyn StateStore>, event: &Event<'_>) {
        let line = match event {
            Event::Started { job } => format!("started {job}"),
            Event::Finished { job, kind, end } => format!(
                "{kind} {job} {}",
                if end.success { "succeeded" } else { "failed" }
            ),
            Event::Interrupted { run } => format!("{} {} interrupted", run.kind, run.job),
        };
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }
}
