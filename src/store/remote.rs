//! Destinations in object stores and remote file systems (S3, Azure Blob, GCS,
//! SFTP, WebDAV), through Apache OpenDAL.
//!
//! Data objects go straight to their final key: object stores make a multipart
//! or block upload visible only when it completes, and on SFTP/WebDAV an
//! unfinished object has no manifest, so it is never listed (and `gc` removes
//! it). Small objects (manifests) are renamed into place where the service can
//! rename. Memory per upload is bounded by part size × concurrency.

use std::future::IntoFuture;
use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, services};

use super::{Destination, ObjectInfo, Upload, io_error_kind};
use crate::config::{DestinationConfig, Transfer};
use crate::error::StorageKind;
use crate::pipeline::Source;
use crate::redact::redact_with as redact;
use crate::{Error, Result};

/// One runtime drives every remote destination; engine threads block on it.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("cairn-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Run(format!("cannot start the I/O runtime: {e}")))
}

pub struct RemoteDestination {
    name: String,
    location: String,
    /// For streams (uploads, reads): OpenDAL retries each part and chunk, the
    /// only place where a stream can be retried without starting over.
    op: Operator,
    /// For whole operations, retried by `store::layers::retry` instead.
    op_once: Operator,
    transfer: Transfer,
    can_rename: bool,
    secrets: Vec<String>,
    /// WebDAV's password, for the streaming upload layer.
    webdav_password: Option<String>,
}

/// What an OpenDAL error means for the caller. An error whose retries ran out
/// (persistent) is still one that may work later.
pub fn kind_of(e: &opendal::Error) -> StorageKind {
    match e.kind() {
        ErrorKind::NotFound => StorageKind::NotFound,
        ErrorKind::PermissionDenied => StorageKind::Denied,
        ErrorKind::RateLimited => StorageKind::Transient,
        _ if is_no_space(&e.to_string()) => StorageKind::NoSpace,
        _ if e.is_temporary() || e.is_persistent() => StorageKind::Transient,
        _ => StorageKind::Other,
    }
}

/// How object stores, WebDAV (507) and SFTP servers say they are full.
pub fn is_no_space(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "insufficient storage",
        "insufficientstorage",
        "quota exceeded",
        "quotaexceeded",
        "no space left",
        "no space on filesystem",
        "storage full",
        "storagefull",
    ]
    .iter()
    .any(|sign| message.contains(sign))
}

fn read_secret_file(name: &str, path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
        .inspect(|secret| crate::redact::register(secret))
        .map_err(|e| {
            Error::destination(
                name,
                format!("cannot read secret file {}: {e}", path.display()),
            )
        })
}

fn root_of(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        format!("/{trimmed}/")
    }
}

