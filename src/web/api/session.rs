//! Signing in and out: `POST /api/v1/session` sets the session cookie,
//! `DELETE` ends the session. Logins are rate-limited per user and address.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{self, Caller, SESSION_COOKIE};
use super::error::{ApiError, ApiResult, ErrorBody, blocking};
use crate::auth::{self, LoginError, Via};
use crate::web::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The signed-in user; `csrf` goes into `X-CSRF-Token` of every change.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub user: String,
    pub role: String,
    pub csrf: String,
}

/// What a login needs to know about its request.
pub struct LoginContext {
    pub address: String,
    pub secure: bool,
    pub foreign_origin: bool,
}

impl FromRequestParts<Arc<AppState>> for LoginContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> ApiResult<LoginContext> {
        let secure = access::served_securely(state, parts);
        let foreign_origin =
            parts.headers.contains_key(header::ORIGIN) && !access::same_origin(parts, secure);
        Ok(LoginContext {
            address: access::client_address(parts),
            secure,
            foreign_origin,
        })
    }
}

/// The `Set-Cookie` of a session (an empty value and Max-Age=0 ends it).
pub fn session_cookie(value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut cookie = format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

/// Signs in with a user name and password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = LoginRequest,
    responses((status = 200, body = SessionView, headers(("set-cookie" = String, description = "the session cookie"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 429, body = ErrorBody, headers(("retry-after" = u64, description = "seconds")))))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    context: LoginContext,
    super::Body(request): super::Body<LoginRequest>,
) -> ApiResult<Response> {
    if context.foreign_origin {
        return Err(ApiError::csrf("the request's Origin is not this server"));
    }
    let secure = context.secure;
    let (login, role) = blocking(move || {
        let store = state.store()?;
        if store.users()?.is_empty() {
            return Err(ApiError::unauthorized(access::NO_USERS));
        }
        // login() applies the limit and audits every attempt itself.
        match auth::session::login(
            store.as_ref(),
            &state.login_limit,
            &request.user,
            &request.password,
            &context.address,
            jiff::Timestamp::now(),
        ) {
            Ok(login) => {
                let role = login.principal.role.to_string();
                Ok((login, role))
            }
            Err(LoginError::Invalid) => Err(ApiError::unauthorized("wrong user name or password")),
            Err(LoginError::Limited { retry_after }) => {
                Err(ApiError::rate_limited(retry_after.as_secs().max(1)))
            }
            Err(LoginError::Store(e)) => Err(ApiError::from(e)),
        }
    })
    .await?;
    let body = SessionView {
        user: login.principal.name.clone(),
        role,
        csrf: login.csrf.clone(),
    };
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&session_cookie(&login.cookie, secure, None)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Ends the session of the cookie (bearer tokens have none to end).
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 204, description = "signed out"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("cookie" = [])))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    context: LoginContext,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if !matches!(caller.principal.via, Via::Session { .. }) {
        return Err(ApiError::bad_request(
            "a token has no session to end (revoke it with `cairn token revoke`)",
        ));
    }
    let cookie = access::cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    blocking(move || {
        let store = state.store()?;
        // logout() audits itself.
        auth::session::logout(
            store.as_ref(),
            &cookie,
            &caller.address,
            jiff::Timestamp::now(),
        )?;
        Ok(())
    })
    .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&session_cookie("", context.secure, Some(0))) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
