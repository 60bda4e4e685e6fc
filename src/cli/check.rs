use crate::Result;
use crate::engine::check::{self, Level};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these jobs [default: all]
    jobs: Vec<String>,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = super::named_or_all_jobs(&config, &args.jobs)?;
    for job in &jobs {
        crate::engine::overlap::refuse_overlap(&config, job)?;
    }
    let destinations = crate::engine::open_each(&config, check::destinations_used(&config, &jobs));
    let mut findings = check::check(&config, &jobs, &destinations, &crate::drill::readiness);
    if let Some(refusal) = crate::web::listen::refusal(&config.daemon) {
        findings.push(check::Finding {
            subject: "daemon.listen".into(),
            level: Level::Fail,
            message: refusal,
            millis: None,
        });
    }
    if context.json {
        output::print_json(&serde_json::json!({
            "config": config.file,
            "findings": findings,
        }));
    } else {
        println!(
            "config {}: ok ({}, {})",
            config.file.display(),
            output::count(config.jobs.len(), "job", "jobs"),
            output::count(config.destinations.len(), "destination", "destinations")
        );
        for f in &findings {
            let level = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            let took = f.millis.map(|ms| format!(" [{ms} ms]")).unwrap_or_default();
            println!("{level} {}: {}{took}", f.subject, f.message);
        }
    }
    Ok(if findings.iter().any(|f| f.level == Level::Fail) {
        1
    } else {
        0
    })
}
