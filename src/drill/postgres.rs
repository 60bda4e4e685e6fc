//! PostgreSQL drills: a scratch database on the source's server (or on
//! `drill.url`), restored with `pg_restore`/`psql` in one transaction through
//! the same path as `cairn restore`, checked, queried and dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Check, Scratch};
use crate::config::{Job, PgScope, SourceConfig};
use crate::engine::Located;
use crate::progress::Progress;
use crate::source::postgres::{PgConn, quote_ident, quote_literal};
use crate::store::Manifest;
use crate::{Error, Result};

pub struct PgScratch {
    /// The scratch database's URL (may hold the password: never shown).
    url: String,
    conn: PgConn,
    maintenance: PgConn,
    name: String,
    dropped: bool,
    cleanup: u64,
}

/// The server a drill of `job` uses: `drill.url`, else the source's URL.
fn server_url(job: &Job) -> Result<(String, Option<String>)> {
    let SourceConfig::Postgres {
        url, password_env, ..
    } = &job.source
    else {
        return Err(Error::Usage(format!(
            "job `{}` is not a postgres job; its artifacts cannot be drilled into PostgreSQL",
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
    Ok((base, password))
}

/// `url` with its path (database) replaced.
pub(super) fn with_database(url: &str, database: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|e| {
        Error::Usage(format!(
            "`{}` is not a URL: {e}",
            crate::redact::display_url(url)
        ))
    })?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

impl PgScratch {
    pub fn new(job: &Job, manifest: &Manifest) -> Result<Self> {
        let scope: PgScope =
            serde_json::from_value(manifest.source.facts["scope"].clone()).unwrap_or_default();
        if scope == PgScope::Server {
            return Err(Error::Usage(format!(
                "artifact {} of job `{}` is a pg_dumpall script of a whole server, which cannot be restored into one scratch database; drill a database-scope job instead",
                manifest.id, job.name
            )));
        }
        let (base, password) = server_url(job)?;
        let name = super::scratch_db_name(&job.name);
        let url = with_database(&base, &name)?;
        let conn = PgConn::parse(&url, password)?;
        let maintenance = conn.with_database("postgres");
        let (server, scratch) = (maintenance.clone(), name.clone());
        let cleanup = super::register_cleanup(Box::new(move || {
            let _ = drop_database(&server, &scratch);
        }));
        Ok(PgScratch {
            url,
            conn,
            maintenance,
            name,
            dropped: false,
            cleanup,
        })
    }

    /// Whether the drill's server lets this user create databases; its URL.
    pub fn can_create(job: &Job) -> Result<String> {
        let (base, password) = server_url(job)?;
        let maintenance = PgConn::parse(&with_database(&base, "postgres")?, password)?;
        let answer = maintenance
            .query("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")?;
        if answer.trim() == "t" {
            Ok(maintenance.display())
        } else {
            Err(Error::Run(format!(
                "the user of {} may not create databases, which drills need: grant CREATEDB or set drill.url to another server",
                maintenance.display()
            )))
        }
    }

    /// Drops scratch databases of drills of this host whose process is gone.
    pub fn remove_dead(&self) -> Vec<String> {
        let listed = self.maintenance.query(&format!(
            "SELECT datname FROM pg_database WHERE datname LIKE {}",
            quote_literal("cairn\\_drill\\_%")
        ));
        let Ok(text) = listed else {
            return Vec::new();
        };
        crate::leftovers::sweep(
            text.lines().map(str::trim),
            |name| super::is_dead_scratch_db(name),
            |name| {
                tracing::info!(database = %name, "dropping the scratch database of an interrupted drill");
                drop_database(&self.maintenance, name)
            },
        )
        .into_iter()
        .map(|name| format!("{} database {name}", self.maintenance.display()))
        .collect()
    }
}

/// Ends the sessions on `name` (a killed drill's psql may still run) and drops it.
fn drop_database(maintenance: &PgConn, name: &str) -> Result<()> {
    maintenance.query(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
        quote_literal(name)
    ))?;
    maintenance.query(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))?;
    Ok(())
}

impl Scratch for PgScratch {
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
        let invalid = self
            .conn
            .query("SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready")?;
        let invalid: i64 = invalid.trim().parse().unwrap_or(-1);
        Ok(vec![Check::new(
            "indexes",
            invalid == 0,
            if invalid == 0 {
                "every index was built and is valid".to_string()
            } else {
                format!("{invalid} indexes are invalid after the restore")
            },
        )])
    }

    fn size(&self) -> Result<u64> {
        let text = self
            .conn
            .query("SELECT pg_database_size(current_database())")?;
        text.trim()
            .parse()
            .map_err(|_| Error::Run(format!("unexpected database size {:?}", text.trim())))
    }

    fn row_counts(&self) -> Result<BTreeMap<String, i64>> {
        let tables = self.conn.query(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
        )?;
        let parts: Vec<String> = tables
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(schema, table)| {
                format!(
                    "SELECT {}, count(*) FROM {}.{}",
                    quote_literal(&format!("{schema}.{table}")),
                    quote_ident(schema),
                    quote_ident(table)
                )
            })
            .collect();
        if parts.is_empty() {
            return Ok(BTreeMap::new());
        }
        let text = self.conn.query(&parts.join(" UNION ALL "))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (name, n) = l.rsplit_once('|')?;
                Some((name.to_string(), n.trim().parse().ok()?))
            })
            .collect())
    }

    fn query_value(&self, sql: &str) -> Result<String> {
        let text = self.conn.query(sql)?;
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    fn removes(&mut self) -> Result<()> {
        drop_database(&self.maintenance, &self.name)?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        super::unregister_cleanup(self.cleanup);
        if !self.dropped {
            let _ = drop_database(&self.maintenance, &self.name);
        }
    }
}
