//! The web UI: server-rendered pages (askama templates in `templates/`), one
//! stylesheet and one small script (`assets/`, embedded in the binary). Pages
//! read through the engine's status functions; every button calls the REST
//! API under `/api/v1/` with the session cookie and the page's CSRF token, so
//! the UI has no way to change anything that the API does not check.

mod assets;
mod cache;
mod charts;
mod data;
mod format;
mod pages;
mod restore_page;
mod viewer;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use super::AppState;

pub use viewer::SESSION_COOKIE;

/// The pages and assets, merged into the daemon's router.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login))
        .route("/jobs/{job}", get(pages::job))
        .route("/jobs/{job}/restore", get(pages::restore))
        .route("/checks", get(pages::checks))
        .route("/notifications", get(pages::notifications))
        .route("/audit", get(pages::audit))
        .route("/assets/{name}", get(assets::serve))
}
