//! `disk`: free space at a path above a percentage and/or a size.

use super::Finding;
use crate::config::{Check, CheckConfig};

pub use crate::local_fs::free_space;

pub fn run(check: &Check) -> Finding {
    let CheckConfig::Disk {
        path,
        min_free_percent,
        ..
    } = &check.config
    else {
        return Finding::failing("not a disk check");
    };
    let (free, total) = match free_space(path) {
        Ok(v) => v,
        Err(e) => {
            return Finding::failing(format!("cannot read free space of {}: {e}", path.display()));
        }
    };
    let percent = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    let details =
        serde_json::json!({ "free_bytes": free, "total_bytes": total, "free_percent": percent });
    let mut problems = Vec::new();
    if let Some(min) = min_free_percent
        && percent < *min
    {
        problems.push(format!("{percent:.1}% free, below {min}%"));
    }
    if let Some(min) = check.min_free_bytes
        && free < min
    {
        problems.push(format!("{} free, below {}", gib(free), gib(min)));
    }
    let seen = format!(
        "{} free of {} ({percent:.1}%) at {}",
        gib(free),
        gib(total),
        path.display()
    );
    if problems.is_empty() {
        Finding::ok(seen).with(details)
    } else {
        Finding::failing(format!("{}: {}", path.display(), problems.join(", "))).with(details)
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}
