//! Live data validation: the job's source checked where it lives, before (or
//! without) a backup. SQLite: `PRAGMA integrity_check` and
//! `PRAGMA foreign_key_check`; PostgreSQL and MySQL: connectivity; then the
//! job's rules, each a query that must return no rows, reported with the count
//! of offending rows and the first few. Nothing here writes: see
//! `source::read_only`.

use serde::Serialize;

use crate::config::{Job, RuleConfig, SourceConfig};
use crate::source::read_only::{Dialect, open_sqlite, single_statement};
use crate::source::{mysql::MyConn, postgres::PgConn};
use crate::state::{RunEnd, RunKind, StateStore, Trigger};
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

/// Offending rows shown per rule.
pub const FIRST_ROWS: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    pub name: String,
    pub blocking: bool,
    pub ok: bool,
    pub offending_rows: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_rows: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    pub job: String,
    pub kind: String,
    pub ok: bool,
    /// A rule marked `blocking` failed: a backup with `before_backup` is refused.
    pub blocked: bool,
    pub checks: Vec<Check>,
    pub rules: Vec<RuleResult>,
}

impl ValidateReport {
    pub fn failure(&self) -> Option<String> {
        let checks = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail));
        let rules = self.rules.iter().filter(|r| !r.ok).map(|r| match &r.error {
            Some(e) => format!("rule `{}` could not run: {e}", r.name),
            None => format!(
                "rule `{}`: {} offending rows{}",
                r.name,
                r.offending_rows,
                r.first_rows
                    .first()
                    .map(|f| format!(", e.g. {f}"))
                    .unwrap_or_default()
            ),
        });
        let all: Vec<String> = checks.chain(rules).collect();
        (!all.is_empty()).then(|| all.join("; "))
    }
}

impl super::runs::Summary for ValidateReport {
    fn run_end(&self) -> RunEnd {
        RunEnd {
            success: self.ok,
            bytes: None,
            artifact_id: None,
            error: self.failure(),
            details: serde_json::to_value(self).ok(),
        }
    }
}

/// Offending rows of one rule: (total count, first rows as text).
type Offending = (u64, Vec<String>);

// Each rule is wrapped so that one pass returns the total count and the first
// rows; it must be one statement, and runs where nothing can be written. The
// line break ends a trailing `--` comment before the closing parenthesis.

fn sqlite_rule(conn: &rusqlite::Connection, sql: &str) -> Result<Offending> {
    let wrapped = format!(
        "SELECT count(*) OVER (), * FROM ({}\n) LIMIT {FIRST_ROWS}",
        single_statement(sql, Dialect::Sqlite)?
    );
    let mut stmt = conn
        .prepare(&wrapped)
        .map_err(|e| Error::Run(e.to_string()))?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).map_err(|e| Error::Run(e.to_string()))?;
    let mut total = 0u64;
    let mut first = Vec::new();
    while let Some(row) = rows.next().map_err(|e| Error::Run(e.to_string()))? {
        total = row
            .get::<_, i64>(0)
            .map_err(|e| Error::Run(e.to_string()))? as u64;
        let values: Vec<String> = (1..columns)
            .map(|i| match row.get_ref(i) {
                Ok(rusqlite::types::ValueRef::Null) => "NULL".to_string(),
                Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
                Ok(rusqlite::types::ValueRef::Real(f)) => f.to_string(),
                Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                Ok(rusqlite::types::ValueRef::Blob(_)) => "<blob>".to_string(),
                Err(_) => "?".to_string(),
            })
            .collect();
        first.push(values.join(", "));
    }
    Ok((total, first))
}

fn pg_rule(conn: &PgConn, sql: &str) -> Result<Offending> {
    let text = conn.query_read_only(&format!(
        "SELECT count(*) OVER (), q::text FROM ({}\n) q LIMIT {FIRST_ROWS}",
        single_statement(sql, Dialect::Postgres)?
    ))?;
    let mut total = 0;
    let mut first = Vec::new();
    for line in text.lines() {
        let (n, row) = line.split_once('|').unwrap_or((line, ""));
        total = n.trim().parse().unwrap_or(total);
        first.push(row.to_string());
    }
    Ok((total, first))
}

fn my_rule(conn: &MyConn, sql: &str) -> Result<Offending> {
    let text = conn.query_read_only(&format!(
        "SELECT COUNT(*) OVER (), q.* FROM ({}\n) q LIMIT {FIRST_ROWS}",
        single_statement(sql, Dialect::Mysql)?
    ))?;
    let mut total = 0;
    let mut first = Vec::new();
    for line in text.lines() {
        let (n, row) = line.split_once('\t').unwrap_or((line, ""));
        total = n.trim().parse().unwrap_or(total);
        first.push(row.replace('\t', ", "));
    }
    Ok((total, first))
}

