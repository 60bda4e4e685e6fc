//! MySQL/MariaDB: `mariadb-dump` or `mysqldump` (whichever is installed, and the
//! manifest says which) with `--single-transaction --routines --triggers
//! --events`; restores with `mariadb`/`mysql`. The password is passed in a
//! temporary 0600 defaults file, never on the command line.

use std::io::Write;

use serde_json::json;

use super::Dump;
use super::external::{Program, SecretFile, find_tool};
use super::server::{ServerRestore, TargetRequest, TargetStep};
use crate::{Error, Result};

pub use crate::config::connection::MyConn;

impl MyConn {
    /// A client program with the connection options; the defaults file must come first.
    fn program(&self, tool: &str, defaults: &SecretFile, args: &[&str]) -> Program {
        let mut argv = vec![
            tool.to_string(),
            format!("--defaults-extra-file={}", defaults.path().display()),
            format!("--host={}", self.host),
            format!("--port={}", self.port),
            "--protocol=TCP".to_string(),
        ];
        // mariadb-dump and mysqldump have no --connect-timeout (they refuse to start).
        if !tool.ends_with("dump") {
            argv.push("--connect-timeout=10".to_string());
        }
        if !self.user.is_empty() {
            argv.push(format!("--user={}", self.user));
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut program = Program::new(argv)
            .inherit_prefix("MYSQL")
            .inherit_prefix("MARIADB");
        if let Some(pw) = &self.password {
            program = program.secret(pw);
        }
        program
    }

    pub fn defaults_file(&self) -> Result<SecretFile> {
        let mut text = String::from("[client]\n");
        if let Some(pw) = &self.password {
            text.push_str(&format!("password={}\n", quote_string(pw)));
        }
        SecretFile::new(&text)
    }

    /// Runs SQL with the client in batch mode; returns tab-separated rows.
    pub fn query(&self, database: Option<&str>, sql: &str) -> Result<String> {
        let defaults = self.defaults_file()?;
        let client = client_tool()
            .ok_or_else(|| Error::Run("neither `mariadb` nor `mysql` is installed".into()))?;
        // `quote_string` relies on backslash escapes, whatever the server's default.
        let sql = format!(
            "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', ''); {sql}"
        );
        let mut args = vec!["--batch", "--skip-column-names", "-e", sql.as_str()];
        if let Some(db) = database {
            args.push(db);
        }
        self.program(&client, &defaults, &args)
            .output()
            .map_err(|e| Error::Run(format!("MySQL {}: {e}", self.display())))
    }

    /// Runs one statement (see `read_only::single_statement`) in a read-only
    /// transaction of the connection's database: the server refuses writes.
    pub fn query_read_only(&self, sql: &str) -> Result<String> {
        self.query(
            Some(&self.database),
            &format!("START TRANSACTION READ ONLY; {sql}; ROLLBACK"),
        )
    }
}

pub fn dump_tool() -> Option<String> {
    find_tool(&["mariadb-dump", "mysqldump"])
}

pub fn client_tool() -> Option<String> {
    find_tool(&["mariadb", "mysql"])
}

/// `'text'` for MySQL: the one quoting of strings, read the same by the
/// server (in its default `sql_mode`, which `query` ensures) and by the
/// client's option files (`--defaults-extra-file`). Backslash, quotes and
/// line breaks are escaped with a backslash.
pub fn quote_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `` `name` `` with backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub struct MysqlSource {
    job: String,
    conn: MyConn,
}

impl MysqlSource {
    pub fn new(job: &str, conn: MyConn) -> Self {
        MysqlSource {
            job: job.to_string(),
            conn,
        }
    }

    fn fail(&self, message: impl std::fmt::Display) -> Error {
        Error::source(
            &self.job,
            format!("MySQL {}: {message}", self.conn.display()),
        )
    }
}

impl Dump for MysqlSource {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn extension(&self) -> &str {
        "sql"
    }

