//! Server-sent events: each run that starts or changes status, read from the
//! store's runs table once a second (so runs of other processes and replicas
//! show too; nothing lives only in memory). Every event's `id:` is the run's
//! id; a client reconnecting with `Last-Event-ID: N` gets every run after N.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::access::Caller;
use super::error::{ApiResult, ErrorBody, blocking};
use super::runs::RunView;
use crate::auth::Action;
use crate::state::{RunFilter, RunRecord, RunStatus};
use crate::web::AppState;

const POLL: Duration = Duration::from_secs(1);
/// Runs looked at per poll, newest first.
const WINDOW: usize = 100;
/// A stream ends after this; the client reconnects (and authenticates again)
/// with `Last-Event-ID`, so a revoked session or token stops receiving.
const STREAM_LIFETIME: Duration = Duration::from_secs(600);

struct Feed {
    state: Arc<AppState>,
    caller: Caller,
    /// Status of each run in the window, as last sent or seen.
    known: BTreeMap<i64, RunStatus>,
    /// Runs after this id are new.
    after: Option<i64>,
    pending: VecDeque<RunRecord>,
    polled: bool,
    ends: Instant,
}

impl Feed {
    /// Reads the window and queues what changed since the last poll.
    fn poll(&mut self) -> ApiResult<()> {
        let store = self.state.store()?;
        let config = self.state.config();
        let mut runs = store.runs(&RunFilter {
            limit: Some(WINDOW),
            ..RunFilter::default()
        })?;
        runs.reverse();
        let first = !self.polled;
        self.polled = true;
        let mut known = BTreeMap::new();
        for run in runs {
            known.insert(run.id, run.status);
            let new = self.after.is_some_and(|after| run.id > after);
            let changed = self.known.get(&run.id).is_some_and(|s| *s != run.status);
            // At the start: runs after Last-Event-ID, and whatever is running now.
            let send = if first {
                new || run.status == RunStatus::Running
            } else {
                new || changed || (!self.known.contains_key(&run.id) && self.after.is_none())
            };
            let visible = if config.jobs.contains_key(&run.job) {
                self.caller.principal.may(Action::View, Some(&run.job))
            } else {
                self.caller.principal.may(Action::View, None)
            };
            if send && visible {
                self.pending.push_back(run);
            }
        }
        if let Some(newest) = known.keys().next_back() {
            self.after = Some(self.after.map_or(*newest, |a| a.max(*newest)));
        } else if self.after.is_none() {
            self.after = Some(0);
        }
        self.known = known;
        Ok(())
    }
}

/// Runs as they start and end (`event: run`, JSON data as `GET /api/v1/runs/{id}` without the log).
#[utoipa::path(get, path = "/api/v1/events", tag = "runs",
    params(("Last-Event-ID" = Option<i64>, Header, description = "resume after this run id")),
    responses((status = 200, description = "a text/event-stream of `run` events", content_type = "text/event-stream"),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(Action::View, None)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let feed = Feed {
        state,
        caller,
        known: BTreeMap::new(),
        after,
        pending: VecDeque::new(),
        polled: false,
        ends: Instant::now() + STREAM_LIFETIME,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(run) = feed.pending.pop_front() {
                let id = run.id;
                let data = serde_json::to_string(&RunView::from(run)).unwrap_or_default();
                let event = Event::default().event("run").id(id.to_string()).data(data);
                return Some((Ok(event), feed));
            }
            if Instant::now() >= feed.ends {
                return None;
            }
            if feed.polled {
                tokio::time::sleep(POLL).await;
            }
            let polled = blocking(move || {
                let result = feed.poll();
                Ok((feed, result))
            })
            .await;
            match polled {
                Ok((next, result)) => {
                    if let Err(e) = result {
                        tracing::warn!(code = e.code, "events: the store could not be read");
                    }
                    feed = next;
                }
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
