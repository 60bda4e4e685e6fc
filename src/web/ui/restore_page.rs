//! What the restore page shows: the artifact, and where it may go (the job's
//! own source, `[daemon] restore_root`), as the API's restore decides it.

use crate::config::{Config, Job, SourceConfig};
use crate::engine::restore_job;

pub struct RestorePage {
    pub job: String,
    pub artifact: String,
    /// Empty: the first destination with a good copy.
    pub destination: String,
    /// The job's own source, when it can be restored into from the web.
    pub own_target: Option<String>,
    /// Why the own source is not offered.
    pub own_refusal: String,
    pub restore_root: Option<String>,
}

pub fn restore_page(config: &Config, job: &Job, artifact: &str, destination: &str) -> RestorePage {
    let (own_target, own_refusal) = match (restore_job::own_path(job), &job.source) {
        (Some(path), _) => (Some(path.display().to_string()), String::new()),
        (
            None,
            SourceConfig::Command {
                restore: Some(_), ..
            },
        ) => (
            Some("the job's `restore` program".to_string()),
            String::new(),
        ),
        (None, SourceConfig::Command { restore: None, .. }) => (
            None,
            "This command job has no `restore` program to restore through.".to_string(),
        ),
        _ => (
            None,
            format!(
                "Database servers are restored on the host: `cairn restore {} --to URL`.",
                job.name
            ),
        ),
    };
    RestorePage {
        job: job.name.clone(),
        artifact: artifact.to_string(),
        destination: destination.to_string(),
        own_target,
        own_refusal,
        restore_root: config
            .daemon
            .restore_root
            .as_ref()
            .map(|p| p.display().to_string()),
    }
}
