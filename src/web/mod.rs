//! The daemon's HTTP server (axum on its own tokio runtime and thread):
//! `/metrics` in the Prometheus text format and `/healthz`. The router is
//! built in [`router`] so that the web UI can add its routes later.

pub mod metrics;
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
use crate::{Error, Result};

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
pub struct AppState {
    /// The daemon's current config (replaced on reload).
    pub config: Arc<RwLock<Config>>,
    /// The catalog part of the metrics: listing remote destinations is slow,
    /// so it is reused for `catalog_ttl`.
    catalog: Mutex<Option<(Instant, Vec<JobStatus>)>>,
    catalog_ttl: Duration,
}

impl AppState {
    pub fn new(config: Arc<RwLock<Config>>, catalog_ttl: Duration) -> AppState {
        AppState {
            config,
            catalog: Mutex::new(None),
            catalog_ttl,
        }
    }

    /// Renders `/metrics` (blocking: reads the state store and destinations).
    pub fn render_metrics(&self) -> String {
        let config = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let store = crate::state::open(&config)
            .map_err(|e| tracing::warn!(error = %e, "metrics without the state store"))
            .ok();
        let store = store.as_deref();
        let statuses = {
            let mut cache = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
            match cache.as_ref() {
                Some((at, statuses)) if at.elapsed() < self.catalog_ttl => statuses.clone(),
                _ => {
                    let statuses = metrics::catalog(&config, store);
                    *cache = Some((Instant::now(), statuses.clone()));
                    statuses
                }
            }
        };
        metrics::render(&config, store, &statuses, true)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(ui::router())
        .with_state(state)
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    match tokio::task::spawn_blocking(move || state.render_metrics()).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (errors are returned here, not later) and serves on a thread.
    pub fn start(addr: SocketAddr, state: Arc<AppState>) -> Result<Server> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| Error::Run(format!("cannot listen on {addr} ([daemon] listen): {e}")))?;
        let addr = listener.local_addr().unwrap_or(addr);
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
                    let served = axum::serve(listener, router(state))
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("HTTP server on {addr} stopped: {e}");
                    }
                });
            })
            .map_err(|e| Error::Run(format!("cannot start the HTTP thread: {e}")))?;
        tracing::info!("serving /metrics and /healthz on http://{addr}");
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
