//! healthchecks.io-style pings: `URL/start` when a run starts, `URL` when it
//! succeeded, `URL/fail` (with the end of the run's log as body) when it failed.

use super::{AttemptError, Event, with_retries};
use crate::config::{Delivery, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Start,
    Success,
    Fail,
}

impl Signal {
    pub fn of(event: &Event) -> Signal {
        if event.kind.is_failure() {
            Signal::Fail
        } else {
            Signal::Success
        }
    }
}

/// The URL for a signal: the base URL with `/start` or `/fail` appended.
pub fn url_for(base: &str, signal: Signal) -> String {
    let base = base.trim_end_matches('/');
    match signal {
        Signal::Start => format!("{base}/start"),
        Signal::Success => base.to_string(),
        Signal::Fail => format!("{base}/fail"),
    }
}

/// healthchecks.io keeps up to 100 kB of a ping's body; send the log's end.
const BODY_LIMIT: usize = 10_000;

pub fn send(
    url: &Secret,
    signal: Signal,
    event: &Event,
    delivery: &Delivery,
) -> (u32, Result<(), String>) {
    let target = url_for(url.expose(), signal);
    let body = match signal {
        Signal::Start => String::new(),
        _ => {
            let mut text = format!("{}\n{}\n", event.title(), event.text());
            if let Some(tail) = &event.log_tail {
                text.push_str("\nLog:\n");
                text.push_str(tail);
            }
            super::log_tail(&text, BODY_LIMIT)
        }
    };
    let headers = vec![(
        "Content-Type".to_string(),
        "text/plain; charset=utf-8".to_string(),
    )];
    with_retries(delivery, |timeout| {
        super::webhook::post(&target, &headers, body.clone().into_bytes(), timeout).map_err(|e| {
            AttemptError {
                message: super::webhook::redact(&e.message, &[url.expose()]),
                retry: e.retry,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_healthchecks() {
        assert_eq!(
            url_for("https://hc-ping.com/abc/", Signal::Start),
            "https://hc-ping.com/abc/start"
        );
        assert_eq!(
            url_for("https://hc-ping.com/abc", Signal::Success),
            "https://hc-ping.com/abc"
        );
        assert_eq!(
            url_for("https://hc-ping.com/abc", Signal::Fail),
            "https://hc-ping.com/abc/fail"
        );
    }
}
