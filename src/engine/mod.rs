//! Operations built from sources, the pipeline and destinations. The CLI (and
//! later the daemon and the web UI) call these; they never call back.

pub mod backup;
pub mod check;
pub mod events;
pub mod fallback;
pub mod gc;
pub mod hooks;
pub mod job;
pub mod list;
pub mod overlap;
pub mod prune;
pub mod read;
pub mod repair;
pub mod report;
pub mod restore;
pub mod restore_job;
pub mod restore_server;
pub mod runs;
pub mod status;
#[cfg(test)]
pub(crate) mod testing;
pub mod validate;
pub mod verify;

use std::sync::Arc;

use crate::config::{Config, Job};
use crate::state::CopyMarks;
use crate::store::signature::Trust;
use crate::store::{self, Artifact, ArtifactState, Destination, Manifest, catalog};
use crate::{Error, Result};

/// An artifact chosen for reading, with every destination that holds a good copy,
/// in the job's destination order.
pub struct Located {
    pub manifest: Manifest,
    pub copies: Vec<(Arc<dyn Destination>, Artifact)>,
    /// Destinations that could not be listed, with the reason.
    pub unreachable: Vec<(String, String)>,
    /// Damaged copies of the chosen artifact, and newer artifacts that were
    /// skipped because they are damaged: (destination, problem).
    pub damaged: Vec<(String, String)>,
}

/// Which artifact to read.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub id: Option<String>,
    pub at: Option<jiff::Timestamp>,
    /// Read only from this destination.
    pub from: Option<String>,
    /// Also choose copies that verification or a drill marked bad (`--allow-bad`).
    pub allow_bad: bool,
    /// Also choose artifacts whose signature does not verify (`--allow-unsigned`).
    pub allow_unsigned: bool,
}

/// Opens a destination by its config name: how a caller gives the engine its
/// destinations (the config's, layered as the caller wants, or fakes in tests).
pub type Open<'a> = dyn Fn(&str) -> Result<Arc<dyn Destination>> + 'a;

/// Opens destinations as the config defines them. This is the one place that
/// turns destination names into destinations; engine operations take what a
/// caller opened with it (or with an [`Open`] of its own).
pub fn configured(config: &Config) -> impl Fn(&str) -> Result<Arc<dyn Destination>> + '_ {
    move |name| store::open(config, name).map(Arc::from)
}

/// Opens the destinations of `job` with the config's destinations.
pub fn destinations_of(
    config: &Config,
    job: &Job,
    from: Option<&str>,
) -> Result<Vec<Arc<dyn Destination>>> {
    destinations_with(&configured(config), job, from)
}

/// Opens the destinations of `job` with `open`: `from` alone, or all of the
/// job's, in the job's order; the first that cannot be opened is the error.
pub fn destinations_with(
    open: &Open<'_>,
    job: &Job,
    from: Option<&str>,
) -> Result<Vec<Arc<dyn Destination>>> {
    if let Some(name) = from
        && !job.destinations.iter().any(|d| d == name)
    {
        return Err(Error::Usage(format!(
            "job `{}` does not use destination `{name}` (it uses {})",
            job.name,
            job.destinations.join(", ")
        )));
    }
    open_job_with(open, job, from)
        .into_iter()
        .map(|opened| opened.destination)
        .collect()
}

/// One of a job's destinations as it was opened: its name and the
/// destination, or why it could not be opened. Operations that report on
/// each destination (list, status, gc, repair, check) take these, so that one
/// destination that cannot be opened is reported beside the others.
pub struct Opened {
    pub name: String,
    pub destination: Result<Arc<dyn Destination>>,
}

impl Opened {
    /// `job`'s artifacts here (through the manifest cache, signatures checked);
    /// a destination that could not be opened or listed gives the reason.
    pub fn list_job(
        &self,
        config: &Config,
        job: &Job,
    ) -> std::result::Result<catalog::Listing, String> {
        let dest = self.destination.as_ref().map_err(ToString::to_string)?;
        catalog::list_job_cached(
            config,
            dest.as_ref(),
            &job.name,
            job.signing.public_key.as_ref(),
        )
        .map_err(|e| e.to_string())
    }
}

