//! Live data validation: the job's source checked where it lives, before (or
//! without) a backup. SQLite: `PRAGMA integrity_check` and
//! `PRAGMA foreign_key_check`; PostgreSQL and MySQL: connectivity; then the
//! job's rules, each a query that must return no rows, reported with the count
//! of offending rows and the first few. Nothing here writes: see
//! `source::read_only`.

use serde::Serialize;

use crate::config::{Job, RuleConfig};
use crate::state::{RunEnd, RunKind, StateStore, Trigger};
use crate::{Error, Result};

pub use crate::source::kind::{Check, FIRST_ROWS};

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

fn run_rules(
    rules: &[RuleConfig],
    run: impl Fn(&str) -> Result<crate::source::kind::Offending>,
) -> Vec<RuleResult> {
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
    let source = crate::source::kind::of(job);
    let live = source.live_checks()?;
    let checks = live.checks;
    let results = if live.rules_can_run {
        run_rules(rules, |sql| source.offending(sql))
    } else {
        Vec::new()
    };
    let kind = source.kind();
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
