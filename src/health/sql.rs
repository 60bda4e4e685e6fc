//! `sql`: a query on a job's database that must return no rows; the rows it
//! returns (up to 20) go into the outcome and the alert. The query only reads
//! (see `source::read_only`).

use super::Finding;
use crate::config::Config;

const MAX_ROWS: usize = 20;
/// Rows read at most; a query returning more is reported as "more than".
const ROW_LIMIT: usize = 1000;

pub fn run(config: &Config, job: &str, query: &str) -> Finding {
    let Some(job) = config.jobs.get(job) else {
        return Finding::failing(format!("unknown job `{job}`"));
    };
    let rows = crate::source::kind::of(job)
        .rows(query, ROW_LIMIT + 1)
        .map_err(|e| e.to_string());
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
