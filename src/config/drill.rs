//! Validation of a job's `verify`, `drill` and `validate` keys.

use super::resolve;
use std::path::{Path, PathBuf};

use super::schema::{DrillConfig, RuleConfig, ValidateConfig};
use super::{ConfigError, Secret, SourceConfig};
use crate::cron::Schedule;

/// Default allowed relative difference of row counts (10 %).
pub const DEFAULT_ROW_COUNT_TOLERANCE: f64 = 0.1;

/// `drill = { … }`, validated.
#[derive(Debug, Clone, Default)]
pub struct Drill {
    /// The job has a `drill` table.
    pub configured: bool,
    pub schedule: Option<Schedule>,
    pub assert: Vec<String>,
    pub expect_tables: Vec<String>,
    /// Fraction: |restored − recorded| ≤ tolerance × recorded.
    pub row_count_tolerance: f64,
    /// Another server for the scratch database (may hold a password: never print it).
    pub url: Option<Secret>,
    pub max_age: Option<std::time::Duration>,
    /// Absolute; `None` means the system temp dir.
    pub scratch_dir: Option<PathBuf>,
}

impl Drill {
    pub fn scratch_dir(&self) -> PathBuf {
        self.scratch_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// `validate = { … }`, validated.
#[derive(Debug, Clone, Default)]
pub struct Validate {
    pub before_backup: bool,
    pub rules: Vec<RuleConfig>,
}

/// Checks `drill`; `fail(offset, key, message)` builds the positioned error.
pub(super) fn drill(
    raw: Option<(DrillConfig, usize)>,
    source: &SourceConfig,
    timezone: &str,
    base: &Path,
    fail: &dyn Fn(Option<usize>, &str, String) -> ConfigError,
) -> Result<Drill, ConfigError> {
    let Some((raw, at)) = raw else {
        return Ok(Drill {
            row_count_tolerance: DEFAULT_ROW_COUNT_TOLERANCE,
            ..Drill::default()
        });
    };
    let at = Some(at);
    let database = matches!(
        source,
        SourceConfig::Sqlite { .. } | SourceConfig::Postgres { .. } | SourceConfig::Mysql { .. }
    );
    if !database && (!raw.assert.is_empty() || !raw.expect_tables.is_empty()) {
        return Err(fail(
            at,
            "drill",
            "`assert` and `expect_tables` need a database source (sqlite, postgres or mysql)"
                .into(),
        ));
    }
    if matches!(source, SourceConfig::Command { .. }) {
        return Err(fail(
            at,
            "drill",
            "command jobs cannot be drilled: cairn does not know what their restore produces"
                .into(),
        ));
    }
    let schedule = raw
        .cron
        .as_deref()
        .map(|cron| Schedule::parse(cron, None, timezone))
        .transpose()
        .map_err(|e| fail(at, "drill.cron", e))?;
    let tolerance = raw
        .row_count_tolerance
        .unwrap_or(DEFAULT_ROW_COUNT_TOLERANCE);
    if !(0.0..=1.0).contains(&tolerance) {
        return Err(fail(
            at,
            "drill.row_count_tolerance",
            format!("{tolerance} is not a fraction between 0 and 1 (0.1 allows 10 % difference)"),
        ));
    }
    if let Some(url) = &raw.url {
        let parsed = match source {
            SourceConfig::Postgres { .. } => {
                super::connection::PgConn::parse(url.expose(), None).map(drop)
            }
            SourceConfig::Mysql { .. } => {
                super::connection::MyConn::parse(url.expose(), None).map(drop)
            }
            _ => Err(crate::Error::Usage(
                "`drill.url` applies to postgres and mysql jobs only".into(),
            )),
        };
        parsed.map_err(|e| fail(at, "drill.url", e.to_string()))?;
    }
    if let Some(dir) = &raw.scratch_dir
        && dir.as_os_str().is_empty()
    {
        return Err(fail(at, "drill.scratch_dir", "must name a folder".into()));
    }
    Ok(Drill {
        configured: true,
        schedule,
        assert: raw.assert,
        expect_tables: raw.expect_tables,
        row_count_tolerance: tolerance,
        url: raw.url,
        max_age: raw.max_age,
        scratch_dir: raw.scratch_dir.map(|p| resolve(base, p)),
    })
}

pub(super) fn validate(
    raw: Option<(ValidateConfig, usize)>,
    source: &SourceConfig,
    fail: &dyn Fn(Option<usize>, &str, String) -> ConfigError,
) -> Result<Validate, ConfigError> {
    let Some((raw, at)) = raw else {
        return Ok(Validate::default());
    };
    let at = Some(at);
    let database = matches!(
        source,
        SourceConfig::Sqlite { .. } | SourceConfig::Postgres { .. } | SourceConfig::Mysql { .. }
    );
    if !database && !raw.rules.is_empty() {
        return Err(fail(
            at,
            "validate.rules",
            "rules need a database source (sqlite, postgres or mysql)".into(),
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for rule in &raw.rules {
        if rule.name.trim().is_empty() || rule.sql.trim().is_empty() {
            return Err(fail(
                at,
                "validate.rules",
                "every rule needs a `name` and a `sql` query that returns the offending rows"
                    .into(),
            ));
        }
        if names.contains(&rule.name.as_str()) {
            return Err(fail(
                at,
                "validate.rules",
                format!("the rule name `{}` is used twice", rule.name),
            ));
        }
        names.push(&rule.name);
    }
    Ok(Validate {
        before_backup: raw.before_backup,
        rules: raw.rules,
    })
}
