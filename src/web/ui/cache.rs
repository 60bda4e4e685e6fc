//! The dashboard's data, shared by the requests that come while nothing it
//! shows has changed. With 200 jobs it takes some 1,400 store queries and a
//! listing of every destination to build; fifty browsers refreshing at once
//! would build it fifty times. It is built again when a run started or ended,
//! a job was paused or resumed or a schedule overridden (four small queries
//! tell), and at least every [`MAX_AGE`] (relative times, config reloads).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::data::{self, Dashboard};
use crate::config::Config;
use crate::state::{RunFilter, RunStatus, ScheduleOverride, StateStore};

const MAX_AGE: Duration = Duration::from_secs(5);

/// What the dashboard's data depends on besides the clock and the catalog.
#[derive(PartialEq)]
struct Key {
    /// The server (one process may serve several, in tests).
    server: usize,
    newest_run: Option<i64>,
    running: Vec<i64>,
    paused: BTreeSet<String>,
    overrides: BTreeMap<String, ScheduleOverride>,
}

struct Entry {
    built: Instant,
    key: Key,
    data: Arc<Dashboard>,
}

static CACHE: Mutex<Option<Entry>> = Mutex::new(None);

fn key(server: usize, store: &dyn StateStore) -> crate::Result<Key> {
    let ids = |filter: RunFilter| -> crate::Result<Vec<i64>> {
        Ok(store.runs(&filter)?.into_iter().map(|r| r.id).collect())
    };
    Ok(Key {
        server,
        newest_run: ids(RunFilter {
            limit: Some(1),
            ..RunFilter::default()
        })?
        .first()
        .copied(),
        running: ids(RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })?,
        paused: store.paused_jobs()?,
        overrides: store.schedule_overrides()?,
    })
}

/// The dashboard of `server` (any id unique to it), built or shared.
pub fn dashboard(
    server: usize,
    config: &Config,
    store: &dyn StateStore,
    now: Timestamp,
) -> Arc<Dashboard> {
    let Ok(key) = key(server, store) else {
        // The store answers badly: build it as it is, share nothing.
        return Arc::new(data::dashboard(config, Some(store), now));
    };
    // Held while building, so that concurrent requests wait for one build.
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(entry) = cache.as_ref()
        && entry.key == key
        && entry.built.elapsed() < MAX_AGE
    {
        return entry.data.clone();
    }
    let data = Arc::new(data::dashboard(config, Some(store), now));
    *cache = Some(Entry {
        built: Instant::now(),
        key,
        data: data.clone(),
    });
    data
}
