//! Downloads: an artifact's stored bytes (as stored, encrypted), or with
//! `plaintext=true` and the job's key on this host, its plaintext through the
//! engine's read path. A blocking reader pumps fixed-size chunks through a
//! bounded channel into the body, so memory stays flat whatever the size.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::Path;
use super::access::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::jobs::known_job;
use crate::auth::Action;
use crate::engine::Selector;
use crate::web::AppState;

/// Chunks in flight between the reader and the client.
const CHANNEL_CHUNKS: usize = 4;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DataQuery {
    /// Read from this destination only.
    pub destination: Option<String>,
    /// The decrypted, decompressed data instead of the stored bytes (needs
    /// the job's key on this host).
    #[serde(default)]
    pub plaintext: bool,
}

type Chunk = std::result::Result<Bytes, std::io::Error>;

/// Where the reader thread is: headers decided (size, name) or refused.
type Start = ApiResult<(Option<u64>, String)>;

/// An artifact's bytes (admins; audited).
#[utoipa::path(get, path = "/api/v1/jobs/{job}/artifacts/{id}/data", tag = "jobs",
    params(("job" = String, Path, description = "the job's name"),
           ("id" = String, Path, description = "the artifact's id or a unique prefix"),
           DataQuery),
    responses(
        (status = 200, description = "the bytes", content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "no key for the plaintext on this host", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn data(
    State(state): State<Arc<AppState>>,
    Path((job, id)): Path<(String, String)>,
    caller: Caller,
    super::Query(query): super::Query<DataQuery>,
) -> ApiResult<Response> {
    caller.require(Action::Download, Some(&job))?;
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<Start>();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    std::thread::Builder::new()
        .name("cairn-download".into())
        .spawn(move || pump(&state, &caller, &job, &id, &query, start_tx, tx))
        .map_err(ApiError::internal)?;
    let (size, name) = start_rx
        .await
        .map_err(|_| ApiError::internal("the download thread ended before it started"))??;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = size
        && let Ok(value) = HeaderValue::from_str(&size.to_string())
    {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::OK, response).into_response())
}

/// A file name made only of safe characters.
fn file_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sends a stream's bytes in whole chunks, each read straight into the buffer
/// that travels to the client. The last chunk is held back until
/// [`finish`](Self::finish), which comes after the hashes matched: a damaged
/// artifact arrives short, never whole. An error aborts the body (the client
/// sees a cut transfer, never a complete-looking wrong file).
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    held: Option<Bytes>,
}

impl ChunkSender {
    fn send(&self, chunk: Bytes) -> std::io::Result<()> {
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }

    fn send_from(&mut self, reader: &mut dyn Read) -> std::io::Result<()> {
        loop {
            let chunk = crate::engine::read::read_chunk(reader)?;
            if chunk.is_empty() {
                return Ok(());
            }
            if let Some(previous) = self.held.replace(Bytes::from(chunk)) {
                self.send(previous)?;
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self.held.take() {
            Some(last) => self.send(last),
            None => Ok(()),
        }
    }

    fn abort(&self, message: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(message)));
    }
}

fn pump(
    state: &AppState,
    caller: &Caller,
    job: &str,
    id: &str,
    query: &DataQuery,
    start: tokio::sync::oneshot::Sender<Start>,
    tx: tokio::sync::mpsc::Sender<Chunk>,
) {
    let config = state.config();
    let store = match state.store() {
        Ok(store) => store,
        Err(e) => {
            let _ = start.send(Err(e.into()));
            return;
        }
    };
    let target = format!("{job}/{id}");
    let located = (|| -> ApiResult<_> {
        let job_config = known_job(&config, job)?;
        if let Some(d) = &query.destination
            && !job_config.destinations.contains(d)
        {
            return Err(ApiError::not_found(format!(
                "job `{job}` has no destination `{d}`"
            )));
        }
        let selector = Selector {
            id: Some(id.to_string()),
            at: None,
            from: query.destination.clone(),
            allow_bad: false,
            allow_unsigned: false,
        };
        let destinations =
            crate::engine::destinations_of(&config, job_config, selector.from.as_deref())?;
        let located = crate::engine::locate(&config, job_config, &destinations, &selector)?;
        let key = if query.plaintext {
            Some(crate::keys::decrypt_key(job_config).map_err(|e| {
                ApiError::conflict(format!(
                    "this host cannot decrypt job `{job}` ({e}); download the stored bytes instead"
                ))
            })?)
        } else {
            None
        };
        Ok((located, key))
    })();
    let (located, key) = match located {
        Ok(found) => found,
        Err(e) => {
            caller.audit(store.as_ref(), "download", &target, "failed");
            let _ = start.send(Err(e));
            return;
        }
    };
    let Some((dest, _)) = located.copies.first() else {
        caller.audit(store.as_ref(), "download", &target, "failed");
        let _ = start.send(Err(ApiError::not_found("no readable copy")));
        return;
    };
    let manifest = &located.manifest;
    let what = if query.plaintext {
        "plaintext"
    } else {
        "stored"
    };
    caller.audit(
        store.as_ref(),
        "download",
        &format!("{job}/{}", manifest.id),
        &format!("ok ({what})"),
    );
    let base = file_name(manifest.data.key.rsplit('/').next().unwrap_or(&manifest.id));
    let mut out = ChunkSender { tx, held: None };
    let (size, name) = match key {
        None => (manifest.data.size, base),
        Some(_) => (manifest.plaintext.size, format!("{}.plain", manifest.id)),
    };
    let _ = start.send(Ok((Some(size), name)));
    let mut send = |stream: &mut dyn std::io::Read| {
        out.send_from(stream)
            .map_err(|e| crate::Error::Run(format!("the client stopped reading: {e}")))
    };
    let read = match &key {
        None => crate::engine::read::read_stored(dest.as_ref(), manifest, &mut send).map(|_| ()),
        Some(key) => crate::engine::read::read_artifact(
            dest.as_ref(),
            manifest,
            key,
            Arc::new(crate::progress::Silent),
            &mut send,
        )
        .map(|_| ()),
    };
    let result = read
        .map_err(|e| e.to_string())
        .and_then(|()| out.finish().map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::warn!(job, id = %manifest.id, error = %e, "download aborted");
        out.abort(e);
    }
}