    fn describe(&self) -> String {
        format!("MySQL {}", self.conn.display())
    }

    fn size_hint(&self) -> Option<u64> {
        self.conn
            .query(
                None,
                &format!(
                    "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = '{}'",
                    self.conn.database.replace('\'', "''")
                ),
            )
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value> {
        if self.conn.database.is_empty() {
            return Err(self.fail("the URL names no database: add /DBNAME"));
        }
        let tool = dump_tool().ok_or_else(|| {
            self.fail(
                "neither `mariadb-dump` nor `mysqldump` is installed (Debian: mariadb-client)",
            )
        })?;
        let tool_version = Program::new([tool.as_str(), "--version"])
            .output()
            .map_err(|e| self.fail(e))?
            .trim()
            .to_string();
        let server_version = self
            .conn
            .query(None, "SELECT VERSION()")
            .map_err(|e| Error::source(&self.job, e))?
            .trim()
            .to_string();
        let tables: serde_json::Map<String, serde_json::Value> = self
            .conn
            .query(
                Some(&self.conn.database),
                "SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
            )
            .map_err(|e| Error::source(&self.job, e))?
            .lines()
            .filter_map(|l| {
                let (name, rows) = l.split_once('\t')?;
                Some((name.to_string(), json!(rows.trim().parse::<i64>().unwrap_or(0))))
            })
            .collect();
        let (tables, estimated) =
            exact_counts(&self.conn, tables).map_err(|e| Error::source(&self.job, e))?;
        // A dump of one database carries no CREATE DATABASE: keep its defaults for the restore.
        let defaults_row = self
            .conn
            .query(
                Some(&self.conn.database),
                "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata WHERE schema_name = DATABASE()",
            )
            .map_err(|e| Error::source(&self.job, e))?;
        let (charset, collation) = defaults_row.trim().split_once('\t').unwrap_or_default();
        tracing::info!(job = %self.job, tool = %tool, "dumping with {tool}");
        let defaults = self.conn.defaults_file()?;
        let program = self.conn.program(
            &tool,
            &defaults,
            &[
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--default-character-set=utf8mb4",
                "--",
                &self.conn.database,
            ],
        );
        program.stream_to(out).map_err(|e| self.fail(e))?;
        Ok(json!({
            "server": self.conn.display(),
            "database": self.conn.database,
            "charset": charset,
            "collation": collation,
            "server_version": server_version,
            "dump_tool": tool,
            "dump_tool_version": tool_version,
            "tables": tables,
            "estimated_tables": estimated,
        }))
    }
}

/// Replaces InnoDB's row estimates by exact counts for tables up to
/// `postgres::EXACT_COUNT_LIMIT` estimated rows; returns the names still estimated.
fn exact_counts(
    conn: &MyConn,
    mut tables: serde_json::Map<String, serde_json::Value>,
) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<String>)> {
    let limit = super::postgres::EXACT_COUNT_LIMIT;
    let mut small = Vec::new();
    let mut estimated = Vec::new();
    for (name, rows) in &tables {
        if rows.as_i64().unwrap_or(0) <= limit {
            small.push(name.clone());
        } else {
            estimated.push(name.clone());
        }
    }
    if !small.is_empty() {
        let parts: Vec<String> = small
            .iter()
            .map(|t| {
                format!(
                    "SELECT {}, COUNT(*) FROM {}",
                    quote_string(t),
                    quote_ident(t)
                )
            })
            .collect();
        let text = conn.query(Some(&conn.database), &parts.join(" UNION ALL "))?;
        for line in text.lines() {
            if let Some((name, rows)) = line.rsplit_once('\t')
                && let Ok(rows) = rows.trim().parse::<i64>()
            {
                tables.insert(name.to_string(), json!(rows));
            }
        }
    }
    Ok((tables, estimated))
}

pub struct MyRestore {
    pub target: MyConn,
    /// ` CHARACTER SET … COLLATE …` of the dumped database, for CREATE DATABASE.
    create_options: String,
    /// Keeps the defaults file alive while the receiver runs.
    defaults: std::sync::Mutex<Option<SecretFile>>,
}

impl MyRestore {
    pub fn new(target: MyConn) -> Self {
        MyRestore {
            target,
            create_options: String::new(),
            defaults: std::sync::Mutex::new(None),
        }
    }

