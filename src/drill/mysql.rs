//! MySQL/MariaDB drills: a scratch database on the source's server (or on
//! `drill.url`), restored with the `mariadb` client through the same path as
//! `cairn restore`, checked with `CHECK TABLE`, queried and dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Check, Scratch};
use crate::config::{Job, SourceConfig};
use crate::engine::Located;
use crate::progress::Progress;
use crate::source::mysql::{MyConn, quote_ident};
use crate::{Error, Result};

pub struct MyScratch {
    url: String,
    conn: MyConn,
    name: String,
    dropped: bool,
    cleanup: u64,
}

use crate::source::mysql::quote_string as literal;

impl MyScratch {
    pub fn new(job: &Job) -> Result<Self> {
        let SourceConfig::Mysql { url, password_env } = &job.source else {
            return Err(Error::Usage(format!(
                "job `{}` is not a mysql job; its artifacts cannot be drilled into MySQL",
                job.name
            )));
        };
        let password = crate::source::password_from_env(&job.name, password_env.as_deref())?;
        let base = job
            .drill
            .url
            .as_ref()
            .map(|u| u.expose().to_string())
            .unwrap_or_else(|| url.clone());
        let name = super::scratch_db_name(&job.name);
        let url = super::postgres::with_database(&base, &name)?;
        let conn = MyConn::parse(&url, password)?;
        let (server, scratch) = (conn.clone(), name.clone());
        let cleanup = super::register_cleanup(Box::new(move || {
            let _ = drop_database(&server, &scratch);
        }));
        Ok(MyScratch {
            url,
            conn,
            name,
            dropped: false,
            cleanup,
        })
    }

    /// The drill's server answers; its URL without the scratch database.
    pub fn reachable(&self) -> Result<String> {
        self.conn.query(None, "SELECT 1")?;
        Ok(self.conn.with_database("").display())
    }

    pub fn remove_dead(&self) -> Vec<String> {
        let Ok(text) = self.conn.query(
            None,
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'cairn\\_drill\\_%'",
        ) else {
            return Vec::new();
        };
        crate::leftovers::sweep(
            text.lines().map(str::trim),
            |name| super::is_dead_scratch_db(name),
            |name| {
                tracing::info!(database = %name, "dropping the scratch database of an interrupted drill");
                drop_database(&self.conn, name)
            },
        )
        .into_iter()
        .map(|name| {
            format!(
                "{} database {name}",
                self.conn.with_database(name).display()
            )
        })
        .collect()
    }
}

/// Ends the sessions using `name` (a killed drill's client may still run), then drops it.
fn drop_database(conn: &MyConn, name: &str) -> Result<()> {
    let sessions = conn.query(
        None,
        &format!(
            "SELECT id FROM information_schema.processlist WHERE db = {} AND id <> CONNECTION_ID()",
            literal(name)
        ),
    )?;
    for id in sessions
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
    {
        let _ = conn.query(None, &format!("KILL {id}"));
    }
    conn.query(
        None,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(name)),
    )?;
    Ok(())
}

impl MyScratch {
    fn tables(&self) -> Result<Vec<String>> {
        Ok(self
            .conn
            .query(
                Some(&self.name),
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
            )?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }
}

impl Scratch for MyScratch {
    fn describe(&self) -> String {
        self.conn.display()
    }

    fn restore(
        &mut self,
        job: &Job,
        located: &Located,
        progress: Arc<dyn Progress>,
    ) -> Result<(String, u64)> {
        super::restore_to_scratch_database(&self.url, job, located, progress)
    }

    fn integrity(&self) -> Result<Vec<Check>> {
        let tables = self.tables()?;
        if tables.is_empty() {
            return Ok(vec![Check::new(
                "CHECK TABLE",
                true,
                "the database has no tables",
            )]);
        }
        let list: Vec<String> = tables.iter().map(|t| quote_ident(t)).collect();
        let text = self.conn.query(
            Some(&self.name),
            &format!("CHECK TABLE {}", list.join(", ")),
        )?;
        // Table, Op, Msg_type, Msg_text: every `status` row must say OK, and no `error` rows.
        let bad: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                let (table, kind, message) = (cols.first()?, cols.get(2)?, cols.get(3)?);
                let ok = match *kind {
                    "status" => message.eq_ignore_ascii_case("ok"),
                    "error" => false,
                    _ => true,
                };
                (!ok).then(|| format!("{table}: {message}"))
            })
            .collect();
        Ok(vec![if bad.is_empty() {
            Check::new("CHECK TABLE", true, format!("{} tables OK", tables.len()))
        } else {
            Check::new("CHECK TABLE", false, bad.join("; "))
        }])
    }

    fn size(&self) -> Result<u64> {
        let text = self.conn.query(
            None,
            &format!(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = {}",
                literal(&self.name)
            ),
        )?;
        text.trim()
            .parse()
            .map_err(|_| Error::Run(format!("unexpected database size {:?}", text.trim())))
    }

    fn row_counts(&self) -> Result<BTreeMap<String, i64>> {
        let tables = self.tables()?;
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let parts: Vec<String> = tables
            .iter()
            .map(|t| format!("SELECT {}, COUNT(*) FROM {}", literal(t), quote_ident(t)))
            .collect();
        let text = self
            .conn
            .query(Some(&self.name), &parts.join(" UNION ALL "))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (name, n) = l.rsplit_once('\t')?;
                Some((name.to_string(), n.trim().parse().ok()?))
            })
            .collect())
    }

    fn query_value(&self, sql: &str) -> Result<String> {
        let text = self.conn.query(Some(&self.name), sql)?;
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    fn removes(&mut self) -> Result<()> {
        drop_database(&self.conn, &self.name)?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for MyScratch {
    fn drop(&mut self) {
        super::unregister_cleanup(self.cleanup);
        if !self.dropped {
            let _ = drop_database(&self.conn, &self.name);
        }
    }
}
