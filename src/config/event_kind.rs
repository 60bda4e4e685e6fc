//! The kinds of events cairn sends, by the names `[[…notify]] events` lists.
//! They live with the configuration that parses them; `notify` re-exports them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    BackupSucceeded,
    BackupFailed,
    VerifyFailed,
    DrillSucceeded,
    DrillFailed,
    CheckFailing,
    CheckRecovered,
    ArtifactStale,
    /// `cairn notify test CHANNEL`.
    Test,
    /// `repair` or `copy` wrote every copy it had to.
    RepairSucceeded,
    /// `repair` or `copy` left a copy damaged or missing.
    RepairFailed,
    /// A daemon cannot reach the state store (sent by one replica of a fleet).
    StateStoreDown,
    /// The state store answers again after `state_store_down`.
    StateStoreRecovered,
}

const KINDS: [(EventKind, &str); 13] = [
    (EventKind::BackupSucceeded, "backup_succeeded"),
    (EventKind::BackupFailed, "backup_failed"),
    (EventKind::VerifyFailed, "verify_failed"),
    (EventKind::DrillSucceeded, "drill_succeeded"),
    (EventKind::DrillFailed, "drill_failed"),
    (EventKind::CheckFailing, "check_failing"),
    (EventKind::CheckRecovered, "check_recovered"),
    (EventKind::ArtifactStale, "artifact_stale"),
    (EventKind::Test, "test"),
    (EventKind::RepairSucceeded, "repair_succeeded"),
    (EventKind::RepairFailed, "repair_failed"),
    (EventKind::StateStoreDown, "state_store_down"),
    (EventKind::StateStoreRecovered, "state_store_recovered"),
];

impl EventKind {
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("test", |(_, n)| n)
    }

    /// Something is wrong (as opposed to a success or a recovery).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            EventKind::BackupFailed
                | EventKind::VerifyFailed
                | EventKind::DrillFailed
                | EventKind::CheckFailing
                | EventKind::ArtifactStale
                | EventKind::RepairFailed
                | EventKind::StateStoreDown
        )
    }

    /// About the state store, not about one job: every job's and check's
    /// routes take it.
    pub fn is_about_the_state_store(self) -> bool {
        matches!(
            self,
            EventKind::StateStoreDown | EventKind::StateStoreRecovered
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        KINDS
            .iter()
            .find(|(_, n)| *n == text)
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                format!(
                    "unknown event `{text}` (events: {})",
                    KINDS
                        .iter()
                        .filter(|(k, _)| *k != EventKind::Test)
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for (kind, name) in KINDS {
            assert_eq!(name.parse::<EventKind>().unwrap(), kind);
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
        assert!("backup_done".parse::<EventKind>().is_err());
    }
}
