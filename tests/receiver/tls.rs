// SPDX-License-Identifier: MPL-2.0
//! HTTPS for the receiver: a TLS front on its own port that terminates TLS (rustls), with an
//! optional client-certificate requirement, and hands the plaintext to the receiver's plain
//! listener. The receiver itself stays byte-exact HTTP; handshake failures are recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The server's certificate and key, and the CA client certificates must chain to (mutual TLS).
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub cert_chain_pem: String,
    pub key_pem: String,
    /// When set, a client certificate signed by this CA is required.
    pub client_ca_pem: Option<String>,
}

/// Builds the server configuration; errors are texts (tests only).
fn server_config(setup: &TlsSetup) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(setup.cert_chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(setup.key_pem.as_bytes()).map_err(|e| format!("server key: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &setup.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.map_err(|e| format!("client CA: {e}"))?).map_err(|e| e.to_string())?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Listens on `listener`, terminates TLS and forwards to `backend`; failed handshakes go to
/// `failures`.
pub fn spawn_front(
    runtime: &tokio::runtime::Runtime,
    listener: TcpListener,
    backend: SocketAddr,
    setup: &TlsSetup,
    failures: Arc<Mutex<Vec<String>>>,
) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(setup)?));
    runtime.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(sock).await {
                    Ok(t) => t,
                    Err(e) => {
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push(e.to_string());
                        return;
                    }
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    Ok(())
}
