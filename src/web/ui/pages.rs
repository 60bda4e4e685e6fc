//! The page handlers: who is asking (setup page, sign-in or the page), the
//! page's data gathered on a blocking thread, the template rendered, and the
//! headers every page carries.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::viewer::{self, Viewer, Visit};
use super::{assets, data};
use crate::config::Config;
use crate::state::StateStore;
use crate::web::AppState;

/// How many audit entries the audit page lists.
const AUDIT_ENTRIES: usize = 200;

/// No script or style from anywhere else, no framing, nothing sent elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    next: String,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    heading: String,
    text: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    d: Arc<data::Dashboard>,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    /// The job's name, for the role checks of its buttons.
    job: String,
    p: data::JobPage,
}

#[derive(Template)]
#[template(path = "restore.html")]
struct RestorePageT {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    r: super::restore_page::RestorePage,
}

#[derive(Template)]
#[template(path = "checks.html")]
struct ChecksPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    checks: Vec<data::CheckLine>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    n: data::Notifications,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    viewer: Option<Viewer>,
    section: &'static str,
    asset_version: &'static str,
    entries: Vec<data::AuditLine>,
}

/// A rendered page with the headers every page carries.
fn html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => {
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            response
        }
        Err(e) => {
            tracing::error!("rendering a page failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered\n",
            )
                .into_response()
        }
    }
}

fn message(status: StatusCode, viewer: Option<Viewer>, heading: &str, text: String) -> Response {
    html(
        status,
        &MessagePage {
            viewer,
            section: "",
            asset_version: assets::version(),
            heading: heading.to_string(),
            text,
        },
    )
}

fn setup() -> Response {
    html(
        StatusCode::OK,
        &SetupPage {
            viewer: None,
            section: "",
            asset_version: assets::version(),
        },
    )
}

/// A page that was asked for: whose, and what it is.
struct Ask {
    config: Config,
    store: Box<dyn StateStore>,
    viewer: Viewer,
}

/// Runs `render` on a blocking thread for a signed-in viewer; sends others to
/// the setup page or to `/login?next=path`.
async fn page(
    state: Arc<AppState>,
    headers: HeaderMap,
    path: String,
    render: impl FnOnce(Ask) -> Response + Send + 'static,
) -> Response {
    let result = tokio::task::spawn_blocking(move || {
        let config = state
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let store = match crate::state::open(&config) {
            Ok(store) => store,
            Err(e) => {
                return message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "The state store cannot be opened",
                    e.to_string(),
                );
            }
        };
        match viewer::visit(&config, store.as_ref(), &headers) {
            Ok(Visit::Setup) => setup(),
            Ok(Visit::Anonymous) => {
                Redirect::to(&format!("/login?next={}", encode_path(&path))).into_response()
            }
            Ok(Visit::Signed(viewer)) => render(Ask {
                config,
                store,
                viewer,
            }),
            Err(e) => message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "The state store cannot be read",
                e.to_string(),
            ),
        }
    })
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!("a page handler failed: {e}");
        (StatusCode::INTERNAL_SERVER_ERROR, "the page failed\n").into_response()
    })
}

/// Percent-encodes a path for the `next` query parameter.
fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where to go after signing in: only a path on this site (never `//host`).
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/".to_string(),
    }
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let next = safe_next(query.get("next"));
    let result = tokio::task::spawn_blocking(move || {
        let config = state
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let store = crate::state::open(&config)?;
        viewer::visit(&config, store.as_ref(), &headers)
    })
    .await;
    match result {
        Ok(Ok(Visit::Setup)) => setup(),
        Ok(Ok(Visit::Signed(_))) => Redirect::to(&next).into_response(),
        Ok(Ok(Visit::Anonymous)) => html(
            StatusCode::OK,
            &LoginPage {
                viewer: None,
                section: "login",
                asset_version: assets::version(),
                next,
            },
        ),
        Ok(Err(e)) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "The state store cannot be read",
            e.to_string(),
        ),
        Err(e) => {
            tracing::error!("the login page failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed\n").into_response()
        }
    }
}

