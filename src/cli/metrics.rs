//! `cairn metrics`: the daemon's `/metrics` once, on stdout, into a
//! node-exporter textfile, or pushed to a Pushgateway.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::state::StateStore;
use crate::{Error, Result};

use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to this file (atomically: temp file + rename), e.g. for node-exporter's textfile collector
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,
    /// Push to this Pushgateway (e.g. http://pushgateway:9091), as job `cairn`, instance = host name
    #[arg(long, value_name = "URL")]
    push: Option<String>,
}

fn render(config: &Config, store: Option<&dyn StateStore>) -> String {
    let statuses = crate::web::metrics::catalog(config, store);
    crate::web::metrics::render(config, store, &statuses, false)
}

pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Error::Run(format!(
                "cannot write the metrics to {}: {e}",
                path.display()
            ))
        })
}

/// The Pushgateway group URL for `base`: job `cairn`, instance = this host, so
/// that hosts pushing to one gateway do not replace each other's metrics.
pub fn push_target(base: &str) -> String {
    if base.contains("/metrics/job/") {
        return base.to_string();
    }
    let host: String = crate::state::host()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let host = if host.is_empty() {
        "unknown".to_string()
    } else {
        host
    };
    format!(
        "{}/metrics/job/cairn/instance/{host}",
        base.trim_end_matches('/')
    )
}

pub fn push(base: &str, text: &str) -> Result<()> {
    let headers = vec![(
        "Content-Type".to_string(),
        crate::web::METRICS_CONTENT_TYPE.to_string(),
    )];
    crate::notify::webhook::post(
        &push_target(base),
        &headers,
        text.as_bytes().to_vec(),
        Duration::from_secs(10),
    )
    .map_err(|e| {
        Error::Run(format!(
            "cannot push the metrics to the Pushgateway: {}",
            e.message
        ))
    })
}

/// After a one-shot run: the `[metrics]` textfile and Pushgateway, if set.
/// Failures are logged; they never fail the run.
pub fn export_configured(config: &Config, store: Option<&dyn StateStore>) {
    if config.metrics.textfile.is_none() && config.metrics.push_url.is_none() {
        return;
    }
    let text = render(config, store);
    if let Some(path) = &config.metrics.textfile
        && let Err(e) = write_textfile(path, &text)
    {
        tracing::warn!("{e}");
    }
    if let Some(url) = &config.metrics.push_url
        && let Err(e) = push(url, &text)
    {
        tracing::warn!("{e}");
    }
}

pub fn run(context: &Context, args: Args) -> Result<u8> {
    let config = context.load()?;
    let store = super::open_store(&config);
    let text = render(&config, store.as_deref());
    if args.textfile.is_none() && args.push.is_none() {
        print!("{text}");
        return Ok(0);
    }
    if let Some(path) = &args.textfile {
        write_textfile(path, &text)?;
    }
    if let Some(url) = &args.push {
        push(url, &text)?;
    }
    Ok(0)
}
