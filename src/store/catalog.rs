//! The catalog: the artifacts of a job, read from a destination itself. Nothing
//! here depends on local state, so a new machine with only the config sees
//! every backup.

use serde::Serialize;

use super::manifest_cache::ManifestCache;
use super::naming::{MANIFEST_SUFFIX, job_prefix, manifest_key};
use super::signature::{self, PublicKey, Trust};
use super::{Destination, Manifest, ObjectInfo};
use crate::config::Config;
use crate::{Error, Result};

/// Whether an artifact can be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "problem", rename_all = "kebab-case")]
pub enum ArtifactState {
    Ok,
    /// The manifest names a data object that is missing or of the wrong size.
    Broken(String),
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub destination: String,
    pub manifest_key: String,
    pub manifest: Manifest,
    pub state: ArtifactState,
    /// Whether the manifest's signature verifies (see `list_job_checked`).
    pub trust: Trust,
}

/// A manifest that cannot be read at all.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub destination: String,
    pub key: String,
    pub problem: String,
}

pub struct Listing {
    /// Oldest first.
    pub artifacts: Vec<Artifact>,
    pub unreadable: Vec<Unreadable>,
}

/// Manifests are small (a few KiB; a folder's file list stays under about
/// 1 MB); anything beyond this is not read, so a planted giant cannot exhaust memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Lists `job`'s artifacts in `dest`, checking each manifest against its data object.
pub fn list_job(dest: &dyn Destination, job: &str) -> Result<Listing> {
    list_job_with(dest, job, None, None)
}

/// `list_job`, and with `public_key` also each manifest's signature, checked
/// over the very bytes that were parsed.
pub fn list_job_checked(
    dest: &dyn Destination,
    job: &str,
    public_key: Option<&PublicKey>,
) -> Result<Listing> {
    list_job_with(dest, job, None, public_key)
}

/// [`list_job_checked`] through the local manifest cache beside `config`'s
/// state store (the signature, when checked, is always read fresh).
pub fn list_job_cached(
    config: &Config,
    dest: &dyn Destination,
    job: &str,
    public_key: Option<&PublicKey>,
) -> Result<Listing> {
    let cache = ManifestCache::for_config(config);
    list_job_with(dest, job, cache.as_ref(), public_key)
}