/// A shared destination is a destination, so that layers (which own what
/// they wrap) can go over one that a caller opened and shares.
impl Destination for Arc<dyn Destination> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn create(&self, key: &str) -> Result<Box<dyn store::Upload>> {
        (**self).create(key)
    }
    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        (**self).put_atomic(key, bytes)
    }
    fn open(&self, key: &str) -> Result<crate::pipeline::Source> {
        (**self).open(key)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        (**self).get(key)
    }
    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        (**self).get_at_most(key, limit)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        (**self).size(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<store::ObjectInfo>> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn list_partial(&self, prefix: &str) -> Result<Vec<store::ObjectInfo>> {
        (**self).list_partial(prefix)
    }
    fn remove_empty_folder(&self, key: &str) -> Result<()> {
        (**self).remove_empty_folder(key)
    }
}

/// Opens each destination named in `names`, keeping failures beside the
/// others.
pub fn open_each<'a>(config: &Config, names: impl IntoIterator<Item = &'a String>) -> Vec<Opened> {
    let open = configured(config);
    names
        .into_iter()
        .map(|name| Opened {
            name: name.clone(),
            destination: open(name),
        })
        .collect()
}

/// Opens the destinations of `job` (only `from`, when given and used by the
/// job), keeping failures beside the others.
pub fn open_job(config: &Config, job: &Job, from: Option<&str>) -> Vec<Opened> {
    open_job_with(&configured(config), job, from)
}

/// [`open_job`] with `open`.
pub fn open_job_with(open: &Open<'_>, job: &Job, from: Option<&str>) -> Vec<Opened> {
    job.destinations
        .iter()
        .filter(|d| from.is_none_or(|f| f == d.as_str()))
        .map(|name| Opened {
            name: name.clone(),
            destination: open(name),
        })
        .collect()
}