fn run_rules(rules: &[RuleConfig], run: impl Fn(&str) -> Result<Offending>) -> Vec<RuleResult> {
    rules
        .iter()
        .map(|rule| match run(&rule.sql) {
            Ok((offending_rows, first_rows)) => RuleResult {
                name: rule.name.clone(),
                blocking: rule.blocking,
                ok: offending_rows == 0,
                offending_rows,
                first_rows,
                error: None,
            },
            Err(e) => RuleResult {
                name: rule.name.clone(),
                blocking: rule.blocking,
                ok: false,
                offending_rows: 0,
                first_rows: Vec::new(),
                error: Some(e.to_string()),
            },
        })
        .collect()
}

/// Validates `job`'s live data.
pub fn validate(job: &Job) -> Result<ValidateReport> {
    let rules = &job.validate.rules;
    let mut checks = Vec::new();
    let (kind, results) = match &job.source {
        SourceConfig::Sqlite { path } => {
            let conn = open_sqlite(path)?;
            let _ = conn.busy_timeout(std::time::Duration::from_secs(60));
            let integrity: std::result::Result<Vec<String>, _> = conn
                .prepare("PRAGMA integrity_check")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
            checks.push(match integrity {
                Ok(lines) => {
                    let text = lines.join("; ");
                    Check::new("integrity_check", text == "ok", text)
                }
                Err(e) => Check::new("integrity_check", false, e.to_string()),
            });
            checks.push(match crate::source::sqlite::foreign_key_violations(&conn) {
                Ok((0, _)) => Check::new("foreign_key_check", true, "no violations"),
                Ok((n, first)) => Check::new(
                    "foreign_key_check",
                    false,
                    format!("{n} rows violate foreign keys, e.g. {}", first.join("; ")),
                ),
                Err(e) => Check::new("foreign_key_check", false, e.to_string()),
            });
            ("sqlite", run_rules(rules, |sql| sqlite_rule(&conn, sql)))
        }
        SourceConfig::Postgres {
            url, password_env, ..
        } => {
            let password = crate::source::password_from_env(&job.name, password_env.as_deref())?;
            let conn = PgConn::parse(url, password)?;
            match conn.query("SELECT version()") {
                Ok(version) => {
                    checks.push(Check::new("connectivity", true, version.trim().to_string()));
                    ("postgres", run_rules(rules, |sql| pg_rule(&conn, sql)))
                }
                Err(e) => {
                    checks.push(Check::new("connectivity", false, e.to_string()));
                    ("postgres", Vec::new())
                }
            }
        }
        SourceConfig::Mysql { url, password_env } => {
            let password = crate::source::password_from_env(&job.name, password_env.as_deref())?;
            let conn = MyConn::parse(url, password)?;
            match conn.query(Some(&conn.database), "SELECT VERSION()") {
                Ok(version) => {
                    checks.push(Check::new("connectivity", true, version.trim().to_string()));
                    ("mysql", run_rules(rules, |sql| my_rule(&conn, sql)))
                }
                Err(e) => {
                    checks.push(Check::new("connectivity", false, e.to_string()));
                    ("mysql", Vec::new())
                }
            }
        }
        SourceConfig::Files { path, .. } => {
            let readable = std::fs::read_dir(path);
            checks.push(Check::new(
                "folder",
                readable.is_ok(),
                match readable {
                    Ok(_) => format!("{} can be read", path.display()),
                    Err(e) => format!("{}: {e}", path.display()),
                },
            ));
            ("files", Vec::new())
        }
        SourceConfig::Command { .. } => {
            checks.push(Check::new(
                "source",
                true,
                "command sources have nothing cairn can validate",
            ));
            ("command", Vec::new())
        }
    };
    let ok = checks.iter().all(|c| c.ok) && results.iter().all(|r| r.ok);
    let blocked = results.iter().any(|r| r.blocking && !r.ok);
    for rule in results.iter().filter(|r| !r.ok) {
        tracing::warn!(job = %job.name, rule = %rule.name, rows = rule.offending_rows, "validation rule failed");
    }
    Ok(ValidateReport {
        job: job.name.clone(),
        kind: kind.to_string(),
        ok,
        blocked,
        checks,
        rules: results,
    })
}

/// With `validate.before_backup`: validates (recorded as a validate run) and
/// refuses the backup when a blocking rule fails.
pub fn before_backup(
    job: &Job,
    store: Option<&dyn StateStore>,
    trigger: Trigger,
) -> Result<Option<ValidateReport>> {
    if !job.validate.before_backup {
        return Ok(None);
    }
    let report = super::runs::recorded(store, &job.name, RunKind::Validate, trigger, || {
        validate(job)
    })?;
    if report.blocked {
        return Err(Error::Run(format!(
            "backup of job `{}` refused by validation: {} (fix the data, or set blocking = false on the rule)",
            job.name,
            report.failure().unwrap_or_default()
        )));
    }
    Ok(Some(report))
}
