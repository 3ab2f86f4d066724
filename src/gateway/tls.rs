//! HTTPS on the gateway's own listener, for deployments without an ingress to terminate TLS.
//!
//! Handshakes run on tasks of their own (bounded by `HANDSHAKE_TIMEOUT`), so a client that
//! connects and says nothing never holds up the others; only finished handshakes reach the HTTP
//! server. Certificate and key are PEM files (the key in PKCS#8, PKCS#1 or SEC1), read once at
//! start; a mistake in them stops the gateway with the file's name and the fix.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

/// A server certificate chain and its key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| Error::Config(format!("--tls-cert {}: not a PEM certificate chain ({e})", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::Config(format!("--tls-cert {}: no certificate in it", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Config(format!("--tls-key {}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}", key.display()))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| Error::Config(format!("--tls-cert and --tls-key do not make a server identity: {e}")))?;
    Ok(Arc::new(config))
}

/// Accepts TCP connections and hands the HTTP server those that finished their TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(socket: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match socket.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway: accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "gateway: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "gateway: TLS handshake timed out"),
                    }
                });
                if sender.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_wrong_files_are_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &missing).unwrap_err().to_string();
        assert!(e.contains("--tls-cert") && e.contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = server_config(&junk, &junk).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
    }
}
