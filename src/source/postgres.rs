//! PostgreSQL: `pg_dump` (custom format, its own compression off so cairn's
//! compressor does the work; or plain SQL) for one database, `pg_dumpall` for a
//! whole server; restores with `pg_restore`/`psql` in a single transaction.
//!
//! The password never appears on a command line: it comes from the URL, the
//! job's `password_env`, or libpq's own `.pgpass`, and reaches the tools as
//! `PGPASSWORD` in their environment.

use std::io::Write;

use serde_json::json;

use super::Dump;
use super::external::{Program, SecretFile, find_tool};
use super::server::{ServerRestore, TargetRequest, TargetStep};
use crate::config::{PgFormat, PgScope};
use crate::{Error, Result};

pub use crate::config::connection::PgConn;

impl PgConn {
    fn program(&self, tool: &str, args: &[&str]) -> Program {
        let mut program = Program::new(
            std::iter::once(tool.to_string()).chain(args.iter().map(|a| a.to_string())),
        );
        program = program.env("PGCONNECT_TIMEOUT", "10").inherit_prefix("PG");
        if let Some(pw) = &self.password {
            program = program.env("PGPASSWORD", pw).secret(pw);
        }
        if let Some(pw) = &self.ssl_password {
            // A service file has no escapes: a value is the rest of its line.
            let line = pw.replace(['\n', '\r'], "");
            match SecretFile::new(&format!("[cairn]\nsslpassword={line}\n")) {
                Ok(file) => {
                    let path = file.path().display().to_string();
                    program = program
                        .env("PGSERVICEFILE", &path)
                        .env("PGSERVICE", "cairn")
                        .secret(pw)
                        .keep(file);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pass sslpassword to the PostgreSQL tools")
                }
            }
        }
        program
    }

    fn dbname_arg(&self) -> String {
        format!("--dbname={}", self.url)
    }

    /// Runs one query with psql and returns its unaligned, tuples-only output.
    pub fn query(&self, sql: &str) -> Result<String> {
        self.psql(&[sql])
    }

    /// Runs one statement in a read-only transaction (checks, validation
    /// rules): the server refuses any write, also one hidden in a function.
    pub fn query_read_only(&self, sql: &str) -> Result<String> {
        self.psql(&["BEGIN READ ONLY", sql, "ROLLBACK"])
    }

    /// psql running `commands` in order (one `-c` each), stopping at the first error.
    fn psql(&self, commands: &[&str]) -> Result<String> {
        let dbname = self.dbname_arg();
        let mut args = vec![
            "-X",
            "-A",
            "-t",
            "-q",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
            dbname.as_str(),
        ];
        for command in commands {
            args.extend(["-c", command]);
        }
        self.program("psql", &args)
            .output()
            .map_err(|e| self.fail(e))
    }

    fn fail(&self, e: Error) -> Error {
        Error::Run(format!("PostgreSQL {}: {e}", self.display()))
    }