pub fn list_job_with(
    dest: &dyn Destination,
    job: &str,
    cache: Option<&ManifestCache>,
    public_key: Option<&PublicKey>,
) -> Result<Listing> {
    let prefix = job_prefix(job);
    let objects = dest.list(&prefix)?;
    let listed_at = jiff::Timestamp::now();
    let sizes: std::collections::HashMap<&str, u64> =
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let manifests: Vec<&ObjectInfo> = objects
        .iter()
        .filter(|o| o.key.ends_with(MANIFEST_SUFFIX))
        .collect();
    let cache_name = format!("{}\n{}", dest.name(), dest.location());
    let mut cached = cache
        .map(|c| c.load(&cache_name, &prefix))
        .unwrap_or_default();
    let hits: Vec<Option<Vec<u8>>> = manifests
        .iter()
        .map(|object| {
            cached
                .remove(&object.key)
                .filter(|c| {
                    c.size == object.size
                        && object.modified.is_some()
                        && c.modified == object.modified
                })
                .map(|c| c.bytes)
        })
        .collect();
    // Each manifest missed by the cache, and each signature, is a round trip
    // to the store: thousands of them one after another take seconds on S3.
    // A warm listing without signatures reads nothing: no threads for it.
    let reads_anything = public_key.is_some() || hits.iter().any(Option::is_none);
    let width = if reads_anything { READ_CONCURRENCY } else { 1 };
    let fetched = in_parallel(manifests.len(), width, |i| {
        let object = manifests[i];
        let bytes = (hits[i].is_none()).then(|| read_manifest_bytes(dest, object));
        let signature = public_key.and_then(|_| read_signature(dest, &sizes, &object.key));
        (bytes, signature)
    });
    let mut fresh = Vec::new();
    let mut artifacts = Vec::new();
    let mut unreadable = Vec::new();
    for ((object, hit), (read, signature)) in manifests.iter().copied().zip(hits).zip(fetched) {
        let from_cache = hit.is_some();
        // Exactly one of the two is there: a miss was read.
        let bytes = hit
            .map(Ok)
            .or(read)
            .unwrap_or_else(|| Err(Error::Run(format!("{} was not read", object.key))));
        let parsed = bytes.and_then(|bytes| {
            let manifest = Manifest::from_json(&bytes).map_err(Error::Run)?;
            check_name(&manifest, job, &object.key).map_err(Error::Run)?;
            Ok((manifest, bytes))
        });
        let (manifest, bytes) = match parsed {
            Ok((m, bytes)) => {
                if !from_cache && object.modified.is_some_and(|m| settled(m, listed_at)) {
                    fresh.push((object.clone(), bytes.clone()));
                }
                (m, bytes)
            }
            Err(e) => {
                unreadable.push(Unreadable {
                    destination: dest.name().to_string(),
                    key: object.key.clone(),
                    problem: e.to_string(),
                });
                continue;
            }
        };
        let state = if manifest.job != job || !manifest.data.key.starts_with(&prefix) {
            ArtifactState::Broken(format!(
                "manifest belongs to job `{}` ({}), not `{job}`",
                manifest.job, manifest.data.key
            ))
        } else {
            match sizes.get(manifest.data.key.as_str()) {
                None => {
                    ArtifactState::Broken(format!("data object {} is missing", manifest.data.key))
                }
                Some(&size) if size != manifest.data.size => ArtifactState::Broken(format!(
                    "data object {} has {size} bytes, the manifest says {}",
                    manifest.data.key, manifest.data.size
                )),
                Some(_) => ArtifactState::Ok,
            }
        };
        let trust = match public_key {
            None => Trust::Unchecked,
            Some(public_key) => signature::assess(public_key, &bytes, signature),
        };
        artifacts.push(Artifact {
            destination: dest.name().to_string(),
            manifest_key: object.key.clone(),
            manifest,
            state,
            trust,
        });
    }
    if let Some(cache) = cache {
        let listed: Vec<&str> = manifests.iter().map(|o| o.key.as_str()).collect();
        cache.update(&cache_name, &prefix, &fresh, &listed);
    }
    artifacts.sort_by(|a, b| {
        (a.manifest.created_at, &a.manifest.id).cmp(&(b.manifest.created_at, &b.manifest.id))
    });
    Ok(Listing {
        artifacts,
        unreadable,
    })
}

/// Whether an object last modified at `modified` may be cached by (size,
/// modification time): stores such as S3 keep whole seconds, so an object
/// rewritten within the second it was listed in would look unchanged. Like
/// git's racy-clean rule, only objects older than that are cached; younger ones
/// are read again at the next listing.
fn settled(modified: jiff::Timestamp, listed_at: jiff::Timestamp) -> bool {
    listed_at.as_second() - modified.as_second() >= 2
}

/// How many manifests and signatures are read at once on a cold listing.
const READ_CONCURRENCY: usize = 16;

/// `f(0..n)` on up to `width` threads, results in index order.
fn in_parallel<T: Send>(n: usize, width: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let width = width.clamp(1, n.max(1));
    if width == 1 {
        return (0..n).map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..width)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            return done;
                        }
                        done.push((i, f(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, t)| t).collect()
}

/// The signature beside the manifest at `manifest_key`, if one is listed.
fn read_signature(
    dest: &dyn Destination,
    sizes: &std::collections::HashMap<&str, u64>,
    manifest_key: &str,
) -> Option<Result<Vec<u8>>> {
    let signature_key = signature::signature_key(manifest_key);
    sizes.get(signature_key.as_str()).map(|&size| {
        if size > signature::MAX_SIGNATURE_BYTES {
            return Err(Error::Run(format!(
                "{signature_key} has {size} bytes, more than a minisign signature"
            )));
        }
        dest.get(&signature_key)
    })
}

