//! SQLite: a consistent snapshot streamed page by page.
//!
//! One read transaction pins a snapshot (in WAL mode the application keeps
//! writing; in rollback-journal mode writers wait, as with `sqlite3 .backup`),
//! and `sqlite_dbpage` yields the database image of that snapshot, WAL content
//! included. The stream is a plain database file: `zstd -d > db.sqlite` restores it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use super::{CheckLevel, Dump, Restorer, TargetShape};
use crate::{Error, Result};

pub struct SqliteSource {
    job: String,
    path: PathBuf,
}

impl SqliteSource {
    pub fn new(job: &str, path: &Path) -> Self {
        SqliteSource {
            job: job.to_string(),
            path: path.to_path_buf(),
        }
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::source(&self.job, format!("{what} {}: {e}", self.path.display()))
    }

    fn connect(&self) -> Result<Connection> {
        if !self.path.is_file() {
            return Err(self.fail(
                "cannot open SQLite database",
                "no such file (check source.path)",
            ));
        }
        // Read-write (never create) so that WAL databases open even when no
        // -shm exists yet; fall back to read-only for files we may not write.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .or_else(|_| {
            Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        })
        .map_err(|e| self.fail("cannot open SQLite database", e))?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(|e| self.fail("cannot configure", e))?;
        Ok(conn)
    }
}

impl Dump for SqliteSource {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn extension(&self) -> &str {
        "sqlite"
    }

    fn describe(&self) -> String {
        format!("SQLite database {}", self.path.display())
    }

    fn size_hint(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value> {
        let conn = self.connect()?;
        let sql_err = |e: rusqlite::Error| self.fail("cannot read", e);
        // A deferred transaction becomes a read snapshot at its first read.
        conn.execute_batch("BEGIN DEFERRED").map_err(sql_err)?;
        let result = self.dump_snapshot(&conn, out);
        let _ = conn.execute_batch("COMMIT");
        result
    }
}

impl SqliteSource {
    fn dump_snapshot(&self, conn: &Connection, out: &mut dyn Write) -> Result<serde_json::Value> {
        let sql_err = |e: rusqlite::Error| {
            if let rusqlite::Error::SqliteFailure(code, _) = &e
                && code.code == rusqlite::ErrorCode::NotADatabase
            {
                return self.fail("not a SQLite database (or it is encrypted):", e);
            }
            self.fail("cannot read", e)
        };
        let journal_mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sql_err)?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql_err)?;
        let page_count: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(sql_err)?;

        let mut stmt = conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")
            .map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let zero_page = vec![0u8; page_size as usize];
        let mut expected: i64 = 1;
        let write_err = |e: std::io::Error| self.fail("stream interrupted while reading", e);
        while let Some(row) = rows.next().map_err(sql_err)? {
            let pgno: i64 = row.get(0).map_err(sql_err)?;
            if pgno > page_count {
                break;
            }
            // sqlite_dbpage may skip the lock-byte page of databases over 1 GiB;
            // the file holds zeros there.
            while expected < pgno {
                out.write_all(&zero_page).map_err(write_err)?;
                expected += 1;
            }
            let data = row.get_ref(1).map_err(sql_err)?;
            let bytes = data
                .as_blob()
                .map_err(|e| self.fail("cannot read page of", e))?;
            out.write_all(bytes).map_err(write_err)?;
            expected += 1;
        }
        while expected <= page_count {
            out.write_all(&zero_page).map_err(write_err)?;
            expected += 1;
        }
        drop(rows);
        drop(stmt);

        let tables = table_row_counts(conn).map_err(sql_err)?;
        Ok(json!({
            "path": self.path.display().to_string(),
            "sqlite_version": rusqlite::version(),
            "journal_mode": journal_mode,
            "page_size": page_size,
            "page_count": page_count,
            "tables": tables,
        }))
    }
}

/// Row count of every user table, in the snapshot of the current transaction.
pub fn table_row_counts(
    conn: &Connection,
) -> rusqlite::Result<serde_json::Map<String, serde_json::Value>> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = serde_json::Map::new();
    for name in names {
        let quoted = name.replace('"', "\"\"");
        let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{quoted}\""), [], |r| {
            r.get(0)
        })?;
        counts.insert(name, rows.into());
    }
    Ok(counts)
}

/// Restores a database file and checks it with `PRAGMA quick_check`, or
/// `integrity_check` and `foreign_key_check` when asked for a full check.
pub struct SqliteRestorer;

impl Restorer for SqliteRestorer {
    fn shape(&self) -> TargetShape {
        TargetShape::File
    }