    pub fn server_version_num(&self) -> Result<u32> {
        let text = self.query("SHOW server_version_num")?;
        text.trim()
            .parse()
            .map_err(|_| Error::Run(format!("unexpected server_version_num {:?}", text.trim())))
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The major version in `pg_dump (PostgreSQL) 15.18 (Debian …)`.
pub fn tool_major(version_line: &str) -> Option<u32> {
    version_line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// `server_version_num` → major (150018 → 15; 90624, of 9.6, → 9).
fn server_major(num: u32) -> u32 {
    num / 10_000
}

pub struct PostgresSource {
    job: String,
    conn: PgConn,
    format: PgFormat,
    scope: PgScope,
    tool_dir: Option<std::path::PathBuf>,
}

impl PostgresSource {
    pub fn new(
        job: &str,
        conn: PgConn,
        format: PgFormat,
        scope: PgScope,
        tool_dir: Option<std::path::PathBuf>,
    ) -> Self {
        PostgresSource {
            job: job.to_string(),
            conn,
            format,
            scope,
            tool_dir,
        }
    }

    fn tool(&self, name: &str) -> String {
        match &self.tool_dir {
            Some(dir) => dir.join(name).display().to_string(),
            None => name.to_string(),
        }
    }

    fn fail(&self, message: impl std::fmt::Display) -> Error {
        Error::source(
            &self.job,
            format!("PostgreSQL {}: {message}", self.conn.display()),
        )
    }

    /// Refuses a pg_dump older than the server: it could not read the catalog correctly.
    fn versions(&self, dump_tool: &str) -> Result<(String, u32)> {
        let version = Program::new([self.tool(dump_tool), "--version".to_string()])
            .output()
            .map_err(|e| self.fail(e))?;
        let version = version.trim().to_string();
        let dump_major = tool_major(&version).ok_or_else(|| {
            self.fail(format!(
                "cannot read the version of {dump_tool}: {version:?}"
            ))
        })?;
        let server = self
            .conn
            .server_version_num()
            .map_err(|e| Error::source(&self.job, e))?;
        if dump_major < server_major(server) {
            return Err(self.fail(format!(
                "{dump_tool} is version {dump_major} ({version}) but the server runs PostgreSQL {}: install {dump_tool} {} or newer (Debian: postgresql-client-{}) or set source.tool_dir",
                server_major(server),
                server_major(server),
                server_major(server)
            )));
        }
        Ok((version, server))
    }
}

impl Dump for PostgresSource {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn extension(&self) -> &str {
        match (self.scope, self.format) {
            (PgScope::Database, PgFormat::Custom) => "pgdump",
            _ => "sql",
        }
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.conn.display())
    }

    fn size_hint(&self) -> Option<u64> {
        if self.scope == PgScope::Server {
            return None;
        }
        self.conn
            .query("SELECT pg_database_size(current_database())")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value> {
        let dump_tool = match self.scope {
            PgScope::Database => "pg_dump",
            PgScope::Server => "pg_dumpall",
        };
        let (tool_version, server_version) = self.versions(dump_tool)?;
        let (tables, estimated) = if self.scope == PgScope::Database {
            row_counts(&self.conn).unwrap_or_else(|e| {
                tracing::warn!(job = %self.job, error = %e, "cannot count rows; the manifest records none");
                Default::default()
            })
        } else {
            Default::default()
        };
        let dbname = self.conn.dbname_arg();
        let mut args = vec!["--no-password", dbname.as_str()];
        if self.scope == PgScope::Database {
            args.extend(match self.format {
                PgFormat::Custom => ["--format=custom", "--compress=0"],
                PgFormat::Plain => ["--format=plain", "--encoding=UTF8"],
            });
        }
        let program = self.conn.program(&self.tool(dump_tool), &args);
        program.stream_to(out).map_err(|e| self.fail(e))?;
        Ok(json!({
            "server": self.conn.display(),
            "database": self.conn.database(),
            "scope": self.scope,
            "format": if self.scope == PgScope::Server { PgFormat::Plain } else { self.format },
            "server_version_num": server_version,
            "dump_tool": dump_tool,
            "dump_tool_version": tool_version,
            "tables": tables,
            "estimated_tables": estimated,
        }))
    }
}

/// Tables up to this many (estimated) rows are counted exactly for the
/// manifest; bigger ones keep the statistics' estimate.
pub const EXACT_COUNT_LIMIT: i64 = 1_000_000;

/// Row count per table: exact (`count(*)`, in one statement) for tables up to
/// [`EXACT_COUNT_LIMIT`] estimated rows, else the estimate, whose names are
/// returned too. Restore drills compare with these.
pub fn row_counts(
    conn: &PgConn,
) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<String>)> {
    let text = conn.query(
        "SELECT s.schemaname, s.relname, greatest(s.n_live_tup, c.reltuples::bigint) FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid ORDER BY 1, 2",
    )?;
    let mut counts = serde_json::Map::new();
    let mut estimated = Vec::new();
    let mut exact = Vec::new();
    for line in text.lines() {
        let mut cols = line.splitn(3, '|');
        let (Some(schema), Some(table), Some(rows)) = (cols.next(), cols.next(), cols.next())
        else {
            continue;
        };
        let rows: i64 = rows.trim().parse().unwrap_or(0);
        let name = format!("{schema}.{table}");
        if rows <= EXACT_COUNT_LIMIT {
            exact.push(format!(
                "SELECT {}, count(*) FROM {}.{}",
                quote_literal(&name),
                quote_ident(schema),
                quote_ident(table)
            ));
        } else {
            counts.insert(name.clone(), json!(rows));
            estimated.push(name);
        }
    }
    if !exact.is_empty() {
        for line in conn.query(&exact.join(" UNION ALL "))?.lines() {
            if let Some((name, rows)) = line.rsplit_once('|')
                && let Ok(rows) = rows.trim().parse::<i64>()
            {
                counts.insert(name.to_string(), json!(rows));
            }
        }
    }
    Ok((counts, estimated))
}

/// Live-row estimates per table from the statistics system (cheap, not exact).
pub fn row_estimates(conn: &PgConn) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = conn.query(
        "SELECT schemaname || '.' || relname, n_live_tup FROM pg_stat_user_tables ORDER BY 1",
    )?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, rows) = line.split_once('|')?;
            Some((name.to_string(), json!(rows.trim().parse::<i64>().ok()?)))
        })
        .collect())
}

