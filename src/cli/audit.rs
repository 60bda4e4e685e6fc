//! `cairn audit [--verify] [--limit N]`: who did what, and whether the log's
//! hash chain is intact.

use crate::auth::audit;
use crate::state;
use crate::{Error, Result};

use super::{Context, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check the hash chain of the whole log instead of listing it (exit 1 when broken)
    #[arg(long)]
    verify: bool,
    /// How many of the newest entries to list
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let store = state::open(&config)?;
    if args.verify {
        let report = audit::verify(store.as_ref())?;
        if context.json {
            output::print_json(&report);
        }
        return match &report.broken {
            None => {
                if !context.json {
                    println!(
                        "audit log intact: {} (newest: entry {}, hash {})",
                        output::count(report.entries as usize, "entry", "entries"),
                        report.last_seq,
                        if report.last_hash.is_empty() {
                            "-"
                        } else {
                            &report.last_hash
                        }
                    );
                }
                Ok(0)
            }
            Some(broken) => {
                let error = Error::Run(format!(
                    "the audit log in {} is broken at entry {}: {} ({} intact before it)",
                    store.location(),
                    broken.seq,
                    broken.message,
                    output::count(report.entries as usize, "entry", "entries"),
                ));
                if context.json {
                    // The report is the result on stdout; the reason goes to stderr.
                    eprintln!("error: {error}");
                    Ok(1)
                } else {
                    Err(error)
                }
            }
        };
    }
    let mut entries = store.audit_newest(args.limit)?;
    entries.reverse();
    if context.json {
        output::print_json(&entries);
    } else if entries.is_empty() {
        println!("the audit log is empty");
    } else {
        println!(
            "{:>6} {:<20} {:<28} {:<16} {:<24} {:<16} RESULT",
            "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "ADDRESS"
        );
        for e in &entries {
            let e_ = &e.entry;
            println!(
                "{:>6} {:<20} {:<28} {:<16} {:<24} {:<16} {}",
                e.seq,
                e_.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                e_.actor,
                e_.action,
                e_.target,
                if e_.address.is_empty() {
                    "-"
                } else {
                    &e_.address
                },
                e_.result
            );
        }
    }
    Ok(0)
}
