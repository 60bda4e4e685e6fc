//! `destination`: the destination answers a listing and, when it holds an
//! artifact manifest, a read of it (within the check's timeout).

use super::Finding;
use crate::config::Config;

pub fn run(config: &Config, name: &str) -> Finding {
    let start = std::time::Instant::now();
    let dest = match crate::store::open(config, name) {
        Ok(d) => d,
        Err(e) => return Finding::failing(e.to_string()),
    };
    // A job that uses it gives a small prefix to list; else the whole store.
    let prefix = config
        .jobs
        .values()
        .find(|j| j.destinations.iter().any(|d| d == name))
        .map(|j| format!("{}/", j.name))
        .unwrap_or_default();
    let objects = match dest.list(&prefix) {
        Ok(o) => o,
        Err(e) => return Finding::failing(format!("listing failed: {e}")),
    };
    let manifest = objects.iter().find(|o| o.key.ends_with(".manifest.json"));
    if let Some(m) = manifest
        && let Err(e) = dest.get(&m.key)
    {
        return Finding::failing(format!("reading {} failed: {e}", m.key));
    }
    Finding::ok(format!(
        "{} answered: {} objects listed{} in {:.2}s",
        dest.location(),
        objects.len(),
        if manifest.is_some() {
            ", one manifest read"
        } else {
            ""
        },
        start.elapsed().as_secs_f64()
    ))
    .with(serde_json::json!({ "objects": objects.len() }))
}