    /// Creates databases with the dumped one's character set and collation
    /// (`charset`/`collation` in the manifest's facts), not the server's defaults.
    pub fn with_defaults_of(mut self, facts: &serde_json::Value) -> Self {
        let name = |key: &str| {
            facts[key]
                .as_str()
                .filter(|v| {
                    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
                .map(str::to_string)
        };
        if let (Some(charset), Some(collation)) = (name("charset"), name("collation")) {
            self.create_options = format!(" CHARACTER SET {charset} COLLATE {collation}");
        }
        self
    }

    fn table_count(&self) -> Result<u64> {
        Ok(self
            .target
            .query(
                None,
                &format!(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}'",
                    self.target.database.replace('\'', "''")
                ),
            )?
            .trim()
            .parse()
            .unwrap_or(0))
    }

    fn exists(&self) -> Result<bool> {
        Ok(!self
            .target
            .query(
                None,
                &format!(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name = '{}'",
                    self.target.database.replace('\'', "''")
                ),
            )?
            .trim()
            .is_empty())
    }
}

impl ServerRestore for MyRestore {
    /// The client runs statement by statement, and DDL commits on its own.
    fn transactional(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.target.display()
    }

    fn plan(&self, request: TargetRequest) -> Result<TargetStep> {
        let name = self.target.database.clone();
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "{} names no database: add /DBNAME to the URL",
                self.target.display()
            )));
        }
        if !self.exists()? {
            return Ok(TargetStep::Create { database: name });
        }
        let tables = self.table_count()?;
        if tables > 0 && !request.force {
            return Err(Error::Target {
                path: self.target.display().into(),
                message: format!(
                    "database `{name}` already holds {tables} tables; pass --force to restore into it (add --clean to drop them first)"
                ),
            });
        }
        Ok(if request.clean {
            TargetStep::Recreate { database: name }
        } else {
            TargetStep::IntoExisting {
                database: name,
                holds: format!("{tables} tables"),
            }
        })
    }

    fn apply(&self, step: &TargetStep) -> Result<()> {
        match step {
            TargetStep::Create { database } => {
                self.target.query(
                    None,
                    &format!(
                        "CREATE DATABASE {}{}",
                        quote_ident(database),
                        self.create_options
                    ),
                )?;
            }
            TargetStep::Recreate { database } => {
                let quoted = quote_ident(database);
                self.target.query(
                    None,
                    &format!(
                        "DROP DATABASE {quoted}; CREATE DATABASE {quoted}{}",
                        self.create_options
                    ),
                )?;
            }
            TargetStep::IntoExisting { .. } | TargetStep::ReplayOnServer { .. } => {}
        }
        Ok(())
    }

    fn receiver_program(&self, _clean: bool) -> Program {
        let client = client_tool().unwrap_or_else(|| "mariadb".to_string());
        let defaults = match self.target.defaults_file() {
            Ok(f) => f,
            // The program then fails to start with a clear error about the missing file.
            Err(_) => SecretFile {
                path: std::path::PathBuf::from("/nonexistent/cairn-defaults"),
            },
        };
        let program = self.target.program(
            &client,
            &defaults,
            &["--default-character-set=utf8mb4", &self.target.database],
        );
        if let Ok(mut slot) = self.defaults.lock() {
            *slot = Some(defaults);
        }
        program
    }

    fn listing_program(&self) -> Option<Program> {
        None
    }

    fn drop_created(&self) {
        let _ = self.target.query(
            None,
            &format!(
                "DROP DATABASE IF EXISTS {}",
                quote_ident(&self.target.database)
            ),
        );
    }
}