pub async fn dashboard(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let server = Arc::as_ptr(&state) as usize;
    page(state, headers, "/".into(), move |ask| {
        let now = jiff::Timestamp::now();
        html(
            StatusCode::OK,
            &DashboardPage {
                d: super::cache::dashboard(server, &ask.config, ask.store.as_ref(), now),
                viewer: Some(ask.viewer),
                section: "dashboard",
                asset_version: assets::version(),
            },
        )
    })
    .await
}

pub async fn job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let path = format!("/jobs/{name}");
    page(state, headers, path, move |ask| {
        let Some(job) = ask.config.jobs.get(&name) else {
            return message(
                StatusCode::NOT_FOUND,
                Some(ask.viewer),
                "No such job",
                format!("The configuration has no job `{name}`."),
            );
        };
        let now = jiff::Timestamp::now();
        html(
            StatusCode::OK,
            &JobPage {
                job: job.name.clone(),
                p: data::job_page(&ask.config, job, Some(ask.store.as_ref()), now),
                viewer: Some(ask.viewer),
                section: "dashboard",
                asset_version: assets::version(),
            },
        )
    })
    .await
}

/// `/jobs/{job}/restore?artifact=ID[&destination=D]` (admins): the form
/// whose buttons ask the API for the dry-run plan and then the restore.
pub async fn restore(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/jobs/{name}/restore");
    page(state, headers, path, move |ask| {
        let Some(job) = ask.config.jobs.get(&name) else {
            return message(
                StatusCode::NOT_FOUND,
                Some(ask.viewer),
                "No such job",
                format!("The configuration has no job `{name}`."),
            );
        };
        if !ask.viewer.may("restore", &job.name) {
            return message(
                StatusCode::FORBIDDEN,
                Some(ask.viewer),
                "Admins only",
                "Restoring needs the admin role.".into(),
            );
        }
        let Some(artifact) = query.get("artifact").filter(|a| !a.is_empty()) else {
            return message(
                StatusCode::BAD_REQUEST,
                Some(ask.viewer),
                "Which artifact?",
                "Choose an artifact to restore on the job's page.".into(),
            );
        };
        let destination = query.get("destination").cloned().unwrap_or_default();
        html(
            StatusCode::OK,
            &RestorePageT {
                r: super::restore_page::restore_page(&ask.config, job, artifact, &destination),
                viewer: Some(ask.viewer),
                section: "dashboard",
                asset_version: assets::version(),
            },
        )
    })
    .await
}

pub async fn checks(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    page(state, headers, "/checks".into(), |ask| {
        let now = jiff::Timestamp::now();
        html(
            StatusCode::OK,
            &ChecksPage {
                checks: data::checks(&ask.config, Some(ask.store.as_ref()), now),
                viewer: Some(ask.viewer),
                section: "checks",
                asset_version: assets::version(),
            },
        )
    })
    .await
}

pub async fn notifications(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    page(state, headers, "/notifications".into(), |ask| {
        html(
            StatusCode::OK,
            &NotificationsPage {
                n: data::notifications(&ask.config),
                viewer: Some(ask.viewer),
                section: "notifications",
                asset_version: assets::version(),
            },
        )
    })
    .await
}

pub async fn audit(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    page(state, headers, "/audit".into(), |ask| {
        if !ask.viewer.may("read_audit", "") {
            return message(
                StatusCode::FORBIDDEN,
                Some(ask.viewer),
                "Admins only",
                "The audit log is shown to users with the admin role.".into(),
            );
        }
        match data::audit(ask.store.as_ref(), AUDIT_ENTRIES) {
            Ok(entries) => html(
                StatusCode::OK,
                &AuditPage {
                    entries,
                    viewer: Some(ask.viewer),
                    section: "audit",
                    asset_version: assets::version(),
                },
            ),
            Err(e) => message(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(ask.viewer),
                "The audit log cannot be read",
                e.to_string(),
            ),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        assert_eq!(safe_next(Some(&"/jobs/app".to_string())), "/jobs/app");
        assert_eq!(safe_next(Some(&"//evil.example".to_string())), "/");
        assert_eq!(safe_next(Some(&"https://evil.example".to_string())), "/");
        assert_eq!(safe_next(Some(&"/\\evil.example".to_string())), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(encode_path("/jobs/a b"), "/jobs/a%20b");
    }
}
