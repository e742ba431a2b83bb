// SPDX-License-Identifier: MPL-2.0
//! The TLS client configuration of one element: rustls with its *ring* provider given to this
//! configuration alone (nothing is installed process-wide: the host process may have chosen
//! another provider, or none), the system's trusted roots plus `ca-file`, an optional client
//! certificate for mutual TLS, and — only when asked for with `tls-verify=false` — no
//! verification of the server.
//!
//! The system's roots are those OpenSSL would use (rustls-native-certs: the distribution's
//! bundle, or the files `SSL_CERT_FILE`/`SSL_CERT_DIR` name, as every TLS client of the system).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What the element's properties say about TLS.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Extra trusted roots (PEM), on top of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Verify the server's certificate (and name).
    pub verify: bool,
    /// Client certificate chain and private key (PEM), for mutual TLS.
    pub identity_pem: Option<Vec<u8>>,
}

/// The provider every configuration of the element is built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for `s`; an error names the setting at fault.
pub fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if s.verify {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &s.ca_pem {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| format!("ca-file: {e}"))?;
            if certs.is_empty() {
                return Err("ca-file holds no PEM certificate".into());
            }
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err("ca-file: no certificate in it could be used as a root".into());
            }
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("TLS: no trusted roots ({e}); set ca-file"))?;
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider.signature_verification_algorithms)))
    };
    let mut config = match &s.identity_pem {
        Some(pem) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client-cert: {e}"))?;
            if chain.is_empty() {
                return Err("client-cert holds no PEM certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("client-key: {e}"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client-cert/client-key: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("'{host}' is not a valid TLS server name"))
}

/// `tls-verify=false`: any certificate, any name; the handshake's signatures are still checked,
/// so that the connection is at least encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct AnyServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_named() {
        let s = TlsSettings { ca_pem: Some(b"not pem".to_vec()), verify: true, ..TlsSettings::default() };
        assert!(client_config(&s).err().unwrap().contains("ca-file"));
        let s = TlsSettings { identity_pem: Some(b"junk".to_vec()), verify: true, ..TlsSettings::default() };
        assert!(client_config(&s).err().unwrap().contains("client-cert"));
    }

    #[test]
    fn builds_without_a_process_wide_provider() {
        // Nothing was installed: the configuration carries its own provider.
        assert!(CryptoProvider::get_default().is_none());
        let config = client_config(&TlsSettings { verify: true, ..TlsSettings::default() }).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(CryptoProvider::get_default().is_none());
        assert!(client_config(&TlsSettings { verify: false, ..TlsSettings::default() }).is_ok());
    }

    #[test]
    fn server_names() {
        assert!(server_name("example.com").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
    }
}
