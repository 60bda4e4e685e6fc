//! HTML forms posting to the API: their CSRF token comes as the hidden field
//! `csrf` of an `application/x-www-form-urlencoded` body. This layer takes
//! the field out of the body before any handler sees it and hands it to the
//! [`super::Caller`] extractor, which accepts it as it accepts the
//! `X-CSRF-Token` header (the same-origin check stays).

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The hidden field of a form that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// A form body larger than this is refused (forms here hold a few fields).
const FORM_LIMIT: usize = 64 * 1024;

/// The `csrf` field of the request's form body.
#[derive(Debug, Clone)]
pub struct FormCsrf(pub String);

pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Moves a form's `csrf` field into the request's extensions.
pub async fn take_csrf_field(request: Request, next: Next) -> Response {
    if !is_form(request.headers()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return ApiError::bad_request(format!("the form is larger than {} KiB", FORM_LIMIT / 1024))
            .into_response();
    };
    // The serializer is not Send: it lives only in this block, not across an await.
    let rest = {
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in url::form_urlencoded::parse(&bytes) {
            if key == CSRF_FIELD {
                parts.extensions.insert(FormCsrf(value.into_owned()));
            } else {
                rest.append_pair(&key, &value);
            }
        }
        rest.finish()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, Body::from(rest))).await
}
