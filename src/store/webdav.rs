//! Streaming WebDAV uploads. OpenDAL's WebDAV writer buffers a whole object in
//! memory before its single PUT; backups can be larger than memory, so data
//! objects go up as one PUT whose body is streamed (chunked transfer encoding)
//! from a bounded channel. Everything else about WebDAV goes through OpenDAL.

use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Upload;
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
    user: Option<String>,
    password: Option<String>,
}

impl WebdavStreamer {
    pub fn new(
        url: &str,
        prefix: &str,
        user: Option<String>,
        password: Option<String>,
        timeout: std::time::Duration,
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
            user,
            password,
        })
    }

    fn url_of(&self, key: &str) -> String {
        let path: Vec<String> = key.split('/').map(encode_segment).collect();
        format!("{}{}", self.base, path.join("/"))
    }

    /// Starts a PUT of `key` whose body is what gets written to the upload.
    pub fn start(
        &self,
        runtime: &tokio::runtime::Runtime,
        key: &str,
        destination: &str,
        secrets: Vec<String>,
    ) -> Box<dyn Upload> {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let body = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|chunk| chunk.map(Ok::<Bytes, io::Error>))
        });
        let mut request = self
            .client
            .put(self.url_of(key))
            .body(reqwest::Body::wrap_stream(body));
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_deref());
        }
        let task = runtime.spawn(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the server answered {status}"))
            }
        });
        Box::new(WebdavUpload {
            timeout: self.timeout,
            tx: Some(tx),
            task: Some(task),
            runtime: runtime.handle().clone(),
            key: key.to_string(),
            destination: destination.to_string(),
            secrets,
        })
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
    task: Option<tokio::task::JoinHandle<std::result::Result<(), String>>>,
    runtime: tokio::runtime::Handle,
    key: String,
    destination: String,
    secrets: Vec<String>,
}

impl WebdavUpload {
    /// The request's own error explains a closed channel.
    fn finish_task(&mut self) -> std::result::Result<(), String> {
        self.tx = None;
        match self.task.take() {
            Some(task) => match self.runtime.block_on(task) {
                Ok(result) => result,
                Err(e) => Err(e.to_string()),
            },
            None => Err("upload already closed".into()),
        }
        .map_err(|e| redact(&format!("cannot upload {}: {e}", self.key), &self.secrets))
    }
}

impl WebdavUpload {
    fn abort_task(&mut self) {
        self.tx = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
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
        let error = self
            .finish_task()
            .err()
            .unwrap_or_else(|| "the upload ended early".to_string());
        Err(io::Error::other(error))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for WebdavUpload {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.finish_task()
            .map_err(|e| Error::destination(&self.destination, e))
    }

    fn abort(mut self: Box<Self>) {
        self.abort_task();
    }
}

impl Drop for WebdavUpload {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