/// Reads a manifest object whole, refusing one over [`MAX_MANIFEST_BYTES`]
/// (by its listed size, and again while reading, in case it grew).
pub fn read_manifest_bytes(dest: &dyn Destination, object: &ObjectInfo) -> Result<Vec<u8>> {
    let too_large = |size: u64| {
        Error::Run(format!(
            "manifest too large: {size} bytes (cairn reads manifests of at most {MAX_MANIFEST_BYTES} bytes; this is not one it wrote)"
        ))
    };
    if object.size > MAX_MANIFEST_BYTES {
        return Err(too_large(object.size));
    }
    let bytes = dest.get_at_most(&object.key, MAX_MANIFEST_BYTES)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A manifest's id must be the one its object's name carries: an id from
/// storage is never used to build a key on its own.
fn check_name(manifest: &Manifest, job: &str, key: &str) -> std::result::Result<(), String> {
    let plausible = !manifest.id.is_empty()
        && manifest
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !plausible || manifest_key(job, &manifest.id) != key {
        return Err(format!(
            "the manifest's id `{}` does not match its name {key}: it was not written by cairn for this artifact",
            manifest.id.escape_debug()
        ));
    }
    Ok(())
}

/// The artifact id that `key` names as `job`'s manifest, if it does.
pub fn id_of_key<'a>(job: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(&format!("{job}/{job}-"))?
        .strip_suffix(MANIFEST_SUFFIX)
        .filter(|id| !id.is_empty())
}

/// Adds up byte counts from manifests without wrapping: a hostile size of
/// `u64::MAX` shows as the largest total, never as a small one.
pub fn total_bytes(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes.into_iter().fold(0, u64::saturating_add)
}

