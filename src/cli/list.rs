use crate::Result;
use crate::engine::list;
use crate::store::signature::Trust;

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job
    job: Option<String>,
    /// Only this destination
    #[arg(long, value_name = "DESTINATION")]
    from: Option<String>,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let jobs = match &args.job {
        Some(name) => vec![config.job(name)?],
        None => config.jobs.values().collect(),
    };
    if let Some(from) = &args.from
        && !config.destinations.contains_key(from)
    {
        return Err(crate::Error::Usage(format!(
            "unknown destination `{from}` (defined: {})",
            config
                .destinations
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let opened: Vec<_> = jobs
        .iter()
        .map(|job| {
            let destinations = crate::engine::open_job(&config, job, args.from.as_deref());
            (*job, destinations)
        })
        .collect();
    let listing = list::list(&config, &opened);
    for problem in &listing.problems {
        tracing::warn!(job = %problem.job, destination = %problem.destination, key = %problem.key, "{}", problem.problem);
        if !context.json {
            eprintln!(
                "warning: {} in `{}`: {}{}",
                problem.job,
                problem.destination,
                problem.problem,
                if problem.key.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", problem.key)
                }
            );
        }
    }
    if context.json {
        output::print_json(&listing.entries);
    } else if listing.entries.is_empty() {
        println!("no artifacts");
    } else {
        println!(
            "{:<16} {:<22} {:<22} {:<12} {:>10} {:>10}  CODECS",
            "JOB", "ID", "CREATED", "DESTINATION", "STORED", "PLAIN"
        );
        for e in &listing.entries {
            let trust = match &e.trust {
                Trust::Untrusted(why) => format!("  UNTRUSTED: {why}"),
                _ => String::new(),
            };
            println!(
                "{:<16} {:<22} {:<22} {:<12} {:>10} {:>10}  {}{trust}",
                e.job,
                e.id,
                e.created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                e.destination,
                output::bytes(e.size),
                output::bytes(e.plaintext_size),
                e.codecs.join("+")
            );
        }
    }
    // Listing problems are reported but do not hide what is there; unreachable
    // destinations make the command fail so scripts notice.
    Ok(if listing.problems.iter().any(|p| p.key.is_empty()) {
        1
    } else {
        0
    })
}
