//! One trait for what cairn does with a source of each kind, beside its dump:
//! whether it can be read from here (`cairn check`), the checks of its live
//! data and its read-only queries (`cairn validate`, `sql` health checks).
//! Each kind implements it in its own module; [`of`] picks the implementation
//! for a job, so callers never match on the source's config.

use serde::Serialize;

use super::Dump;
use crate::config::{Job, SourceConfig};
use crate::{Error, Result};

/// One named check of a drill or of live data, passed or not.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// Offending rows of a validation rule: the total count and the first rows as text.
pub type Offending = (u64, Vec<String>);

/// The rows of a validation rule shown at most.
pub const FIRST_ROWS: usize = 5;

/// The checks of a source's live data, and whether its rules can run (a
/// database that does not answer runs none).
pub struct LiveChecks {
    pub checks: Vec<Check>,
    pub rules_can_run: bool,
}

pub trait SourceKind {
    /// The manifest's `source.kind`.
    fn kind(&self) -> &'static str;
    /// The backup side.
    fn dumper(&self) -> Result<Box<dyn Dump>>;
    /// Whether the source can be read from this host, described (`cairn check`).
    fn probe(&self) -> Result<String>;
    /// Checks of the live data (integrity, connectivity).
    fn live_checks(&self) -> Result<LiveChecks>;
    /// A validation rule: one read-only statement whose rows are offending.
    fn offending(&self, sql: &str) -> Result<Offending> {
        let _ = sql;
        Err(self.no_database())
    }
    /// At most `limit` rows of one read-only statement, each as its column values.
    fn rows(&self, query: &str, limit: usize) -> Result<Vec<Vec<String>>> {
        let _ = (query, limit);
        Err(self.no_database())
    }
    /// The error of a query on a kind without a database.
    fn no_database(&self) -> Error;
}

/// The implementation for `job`'s source.
pub fn of(job: &Job) -> Box<dyn SourceKind + '_> {
    match &job.source {
        SourceConfig::Sqlite { path } => Box::new(super::sqlite::SqliteKind { job, path }),
        SourceConfig::Files { path, exclude } => {
            Box::new(super::files::FilesKind { job, path, exclude })
        }
        SourceConfig::Postgres {
            url,
            password_env,
            format,
            scope,
            tool_dir,
        } => Box::new(super::postgres::PostgresKind {
            job,
            url,
            password_env: password_env.as_deref(),
            format: *format,
            scope: *scope,
            tool_dir: tool_dir.as_deref(),
        }),
        SourceConfig::Mysql { url, password_env } => Box::new(super::mysql::MysqlKind {
            job,
            url,
            password_env: password_env.as_deref(),
        }),
        SourceConfig::Command {
            backup,
            restore,
            extension,
            env,
            ..
        } => Box::new(super::command::CommandKind {
            job,
            backup,
            restore: restore.as_deref(),
            extension,
            env,
        }),
    }
}

/// The live checks of a database server: whether it answers (with its version).
pub fn server_answers(answer: Result<String>) -> LiveChecks {
    let (check, rules_can_run) = match answer {
        Ok(version) => (Check::new("connectivity", true, version.trim()), true),
        Err(e) => (Check::new("connectivity", false, e.to_string()), false),
    };
    LiveChecks {
        checks: vec![check],
        rules_can_run,
    }
}

/// The error of a query on a job whose source has no database.
pub fn no_database(job: &Job) -> Error {
    Error::Usage(format!("job `{}` has no database to query", job.name))
}

/// A SQLite value as text, the same in every report.
pub fn sqlite_value_text(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => "NULL".to_string(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

/// Rows as psql (`-A -t`) or mysql (`-B -N`) print them, split into values.
pub fn split_rows(text: &str, separator: char) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(separator).map(str::to_string).collect())
        .collect()
}

/// Offending rows from the text of a server query wrapped as
/// `SELECT count(*) OVER (), row … LIMIT n`: the count, then the row.
pub fn offending_from_text(text: &str, separator: char, join_with: &str) -> Offending {
    let mut total = 0;
    let mut first = Vec::new();
    for line in text.lines() {
        let (n, row) = line.split_once(separator).unwrap_or((line, ""));
        total = n.trim().parse().unwrap_or(total);
        first.push(row.replace(separator, join_with));
    }
    (total, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_rows_split_into_count_and_values() {
        let (total, first) = offending_from_text("7|(1,-3)\n7|(2,-1)\n", '|', "|");
        assert_eq!(total, 7);
        assert_eq!(first, vec!["(1,-3)", "(2,-1)"]);
        let (total, first) = offending_from_text("2\t1\tann\n2\t2\tbob\n", '\t', ", ");
        assert_eq!((total, first), (2, vec!["1, ann".into(), "2, bob".into()]));
        assert_eq!(
            split_rows("a|b\n\nc|d\n", '|'),
            vec![vec!["a", "b"], vec!["c", "d"]]
        );
    }

    #[test]
    fn sqlite_values_render_as_text() {
        use rusqlite::types::ValueRef;
        assert_eq!(sqlite_value_text(ValueRef::Null), "NULL");
        assert_eq!(sqlite_value_text(ValueRef::Integer(-3)), "-3");
        assert_eq!(sqlite_value_text(ValueRef::Blob(&[1, 2])), "<2 bytes>");
    }

    #[test]
    fn a_folder_has_no_database_to_query() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[destinations.a]\nkind = \"fs\"\npath = \"a\"\n\n[jobs.docs]\nsource = {{ kind = \"files\", path = \"{}\" }}\ndestinations = [\"a\"]\nencryption = {{ kind = \"none\" }}\n",
            dir.path().display()
        );
        let config = crate::config::Config::parse(&dir.path().join("cairn.toml"), &text).unwrap();
        let kind = of(&config.jobs["docs"]);
        assert_eq!(kind.kind(), "files");
        let live = kind.live_checks().unwrap();
        assert!(live.checks.iter().all(|c| c.ok) && !live.rules_can_run);
        assert!(
            kind.rows("SELECT 1", 1)
                .unwrap_err()
                .to_string()
                .contains("has no database")
        );
        assert!(kind.probe().unwrap().contains("readable folder"));
    }
}