/// Picks one artifact: by id (or unique id prefix), else the newest at or before
/// `at`, else the newest. Only usable artifacts are candidates.
pub fn select<'a>(
    artifacts: &'a [Artifact],
    job: &str,
    id: Option<&str>,
    at: Option<jiff::Timestamp>,
) -> Result<&'a Artifact> {
    let mut usable = artifacts.iter().filter(|a| a.state == ArtifactState::Ok);
    if let Some(id) = id {
        let matches: Vec<&Artifact> = artifacts
            .iter()
            .filter(|a| a.manifest.id == id || a.manifest.id.starts_with(id))
            .collect();
        let exact: Vec<&&Artifact> = matches.iter().filter(|a| a.manifest.id == id).collect();
        let chosen = match (exact.as_slice(), matches.as_slice()) {
            ([one], _) => *one,
            ([], [one]) => one,
            ([], []) => {
                return Err(Error::NotFound(format!(
                    "job `{job}` has no artifact with id {id} (see `cairn list {job}`)"
                )));
            }
            _ => {
                return Err(Error::Usage(format!(
                    "id prefix {id} matches several artifacts of job `{job}`; give more of the id"
                )));
            }
        };
        return match &chosen.state {
            ArtifactState::Ok => Ok(chosen),
            ArtifactState::Broken(problem) => Err(Error::Integrity {
                job: job.to_string(),
                id: chosen.manifest.id.clone(),
                message: problem.clone(),
            }),
        };
    }
    let chosen = match at {
        Some(at) => usable.rfind(|a| a.manifest.created_at <= at),
        None => usable.next_back(),
    };
    chosen.ok_or_else(|| {
        Error::NotFound(match at {
            Some(at) => format!("job `{job}` has no complete artifact made at or before {at}"),
            None => format!("job `{job}` has no complete artifact yet: run `cairn backup {job}`"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryDestination;
    use crate::store::naming;

    /// A manifest of `job` whose data object has `size` bytes.
    fn manifest(job: &str, id: &str, size: u64) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": 1,
            "id": id,
            "job": job,
            "created_at": "2026-03-01T12:00:00Z",
            "finished_at": "2026-03-01T12:00:01Z",
            "source": { "kind": "command", "facts": {} },
            "codecs": ["zstd"],
            "compression": { "kind": "zstd", "level": 3 },
            "encryption": { "kind": "none" },
            "data": { "key": naming::data_key(job, id, &["zst"]), "size": size, "sha256": "00" },
            "plaintext": { "size": size, "sha256": "11" },
            "cairn_version": "test",
            "host": "test-host",
        }))
        .expect("a test manifest")
    }

    /// Stores `manifest` under `job`'s manifest key for `id`, with a data
    /// object of `data_bytes` bytes (none when `None`).
    fn store(
        dest: &MemoryDestination,
        job: &str,
        id: &str,
        manifest: &Manifest,
        data_bytes: Option<usize>,
    ) {
        dest.insert(&naming::manifest_key(job, id), &manifest.to_json());
        if let Some(n) = data_bytes {
            dest.insert(&manifest.data.key, &vec![7; n]);
        }
    }

    const ID: &str = "20260301T120000Z-abcd";

    #[test]
    fn a_whole_artifact_is_usable() {
        let dest = MemoryDestination::new("m");
        store(&dest, "app", ID, &manifest("app", ID, 10), Some(10));
        let listing = list_job(&dest, "app").expect("listing");
        assert_eq!(listing.artifacts.len(), 1);
        assert_eq!(listing.artifacts[0].state, ArtifactState::Ok);
        assert!(listing.unreadable.is_empty());
    }

    #[test]
    fn a_missing_or_short_data_object_makes_the_artifact_broken() {
        let dest = MemoryDestination::new("m");
        let other = "20260302T120000Z-beef";
        store(&dest, "app", ID, &manifest("app", ID, 10), None);
        store(&dest, "app", other, &manifest("app", other, 10), Some(9));
        let listing = list_job(&dest, "app").expect("listing");
        let states: Vec<String> = listing
            .artifacts
            .iter()
            .map(|a| match &a.state {
                ArtifactState::Broken(why) => why.clone(),
                ArtifactState::Ok => "ok".into(),
            })
            .collect();
        assert_eq!(
            states,
            [
                format!("data object app/app-{ID}.zst is missing"),
                format!("data object app/app-{other}.zst has 9 bytes, the manifest says 10"),
            ]
        );
    }

    #[test]
    fn a_manifest_that_does_not_parse_is_unreadable_and_not_listed() {
        let dest = MemoryDestination::new("m");
        dest.insert(&naming::manifest_key("app", ID), b"{ not json");
        let listing = list_job(&dest, "app").expect("listing");
        assert!(listing.artifacts.is_empty());
        assert_eq!(listing.unreadable.len(), 1);
        assert_eq!(listing.unreadable[0].key, naming::manifest_key("app", ID));
    }

    #[test]
    fn a_manifest_under_a_name_its_id_does_not_make_is_unreadable() {
        // A planted manifest: copied under another artifact's name.
        let dest = MemoryDestination::new("m");
        let planted = "20260309T120000Z-0bad";
        store(&dest, "app", planted, &manifest("app", ID, 10), Some(10));
        let listing = list_job(&dest, "app").expect("listing");
        assert!(listing.artifacts.is_empty());
        assert_eq!(listing.unreadable.len(), 1);
    }

    #[test]
    fn a_foreign_jobs_manifest_in_this_jobs_folder_is_never_usable() {
        let dest = MemoryDestination::new("m");
        store(&dest, "app", ID, &manifest("other", ID, 10), Some(10));
        let listing = list_job(&dest, "app").expect("listing");
        let usable = listing
            .artifacts
            .iter()
            .filter(|a| a.state == ArtifactState::Ok)
            .count();
        assert_eq!(usable, 0);
        // Seen (as unreadable or broken), not silently skipped.
        assert_eq!(listing.artifacts.len() + listing.unreadable.len(), 1);
    }

    #[test]
    fn parallel_reads_keep_each_result_with_its_input() {
        let squares = in_parallel(1000, READ_CONCURRENCY, |i| i * i);
        assert_eq!(squares, (0..1000).map(|i| i * i).collect::<Vec<_>>());
        assert!(in_parallel(0, READ_CONCURRENCY, |i| i).is_empty());
    }

    #[test]
    fn a_listing_of_many_artifacts_has_each_one_once_with_its_problem() {
        let dest = MemoryDestination::new("m");
        let mut broken = Vec::new();
        for n in 0..200 {
            let id = format!("20260301T12{:02}{:02}Z-{n:04}", n / 60, n % 60);
            if n % 7 == 0 {
                dest.insert(&naming::manifest_key("app", &id), b"{ not json");
                broken.push(naming::manifest_key("app", &id));
            } else {
                store(&dest, "app", &id, &manifest("app", &id, 10), Some(10));
            }
        }
        let listing = list_job(&dest, "app").expect("listing");
        assert_eq!(listing.artifacts.len(), 200 - broken.len());
        assert!(
            listing
                .artifacts
                .iter()
                .all(|a| a.state == ArtifactState::Ok)
        );
        let mut unreadable: Vec<String> = listing.unreadable.into_iter().map(|u| u.key).collect();
        unreadable.sort();
        assert_eq!(unreadable, broken);
    }

    #[test]
    fn a_giant_manifest_is_not_read() {
        let dest = MemoryDestination::new("m");
        let giant = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        dest.insert(&naming::manifest_key("app", ID), &giant);
        let listing = list_job(&dest, "app").expect("listing");
        assert!(listing.artifacts.is_empty());
        assert!(listing.unreadable[0].problem.contains("manifest too large"));
    }
}
