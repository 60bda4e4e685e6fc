//! Streaming WebDAV uploads. OpenDAL's WebDAV writer buffers a whole object in
//! memory before its single PUT; backups can be larger than memory, so data
//! objects go up as one PUT whose body is streamed (chunked transfer encoding)
//! from a bounded channel. Everything else about WebDAV goes through OpenDAL;
//! `store::layers::webdav_upload` puts this writer in place of OpenDAL's.

use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Upload;
use crate::error::StorageKind;
use crate::redact::redact_with as redact;
use crate::{Error, Result};

/// Chunks in flight between the writer thread and the HTTP request.
const QUEUE: usize = 8;

#[derive(Clone)]
pub struct WebdavStreamer {
    client: reqwest::Client,
    /// How long a chunk may wait for the server to take it.
    timeout: std::time::Duration,
    /// Endpoint plus prefix, ending in `/`.
    base: String,
    /// The endpoint without a trailing `/`, and the prefix's folders below it.
    endpoint: String,
    prefix: Vec<String>,
    user: Option<String>,
    password: Option<String>,
    /// Kept out of error messages.
    secrets: Vec<String>,
}

impl WebdavStreamer {
    pub fn new(
        url: &str,
        prefix: &str,
        user: Option<String>,
        password: Option<String>,
        timeout: std::time::Duration,
        secrets: Vec<String>,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| Error::Run(format!("cannot build the HTTP client: {e}")))?;
        let mut base = url.trim_end_matches('/').to_string();
        for part in prefix.split('/').filter(|p| !p.is_empty()) {
            base.push('/');
            base.push_str(&encode_segment(part));
        }
        base.push('/');
        Ok(WebdavStreamer {
            client,
            timeout,
            base,
            endpoint: url.trim_end_matches('/').to_string(),
            prefix: prefix
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            user,
            password,
            secrets,
        })
    }

    fn url_of(&self, key: &str) -> String {
        let path: Vec<String> = key.split('/').map(encode_segment).collect();
        format!("{}{}", self.base, path.join("/"))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.user {
            Some(user) => request.basic_auth(user, self.password.as_deref()),
            None => request,
        }
    }

    /// Creates the collection `url` (ending in `/`); `Ok(false)` when its
    /// parent is missing.
    async fn mkcol(&self, url: &str) -> std::result::Result<bool, (StorageKind, String)> {
        let method = reqwest::Method::from_bytes(b"MKCOL")
            .map_err(|e| (StorageKind::Other, e.to_string()))?;
        let response = self
            .authorized(self.client.request(method, url))
            .send()
            .await
            .map_err(|e| (kind_of_request(&e), e.to_string()))?;
        let status = response.status();
        // 405: it exists already.
        if status.is_success() || status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            Ok(true)
        } else if status == reqwest::StatusCode::CONFLICT {
            Ok(false)
        } else {
            Err((
                kind_of_status(status),
                format!("the server answered {status}"),
            ))
        }
    }

    /// Makes sure the folder of `key` exists: one request when it does.
    pub fn ensure_folder(
        &self,
        runtime: &tokio::runtime::Runtime,
        key: &str,
        destination: &str,
    ) -> Result<()> {
        let Some((dir, _)) = key.rsplit_once('/') else {
            return Ok(());
        };
        let fail = |(kind, e): (StorageKind, String)| {
            Error::storage(
                destination,
                kind,
                redact(&format!("cannot create folder {dir}: {e}"), &self.secrets),
            )
        };
        runtime.block_on(async {
            if self
                .mkcol(&format!("{}/", self.url_of(dir)))
                .await
                .map_err(fail)?
            {
                return Ok(());
            }
            // Top down from the first folder of the prefix.
            let mut url = self.endpoint.clone();
            let mut ancestors = Vec::new();
            for part in self.prefix.iter().map(String::as_str).chain(dir.split('/')) {
                url.push('/');
                url.push_str(&encode_segment(part));
                ancestors.push(format!("{url}/"));
            }
            for ancestor in ancestors {
                self.mkcol(&ancestor).await.map_err(fail)?;
            }
            Ok(())
        })
    }

    /// Starts a PUT to `temp` whose body is what gets written to the upload;
    /// `commit` moves it to `key`, so nothing shows under `key` before.
    pub fn start(
        &self,
        runtime: &tokio::runtime::Runtime,
        key: &str,
        temp: &str,
        destination: &str,
    ) -> Box<dyn Upload> {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let body = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|chunk| chunk.map(Ok::<Bytes, io::Error>))
        });
        let request = self.authorized(
            self.client
                .put(self.url_of(temp))
                .body(reqwest::Body::wrap_stream(body)),
        );
        let task = runtime.spawn(send_expecting_success(request));
        Box::new(WebdavUpload {
            timeout: self.timeout,
            tx: Some(tx),
            task: Some(task),
            runtime: runtime.handle().clone(),
            key: key.to_string(),
            temp: temp.to_string(),
            streamer: self.clone(),
            destination: destination.to_string(),
            secrets: self.secrets.clone(),
        })
    }
}