impl RemoteDestination {
    pub fn open(name: &str, config: &DestinationConfig) -> Result<Self> {
        // Without auto-registration OpenDAL needs its HTTP client installed once.
        opendal::install_default();
        let fail =
            |e: opendal::Error| Error::destination(name, format!("invalid configuration: {e}"));
        let mut secrets = Vec::new();
        let mut webdav_password = None;
        let (builder_op, location, transfer) = match config {
            DestinationConfig::Fs { .. } => {
                return Err(Error::destination(name, "fs destinations are not remote"));
            }
            DestinationConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                secret_access_key_file,
                virtual_host_style,
                transfer,
            } => {
                let mut b = services::S3::default()
                    .bucket(bucket)
                    .root(&root_of(prefix))
                    .region(region.as_deref().unwrap_or("us-east-1"));
                if let Some(endpoint) = endpoint {
                    b = b.endpoint(endpoint);
                }
                if let Some(key) = access_key_id {
                    b = b.access_key_id(key);
                }
                let secret = match (secret_access_key, secret_access_key_file) {
                    (Some(s), _) => Some(s.expose().to_string()),
                    (None, Some(path)) => Some(read_secret_file(name, path)?),
                    _ => None,
                };
                if let Some(secret) = secret {
                    b = b.secret_access_key(&secret);
                    secrets.push(secret);
                }
                if *virtual_host_style {
                    b = b.enable_virtual_host_style();
                }
                let location = format!(
                    "s3://{bucket}/{}{}",
                    prefix.trim_matches('/'),
                    endpoint
                        .as_ref()
                        .map(|e| format!(" at {}", crate::redact::display_url(e)))
                        .unwrap_or_default()
                );
                (Operator::new(b).map_err(fail)?, location, transfer)
            }
            DestinationConfig::Azblob {
                container,
                prefix,
                account_name,
                account_key,
                account_key_file,
                sas_token,
                endpoint,
                transfer,
            } => {
                let mut b = services::Azblob::default()
                    .container(container)
                    .root(&root_of(prefix));
                let endpoint = endpoint.clone().or_else(|| {
                    account_name
                        .as_ref()
                        .map(|a| format!("https://{a}.blob.core.windows.net"))
                });
                if let Some(endpoint) = &endpoint {
                    b = b.endpoint(endpoint);
                }
                if let Some(account) = account_name {
                    b = b.account_name(account);
                }
                let key = match (account_key, account_key_file) {
                    (Some(k), _) => Some(k.expose().to_string()),
                    (None, Some(path)) => Some(read_secret_file(name, path)?),
                    _ => None,
                };
                if let Some(key) = key {
                    b = b.account_key(&key);
                    secrets.push(key);
                }
                if let Some(sas) = sas_token {
                    b = b.sas_token(sas.expose());
                    secrets.push(sas.expose().to_string());
                }
                let location = format!(
                    "azblob://{container}/{}{}",
                    prefix.trim_matches('/'),
                    endpoint
                        .map(|e| format!(" at {}", crate::redact::display_url(&e)))
                        .unwrap_or_default()
                );
                (Operator::new(b).map_err(fail)?, location, transfer)
            }
            DestinationConfig::Gcs {
                bucket,
                prefix,
                credential_file,
                endpoint,
                anonymous,
                transfer,
            } => {
                let mut b = services::Gcs::default()
                    .bucket(bucket)
                    .root(&root_of(prefix));
                if *anonymous {
                    b = b
                        .skip_signature()
                        .disable_vm_metadata()
                        .disable_config_load();
                }
                if let Some(path) = credential_file {
                    b = b.credential_path(&path.display().to_string());
                }
                if let Some(endpoint) = endpoint {
                    b = b.endpoint(endpoint);
                }
                let location = format!("gs://{bucket}/{}", prefix.trim_matches('/'));
                (Operator::new(b).map_err(fail)?, location, transfer)
            }
            DestinationConfig::Sftp {
                host,
                port,
                user,
                key,
                folder,
                known_hosts,
                transfer,
            } => {
                // openssh's destination syntax; the port cannot ride on a bare host.
                let endpoint = match port {
                    Some(port) => format!("ssh://{user}@{host}:{port}"),
                    None => format!("ssh://{user}@{host}"),
                };
                let mut b = services::Sftp::default()
                    .endpoint(&endpoint)
                    .user(user)
                    .root(folder)
                    .known_hosts_strategy(known_hosts.as_deref().unwrap_or("strict"));
                if let Some(key) = key {
                    b = b.key(&key.display().to_string());
                }
                let location = format!("sftp://{}{folder}", endpoint.trim_start_matches("ssh://"));
                (Operator::new(b).map_err(fail)?, location, transfer)
            }
            DestinationConfig::Webdav {
                url,
                user,
                password,
                password_file,
                prefix,
                transfer,
            } => {
                let mut b = services::Webdav::default()
                    .endpoint(url)
                    .root(&root_of(prefix));
                if let Some(user) = user {
                    b = b.username(user);
                }
                let password = match (password, password_file) {
                    (Some(p), _) => Some(p.expose().to_string()),
                    (None, Some(path)) => Some(read_secret_file(name, path)?),
                    _ => None,
                };
                if let Some(password) = &password {
                    b = b.password(password);
                    secrets.push(password.clone());
                }
                webdav_password = password;
                let location = format!(
                    "{}/{}",
                    crate::redact::display_url(url).trim_end_matches('/'),
                    prefix.trim_matches('/')
                );
                (Operator::new(b).map_err(fail)?, location, transfer)
            }
        };
        let op_once = builder_op.layer(
            TimeoutLayer::new()
                .with_timeout(Duration::from_secs(transfer.timeout_secs))
                .with_io_timeout(Duration::from_secs(transfer.timeout_secs)),
        );
        let op = op_once.clone().layer(
            RetryLayer::new()
                .with_max_times(transfer.retries as usize)
                .with_jitter()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10)),
        );
        let can_rename = op.info().capability().rename;
        Ok(RemoteDestination {
            name: name.to_string(),
            location,
            op,
            op_once,
            transfer: *transfer,
            can_rename,
            secrets,
            webdav_password,
        })
    }

    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }

    pub fn webdav_password(&self) -> Option<String> {
        self.webdav_password.clone()
    }

    /// What error messages must never show.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }

    fn fail(&self, what: &str, key: &str, e: &opendal::Error) -> Error {
        let cause = match e.kind() {
            ErrorKind::PermissionDenied => {
                " (permission denied: check the credentials and the bucket/container policy)"
            }
            ErrorKind::NotFound => " (not found: check the bucket/container/folder name)",
            ErrorKind::ConfigInvalid => " (check the destination's settings)",
            ErrorKind::RateLimited => " (rate limited)",
            _ => "",
        };
        let message = format!("{what} {key} in {}: {e}{cause}", self.location);
        Error::storage(&self.name, kind_of(e), redact(&message, &self.secrets))
    }

    fn part_size(&self) -> usize {
        (self.transfer.part_size_mib.max(5) as usize) * 1024 * 1024
    }
}

