//! Capturing a run's log for the history.
//!
//! Engine code logs with a `job = …` (or `check = …`) field. While a run of that
//! job is being recorded, [`CaptureLayer`] copies every such event into the run's
//! buffer, whichever thread logs it (a backup runs on several threads, so spans
//! or thread-locals would miss lines). One job never runs twice at once, so the
//! job name identifies the run. Every line is redacted (`crate::redact`)
//! before it is kept.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// A capture's buffer is cut beyond this many bytes (the store keeps head and tail).
const CAPTURE_LIMIT: usize = 1024 * 1024;

type Buffer = Arc<Mutex<String>>;
/// Subject → the active captures of it, by capture id.
type Registry = Mutex<HashMap<String, Vec<(u64, Buffer)>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static ACTIVE: AtomicU64 = AtomicU64::new(0);

/// Collects the log lines of one subject (job or check) until dropped.
pub struct Capture {
    subject: String,
    id: u64,
    buffer: Buffer,
}

impl Capture {
    pub fn start(subject: &str) -> Capture {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let buffer = Buffer::default();
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subject.to_string())
            .or_default()
            .push((id, buffer.clone()));
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Capture {
            subject: subject.to_string(),
            id,
            buffer,
        }
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a line that did not come through tracing (e.g. a run's summary).
    pub fn line(&self, level: &str, message: &str) {
        append(&self.buffer, &format_line(level, message, ""));
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let mut registry = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = registry.get_mut(&self.subject) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                registry.remove(&self.subject);
            }
        }
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

fn format_line(level: &str, message: &str, fields: &str) -> String {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or_default();
    crate::redact::redact(&format!("{now} {level:5} {message}{fields}\n"))
}

fn append(buffer: &Buffer, line: &str) {
    let mut text = buffer.lock().unwrap_or_else(|p| p.into_inner());
    if text.len() + line.len() <= CAPTURE_LIMIT {
        text.push_str(line);
    } else if !text.ends_with("[log cut]\n") {
        text.push_str("[log cut]\n");
    }
}

/// The tracing layer that feeds active captures. Install it once, beside the
/// output layer, with its own level filter.
pub struct CaptureLayer;

#[derive(Default)]
struct EventFields {
    subject: Option<String>,
    message: String,
    rest: String,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "job" | "check" if self.subject.is_none() => self.subject = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "job" | "check" if self.subject.is_none() => {
                self.subject = Some(format!("{value:?}").trim_matches('"').to_string())
            }
            "message" => self.message = format!("{value:?}"),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if ACTIVE.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let Some(subject) = fields.subject else {
            return;
        };
        let buffers: Vec<Buffer> = {
            let registry = registry().lock().unwrap_or_else(|p| p.into_inner());
            match registry.get(&subject) {
                Some(list) => list.iter().map(|(_, b)| b.clone()).collect(),
                None => return,
            }
        };
        let line = format_line(
            event.metadata().level().as_str(),
            &fields.message,
            &fields.rest,
        );
        for buffer in buffers {
            append(&buffer, &line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn captures_lines_of_its_job_from_any_thread() {
        let subscriber = tracing_subscriber::registry().with(CaptureLayer);
        tracing::subscriber::with_default(subscriber, || {
            let capture = Capture::start("app-capture-test");
            tracing::info!(job = "app-capture-test", bytes = 5, "committed");
            tracing::info!(job = "other-capture-test", "not mine");
            let dispatch = tracing::dispatcher::Dispatch::default();
            std::thread::scope(|s| {
                s.spawn(|| {
                    tracing::dispatcher::with_default(&dispatch, || {
                        tracing::warn!(job = %"app-capture-test", "from a thread");
                    })
                });
            });
            let text = capture.text();
            assert!(text.contains("INFO  committed bytes=5"), "{text}");
            assert!(text.contains("WARN  from a thread"), "{text}");
            assert!(!text.contains("not mine"));
        });
    }
}