    fn write(&self, stream: &mut dyn Read, temp: &Path) -> Result<()> {
        // Writing the temporary is the target's problem (a full disk, say), never
        // damage in the artifact: report it as a target error, not as `Run`.
        let target_err = |what: &str, e: std::io::Error| {
            let hint = match e.raw_os_error() {
                Some(libc::ENOSPC) => " (the disk is full: free space there or restore elsewhere)",
                _ => "",
            };
            Error::Target {
                path: temp.to_path_buf(),
                message: format!("{what}: {e}{hint}"),
            }
        };
        let file =
            crate::local_fs::create_private(temp).map_err(|e| target_err("cannot create", e))?;
        let mut writer = std::io::BufWriter::with_capacity(crate::pipeline::CHUNK, file);
        let mut buf = vec![0u8; crate::pipeline::CHUNK];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Run(format!("restore stream failed: {e}"))),
            };
            writer
                .write_all(&buf[..n])
                .map_err(|e| target_err("cannot write", e))?;
        }
        let file = writer
            .into_inner()
            .map_err(|e| target_err("cannot write", e.into_error()))?;
        file.sync_all().map_err(|e| target_err("cannot sync", e))
    }

    fn check(&self, temp: &Path, level: CheckLevel) -> Result<Option<String>> {
        let pragma = match level {
            CheckLevel::Quick => "quick_check",
            CheckLevel::Full => "integrity_check",
        };
        let unusable =
            |e: rusqlite::Error| Error::Run(format!("the restored database cannot be read: {e}"));
        let conn = open_immutable(temp).map_err(unusable)?;
        let result = pragma_lines(&conn, pragma).map_err(unusable)?;
        if result != "ok" {
            // Its SHA-256 matched: the database was damaged when it was backed up.
            return Err(Error::Run(format!(
                "the restored database fails PRAGMA {pragma}: {result}; it was backed up that way (its hashes match), the target is untouched: restore an older artifact"
            )));
        }
        if level == CheckLevel::Quick {
            return Ok(Some(format!(
                "checked the restored database with PRAGMA {pragma} (--check full: integrity_check and foreign_key_check)"
            )));
        }
        match foreign_key_violations(&conn).map_err(unusable)? {
            (0, _) => Ok(Some(format!(
                "checked the restored database with PRAGMA {pragma} and PRAGMA foreign_key_check"
            ))),
            (n, first) => Err(Error::Run(format!(
                "the restored database fails PRAGMA foreign_key_check: {n} row(s) violate a foreign key ({}); it was backed up that way, the target is untouched: restore without --check full to accept it",
                first.join("; ")
            ))),
        }
    }

    fn companions(&self, target: &Path) -> Vec<PathBuf> {
        ["-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| {
                let mut name = target.as_os_str().to_owned();
                name.push(suffix);
                PathBuf::from(name)
            })
            .collect()
    }
}

/// Opens a database file that nobody writes (a restored copy) read-only and
/// `immutable=1`, so that no `-wal`/`-shm` files appear beside it.
pub fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let uri = format!(
        "file:{}?immutable=1",
        path.display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23")
    );
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// The rows of a checking pragma (`integrity_check`, `quick_check`), joined:
/// `ok` when it found nothing.
pub fn pragma_lines(conn: &Connection, pragma: &str) -> rusqlite::Result<String> {
    let lines: Vec<String> = conn
        .prepare(&format!("PRAGMA {pragma}"))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(lines.join("; "))
}

/// `PRAGMA foreign_key_check`: how many rows violate a foreign key, and the first few.
pub fn foreign_key_violations(conn: &Connection) -> rusqlite::Result<(usize, Vec<String>)> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| {
            let table: String = r.get(0)?;
            let rowid: Option<i64> = r.get(1)?;
            let parent: String = r.get(2)?;
            Ok(format!(
                "{table} row {} references a missing {parent} row",
                rowid.map_or("?".to_string(), |id| id.to_string())
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let first = rows.iter().take(5).cloned().collect();
    Ok((rows.len(), first))
}

/// A job's SQLite source as a [`SourceKind`](super::kind::SourceKind).
pub struct SqliteKind<'a> {
    pub job: &'a crate::config::Job,
    pub path: &'a Path,
}

impl SqliteKind<'_> {
    /// Opened for validation: long busy waits, since the application may be writing.
    fn open_for_validation(&self) -> Result<Connection> {
        let conn = super::read_only::open_sqlite(self.path)?;
        let _ = conn.busy_timeout(Duration::from_secs(60));
        Ok(conn)
    }
}

