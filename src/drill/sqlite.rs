//! SQLite drills: the database is restored into a temporary file, checked with
//! `PRAGMA integrity_check` and `PRAGMA foreign_key_check`, and queried.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use super::{Check, Scratch};
use crate::config::Job;
use crate::engine::Located;
use crate::progress::Progress;
use crate::source::sqlite::{SqliteRestorer, foreign_key_violations};
use crate::{Error, Result};

pub struct SqliteScratch {
    path: PathBuf,
    cleanup: u64,
}

impl SqliteScratch {
    pub fn new(dir: &Path) -> Result<Self> {
        crate::local_fs::ensure_dir(dir).map_err(|e| Error::Target {
            path: dir.to_path_buf(),
            message: format!("cannot use it as the drill's scratch folder: {e}"),
        })?;
        let path = super::scratch_path(dir, ".sqlite");
        let target = path.clone();
        let cleanup = super::register_cleanup(Box::new(move || {
            let _ = super::remove_path(&target);
        }));
        Ok(SqliteScratch { path, cleanup })
    }

    fn open(&self) -> Result<Connection> {
        open_immutable(&self.path)
            .map_err(|e| Error::Run(format!("the restored database cannot be opened: {e}")))
    }
}

/// Opens a database file read-only and immutable: no -wal or -shm appear.
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
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

impl Scratch for SqliteScratch {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn restore(
        &mut self,
        job: &Job,
        located: &Located,
        progress: Arc<dyn Progress>,
    ) -> Result<(String, u64)> {
        super::restore_local(job, located, progress, &SqliteRestorer, &self.path)
    }

    fn integrity(&self) -> Result<Vec<Check>> {
        let conn = self.open()?;
        let result = crate::source::sqlite::pragma_lines(&conn, "integrity_check")
            .map_err(|e| Error::Run(format!("PRAGMA integrity_check failed: {e}")))?;
        let mut checks = vec![Check::new("integrity_check", result == "ok", result)];
        let (count, first) = foreign_key_violations(&conn)
            .map_err(|e| Error::Run(format!("PRAGMA foreign_key_check failed: {e}")))?;
        checks.push(if count == 0 {
            Check::new("foreign_key_check", true, "no violations")
        } else {
            Check::new(
                "foreign_key_check",
                false,
                format!(
                    "{count} rows violate foreign keys, e.g. {}",
                    first.join("; ")
                ),
            )
        });
        Ok(checks)
    }

    fn size(&self) -> Result<u64> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| Error::Run(format!("{}: {e}", self.path.display())))
    }

    fn row_counts(&self) -> Result<BTreeMap<String, i64>> {
        let conn = self.open()?;
        let counts = crate::source::sqlite::table_row_counts(&conn)
            .map_err(|e| Error::Run(format!("cannot count rows: {e}")))?;
        Ok(counts
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_i64()?)))
            .collect())
    }

    fn query_value(&self, sql: &str) -> Result<String> {
        let conn = self.open()?;
        conn.query_row(sql, [], |r| {
            Ok(match r.get_ref(0)? {
                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                rusqlite::types::ValueRef::Real(f) => f.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(_) => "<blob>".to_string(),
            })
        })
        .map_err(|e| Error::Run(e.to_string()))
    }

    fn removes(&mut self) -> Result<()> {
        super::remove_path(&self.path)
            .map_err(|e| Error::Run(format!("cannot remove {}: {e}", self.path.display())))
    }
}

impl Drop for SqliteScratch {
    fn drop(&mut self) {
        super::unregister_cleanup(self.cleanup);
        let _ = super::remove_path(&self.path);
    }
}
