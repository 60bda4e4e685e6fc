//! Who is asking: the bearer token or the session cookie of a request, the
//! CSRF and same-origin checks of cookie requests, the client's address, and
//! the audit entries the API writes. Every call into `auth` is here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::connect_info::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};

use super::error::{ApiError, ApiResult, blocking};
use crate::auth::{self, Action, Principal};
use crate::state::StateStore;
use crate::web::AppState;

/// The session cookie (HttpOnly, SameSite=Strict, Path=/, Secure over TLS).
pub const SESSION_COOKIE: &str = "cairn_session";
/// The header cookie requests carry their CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The connection's peer, as the listener accepted it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub peer: SocketAddr,
    /// The peer is `[daemon] trusted_proxy`: its `X-Forwarded-For` names the client.
    pub via_trusted_proxy: bool,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::web::tls::PlainListener>,
    > for Client
{
    fn connect_info(
        stream: axum::serve::IncomingStream<'_, crate::web::tls::PlainListener>,
    ) -> Client {
        *stream.remote_addr()
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::web::tls::TlsListener>,
    > for Client
{
    fn connect_info(
        stream: axum::serve::IncomingStream<'_, crate::web::tls::TlsListener>,
    ) -> Client {
        *stream.remote_addr()
    }
}

/// The client's address for the audit log and the login limit: the peer, or
/// behind the trusted proxy the last address it appended.
pub fn client_address(parts: &Parts) -> String {
    let Some(ConnectInfo(client)) = parts.extensions.get::<ConnectInfo<Client>>() else {
        return String::new();
    };
    if client.via_trusted_proxy
        && let Some(forwarded) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|v| v.parse::<std::net::IpAddr>().ok())
    {
        return forwarded.to_string();
    }
    client.peer.ip().to_string()
}

/// Whether the request came over TLS, the daemon's or the proxy's.
pub fn served_securely(state: &AppState, parts: &Parts) -> bool {
    state.tls
        || parts
            .extensions
            .get::<ConnectInfo<Client>>()
            .is_some_and(|c| c.via_trusted_proxy)
            && parts
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes() == b"https")
}

pub use crate::auth::secret::constant_time_eq;

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `Origin` (else `Referer`) names this host: `scheme://Host`.
pub fn same_origin(parts: &Parts, secure: bool) -> bool {
    let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let scheme = if secure { "https" } else { "http" };
    let expected = format!("{scheme}://{host}");
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        return origin.as_bytes() == expected.as_bytes();
    }
    parts
        .headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|referer| {
            referer == expected
                || referer
                    .strip_prefix(expected.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A request whose credentials are valid. Handlers then ask [`Caller::require`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub address: String,
}

impl Caller {
    /// `user:NAME` or `token:NAME`.
    pub fn actor(&self) -> String {
        self.principal.actor()
    }

    /// 403 unless the role table lets this caller do `action` (on `job`).
    pub fn require(&self, action: Action, job: Option<&str>) -> ApiResult<()> {
        if self.principal.may(action, job) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} ({}) may not do this{}",
                self.actor(),
                self.principal.role,
                job.map(|j| format!(" on job `{j}`")).unwrap_or_default()
            )))
        }
    }
}

/// Before the first user exists, nothing is open (the UI says how to make one).
pub const NO_USERS: &str =
    "no user exists yet: create the first one with `cairn user add NAME --role admin`";

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Caller> {
        let address = client_address(parts);
        let secure = served_securely(state, parts);
        let token = bearer(&parts.headers).map(str::to_string);
        let session = cookie(&parts.headers, SESSION_COOKIE);
        let writes = changes_state(&parts.method);
        let origin_ok = same_origin(parts, secure);
        let csrf_given = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                parts
                    .extensions
                    .get::<super::form::FormCsrf>()
                    .map(|f| f.0.clone())
            });
        let state = state.clone();
        let audit_address = address.clone();
        let principal = blocking(move || {
            let store = state.store()?;
            if store.users()?.is_empty() {
                return Err(ApiError::unauthorized(NO_USERS));
            }
            let now = jiff::Timestamp::now();
            if let Some(secret) = token {
                return auth::token::principal_from_bearer(store.as_ref(), &secret, now)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| {
                        ApiError::unauthorized("the token is unknown, expired or revoked")
                    });
            }
            let Some(cookie) = session else {
                return Err(ApiError::unauthorized(
                    "sign in (POST /api/v1/session) or send Authorization: Bearer TOKEN",
                ));
            };
            let lifetimes = auth::Lifetimes::of(&state.config());
            let principal =
                auth::session::principal_from_session(store.as_ref(), &cookie, now, lifetimes)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| {
                        ApiError::unauthorized("the session has ended: sign in again")
                    })?;
            if writes {
                let Some(csrf) = principal.csrf() else {
                    return Err(ApiError::internal(
                        "a session principal without a CSRF token",
                    ));
                };
                let refusal = if !origin_ok {
                    Some("the request's Origin is not this server")
                } else if !csrf_given
                    .as_deref()
                    .is_some_and(|given| constant_time_eq(given, csrf))
                {
                    Some("the CSRF token (X-CSRF-Token header or `csrf` form field) is missing or wrong")
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    record(
                        store.as_ref(),
                        &format!("user:{}", principal.name),
                        "csrf",
                        "",
                        &audit_address,
                        "denied",
                    );
                    return Err(ApiError::csrf(refusal));
                }
            }
            Ok(principal)
        })
        .await?;
        Ok(Caller { principal, address })
    }
}

/// Appends to the audit log; a failure is logged, never the caller's problem
/// after the fact (the action already happened).
pub fn record(
    store: &dyn StateStore,
    actor: &str,
    action: &str,
    target: &str,
    address: &str,
    result: &str,
) {
    let now = jiff::Timestamp::now();
    if let Err(e) = auth::audit::record(store, now, actor, action, target, address, result) {
        tracing::error!(error = %e, action, "the audit entry could not be written");
    }
}

impl Caller {
    /// Records what this caller did (blocking).
    pub fn audit(&self, store: &dyn StateStore, action: &str, target: &str, result: &str) {
        record(store, &self.actor(), action, target, &self.address, result);
    }
}
