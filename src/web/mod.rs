//! The daemon's HTTP server (axum on its own tokio runtime and thread):
//! `/metrics` in the Prometheus text format, `/healthz`, and the JSON API
//! under `/api/v1/` (`api`). The router is built in [`router`] so that the
//! web UI can add its routes.

pub mod api;
pub mod listen;
pub mod metrics;
pub(crate) mod tls;
pub mod ui;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::Config;
use crate::engine::status::JobStatus;
use crate::state::StateStore;
use crate::{Error, Result};

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Starts a run now the way the daemon starts scheduled ones (a `cairn ARGS…
/// --trigger manual` child): subject, arguments, whether it counts toward
/// `max_concurrent_runs`. Answers the child's pid or why it was refused.
pub type StartRun =
    Box<dyn Fn(&str, Vec<String>, bool) -> std::result::Result<u32, String> + Send + Sync>;

/// What the handlers share.
pub struct AppState {
    /// The daemon's current config (replaced on reload).
    pub config: Arc<RwLock<Config>>,
    /// The catalog part of the metrics: listing remote destinations is slow,
    /// so it is reused for `catalog_ttl`.
    catalog: Mutex<Option<(Instant, Arc<Vec<JobStatus>>)>>,
    /// `GET /api/v1/jobs`, serialised once per change of what it shows.
    pub(crate) job_views: api::ViewCache,
    catalog_ttl: Duration,
    /// The daemon's run hook; `None` outside a daemon (runs are then refused).
    start_run: Option<StartRun>,
    store: Mutex<Option<Arc<dyn StateStore>>>,
    /// Failed logins per user and per address (in memory, per process).
    pub login_limit: crate::auth::LoginLimiter,
    /// Served over TLS (cookies get `Secure`).
    pub tls: bool,
}

impl AppState {
    pub fn new(config: Arc<RwLock<Config>>, catalog_ttl: Duration) -> AppState {
        let tls = config
            .read()
            .map(|c| c.daemon.tls.is_some())
            .unwrap_or(false);
        AppState {
            config,
            catalog: Mutex::new(None),
            job_views: api::ViewCache::default(),
            catalog_ttl,
            start_run: None,
            store: Mutex::new(None),
            login_limit: crate::auth::LoginLimiter::default(),
            tls,
        }
    }

    /// Gives the API the daemon's way of starting runs.
    pub fn with_start_run(mut self, start_run: StartRun) -> AppState {
        self.start_run = Some(start_run);
        self
    }

    pub fn start_run(&self) -> Option<&StartRun> {
        self.start_run.as_ref()
    }

    /// A copy of the current config.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the current config has the job `job` (without copying it).
    pub fn has_job(&self, job: &str) -> bool {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .contains_key(job)
    }

    /// The state store, opened once (blocking).
    pub fn store(&self) -> Result<Arc<dyn StateStore>> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store: Arc<dyn StateStore> = Arc::from(crate::state::open(&self.config())?);
        *slot = Some(store.clone());
        Ok(store)
    }

    /// The statuses of every job, catalog included, shared by the API, the
    /// metrics and their callers for `catalog_ttl`. The same `Arc` comes back
    /// until it is built again, so callers may key their own caches on it.
    pub fn job_statuses(&self, store: Option<&dyn StateStore>) -> Arc<Vec<JobStatus>> {
        let mut cache = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((at, statuses)) if at.elapsed() < self.catalog_ttl => statuses.clone(),
            _ => {
                let statuses = Arc::new(metrics::catalog(&self.config(), store));
                *cache = Some((Instant::now(), statuses.clone()));
                statuses
            }
        }
    }

    /// Renders `/metrics` (blocking: reads the state store and destinations).
    pub fn render_metrics(&self) -> String {
        let config = self.config();
        let store = crate::state::open(&config)
            .map_err(|e| tracing::warn!(error = %e, "metrics without the state store"))
            .ok();
        let store = store.as_deref();
        let statuses = self.job_statuses(store);
        metrics::render(&config, store, &statuses, true)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api::router())
        .merge(ui::router())
        .with_state(state)
}

async fn metrics_handler(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token_file = state.config().daemon.metrics_token_file;
    if let Some(file) = token_file {
        let allowed = tokio::task::spawn_blocking(move || metrics_token_matches(&file, &headers))
            .await
            .unwrap_or(false);
        if !allowed {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs the bearer token of [daemon] metrics_token_file\n",
            )
                .into_response();
        }
    }
    match tokio::task::spawn_blocking(move || state.render_metrics()).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Whether the request carries `Authorization: Bearer` with the token in
/// `file` (read per scrape, so a rotated token holds at once). An unreadable
/// or empty file lets nobody in.
fn metrics_token_matches(file: &std::path::Path, headers: &axum::http::HeaderMap) -> bool {
    let Ok(expected) = std::fs::read_to_string(file) else {
        tracing::warn!(file = %file.display(), "[daemon] metrics_token_file cannot be read; /metrics refuses every scrape");
        return false;
    };
    let expected = expected.trim();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    !expected.is_empty() && api::constant_time_eq(expected, given)
}

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (errors are returned here, not later) and serves on a thread,
    /// over TLS when `[daemon] tls_cert`/`tls_key` are set.
    pub fn start(addr: SocketAddr, state: Arc<AppState>) -> Result<Server> {
        let config = state.config();
        if let Some(refusal) = listen::refusal(&config.daemon) {
            return Err(Error::Usage(refusal));
        }
        let acceptor = config
            .daemon
            .tls
            .as_ref()
            .map(|(cert, key)| tls::acceptor(cert, key))
            .transpose()?;
        let trusted_proxy = config.daemon.trusted_proxy;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| Error::Run(format!("cannot listen on {addr} ([daemon] listen): {e}")))?;
        let addr = listener.local_addr().unwrap_or(addr);
        // std listens with a backlog of 128: a burst of clients beyond it has
        // connections reset. Listening again only raises the backlog.
        // SAFETY: the descriptor belongs to `listener`, open for the call.
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) };
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Run(format!("listen on {addr}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Run(format!("cannot start the HTTP runtime: {e}")))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cairn-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("HTTP server on {addr}: {e}");
                            return;
                        }
                    };
                    let app = router(state);
                    let shutdown = async {
                        let _ = rx.await;
                    };
                    let served = match acceptor {
                        Some(acceptor) => {
                            let listener = tls::TlsListener::new(listener, acceptor, trusted_proxy);
                            axum::serve(
                                listener,
                                app.into_make_service_with_connect_info::<api::Client>(),
                            )
                            .with_graceful_shutdown(shutdown)
                            .await
                        }
                        None => {
                            let listener = tls::PlainListener::new(listener, trusted_proxy);
                            axum::serve(
                                listener,
                                app.into_make_service_with_connect_info::<api::Client>(),
                            )
                            .with_graceful_shutdown(shutdown)
                            .await
                        }
                    };
                    if let Err(e) = served {
                        tracing::error!("HTTP server on {addr} stopped: {e}");
                    }
                });
            })
            .map_err(|e| Error::Run(format!("cannot start the HTTP thread: {e}")))?;
        let scheme = if config.daemon.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!("serving /metrics, /healthz and /api/v1/ on {scheme}://{addr}");
        Ok(Server {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