/// Chooses the artifact `selector` names among `destinations` (the job's, as
/// [`destinations_of`] opened them; with `selector.from`, only that one is read).
pub fn locate(
    config: &Config,
    job: &Job,
    destinations: &[Arc<dyn Destination>],
    selector: &Selector,
) -> Result<Located> {
    let mut listings = Vec::new();
    let mut unreachable = Vec::new();
    let mut unreadable = Vec::new();
    let chosen = destinations
        .iter()
        .filter(|d| selector.from.as_deref().is_none_or(|from| d.name() == from));
    for dest in chosen.cloned() {
        match catalog::list_job_cached(
            config,
            dest.as_ref(),
            &job.name,
            job.signing.public_key.as_ref(),
        ) {
            Ok(listing) => {
                unreadable.extend(listing.unreadable);
                listings.push((dest, listing.artifacts));
            }
            Err(e) => {
                tracing::warn!(job = %job.name, destination = %dest.name(), error = %e, "cannot list destination");
                unreachable.push((dest.name().to_string(), e.to_string()));
            }
        }
    }
    if listings.is_empty() {
        let reasons: Vec<String> = unreachable.iter().map(|(_, e)| e.clone()).collect();
        return Err(Error::Run(format!(
            "no destination of job `{}` could be listed: {}",
            job.name,
            reasons.join("; ")
        )));
    }
    let all: Vec<Artifact> = listings
        .iter()
        .flat_map(|(_, artifacts)| artifacts.iter().cloned())
        .collect();
    // Copies that verification or a drill found damaged are skipped unless
    // `allow_bad`; a good copy of the same artifact elsewhere is still used.
    let marks = if selector.allow_bad {
        CopyMarks::default()
    } else {
        crate::state::open_or_warn(config)
            .and_then(|store| store.copy_marks(&job.name).ok())
            .unwrap_or_default()
    };
    let usable = |a: &Artifact| {
        copy_health(a, &marks) == CopyHealth::Good
            && (selector.allow_unsigned || !a.trust.is_untrusted())
    };
    // Selection over the union: an id with a good copy anywhere is good. Sort
    // again because the union interleaves destinations.
    let mut good: Vec<Artifact> = all.iter().filter(|a| usable(a)).cloned().collect();
    good.sort_by(|a, b| {
        (a.manifest.created_at, &a.manifest.id).cmp(&(b.manifest.created_at, &b.manifest.id))
    });
    // One candidate per id: the same artifact in several destinations is one
    // artifact (an exact id would otherwise "match several").
    good.dedup_by(|a, b| a.manifest.id == b.manifest.id);
    if let Some(id) = selector.id.as_deref()
        && !good.iter().any(|g| g.manifest.id.starts_with(id))
        && let Some(untrusted) = all.iter().find(|a| {
            a.state == ArtifactState::Ok && a.trust.is_untrusted() && a.manifest.id.starts_with(id)
        })
    {
        return Err(untrusted_error(job, untrusted));
    }
    let marked_bad: Vec<(&Artifact, &crate::state::ArtifactMark)> = all
        .iter()
        .filter_map(|a| match copy_health(a, &marks) {
            CopyHealth::MarkedBad(mark) => Some((a, mark)),
            _ => None,
        })
        .collect();
    if let Some(id) = selector.id.as_deref()
        && let Some((a, mark)) = marked_bad
            .iter()
            .find(|(a, _)| a.manifest.id == id || a.manifest.id.starts_with(id))
        && !good.iter().any(|g| g.manifest.id.starts_with(id))
    {
        return Err(Error::Integrity {
            job: job.name.clone(),
            id: a.manifest.id.clone(),
            message: format!(
                "it was marked bad on {}: {}; pass --allow-bad to use it anyway",
                mark.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                mark.reason
            ),
        });
    }
    let chosen_id = match catalog::select(&good, &job.name, selector.id.as_deref(), selector.at) {
        Ok(a) => a.manifest.id.clone(),
        // An id that exists only as a broken copy or an unreadable manifest: report why.
        Err(Error::NotFound(message)) if selector.id.is_some() => {
            let mut all = all.clone();
            all.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
            all.dedup_by(|a, b| a.manifest.id == b.manifest.id);
            let found = catalog::select(&all, &job.name, selector.id.as_deref(), selector.at);
            if let (Err(Error::NotFound(_)), Some(id)) = (&found, selector.id.as_deref())
                && let Some(u) = unreadable.iter().find(|u| {
                    catalog::id_of_key(&job.name, &u.key).is_some_and(|k| k.starts_with(id))
                })
            {
                return Err(Error::Run(format!(
                    "artifact {id} of job `{}` in `{}` cannot be used: its manifest is unreadable: {}",
                    job.name, u.destination, u.problem
                )));
            }
            found?;
            return Err(Error::NotFound(message));
        }
        Err(Error::NotFound(message)) => {
            // Nothing trusted to choose from: say so rather than "no artifact".
            let newest_untrusted = all
                .iter()
                .filter(|a| {
                    a.state == ArtifactState::Ok
                        && a.trust.is_untrusted()
                        && selector.at.is_none_or(|at| a.manifest.created_at <= at)
                })
                .max_by_key(|a| (a.manifest.created_at, a.manifest.id.clone()));
            return Err(match newest_untrusted {
                Some(untrusted) => untrusted_error(job, untrusted),
                None => Error::NotFound(message),
            });
        }
        Err(e) => return Err(e),
    };
    let mut damaged = Vec::new();
    let chosen_at = good
        .iter()
        .find(|a| a.manifest.id == chosen_id)
        .map(|a| a.manifest.created_at);
    // A newer artifact than the one chosen, passed over because it is unusable
    // (only worth reporting when no id was asked for).
    let skipped_newer = |artifact: &Artifact| {
        selector.id.is_none()
            && chosen_at.is_some_and(|at| artifact.manifest.created_at > at)
            && selector
                .at
                .is_none_or(|limit| artifact.manifest.created_at <= limit)
    };
    for artifact in &all {
        // An untrusted copy may have been planted: what it says is no evidence
        // of damage, so it is reported as untrusted, never as "this copy" (which
        // verification marks bad).
        let (problem, untrusted) = match (&artifact.state, &artifact.trust) {
            (_, Trust::Untrusted(why)) if !selector.allow_unsigned => {
                (format!("is untrusted: {why}"), true)
            }
            (ArtifactState::Broken(problem), _) => (format!("is damaged: {problem}"), false),
            _ => continue,
        };
        let same = artifact.manifest.id == chosen_id;
        let newer = skipped_newer(artifact);
        if same || newer {
            let what = match (same, untrusted) {
                (true, false) => "this copy",
                (true, true) => "another copy",
                (false, _) => "a newer artifact, skipped",
            };
            tracing::warn!(job = %job.name, destination = %artifact.destination, "{what}: {} {problem}", artifact.manifest.id);
            damaged.push((
                artifact.destination.clone(),
                format!("{what}: {} {problem}", artifact.manifest.id),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (artifact, mark) in &marked_bad {
        let same = artifact.manifest.id == chosen_id;
        let newer = skipped_newer(artifact);
        if same {
            // Not read again: already marked (`verify JOB ID` re-checks it).
            tracing::warn!(job = %job.name, destination = %artifact.destination, "the copy of {} is marked bad, skipped: {}", artifact.manifest.id, mark.reason);
            damaged.push((
                artifact.destination.clone(),
                format!(
                    "this copy is marked bad, skipped: {}; `cairn repair {}` copies a good one over it",
                    mark.reason, job.name
                ),
            ));
        } else if newer && seen.insert((artifact.manifest.id.clone(), artifact.destination.clone()))
        {
            tracing::warn!(job = %job.name, destination = %artifact.destination, "a newer artifact {} is marked bad, skipped: {}", artifact.manifest.id, mark.reason);
            damaged.push((
                artifact.destination.clone(),
                format!(
                    "a newer artifact, skipped: {} is marked bad: {}",
                    artifact.manifest.id, mark.reason
                ),
            ));
        }
    }
    let mut copies = Vec::new();
    for (dest, artifacts) in listings {
        if let Some(a) = artifacts
            .into_iter()
            .find(|a| a.manifest.id == chosen_id && usable(a))
        {
            copies.push((dest, a));
        }
    }
    let manifest = copies
        .first()
        .map(|(_, a)| a.manifest.clone())
        .ok_or_else(|| {
            Error::NotFound(format!(
                "artifact {chosen_id} vanished while it was being located"
            ))
        })?;
    Ok(Located {
        manifest,
        copies,
        unreachable,
        damaged,
    })
}

/// Whether one copy of an artifact can be read: what the catalog saw in its
/// destination and what the state store recorded about it. Every condition
/// that makes a copy unusable belongs here, so that locate, prune, status and
/// repair agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyHealth<'a> {
    Good,
    /// Missing or wrong-sized data object, or a manifest of another job.
    Broken(&'a str),
    /// Verification or a drill found this copy damaged.
    MarkedBad(&'a crate::state::ArtifactMark),
}

pub fn copy_health<'a>(artifact: &'a Artifact, marks: &'a CopyMarks) -> CopyHealth<'a> {
    if let ArtifactState::Broken(problem) = &artifact.state {
        return CopyHealth::Broken(problem);
    }
    match marks.for_copy(&artifact.manifest.id, &artifact.destination) {
        Some(mark) if mark.bad => CopyHealth::MarkedBad(mark),
        _ => CopyHealth::Good,
    }
}

/// Why an artifact whose signature does not verify is refused, and the way out.
fn untrusted_error(job: &Job, artifact: &Artifact) -> Error {
    let why = match &artifact.trust {
        Trust::Untrusted(why) => why.as_str(),
        _ => "its signature was not checked",
    };
    Error::Untrusted {
        job: job.name.clone(),
        id: artifact.manifest.id.clone(),
        message: format!(
            "{why} (in `{}`); it may not have been written by cairn: pass --allow-unsigned to use it anyway",
            artifact.destination
        ),
    }
}