/// A job's MySQL/MariaDB source as a [`SourceKind`](super::kind::SourceKind).
pub struct MysqlKind<'a> {
    pub job: &'a crate::config::Job,
    pub url: &'a str,
    pub password_env: Option<&'a str>,
}

impl MysqlKind<'_> {
    fn conn(&self) -> Result<MyConn> {
        let password = super::password_from_env(&self.job.name, self.password_env)?;
        MyConn::parse(self.url, password)
    }
}

impl super::kind::SourceKind for MysqlKind<'_> {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn dumper(&self) -> Result<Box<dyn Dump>> {
        Ok(Box::new(MysqlSource::new(&self.job.name, self.conn()?)))
    }

    fn probe(&self) -> Result<String> {
        let conn = self.conn()?;
        let tool = dump_tool()
            .ok_or_else(|| Error::Run("neither mariadb-dump nor mysqldump is installed".into()))?;
        let version = conn.query(None, "SELECT VERSION()")?;
        Ok(format!(
            "{} answers (server {}); dumps with {tool}",
            conn.display(),
            version.trim()
        ))
    }

    fn live_checks(&self) -> Result<super::kind::LiveChecks> {
        let conn = self.conn()?;
        Ok(super::kind::server_answers(
            conn.query(Some(&conn.database), "SELECT VERSION()"),
        ))
    }

    fn offending(&self, sql: &str) -> Result<super::kind::Offending> {
        use super::read_only::{Dialect, single_statement};
        let text = self.conn()?.query_read_only(&format!(
            "SELECT COUNT(*) OVER (), q.* FROM ({}\n) q LIMIT {}",
            single_statement(sql, Dialect::Mysql)?,
            super::kind::FIRST_ROWS
        ))?;
        Ok(super::kind::offending_from_text(&text, '\t', ", "))
    }

    fn rows(&self, query: &str, limit: usize) -> Result<Vec<Vec<String>>> {
        use super::read_only::{Dialect, single_statement};
        let query = single_statement(query, Dialect::Mysql)?;
        let text = self.conn()?.query_read_only(&format!(
            "SELECT * FROM ({query}\n) AS cairn_check LIMIT {limit}"
        ))?;
        Ok(super::kind::split_rows(&text, '\t'))
    }

    fn no_database(&self) -> Error {
        super::kind::no_database(self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_one_way_for_sql_and_option_files() {
        assert_eq!(quote_string("plain"), "'plain'");
        assert_eq!(quote_string(r#"a'b"c\d"#), r#"'a\'b\"c\\d'"#);
        assert_eq!(quote_string("x\ny"), "'x\\ny'");
        // The client's option-file parser reads the same quoting back.
        if client_tool().is_none() {
            return;
        }
        let password = "p'w\"d\\ with space\nline";
        let conn = MyConn::parse("mysql://u@127.0.0.1/db", Some(password.into())).unwrap();
        let defaults = conn.defaults_file().unwrap();
        let printed = Program::new([
            client_tool().unwrap(),
            format!("--defaults-extra-file={}", defaults.path().display()),
            "--print-defaults".to_string(),
        ])
        .output()
        .unwrap();
        assert!(
            printed.contains(&format!("--password={password}")),
            "{printed}"
        );
    }

    #[test]
    fn parses_urls_without_leaking_passwords() {
        let c = MyConn::parse("mysql://root:se%22cret@127.0.0.1:3307/shop", None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("127.0.0.1", 3307, "root")
        );
        assert_eq!(c.password.as_deref(), Some("se\"cret"));
        assert_eq!(c.database, "shop");
        assert_eq!(c.display(), "mysql://root@127.0.0.1:3307/shop");
        assert_eq!(
            c.with_database("other").display(),
            "mysql://root@127.0.0.1:3307/other"
        );
    }
}