/// Restores into a PostgreSQL database (created when missing) or, for
/// `pg_dumpall` artifacts, into a server.
pub struct PgRestore {
    pub target: PgConn,
    pub format: PgFormat,
    pub scope: PgScope,
}

impl PgRestore {
    fn maintenance(&self) -> PgConn {
        self.target.with_database("postgres")
    }

    fn database_exists(&self) -> Result<bool> {
        let name = self.target.database();
        Ok(self
            .maintenance()
            .query(&format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                quote_literal(&name)
            ))?
            .trim()
            == "1")
    }

    fn object_count(&self) -> Result<u64> {
        let text = self.target.query(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')",
        )?;
        Ok(text.trim().parse().unwrap_or(0))
    }
}

impl ServerRestore for PgRestore {
    /// `pg_dumpall` scripts create databases, which no transaction can hold.
    fn transactional(&self) -> bool {
        self.scope == PgScope::Database
    }

    fn describe(&self) -> String {
        self.target.display()
    }

    fn plan(&self, request: TargetRequest) -> Result<TargetStep> {
        if self.scope == PgScope::Server {
            let databases: u64 = self
                .maintenance()
                .query("SELECT count(*) FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'")?
                .trim()
                .parse()
                .unwrap_or(0);
            if databases > 0 && !request.force {
                return Err(Error::Target {
                    path: self.maintenance().display().into(),
                    message: format!(
                        "the server already holds {databases} database(s); a pg_dumpall script is meant for an empty server: pass --force to replay it anyway"
                    ),
                });
            }
            return Ok(TargetStep::ReplayOnServer {
                server: self.maintenance().display(),
                databases,
            });
        }
        if request.clean && self.format == PgFormat::Plain {
            return Err(Error::Usage(
                "--clean needs a custom-format dump; drop the target database yourself for plain SQL dumps".into(),
            ));
        }
        let name = self.target.database();
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "{} names no database: add /DBNAME to the URL",
                self.target.display()
            )));
        }
        if self.database_exists()? {
            let objects = self.object_count()?;
            if objects > 0 && !request.force {
                return Err(Error::Target {
                    path: self.target.display().into(),
                    message: format!(
                        "database `{name}` already holds {objects} tables, views or sequences; pass --force to restore into it (add --clean to drop them first)"
                    ),
                });
            }
            // With --clean, pg_restore drops the objects itself.
            return Ok(TargetStep::IntoExisting {
                database: name,
                holds: format!("{objects} objects"),
            });
        }
        let can_create = self
            .maintenance()
            .query("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")?;
        if can_create.trim() != "t" {
            return Err(Error::Target {
                path: self.target.display().into(),
                message: format!(
                    "database `{name}` does not exist and this user may not create databases"
                ),
            });
        }
        Ok(TargetStep::Create { database: name })
    }

    fn apply(&self, step: &TargetStep) -> Result<()> {
        match step {
            TargetStep::Create { database } => {
                self.maintenance()
                    .query(&format!("CREATE DATABASE {}", quote_ident(database)))?;
                Ok(())
            }
            TargetStep::ReplayOnServer { .. } | TargetStep::IntoExisting { .. } => Ok(()),
            TargetStep::Recreate { database } => Err(Error::Run(format!(
                "PostgreSQL restores never re-create database `{database}` (pg_restore --clean drops its objects)"
            ))),
        }
    }

    fn receiver_program(&self, clean: bool) -> Program {
        let dbname = self.target.dbname_arg();
        match (self.scope, self.format) {
            (PgScope::Server, _) => {
                let maint = self.maintenance().dbname_arg();
                self.target
                    .program("psql", &["-X", "-q", "--no-password", &maint])
            }
            (PgScope::Database, PgFormat::Custom) => {
                let mut args = vec![
                    "--no-password",
                    "--exit-on-error",
                    "--single-transaction",
                    dbname.as_str(),
                ];
                if clean {
                    args.extend(["--clean", "--if-exists"]);
                }
                self.target.program("pg_restore", &args)
            }
            (PgScope::Database, PgFormat::Plain) => self.target.program(
                "psql",
                &[
                    "-X",
                    "-q",
                    "--no-password",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "--single-transaction",
                    &dbname,
                ],
            ),
        }
    }

    fn listing_program(&self) -> Option<Program> {
        (self.scope == PgScope::Database && self.format == PgFormat::Custom)
            .then(|| Program::new(["pg_restore", "--list"]))
    }

    /// psql goes on after errors in a pg_dumpall script (its roles and databases
    /// may exist already); anything but "already exists" fails the restore.
    fn check_messages(&self, stderr: &str) -> Result<()> {
        if self.scope != PgScope::Server {
            return Ok(());
        }
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(Error::Run(format!(
            "the pg_dumpall script ran with {} error(s), e.g. {}",
            errors.len(),
            errors
                .iter()
                .take(3)
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" | ")
        )))
    }

    fn drop_created(&self) {
        let name = self.target.database();
        let _ = self.maintenance().query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        ));
    }
}

