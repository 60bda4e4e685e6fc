//! The job's SQL assertions, `expect_tables` and the row-count comparison with
//! the counts recorded in the manifest at backup time.

use std::collections::BTreeMap;

use super::{Check, TableCount};
use crate::Result;

/// Whether a query's single value means true (`t`, `true`, `1`; any case).
pub fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "t" | "true" | "1"
    )
}

/// Runs one assertion: it must return one value, and that value must be true.
pub fn assertion(sql: &str, query: impl Fn(&str) -> Result<String>) -> Check {
    let name = format!("assert {sql}");
    match query(sql) {
        Ok(value) if truthy(&value) => Check::new(name, true, "true"),
        Ok(value) => Check::new(
            name,
            false,
            format!(
                "returned {:?}, not true: the restored data does not satisfy it",
                value.trim()
            ),
        ),
        Err(e) => Check::new(name, false, format!("the query failed: {e}")),
    }
}

/// Whether a restored table is the one `wanted` names (`items` matches
/// `public.items`).
fn same_table(restored: &str, wanted: &str) -> bool {
    restored == wanted
        || restored
            .split_once('.')
            .is_some_and(|(_, table)| table == wanted)
}

pub fn expect_tables(wanted: &[String], restored: &BTreeMap<String, i64>) -> Check {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !restored.keys().any(|r| same_table(r, w)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Check::new(
            "expect_tables",
            true,
            format!("all {} expected tables are there", wanted.len()),
        )
    } else {
        Check::new(
            "expect_tables",
            false,
            format!("missing from the restore: {}", missing.join(", ")),
        )
    }
}

/// Compares row counts: a table recorded at backup time must be restored, with
/// |restored − recorded| ≤ ⌈tolerance × recorded⌉. `estimate(table)`: the
/// recorded count came from the server's statistics (tables too big to count at
/// backup time, or manifests of older versions), which may lag, so a recorded 0
/// accepts any count.
pub fn compare_rows(
    recorded: &serde_json::Map<String, serde_json::Value>,
    restored: &BTreeMap<String, i64>,
    tolerance: f64,
    estimate: impl Fn(&str) -> bool,
) -> (Vec<TableCount>, Check) {
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    for (table, value) in recorded {
        let Some(expected) = value.as_i64() else {
            continue;
        };
        let found = restored.get(table).copied();
        let ok = match found {
            None => false,
            Some(_) if expected <= 0 && estimate(table) => true,
            Some(found) => {
                let allowed = (tolerance * expected as f64).ceil() as i64;
                (found - expected).abs() <= allowed
            }
        };
        if !ok {
            problems.push(match found {
                None => format!("{table} is missing (recorded {expected} rows)"),
                Some(found) => format!("{table} has {found} rows, recorded {expected}"),
            });
        }
        tables.push(TableCount {
            table: table.clone(),
            recorded: Some(expected),
            restored: found,
            ok,
        });
    }
    for (table, found) in restored {
        if !recorded.contains_key(table) {
            tables.push(TableCount {
                table: table.clone(),
                recorded: None,
                restored: Some(*found),
                ok: true,
            });
        }
    }
    let check = if recorded.is_empty() {
        Check::new(
            "row counts",
            true,
            "the manifest records no row counts; nothing to compare",
        )
    } else if problems.is_empty() {
        Check::new(
            "row counts",
            true,
            format!(
                "{} tables match the manifest within {:.0} %",
                recorded.len(),
                tolerance * 100.0
            ),
        )
    } else {
        Check::new(
            "row counts",
            false,
            format!(
                "{} (tolerance {:.0} %)",
                problems.join("; "),
                tolerance * 100.0
            ),
        )
    };
    (tables, check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, i64)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect()
    }

    #[test]
    fn missing_tables_and_counts_beyond_tolerance_fail() {
        let recorded = map(&[("items", 100), ("suppliers", 3)]);
        let restored: BTreeMap<String, i64> = [("items".to_string(), 95)].into();
        let (tables, check) = compare_rows(&recorded, &restored, 0.1, |_| false);
        assert!(!check.ok);
        assert!(
            check.detail.contains("suppliers is missing"),
            "{}",
            check.detail
        );
        assert!(tables.iter().find(|t| t.table == "items").unwrap().ok);
        let restored: BTreeMap<String, i64> =
            [("items".to_string(), 89), ("suppliers".to_string(), 3)].into();
        let (_, check) = compare_rows(&recorded, &restored, 0.1, |_| false);
        assert!(!check.ok, "89 of 100 is beyond 10 %");
        let (_, check) = compare_rows(&recorded, &restored, 0.2, |_| false);
        assert!(check.ok);
    }

    #[test]
    fn stale_estimates_of_zero_accept_any_count() {
        let recorded = map(&[("public.items", 0)]);
        let restored: BTreeMap<String, i64> = [("public.items".to_string(), 40)].into();
        assert!(compare_rows(&recorded, &restored, 0.0, |_| true).1.ok);
        assert!(!compare_rows(&recorded, &restored, 0.0, |_| false).1.ok);
    }

    #[test]
    fn truthiness_and_table_names() {
        assert!(truthy("t") && truthy(" TRUE\n") && truthy("1"));
        assert!(!truthy("f") && !truthy("0") && !truthy("") && !truthy("2"));
        let restored: BTreeMap<String, i64> = [("public.items".to_string(), 1)].into();
        assert!(expect_tables(&["items".into()], &restored).ok);
        assert!(!expect_tables(&["orders".into()], &restored).ok);
    }
}
