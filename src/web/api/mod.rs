//! The JSON API under `/api/v1/` (issue 13): jobs, artifacts, runs, checks,
//! events, downloads, the audit log and sessions. Every handler takes a
//! [`Caller`] (bearer token or session cookie; CSRF and same origin for cookie
//! changes) and asks the one role table (`auth`) before it acts; errors are
//! `{"code", "message"}`. The OpenAPI 3.1 document is generated from these
//! handlers (utoipa) and served without credentials at `/api/v1/openapi.json`.

pub mod access;
mod audit;
mod download;
pub mod error;
mod events;
pub mod form;
mod jobs;
mod notify_test;
mod restore;
mod restore_target;
mod runs;
mod schemas;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use access::{Caller, Client, constant_time_eq};
pub use error::{ApiError, ApiResult};
pub(crate) use jobs::ViewCache;

use crate::web::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "cairn", description = "The cairn daemon's REST API: jobs, runs, artifacts, checks, events, audit."),
    paths(
        jobs::list, jobs::one, jobs::artifacts, jobs::pause, jobs::resume,
        jobs::set_schedule, jobs::clear_schedule,
        runs::list, runs::one, runs::start, runs::checks, runs::run_check,
        download::data, events::events, audit::list, restore::restore,
        notify_test::send_test,
        session::login, session::logout,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(access::SESSION_COOKIE))),
        );
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_string();
    doc
}

/// `/api/v1/…`; merged into [`crate::web::router`].
pub fn router() -> Router<Arc<AppState>> {
    let document = Arc::new(openapi());
    Router::new()
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/{job}", get(jobs::one))
        .route("/api/v1/jobs/{job}/artifacts", get(jobs::artifacts))
        .route(
            "/api/v1/jobs/{job}/artifacts/{id}/data",
            get(download::data),
        )
        .route("/api/v1/jobs/{job}/runs", post(runs::start))
        .route("/api/v1/jobs/{job}/restore", post(restore::restore))
        .route("/api/v1/jobs/{job}/pause", post(jobs::pause))
        .route("/api/v1/jobs/{job}/resume", post(jobs::resume))
        .route(
            "/api/v1/jobs/{job}/schedule",
            axum::routing::put(jobs::set_schedule).delete(jobs::clear_schedule),
        )
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{run_id}", get(runs::one))
        .route("/api/v1/checks", get(runs::checks))
        .route("/api/v1/checks/{check}/runs", post(runs::run_check))
        .route(
            "/api/v1/notifications/{channel}/test",
            post(notify_test::send_test),
        )
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/audit", get(audit::list))
        .route(
            "/api/v1/session",
            post(session::login).delete(session::logout),
        )
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .layer(axum::middleware::from_fn(form::take_csrf_field))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint (see /api/v1/openapi.json)")
}

/// `axum::Json` (or, from an HTML form, `axum::Form`) whose rejections are API errors.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Body<T>> {
        if form::is_form(request.headers()) {
            return axum::Form::<T>::from_request(request, state)
                .await
                .map(|axum::Form(value)| Body(value))
                .map_err(|e| ApiError::bad_request(e.body_text()));
        }
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Body(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `axum::extract::Path` whose rejections are API errors (a run id that is
/// not a number, a name that is not UTF-8).
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Path<T>> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `axum::extract::Query` whose rejections are API errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Query<T>> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}
