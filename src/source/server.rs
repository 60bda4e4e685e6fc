//! What restoring into a database server has in common across engines: plan
//! what happens to the target (create it, re-create it, refuse a non-empty
//! one), apply that plan, stream into the engine's client on stdin, and undo
//! what was created if anything fails.

use serde::Serialize;

use super::external::Program;
use crate::Result;

/// What the user asked for the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetRequest {
    /// Restore into a target that already holds data.
    pub force: bool,
    /// Drop what the target holds first.
    pub clean: bool,
}

/// What restoring does to the target before the dump streams in: decided by
/// [`ServerRestore::plan`] (which only reads), done by [`ServerRestore::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum TargetStep {
    /// Replay a whole-server script (`pg_dumpall`) on `server`, which already
    /// holds `databases` user databases.
    ReplayOnServer { server: String, databases: u64 },
    /// Restore into the existing database; `holds` says what is in it now
    /// ("3 objects", "0 tables"). With `--clean` the client drops them first.
    IntoExisting { database: String, holds: String },
    /// Drop the existing database and create it empty first.
    Recreate { database: String },
    /// Create the missing database.
    Create { database: String },
}

impl TargetStep {
    /// The step in words: what would be done, or what was done.
    pub fn describe(&self, done: bool) -> String {
        match (self, done) {
            (TargetStep::ReplayOnServer { server, .. }, false) => {
                format!("would replay the pg_dumpall script on {server}")
            }
            (TargetStep::ReplayOnServer { server, .. }, true) => {
                format!("replayed the pg_dumpall script on {server}")
            }
            (TargetStep::IntoExisting { database, holds }, _) => {
                format!("restore into the existing database `{database}` ({holds})")
            }
            (TargetStep::Recreate { database }, false) => {
                format!("would drop and re-create database `{database}`")
            }
            (TargetStep::Recreate { database }, true) => {
                format!("dropped and re-created database `{database}`")
            }
            (TargetStep::Create { database }, false) => {
                format!("would create database `{database}`")
            }
            (TargetStep::Create { database }, true) => format!("created database `{database}`"),
        }
    }

    /// Whether applying the step created the target (so a failed restore drops it).
    pub fn creates(&self) -> bool {
        matches!(self, TargetStep::Create { .. })
    }
}

pub trait ServerRestore {
    /// The target, without credentials.
    fn describe(&self) -> String;
    /// Checks connectivity and permissions and decides the step: refuses a
    /// non-empty target without `force`, a missing one this user may not
    /// create. Only reads the server.
    fn plan(&self, request: TargetRequest) -> Result<TargetStep>;
    /// Carries out a step that `plan` decided (creates or re-creates the database).
    fn apply(&self, step: &TargetStep) -> Result<()>;
    /// The client that reads the dump on stdin.
    fn receiver_program(&self, clean: bool) -> Program;
    /// A program that lists the dump's contents from stdin, for dry runs.
    fn listing_program(&self) -> Option<Program>;
    /// Drops a database that `apply` created, after a failed restore.
    fn drop_created(&self);
    /// Whether the client restores in one transaction, so that a stream cut
    /// short by damage leaves nothing behind (else the artifact is checked
    /// whole before it is streamed).
    fn transactional(&self) -> bool {
        true
    }
    /// Judges what the client printed on stderr after it exited successfully.
    fn check_messages(&self, stderr: &str) -> Result<()> {
        let _ = stderr;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_reads_as_planned_and_as_done() {
        let steps = [
            TargetStep::ReplayOnServer {
                server: "postgresql://cairn@127.0.0.1:5432/postgres".into(),
                databases: 2,
            },
            TargetStep::IntoExisting {
                database: "shop".into(),
                holds: "0 tables".into(),
            },
            TargetStep::Recreate {
                database: "shop".into(),
            },
            TargetStep::Create {
                database: "shop_copy".into(),
            },
        ];
        let lines: Vec<String> = steps
            .iter()
            .flat_map(|s| [s.describe(false), s.describe(true)])
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
        assert!(steps[3].creates() && !steps[2].creates());
    }
}
