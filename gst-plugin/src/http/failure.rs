// SPDX-License-Identifier: MPL-2.0
//! Why a request failed, as a typed cause for the session, with the transport's own words for
//! people. The cause comes from the errors' types (I/O error kinds, rustls' certificate errors
//! and alerts, hyper's kinds), never from their text.

use std::error::Error as StdError;
use std::io;

use fmp4ingest_core::session::{TlsRefusal, TransportError};
use rustls::{AlertDescription, CertificateError};

/// A failed request: the typed cause and a one-line description.
#[derive(Debug, Clone)]
pub struct RequestFailure {
    pub cause: TransportError,
    pub detail: String,
}

impl RequestFailure {
    pub fn new(cause: TransportError, detail: impl Into<String>) -> Self {
        RequestFailure { cause, detail: detail.into() }
    }

    /// Connecting (TCP, proxy, TLS) did not finish within the connect timeout.
    pub fn timeout(what: &str) -> Self {
        RequestFailure::new(TransportError::Timeout, format!("{what} timed out"))
    }

    /// Connecting failed: `stage` is what was being done ("connecting to host:port", "TLS
    /// handshake", ...).
    pub fn connect(stage: &str, e: &io::Error) -> Self {
        let cause = tls_refusal(e).map(TransportError::Tls).unwrap_or(match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionAborted => {
                TransportError::Closed
            }
            io::ErrorKind::TimedOut => TransportError::Timeout,
            _ => TransportError::Connect,
        });
        RequestFailure::new(cause, format!("{stage}: {}", describe(e)))
    }

    /// The exchange failed once connected: writing the request, or waiting for the answer.
    pub fn exchange(e: &hyper::Error) -> Self {
        let cause = if let Some(r) = chain(e).find_map(tls_refusal) {
            TransportError::Tls(r)
        } else if e.is_timeout() {
            TransportError::Timeout
        } else if e.is_incomplete_message() || e.is_closed() {
            TransportError::Closed
        } else if e.is_body_write_aborted() || e.is_user() {
            TransportError::Write
        } else if let Some(k) = chain(e).find_map(|s| s.downcast_ref::<io::Error>().map(io::Error::kind)) {
            match k {
                io::ErrorKind::BrokenPipe => TransportError::Write,
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => {
                    TransportError::Closed
                }
                io::ErrorKind::TimedOut => TransportError::Timeout,
                _ => TransportError::Other,
            }
        } else {
            TransportError::Other
        };
        RequestFailure::new(cause, describe(e))
    }
}

/// The error and its causes.
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(e);
    std::iter::from_fn(move || {
        let e = next?;
        // An io::Error's own source skips the error it wraps; go through it.
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
        Some(e)
    })
}

/// What TLS refused, if the error chain holds rustls' own error.
fn tls_refusal(e: &(dyn StdError + 'static)) -> Option<TlsRefusal> {
    let r = chain(e).find_map(|s| s.downcast_ref::<rustls::Error>())?;
    Some(match r {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsRefusal::ExpiredCertificate,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsRefusal::WrongName
            }
            _ => TlsRefusal::UntrustedCertificate,
        },
        // The server's answer to our certificate, or to its absence.
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied,
        ) => TlsRefusal::ClientCertificateRequired,
        _ => TlsRefusal::Handshake,
    })
}

/// The error and its causes in one line. Callers never pass URLs in errors (they may carry
/// credentials): the connect functions name only host and port.
pub fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    for s in chain(e) {
        let part = s.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_with(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors_are_typed() {
        let cases = [
            (rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer), TlsRefusal::UntrustedCertificate),
            (rustls::Error::InvalidCertificate(CertificateError::Expired), TlsRefusal::ExpiredCertificate),
            (rustls::Error::InvalidCertificate(CertificateError::NotValidForName), TlsRefusal::WrongName),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                TlsRefusal::ClientCertificateRequired,
            ),
            (rustls::Error::AlertReceived(AlertDescription::HandshakeFailure), TlsRefusal::Handshake),
        ];
        for (e, want) in cases {
            let f = RequestFailure::connect("TLS handshake with example.com:443", &io_with(e));
            assert_eq!(f.cause, TransportError::Tls(want));
            assert!(f.detail.starts_with("TLS handshake with example.com:443: "), "{}", f.detail);
        }
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(RequestFailure::connect("connecting", &refused).cause, TransportError::Connect);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(RequestFailure::connect("TLS handshake", &reset).cause, TransportError::Closed);
    }

    #[test]
    fn descriptions_name_the_cause_once() {
        let e = io_with(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        let d = describe(&e);
        assert!(d.contains("UnknownIssuer"), "{d}");
        assert_eq!(d.matches("UnknownIssuer").count(), 1, "{d}");
    }
}