impl super::kind::SourceKind for SqliteKind<'_> {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn dumper(&self) -> Result<Box<dyn Dump>> {
        Ok(Box::new(SqliteSource::new(&self.job.name, self.path)))
    }

    fn probe(&self) -> Result<String> {
        let path = self.path;
        if !path.is_file() {
            return Err(Error::Run(format!("{} does not exist", path.display())));
        }
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|n| {
            format!(
                "{} is a readable SQLite database ({n} schema objects)",
                path.display()
            )
        })
        .map_err(|e| Error::Run(format!("{} cannot be read as SQLite: {e}", path.display())))
    }

    fn live_checks(&self) -> Result<super::kind::LiveChecks> {
        use super::kind::Check;
        let conn = self.open_for_validation()?;
        let integrity = match pragma_lines(&conn, "integrity_check") {
            Ok(text) => Check::new("integrity_check", text == "ok", text),
            Err(e) => Check::new("integrity_check", false, e.to_string()),
        };
        let foreign_keys = match foreign_key_violations(&conn) {
            Ok((0, _)) => Check::new("foreign_key_check", true, "no violations"),
            Ok((n, first)) => Check::new(
                "foreign_key_check",
                false,
                format!("{n} rows violate foreign keys, e.g. {}", first.join("; ")),
            ),
            Err(e) => Check::new("foreign_key_check", false, e.to_string()),
        };
        Ok(super::kind::LiveChecks {
            checks: vec![integrity, foreign_keys],
            rules_can_run: true,
        })
    }

    // Wrapped so that one pass returns the total count and the first rows; one
    // statement only, on a connection that cannot write. The line break ends a
    // trailing `--` comment before the closing parenthesis.
    fn offending(&self, sql: &str) -> Result<super::kind::Offending> {
        use super::read_only::{Dialect, single_statement};
        let wrapped = format!(
            "SELECT count(*) OVER (), * FROM ({}\n) LIMIT {}",
            single_statement(sql, Dialect::Sqlite)?,
            super::kind::FIRST_ROWS
        );
        let conn = self.open_for_validation()?;
        let run = |e: rusqlite::Error| Error::Run(e.to_string());
        let mut stmt = conn.prepare(&wrapped).map_err(run)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(run)?;
        let mut total = 0u64;
        let mut first = Vec::new();
        while let Some(row) = rows.next().map_err(run)? {
            total = row.get::<_, i64>(0).map_err(run)?.max(0) as u64;
            let values: Vec<String> = (1..columns)
                .map(|i| {
                    row.get_ref(i)
                        .map_or_else(|_| "?".to_string(), super::kind::sqlite_value_text)
                })
                .collect();
            first.push(values.join(", "));
        }
        Ok((total, first))
    }

    fn rows(&self, query: &str, limit: usize) -> Result<Vec<Vec<String>>> {
        let path = self.path;
        let run = |e: rusqlite::Error| Error::Run(e.to_string());
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Run(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "query_only", true).map_err(run)?;
        let _ = conn.busy_timeout(Duration::from_secs(5));
        let query = super::read_only::single_statement(query, super::read_only::Dialect::Sqlite)?;
        let mut statement = conn.prepare(query).map_err(run)?;
        if !statement.readonly() {
            return Err(Error::Run(
                "the query would write to the database: only read-only queries are run".into(),
            ));
        }
        let columns = statement.column_count();
        let mut rows = statement.query([]).map_err(run)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(run)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(super::kind::sqlite_value_text(row.get_ref(i).map_err(run)?));
            }
            out.push(values);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn no_database(&self) -> Error {
        super::kind::no_database(self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::super::kind;
    use super::*;

    fn job_on(dir: &Path) -> crate::config::Config {
        let db = dir.join("app.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER);
             INSERT INTO t (n) VALUES (1), (-3), (-1);",
        )
        .unwrap();
        let text = format!(
            "[destinations.a]\nkind = \"fs\"\npath = \"a\"\n\n[jobs.app]\nsource = {{ kind = \"sqlite\", path = \"{}\" }}\ndestinations = [\"a\"]\nencryption = {{ kind = \"none\" }}\n",
            db.display()
        );
        crate::config::Config::parse(&dir.join("cairn.toml"), &text).unwrap()
    }

    #[test]
    fn a_database_is_probed_checked_and_queried_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = job_on(dir.path());
        let source = kind::of(&config.jobs["app"]);
        assert_eq!(source.kind(), "sqlite");
        assert!(source.probe().unwrap().contains("(1 schema objects)"));
        let live = source.live_checks().unwrap();
        assert!(live.rules_can_run);
        assert!(live.checks.iter().all(|c| c.ok), "{:?}", live.checks);

        let (total, first) = source
            .offending("SELECT id, n FROM t WHERE n < 0 ORDER BY id")
            .unwrap();
        assert_eq!((total, first), (2, vec!["2, -3".into(), "3, -1".into()]));
        assert_eq!(
            source.rows("SELECT n FROM t ORDER BY id", 2).unwrap(),
            vec![vec!["1".to_string()], vec!["-3".to_string()]]
        );
        let write = source.rows("DELETE FROM t", 10).unwrap_err().to_string();
        assert!(write.contains("only read-only queries"), "{write}");
        let two = source
            .offending("SELECT 1; SELECT 2")
            .unwrap_err()
            .to_string();
        assert!(two.contains("more than one statement"), "{two}");
    }

    #[test]
    fn a_missing_database_fails_the_probe_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let config = job_on(dir.path());
        std::fs::remove_file(dir.path().join("app.db")).unwrap();
        let error = kind::of(&config.jobs["app"])
            .probe()
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("app.db does not exist"), "{error}");
    }
}
