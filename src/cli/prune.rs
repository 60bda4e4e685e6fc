use crate::Result;
use crate::engine::{self, prune};

use super::{Context, TriggerArg, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to prune [default: all]
    jobs: Vec<String>,
    /// Show what would be kept and deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    trigger: TriggerArg,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    let store = super::open_store(&config);
    let store = store.as_deref();
    let mut results = Vec::new();
    for job in jobs {
        let request = super::request(context, &config, job, store, args.trigger.trigger());
        let pruned = engine::job::prune(&request, args.dry_run)?;
        if !context.json {
            print(&pruned);
        }
        results.push(pruned);
    }
    if context.json {
        output::print_json(&results);
    }
    let failed = results
        .iter()
        .flat_map(|r| &r.destinations)
        .any(prune::PruneReport::failed);
    Ok(u8::from(failed))
}

/// Keep/delete with the reason for each artifact, per destination.
pub fn print(pruned: &prune::JobPrune) {
    print!("{}", render(pruned));
}

/// What [`print`] shows: a report, or (on a dry run) the plan.
pub fn render(pruned: &prune::JobPrune) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    for r in &pruned.destinations {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        if let Some(e) = &r.error {
            line(format!("{} in `{}`: FAILED: {e}", r.job, r.destination));
            continue;
        }
        let bytes = crate::store::catalog::total_bytes(r.delete.iter().map(|d| d.bytes));
        match &r.skipped {
            Some(why) => line(format!(
                "{} in `{}`: nothing deleted: {why}",
                r.job, r.destination
            )),
            None => line(format!(
                "{} in `{}`: keep {}, {verb} {} ({})",
                r.job,
                r.destination,
                r.keep.len(),
                r.delete.len(),
                output::bytes(bytes)
            )),
        }
        for k in &r.keep {
            line(format!("  keep    {}  {}", k.id, k.reasons.join(", ")));
        }
        for d in &r.delete {
            let status = match (&d.error, &r.skipped, r.dry_run) {
                (Some(e), _, _) => format!("  FAILED: {e}"),
                (None, Some(_), _) => "  (not deleted)".into(),
                _ => String::new(),
            };
            line(format!("  delete  {}  {}{status}", d.id, d.reason));
        }
        for u in &r.untrusted {
            line(format!(
                "  untrusted  {}  {} (no rule counts it; left alone for a person to check)",
                u.id, u.problem
            ));
        }
        for u in &r.untouched {
            line(format!("  left alone: {u}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::prune::{DestinationPlan, PlanInputs, PrunePlan, plan_destination};
    use crate::engine::testing::{artifact, manifest};
    use crate::retention::Policy;
    use crate::state::{ArtifactMark, CopyMarks};
    use crate::store::catalog::{ArtifactState, Listing};

    fn planned(destination: &str, refused: Option<String>) -> DestinationPlan {
        let m: Vec<_> = [
            ("2026-03-01T10:00:00Z", "aaaa"),
            ("2026-03-02T10:00:00Z", "bbbb"),
            ("2026-03-03T10:00:00Z", "cccc"),
            ("2026-03-04T10:00:00Z", "dddd"),
        ]
        .iter()
        .map(|(at, s)| manifest("app", at, s))
        .collect();
        let mut marks = CopyMarks::default();
        marks.0.insert(
            (m[1].id.clone(), destination.to_string()),
            ArtifactMark {
                bad: true,
                reason: "verify: the stored object does not match its SHA-256".into(),
                at: "2026-03-05T00:00:00Z".parse().unwrap(),
            },
        );
        let listing = Listing {
            artifacts: vec![
                artifact(destination, &m[0], ArtifactState::Ok),
                artifact(destination, &m[1], ArtifactState::Ok),
                artifact(
                    destination,
                    &m[2],
                    ArtifactState::Broken("data object app/app-x.db.zst is missing".into()),
                ),
                artifact(destination, &m[3], ArtifactState::Ok),
            ],
            unreadable: Vec::new(),
        };
        plan_destination(
            &PlanInputs {
                job: "app",
                destination,
                policy: &Policy {
                    keep_last: Some(1),
                    keep_daily: Some(7),
                    ..Policy::default()
                },
                marks: &marks,
                now: "2026-03-10T12:00:00Z".parse().unwrap(),
                time_zone: &jiff::tz::TimeZone::UTC,
                refused,
            },
            &listing,
        )
    }

    #[test]
    fn a_dry_run_renders_the_plan_with_damaged_copies_and_reasons() {
        let plan = PrunePlan {
            job: "app".into(),
            destinations: vec![
                planned("local", None),
                planned(
                    "offsite",
                    Some("the latest backup (run 7 at 2026-03-10T11:00:00Z) did not succeed: nothing is deleted until a backup succeeds (set prune_on_failure = true to prune anyway)".into()),
                ),
            ],
        };
        insta::assert_snapshot!(render(&plan.report(true)));
    }
}