/// Which pg_dump is installed, if any (for `cairn check`).
pub fn installed_tool() -> Option<String> {
    find_tool(&["pg_dump"])
}

/// A job's PostgreSQL source as a [`SourceKind`](super::kind::SourceKind).
pub struct PostgresKind<'a> {
    pub job: &'a crate::config::Job,
    pub url: &'a str,
    pub password_env: Option<&'a str>,
    pub format: PgFormat,
    pub scope: PgScope,
    pub tool_dir: Option<&'a std::path::Path>,
}

impl PostgresKind<'_> {
    fn conn(&self) -> Result<PgConn> {
        let password = super::password_from_env(&self.job.name, self.password_env)?;
        PgConn::parse(self.url, password)
    }
}

impl super::kind::SourceKind for PostgresKind<'_> {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn dumper(&self) -> Result<Box<dyn Dump>> {
        Ok(Box::new(PostgresSource::new(
            &self.job.name,
            self.conn()?,
            self.format,
            self.scope,
            self.tool_dir.map(std::path::Path::to_path_buf),
        )))
    }

    fn probe(&self) -> Result<String> {
        let tool = match self.scope {
            PgScope::Database => "pg_dump",
            PgScope::Server => "pg_dumpall",
        };
        let tool_path = match self.tool_dir {
            Some(dir) => dir.join(tool).display().to_string(),
            None => tool.to_string(),
        };
        let conn = self.conn()?;
        let server = conn.server_version_num()?;
        let version = Program::new([tool_path.as_str(), "--version"]).output()?;
        Ok(format!(
            "{} answers (server_version_num {server}); {}",
            conn.display(),
            version.trim()
        ))
    }

    fn live_checks(&self) -> Result<super::kind::LiveChecks> {
        let conn = self.conn()?;
        Ok(super::kind::server_answers(conn.query("SELECT version()")))
    }

    fn offending(&self, sql: &str) -> Result<super::kind::Offending> {
        use super::read_only::{Dialect, single_statement};
        let text = self.conn()?.query_read_only(&format!(
            "SELECT count(*) OVER (), q::text FROM ({}\n) q LIMIT {}",
            single_statement(sql, Dialect::Postgres)?,
            super::kind::FIRST_ROWS
        ))?;
        Ok(super::kind::offending_from_text(&text, '|', "|"))
    }

    // A derived table (statements that write, such as DELETE … RETURNING, are
    // refused there) in a read-only transaction (so are writes hidden in
    // functions). The line break ends a trailing comment.
    fn rows(&self, query: &str, limit: usize) -> Result<Vec<Vec<String>>> {
        use super::read_only::{Dialect, single_statement};
        let query = single_statement(query, Dialect::Postgres)?;
        let text = self.conn()?.query_read_only(&format!(
            "SELECT * FROM ({query}\n) AS cairn_check LIMIT {limit}"
        ))?;
        Ok(super::kind::split_rows(&text, '|'))
    }

    fn no_database(&self) -> Error {
        super::kind::no_database(self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(tool_major("pg_dump (PostgreSQL) 17.2"), Some(17));
        assert_eq!(server_major(150018), 15);
        assert_eq!(server_major(90624), 9);
    }

    #[test]
    fn urls_lose_their_password() {
        let conn = PgConn::parse("postgres://app:p%40ss@127.0.0.1:5432/shop", None).unwrap();
        assert_eq!(conn.display(), "postgres://app@127.0.0.1:5432/shop");
        assert_eq!(conn.password.as_deref(), Some("p@ss"));
        assert_eq!(conn.database(), "shop");
        assert_eq!(
            conn.with_database("postgres").display(),
            "postgres://app@127.0.0.1:5432/postgres"
        );
        assert!(PgConn::parse("mysql://x@h/db", None).is_err());
        let conn = PgConn::parse(
            "postgres://app@db/shop?sslmode=require&password=qp%26w&sslpassword=kp",
            Some("env".into()),
        )
        .unwrap();
        assert_eq!(conn.display(), "postgres://app@db/shop?sslmode=require");
        assert_eq!(
            conn.dbname_arg(),
            "--dbname=postgres://app@db/shop?sslmode=require"
        );
        assert_eq!(conn.password.as_deref(), Some("qp&w"));
        assert_eq!(conn.ssl_password.as_deref(), Some("kp"));
    }
}
