//! Artifact ids and object keys.
//!
//! `<job>/<job>-<id>.<ext…>` is a data object and `<job>/<job>-<id>.manifest.json`
//! its manifest, where the id is `YYYYMMDDTHHMMSSZ-xxxx` (UTC, then random hex), so
//! that names sort by time and tell a human which tool undoes each layer.

use rand::Rng;

pub const MANIFEST_SUFFIX: &str = ".manifest.json";

pub fn new_id(at: jiff::Timestamp) -> String {
    let suffix: u16 = rand::thread_rng().r#gen();
    format!("{}-{suffix:04x}", at.strftime("%Y%m%dT%H%M%SZ"))
}

pub fn job_prefix(job: &str) -> String {
    format!("{job}/")
}

pub fn data_key(job: &str, id: &str, extensions: &[&str]) -> String {
    let mut key = format!("{job}/{job}-{id}");
    for ext in extensions {
        key.push('.');
        key.push_str(ext);
    }
    key
}

pub fn manifest_key(job: &str, id: &str) -> String {
    format!("{job}/{job}-{id}{MANIFEST_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_carry_the_job() {
        let a = new_id("2026-11-22T02:00:00Z".parse().unwrap());
        let b = new_id("2026-11-22T02:00:01Z".parse().unwrap());
        assert!(a.starts_with("20261122T020000Z-"));
        assert!(data_key("inv", &a, &["sqlite", "zst", "age"]) < data_key("inv", &b, &["sqlite"]));
        assert_eq!(
            data_key("inv", "X", &["sqlite", "zst", "age"]),
            "inv/inv-X.sqlite.zst.age"
        );
        assert_eq!(manifest_key("inv", "X"), "inv/inv-X.manifest.json");
    }
}