/// The temporary name of `key` in its folder's `.partial/`, in the owner
/// format `gc` recognises (`<file>.cairn-<pid>-<nonce>`).
pub fn partial_key(key: &str) -> String {
    let (dir, file) = key.rsplit_once('/').unwrap_or(("", key));
    let nonce: u32 = rand::random();
    format!(
        "{}{}/{file}.cairn-{}-{nonce:08x}",
        dir,
        if dir.is_empty() {
            ".partial"
        } else {
            "/.partial"
        },
        std::process::id()
    )
}

struct RemoteUpload {
    writer: Option<opendal::Writer>,
    key: String,
    /// On services that write files in place (SFTP), the upload goes to this
    /// temporary key and is renamed to `key` by `commit`.
    staged: Option<Staged>,
    destination: String,
    secrets: Vec<String>,
    /// Bytes written so far and the part size, for the crash matrix's point
    /// at each part boundary.
    written: u64,
    part_size: u64,
}

struct Staged {
    temp: String,
    op: Operator,
}

impl RemoteUpload {
    /// Stops the writer and removes what it left.
    fn discard(&mut self) {
        let Ok(rt) = runtime() else { return };
        if let Some(mut writer) = self.writer.take() {
            let _ = rt.block_on(writer.abort());
        }
        if let Some(staged) = self.staged.take() {
            let _ = rt.block_on(staged.op.delete(&staged.temp));
        }
    }
}

impl RemoteUpload {
    fn error(&self, what: &str, e: &dyn std::fmt::Display) -> String {
        redact(&format!("{what} {}: {e}", self.key), &self.secrets)
    }
}

