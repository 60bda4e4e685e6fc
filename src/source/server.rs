//! What restoring into a database server has in common across engines: prepare
//! the target (create it, or refuse a non-empty one), stream into the engine's
//! client on stdin, and undo what was created if anything fails.

use super::external::Program;
use crate::Result;

#[derive(Debug, Default)]
pub struct Prepared {
    /// The target database did not exist and was created for this restore.
    pub created: bool,
    pub actions: Vec<String>,
}

pub trait ServerRestore {
    /// The target, without credentials.
    fn describe(&self) -> String;
    /// Checks connectivity and permissions; creates the database when missing
    /// (not on a dry run); refuses a non-empty one without `force`.
    fn prepare(&self, force: bool, clean: bool, dry_run: bool) -> Result<Prepared>;
    /// The client that reads the dump on stdin.
    fn receiver_program(&self, clean: bool) -> Program;
    /// A program that lists the dump's contents from stdin, for dry runs.
    fn listing_program(&self) -> Option<Program>;
    /// Drops a database that `prepare` created, after a failed restore.
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
