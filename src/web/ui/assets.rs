//! The stylesheet and the script, compiled into the binary: no CDN, no
//! request leaves the daemon. Pages link them with `?v=` + a hash of their
//! contents, so browsers may keep them for a year.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../../assets/cairn.css");
const JS: &str = include_str!("../../../assets/cairn.js");

/// A short hash of both assets, for cache busting.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        hash.update(CSS);
        hash.update(JS);
        hex::encode(&hash.finalize()[..6])
    })
}

pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "cairn.css" => (CSS, "text/css; charset=utf-8"),
        "cairn.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