impl Write for RemoteUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let rt = runtime().map_err(io::Error::other)?;
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("upload already closed"));
        };
        let bytes = bytes::Bytes::copy_from_slice(buf);
        let result = rt.block_on(writer.write(bytes));
        result.map_err(|e| {
            io::Error::new(io_error_kind(kind_of(&e)), self.error("cannot upload", &e))
        })?;
        let before = self.written;
        self.written += buf.len() as u64;
        if self.written / self.part_size > before / self.part_size {
            crate::fault_point::reached("store.remote.part_boundary")?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for RemoteUpload {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let rt = runtime()?;
        if let Err(e) = crate::fault_point::reached("store.remote.before_complete") {
            self.discard();
            return Err(Error::storage(
                &self.destination,
                StorageKind::of_io(&e),
                self.error("cannot complete the upload of", &e),
            ));
        }
        let Some(mut writer) = self.writer.take() else {
            return Err(Error::destination(
                &self.destination,
                "upload already closed",
            ));
        };
        if let Err(e) = rt.block_on(writer.close()) {
            self.discard();
            return Err(Error::storage(
                &self.destination,
                kind_of(&e),
                self.error("cannot complete the upload of", &e),
            ));
        }
        let Some(staged) = self.staged.take() else {
            return Ok(());
        };
        rt.block_on(staged.op.rename(&staged.temp, &self.key))
            .map_err(|e| {
                let _ = rt.block_on(staged.op.delete(&staged.temp));
                Error::storage(
                    &self.destination,
                    kind_of(&e),
                    self.error("cannot rename into", &e),
                )
            })
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for RemoteUpload {
    fn drop(&mut self) {
        // Neither committed nor aborted: an error path. Leave nothing behind.
        self.discard();
    }
}

impl Destination for RemoteDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let rt = runtime()?;
        // Object stores publish an upload only when it completes; services
        // that can rename write files in place, so they get a temporary name.
        let staged = self.can_rename.then(|| Staged {
            temp: partial_key(key),
            op: self.op_once.clone(),
        });
        let target = staged.as_ref().map_or(key, |s| s.temp.as_str());
        let writer = rt
            .block_on(
                self.op
                    .writer_with(target)
                    .chunk(self.part_size())
                    .concurrent(self.transfer.concurrency.max(1) as usize)
                    .into_future(),
            )
            .map_err(|e| self.fail("cannot start uploading", key, &e))?;
        Ok(Box::new(RemoteUpload {
            writer: Some(writer),
            key: key.to_string(),
            staged,
            destination: self.name.clone(),
            secrets: self.secrets.clone(),
            written: 0,
            part_size: self.part_size() as u64,
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let rt = runtime()?;
        let data = bytes.to_vec();
        if !self.can_rename {
            // One PUT: object stores show all of it or nothing.
            return rt
                .block_on(self.op_once.write(key, data))
                .map(drop)
                .map_err(|e| self.fail("cannot write", key, &e));
        }
        let temp = partial_key(key);
        rt.block_on(self.op_once.write(&temp, data))
            .map_err(|e| self.fail("cannot write", &temp, &e))?;
        rt.block_on(self.op_once.rename(&temp, key)).map_err(|e| {
            let _ = rt.block_on(self.op_once.delete(&temp));
            self.fail("cannot rename into", key, &e)
        })
    }

    fn open(&self, key: &str) -> Result<Source> {
        let rt = runtime()?;
        let _guard = rt.enter();
        let blocking = opendal::blocking::Operator::new(self.op.clone())
            .map_err(|e| self.fail("cannot read", key, &e))?;
        let size = self.size(key)?.ok_or_else(|| {
            Error::storage(
                &self.name,
                StorageKind::NotFound,
                format!("{key} does not exist in {}", self.location),
            )
        })?;
        let reader = blocking
            .reader_options(
                key,
                opendal::options::ReaderOptions {
                    chunk: Some(self.part_size()),
                    concurrent: self.transfer.concurrency.max(1) as usize,
                    ..Default::default()
                },
            )
            .and_then(|r| r.into_std_read(0..size))
            .map_err(|e| self.fail("cannot read", key, &e))?;
        Ok(Box::new(RedactingReader {
            inner: reader,
            secrets: self.secrets.clone(),
        }))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let rt = runtime()?;
        rt.block_on(self.op_once.read(key))
            .map(|b| b.to_vec())
            .map_err(|e| self.fail("cannot read", key, &e))
    }

    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        let rt = runtime()?;
        // One GET streamed until the cap: a ranged read would fail with "too
        // little data" on every object smaller than the cap.
        rt.block_on(async {
            use futures_util::TryStreamExt;
            let mut stream = self.op_once.reader(key).await?.into_stream(..).await?;
            let mut bytes = Vec::new();
            while let Some(buffer) = stream.try_next().await? {
                for chunk in buffer {
                    bytes.extend_from_slice(&chunk);
                }
                if bytes.len() as u64 > limit {
                    break;
                }
            }
            Ok(bytes)
        })
        .map_err(|e: opendal::Error| self.fail("cannot read", key, &e))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let rt = runtime()?;
        match rt.block_on(self.op_once.stat(key)) {
            Ok(meta) => Ok(meta.mode().is_file().then(|| meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail("cannot stat", key, &e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let rt = runtime()?;
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => String::new(),
        };
        let entries = match rt.block_on(self.op_once.list_with(&dir).recursive(true).into_future())
        {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.fail("cannot list", &dir, &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let key = entry.path().trim_start_matches('/').to_string();
            let meta = entry.metadata();
            if !meta.mode().is_file()
                || !key.starts_with(prefix)
                || key.split('/').any(|p| p == ".partial")
            {
                continue;
            }
            // Some services list without sizes; ask for those.
            let size = match meta.content_length() {
                0 => self.size(&key)?.unwrap_or(0),
                n => n,
            };
            out.push(ObjectInfo {
                key,
                size,
                modified: meta.last_modified().map(Into::into),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let rt = runtime()?;
        match rt.block_on(self.op_once.delete(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.fail("cannot delete", key, &e)),
        }
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let rt = runtime()?;
        let dir = format!("{}.partial/", prefix);
        let entries = match rt.block_on(self.op_once.list_with(&dir).recursive(true).into_future())
        {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.fail("cannot list", &dir, &e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .map(|e| ObjectInfo {
                key: e.path().trim_start_matches('/').to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().map(Into::into),
            })
            .collect())
    }
}

/// Environment variable naming the cairn process that started a child.
pub const OWNER_VAR: &str = "CAIRN_OWNER_PID";

/// Stops the SSH master connections this process started. The SFTP backend
/// (openssh crate) starts `ssh -M … ControlPersist=yes` masters that detach and
/// would otherwise outlive cairn; they carry our mark in their environment.
pub fn stop_ssh_masters() {
    let mark = format!("{OWNER_VAR}={}", std::process::id());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let is_master = std::fs::read(path.join("cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"ssh")) && args.contains(&&b"-M"[..])
        });
        let ours = is_master
            && std::fs::read(path.join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == mark.as_bytes()));
        if ours {
            tracing::debug!(pid, "stopping an SSH master connection");
            // SAFETY: sending SIGTERM to a process id has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// Errors while streaming may quote request details: keep secrets out.
struct RedactingReader<R> {
    inner: R,
    secrets: Vec<String>,
}

impl<R: Read> Read for RedactingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), redact(&e.to_string(), &self.secrets)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opendal_errors_map_to_the_kinds_callers_act_on() {
        let error = |kind| opendal::Error::new(kind, "x");
        assert_eq!(kind_of(&error(ErrorKind::NotFound)), StorageKind::NotFound);
        assert_eq!(
            kind_of(&error(ErrorKind::PermissionDenied)),
            StorageKind::Denied
        );
        assert_eq!(
            kind_of(&error(ErrorKind::RateLimited)),
            StorageKind::Transient
        );
        assert_eq!(
            kind_of(&error(ErrorKind::Unexpected).set_temporary()),
            StorageKind::Transient
        );
        // Retries ran out: still worth trying later.
        assert_eq!(
            kind_of(&error(ErrorKind::Unexpected).set_persistent()),
            StorageKind::Transient
        );
        assert_eq!(
            kind_of(&opendal::Error::new(
                ErrorKind::Unexpected,
                "507 Insufficient Storage"
            )),
            StorageKind::NoSpace
        );
        assert_eq!(
            kind_of(&error(ErrorKind::ConfigInvalid)),
            StorageKind::Other
        );
    }

    #[test]
    fn partial_keys_sit_in_the_folders_partial_folder_with_an_owner() {
        let temp = partial_key("app/app-20260101T000000Z-abcd.sqlite.zst");
        assert!(
            temp.starts_with("app/.partial/app-20260101T000000Z-abcd.sqlite.zst.cairn-"),
            "{temp}"
        );
        assert!(
            crate::store::naming::is_partial_upload("app", &temp),
            "gc removes it when it is left behind: {temp}"
        );
        assert!(partial_key("top").starts_with(".partial/top.cairn-"));
    }
}
