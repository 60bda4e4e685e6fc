//! The listeners axum serves: plain TCP, or TLS (tokio-rustls, aws-lc-rs)
//! with handshakes done off the accept loop so that a slow client delays
//! nobody else. Both hand each connection its [`Client`] address.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use super::api::Client;
use crate::{Error, Result};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of `[daemon] tls_cert` / `tls_key` (PEM files).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            Error::Usage(format!(
                "cannot read [daemon] {what} {}: {e}",
                path.display()
            ))
        })
    };
    let cert_pem = read(cert, "tls_cert")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::Usage(format!(
                "[daemon] tls_cert {} is not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::Usage(format!(
            "[daemon] tls_cert {} holds no certificate",
            cert.display()
        )));
    }
    let key_pem = read(key, "tls_key")?;
    // The parse error of a key file could quote it: name the file only.
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        Error::Usage(format!(
            "[daemon] tls_key {} is not a PEM private key",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Run(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Error::Usage(format!(
                "[daemon] tls_cert {} and tls_key {} do not make a TLS identity: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn client(peer: SocketAddr, trusted_proxy: Option<IpAddr>) -> Client {
    Client {
        peer,
        via_trusted_proxy: trusted_proxy.is_some_and(|p| p == peer.ip()),
    }
}

async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            // Out of descriptors and the like: wait instead of spinning.
            Err(e) => {
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

pub struct PlainListener {
    listener: TcpListener,
    trusted_proxy: Option<IpAddr>,
}

impl PlainListener {
    pub fn new(listener: TcpListener, trusted_proxy: Option<IpAddr>) -> PlainListener {
        PlainListener {
            listener,
            trusted_proxy,
        }
    }
}

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Client;

    async fn accept(&mut self) -> (TcpStream, Client) {
        let (stream, peer) = accept_tcp(&self.listener).await;
        (stream, client(peer, self.trusted_proxy))
    }

    fn local_addr(&self) -> std::io::Result<Client> {
        Ok(client(self.listener.local_addr()?, None))
    }
}

pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, Client)>,
}

impl TlsListener {
    /// Accepts on a task of its own; each handshake runs on its own task.
    pub fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        trusted_proxy: Option<IpAddr>,
    ) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = accept_tcp(&listener).await;
                let acceptor = acceptor.clone();
                let sender = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, client(peer, trusted_proxy))).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        TlsListener { local, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Client;

    async fn accept(&mut self) -> (TlsStream<TcpStream>, Client) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Client> {
        Ok(client(self.local, None))
    }
}