/// Sends `request`; anything but a 2xx answer is an error with its kind.
async fn send_expecting_success(
    request: reqwest::RequestBuilder,
) -> std::result::Result<(), (StorageKind, String)> {
    let response = request
        .send()
        .await
        .map_err(|e| (kind_of_request(&e), e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err((
            kind_of_status(status),
            format!("the server answered {status}"),
        ))
    }
}

fn kind_of_request(e: &reqwest::Error) -> StorageKind {
    if e.is_timeout() || e.is_connect() || e.is_request() {
        StorageKind::Transient
    } else {
        e.status().map_or(StorageKind::Other, kind_of_status)
    }
}

fn kind_of_status(status: reqwest::StatusCode) -> StorageKind {
    match status.as_u16() {
        401 | 403 => StorageKind::Denied,
        404 | 409 => StorageKind::NotFound,
        507 => StorageKind::NoSpace,
        408 | 429 | 500..=599 => StorageKind::Transient,
        _ => StorageKind::Other,
    }
}

fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct WebdavUpload {
    timeout: std::time::Duration,
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<std::result::Result<(), (StorageKind, String)>>>,
    runtime: tokio::runtime::Handle,
    key: String,
    /// Where the body goes until `commit` moves it to `key`.
    temp: String,
    streamer: WebdavStreamer,
    destination: String,
    secrets: Vec<String>,
}

impl WebdavUpload {
    /// The request's own error explains a closed channel.
    fn finish_task(&mut self) -> std::result::Result<(), (StorageKind, String)> {
        self.tx = None;
        match self.task.take() {
            Some(task) => match self.runtime.block_on(task) {
                Ok(result) => result,
                Err(e) => Err((StorageKind::Other, e.to_string())),
            },
            None => Err((StorageKind::Other, "upload already closed".into())),
        }
        .map_err(|(kind, e)| {
            (
                kind,
                redact(&format!("cannot upload {}: {e}", self.key), &self.secrets),
            )
        })
    }
}

impl WebdavUpload {
    /// Ends the PUT and waits (at most the upload timeout) until the server
    /// has answered, so that the DELETE that follows finds what it stored: a
    /// cancelled PUT leaves the server writing while the DELETE arrives.
    fn abort_task(&mut self) {
        self.tx = None;
        if let Some(mut task) = self.task.take() {
            let timeout = self.timeout;
            let ended = self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, &mut task).await });
            if ended.is_err() {
                task.abort();
            }
        }
    }

    /// Best effort: what an aborted PUT left under the temporary name.
    fn remove_temp(&self) {
        let request = self.streamer.authorized(
            self.streamer
                .client
                .delete(self.streamer.url_of(&self.temp)),
        );
        // reqwest sets up its timers when sending starts: inside the runtime.
        let _ = self.runtime.block_on(async { request.send().await });
    }

    async fn move_into_place(&self) -> std::result::Result<(), (StorageKind, String)> {
        let method = reqwest::Method::from_bytes(b"MOVE")
            .map_err(|e| (StorageKind::Other, e.to_string()))?;
        let request = self
            .streamer
            .client
            .request(method, self.streamer.url_of(&self.temp))
            .header("Destination", self.streamer.url_of(&self.key))
            .header("Overwrite", "T");
        send_expecting_success(self.streamer.authorized(request)).await
    }
}

impl Write for WebdavUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sent = match &self.tx {
            Some(tx) => {
                let chunk = Bytes::copy_from_slice(buf);
                let timeout = self.timeout;
                // The timer must be created inside the runtime.
                self.runtime
                    .block_on(async { tokio::time::timeout(timeout, tx.send(chunk)).await })
            }
            None => Ok(Err(mpsc::error::SendError(Bytes::new()))),
        };
        match sent {
            Ok(Ok(())) => return Ok(buf.len()),
            Err(_) => {
                self.abort_task();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the WebDAV server took no data for {:?}", self.timeout),
                ));
            }
            Ok(Err(_)) => {}
        }
        let (kind, error) = self
            .finish_task()
            .err()
            .unwrap_or_else(|| (StorageKind::Other, "the upload ended early".to_string()));
        Err(io::Error::new(super::io_error_kind(kind), error))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for WebdavUpload {
    fn commit(mut self: Box<Self>) -> Result<()> {
        if let Err((kind, e)) = self.finish_task() {
            self.remove_temp();
            return Err(Error::storage(&self.destination, kind, e));
        }
        let moved = self.runtime.block_on(self.move_into_place());
        moved.map_err(|(kind, e)| {
            self.remove_temp();
            Error::storage(
                &self.destination,
                kind,
                redact(
                    &format!("cannot rename into {}: {e}", self.key),
                    &self.secrets,
                ),
            )
        })
    }

    fn abort(mut self: Box<Self>) {
        self.abort_task();
        self.remove_temp();
    }
}

impl Drop for WebdavUpload {
    fn drop(&mut self) {
        // Neither committed nor aborted: an error path. Leave nothing behind.
        if self.task.is_some() {
            self.abort_task();
            self.remove_temp();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_storage_kinds() {
        let kind = |code| kind_of_status(reqwest::StatusCode::from_u16(code).unwrap());
        assert_eq!(kind(401), StorageKind::Denied);
        assert_eq!(kind(403), StorageKind::Denied);
        assert_eq!(kind(404), StorageKind::NotFound);
        assert_eq!(kind(507), StorageKind::NoSpace);
        assert_eq!(kind(503), StorageKind::Transient);
        assert_eq!(kind(429), StorageKind::Transient);
        assert_eq!(kind(400), StorageKind::Other);
    }
}
