//! `sql`: a query on a job's database that must return no rows; the rows it
//! returns (up to 20) go into the outcome and the alert. The query only reads
//! (see `source::read_only`).

use super::Finding;
use crate::config::{Config, SourceConfig};
use crate::source::read_only::{Dialect, single_statement};

const MAX_ROWS: usize = 20;
/// Rows read at most; a query returning more is reported as "more than".
const ROW_LIMIT: usize = 1000;

pub fn run(config: &Config, job: &str, query: &str) -> Finding {
    let Some(job) = config.jobs.get(job) else {
        return Finding::failing(format!("unknown job `{job}`"));
    };
    let dialect = match &job.source {
        SourceConfig::Postgres { .. } => Dialect::Postgres,
        SourceConfig::Mysql { .. } => Dialect::Mysql,
        _ => Dialect::Sqlite,
    };
    let query = match single_statement(query, dialect) {
        Ok(query) => query,
        Err(e) => return Finding::failing(e.to_string()),
    };
    // Server queries run as a derived table (statements that write, such as
    // DELETE … RETURNING, are refused there) in a read-only transaction (so
    // are writes hidden in functions). The line break ends a trailing comment.
    let wrapped = format!(
        "SELECT * FROM ({query}\n) AS cairn_check LIMIT {}",
        ROW_LIMIT + 1
    );
    let rows = match &job.source {
        SourceConfig::Sqlite { path } => sqlite_rows(path, query),
        SourceConfig::Postgres {
            url, password_env, ..
        } => crate::source::password_from_env(&job.name, password_env.as_deref())
            .and_then(|pw| crate::source::postgres::PgConn::parse(url, pw))
            .and_then(|conn| conn.query_read_only(&wrapped))
            .map(|text| split_rows(&text, '|'))
            .map_err(|e| e.to_string()),
        SourceConfig::Mysql { url, password_env } => {
            crate::source::password_from_env(&job.name, password_env.as_deref())
                .and_then(|pw| crate::source::mysql::MyConn::parse(url, pw))
                .and_then(|conn| conn.query_read_only(&wrapped))
                .map(|text| split_rows(&text, '\t'))
                .map_err(|e| e.to_string())
        }
        _ => Err(format!("job `{}` has no database to query", job.name)),
    };
    match rows {
        Err(e) => Finding::failing(format!("the query failed: {e}")),
        Ok(rows) if rows.is_empty() => Finding::ok("the query returned no rows"),
        Ok(rows) => {
            let shown: Vec<String> = rows.iter().take(5).map(|r| r.join(", ")).collect();
            let count = if rows.len() > ROW_LIMIT {
                format!("more than {ROW_LIMIT} rows")
            } else {
                format!(
                    "{} row{}",
                    rows.len(),
                    if rows.len() == 1 { "" } else { "s" }
                )
            };
            Finding::failing(format!(
                "the query returned {count}: {}{}",
                shown.join("; "),
                if rows.len() > 5 { "; …" } else { "" }
            ))
            .with(serde_json::json!({ "rows": rows.iter().take(MAX_ROWS).collect::<Vec<_>>(), "row_count": rows.len().min(ROW_LIMIT + 1) }))
        }
    }
}

fn split_rows(text: &str, separator: char) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(separator).map(str::to_string).collect())
        .collect()
}

fn sqlite_rows(path: &std::path::Path, query: &str) -> Result<Vec<Vec<String>>, String> {
    use rusqlite::{OpenFlags, types::ValueRef};
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| e.to_string())?;
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    let mut statement = conn.prepare(query).map_err(|e| e.to_string())?;
    if !statement.readonly() {
        return Err("the query would write to the database: only read-only queries are run".into());
    }
    let columns = statement.column_count();
    let mut rows = statement.query([]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                ValueRef::Null => "NULL".to_string(),
                ValueRef::Integer(n) => n.to_string(),
                ValueRef::Real(f) => f.to_string(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
            });
        }
        out.push(values);
        if out.len() > ROW_LIMIT {
            break;
        }
    }
    Ok(out)
}
