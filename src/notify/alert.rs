//! Alert de-duplication: a pure state machine, one state per condition and
//! channel, persisted as JSON in the state store's namespace [`NAMESPACE`].
//!
//! A failing condition alerts once, then at most every `repeat` while it
//! lasts, then sends one recovery. An alert that could not be delivered is not
//! counted as sent, so the next failing run tries again.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The state store namespace of alert states.
pub const NAMESPACE: &str = "alerts";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub failing: bool,
    /// Since when the condition is in its current state.
    pub since: Timestamp,
    /// The last alert delivered for the current failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert: Option<Timestamp>,
    /// Alerts delivered for the current failure.
    #[serde(default)]
    pub alerts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The first alert of a failure.
    Alert,
    /// The failure lasts and `repeat` has passed since the last alert.
    Repeat,
    /// It was failing and is fine again.
    Recover,
    /// Nothing new to say.
    Quiet,
}

impl Decision {
    pub fn sends(self) -> bool {
        self != Decision::Quiet
    }
}

/// The next state of a condition observed `failing` (or not) at `now`, and
/// what to tell. The returned state assumes the message, if any, is delivered;
/// see [`undelivered`] otherwise.
pub fn step(
    previous: Option<&AlertState>,
    failing: bool,
    now: Timestamp,
    repeat: Option<Duration>,
) -> (AlertState, Decision) {
    let was_failing = previous.is_some_and(|p| p.failing);
    match (was_failing, failing) {
        (false, false) => (
            AlertState {
                failing: false,
                since: previous.map_or(now, |p| p.since),
                last_alert: None,
                alerts: 0,
            },
            Decision::Quiet,
        ),
        (true, false) => (
            AlertState {
                failing: false,
                since: now,
                last_alert: None,
                alerts: 0,
            },
            // A failure nobody was told about needs no recovery message.
            if previous.is_some_and(|p| p.alerts > 0) {
                Decision::Recover
            } else {
                Decision::Quiet
            },
        ),
        (false, true) => (
            AlertState {
                failing: true,
                since: now,
                last_alert: Some(now),
                alerts: 1,
            },
            Decision::Alert,
        ),
        (true, true) => {
            let previous = previous.cloned().unwrap_or(AlertState {
                failing: true,
                since: now,
                last_alert: None,
                alerts: 0,
            });
            let due = match (previous.last_alert, repeat) {
                (None, _) => Some(Decision::Alert),
                (Some(last), Some(repeat)) => {
                    let elapsed = now.as_millisecond() - last.as_millisecond();
                    (elapsed >= repeat.as_millis() as i64).then_some(Decision::Repeat)
                }
                (Some(_), None) => None,
            };
            match due {
                Some(decision) => (
                    AlertState {
                        last_alert: Some(now),
                        alerts: previous.alerts + 1,
                        ..previous
                    },
                    decision,
                ),
                None => (previous, Decision::Quiet),
            }
        }
    }
}

/// The state to keep when the message `step` asked for was not delivered.
pub fn undelivered(previous: Option<&AlertState>, failing: bool, now: Timestamp) -> AlertState {
    match previous {
        // An undelivered recovery: say nothing more (the next failure alerts anew).
        _ if !failing => AlertState {
            failing: false,
            since: now,
            last_alert: None,
            alerts: 0,
        },
        Some(p) if p.failing => p.clone(),
        _ => AlertState {
            failing: true,
            since: now,
            last_alert: None,
            alerts: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + minutes * 60).unwrap()
    }

    /// Runs a sequence of observations (minute, failing), delivering every
    /// message, and returns what was said at each step.
    fn run(sequence: &[(i64, bool)], repeat: Option<Duration>) -> Vec<Decision> {
        let mut state: Option<AlertState> = None;
        sequence
            .iter()
            .map(|&(minute, failing)| {
                let (next, decision) = step(state.as_ref(), failing, at(minute), repeat);
                state = Some(next);
                decision
            })
            .collect()
    }

    #[test]
    fn a_failure_alerts_once_then_every_repeat_then_recovers_once() {
        use Decision::*;
        let hour = Some(Duration::from_secs(3600));
        let decisions = run(
            &[
                (0, false),
                (5, true),
                (10, true),
                (30, true),
                (64, true),
                (70, true),
                (124, true),
                (130, false),
                (135, false),
                (140, true),
                (141, true),
            ],
            hour,
        );
        assert_eq!(
            decisions,
            vec![
                Quiet, Alert, Quiet, Quiet, Quiet, Repeat, Quiet, Recover, Quiet, Alert, Quiet
            ]
        );
    }

    #[test]
    fn repeat_counts_from_the_last_alert_and_none_means_never() {
        use Decision::*;
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            run(
                &[(0, true), (59, true), (60, true), (119, true), (120, true)],
                hour
            ),
            vec![Alert, Quiet, Repeat, Quiet, Repeat]
        );
        assert_eq!(
            run(&[(0, true), (600, true), (6000, true), (6001, false)], None),
            vec![Alert, Quiet, Quiet, Recover]
        );
    }

    #[test]
    fn an_undelivered_alert_is_tried_again_and_recovery_needs_a_sent_alert() {
        let (_, first) = step(None, true, at(0), None);
        assert_eq!(first, Decision::Alert);
        // Delivery failed: keep the undelivered state.
        let kept = undelivered(None, true, at(0));
        assert!(kept.failing && kept.last_alert.is_none());
        let (state, again) = step(Some(&kept), true, at(1), None);
        assert_eq!(again, Decision::Alert);
        assert_eq!(state.alerts, 1);
        assert_eq!(
            state.since,
            at(0),
            "the failure started at the first observation"
        );
        // Nobody was told: no recovery message.
        let (_, quiet) = step(Some(&kept), false, at(2), None);
        assert_eq!(quiet, Decision::Quiet);
    }

    #[test]
    fn state_round_trips_as_json() {
        let (state, _) = step(None, true, at(0), None);
        let json = serde_json::to_value(&state).unwrap();
        let back: AlertState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }
}
