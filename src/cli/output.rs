//! How results reach people and scripts: JSON on stdout with `--json`, short
//! human text otherwise, errors on stderr, progress bars only on a terminal.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::Error;
use crate::progress::{Progress, Silent};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout; a failed write (a closed pipe) is remembered, not fatal.
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(text).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes to stderr; nothing is left to tell if that fails.
pub fn write_stderr(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// The process's exit code: the verb's, or 1 when it succeeded but its output
/// could not be delivered because stdout was closed.
pub fn exit_code_after_output(code: u8) -> u8 {
    if code == 0 && STDOUT_CLOSED.load(Ordering::Relaxed) {
        1
    } else {
        code
    }
}

pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// An error for people on stderr; with `--json` also as JSON on stdout, where
/// a script reads the verb's result.
pub fn print_error(error: &Error, json: bool) {
    let message = crate::redact::redact(&error.to_string());
    eprintln!("error: {message}");
    if json {
        print_json(&serde_json::json!({
            "error": message,
            "exit_code": error.exit_code(),
        }));
    }
}

/// `1 job`, `2 jobs`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr: bytes, rate and ETA when the size is known.
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn start(&self, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg:24} {bytes} {binary_bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            }
        };
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}

pub fn progress(enabled: bool) -> std::sync::Arc<dyn Progress> {
    if enabled {
        std::sync::Arc::new(Bar {
            bar: Mutex::new(None),
        })
    } else {
        std::sync::Arc::new(Silent)
    }
}
