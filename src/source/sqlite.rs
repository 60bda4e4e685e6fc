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

use super::{Dump, Restorer, TargetShape};
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

/// Restores a database file and checks it with `PRAGMA integrity_check`.
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

    fn check(&self, temp: &Path) -> Result<()> {
        let result = integrity_check(temp)
            .map_err(|e| Error::Run(format!("restored database cannot be opened: {e}")))?;
        if result == "ok" {
            Ok(())
        } else {
            Err(Error::Run(format!(
                "restored database fails PRAGMA integrity_check: {result}"
            )))
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

/// `PRAGMA integrity_check` on a database file, opened immutable so that no
/// -wal or -shm files appear beside it.
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

pub fn integrity_check(path: &Path) -> rusqlite::Result<String> {
    let conn = open_immutable(path)?;
    let lines: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
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
