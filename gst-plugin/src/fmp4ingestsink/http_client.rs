//! The HTTP client every ingest request uses, and what it carries: TLS (rustls; the system's
//! roots plus `ca-file`, or no verification; a client certificate for mutual TLS), Basic
//! authentication, extra headers, the User-Agent and an optional Content-Type.
//!
//! Every request goes on a connection of its own that is closed after the answer — a failed
//! POST must never be retried on a pooled socket (docs/protocol.md §1.5, §3.3), and a sparse
//! stream leaves no idle connection (§5.4) — and no redirect is followed by the client: a
//! streamed body cannot be replayed (a 307 would send it empty), so redirects of the probe are
//! handled by the uploader, when allowed.
//!
//! Secrets (the password, header values) are marked sensitive for the HTTP stack and never
//! printed: this type's `Debug` shows them as `***`.

use std::fmt;
use std::time::Duration;

use gst::prelude::GstValueExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

/// Largest response body read (sparse POSTs); the rest is never read.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// A value that is never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What the element's properties say about TLS and authentication.
#[derive(Debug, Clone)]
pub struct TlsAndAuth {
    /// PEM file of extra trusted roots.
    pub ca_file: Option<String>,
    pub tls_verify: bool,
    /// PEM files of the client certificate (chain) and its private key.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub user_id: Option<String>,
    pub user_pw: Option<Secret>,
    pub extra_headers: Vec<(String, Secret)>,
    pub content_type: Option<String>,
}

impl Default for TlsAndAuth {
    fn default() -> Self {
        TlsAndAuth {
            ca_file: None,
            tls_verify: true,
            client_cert: None,
            client_key: None,
            user_id: None,
            user_pw: None,
            extra_headers: Vec::new(),
            content_type: None,
        }
    }
}

impl TlsAndAuth {
    /// The client settings, with the files read; an error names the property and the file.
    pub fn client_settings(&self, connect_timeout: Duration, user_agent: &str) -> Result<ClientSettings, String> {
        let read = |what: &str, path: &str| std::fs::read(path).map_err(|e| format!("{what}: cannot read {path}: {e}"));
        let ca_pem = self.ca_file.as_deref().filter(|p| !p.is_empty()).map(|p| read("ca-file", p)).transpose()?;
        let identity_pem = match (self.client_cert.as_deref(), self.client_key.as_deref()) {
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                let mut pem = read("client-cert", cert)?;
                pem.push(b'\n');
                pem.extend(read("client-key", key)?);
                Some(pem)
            }
            (None | Some(""), None | Some("")) => None,
            _ => return Err("client-cert and client-key go together: set both".into()),
        };
        let basic = self
            .user_id
            .as_ref()
            .filter(|u| !u.is_empty())
            .map(|u| (u.clone(), self.user_pw.as_ref().map(|p| p.0.clone()).unwrap_or_default()));
        Ok(ClientSettings {
            connect_timeout,
            user_agent: user_agent.to_string(),
            ca_pem,
            verify: self.tls_verify,
            identity_pem,
            basic,
            headers: self.extra_headers.iter().map(|(n, v)| (n.clone(), v.0.clone())).collect(),
            content_type: self.content_type.clone().filter(|t| !t.is_empty()),
        })
    }
}

/// The headers of an `extra-headers` structure: field name, value as text.
pub fn headers_from_structure(s: &gst::StructureRef) -> Vec<(String, Secret)> {
    s.iter()
        .map(|(name, value)| {
            let text = value
                .get::<String>()
                .ok()
                .unwrap_or_else(|| value.serialize().map(|v| v.to_string()).unwrap_or_default());
            (name.to_string(), Secret(text))
        })
        .collect()
}

/// `extra-headers` as the property reads back: the names, every value `***`.
pub fn redacted_headers_structure(headers: &[(String, Secret)]) -> gst::Structure {
    let mut b = gst::Structure::builder("extra-headers");
    for (name, _) in headers {
        b = b.field(name.as_str(), "***");
    }
    b.build()
}

/// What the client is built with.
#[derive(Clone, Default)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// Extra trusted roots (PEM), on top of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Verify the server's certificate (and name).
    pub verify: bool,
    /// Client certificate chain and private key (PEM), for mutual TLS.
    pub identity_pem: Option<Vec<u8>>,
    /// Basic authentication: user and password.
    pub basic: Option<(String, String)>,
    /// Extra request headers, name and value.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("verify", &self.verify)
            .field("identity_pem", &self.identity_pem.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field("headers", &self.headers.iter().map(|(n, _)| (n, "***")).collect::<Vec<_>>())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// The client builder for these settings; an error names the setting at fault.
pub fn builder(s: &ClientSettings) -> Result<reqwest::ClientBuilder, String> {
    let mut b = reqwest::Client::builder()
        .http1_only()
        .connect_timeout(s.connect_timeout)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(s.user_agent.as_str())
        .tcp_nodelay(true)
        .default_headers(headers(s)?);
    if let Some(pem) = &s.ca_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("ca-file: {e}"))?;
        if roots.is_empty() {
            return Err("ca-file holds no PEM certificate".into());
        }
        b = b.tls_certs_merge(roots);
    }
    if !s.verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &s.identity_pem {
        let identity = reqwest::Identity::from_pem(pem).map_err(|e| format!("client-cert/client-key: {e}"))?;
        b = b.identity(identity);
    }
    Ok(b)
}

fn headers(s: &ClientSettings) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in &s.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("extra-headers: '{name}' is not a valid header name"))?;
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| format!("extra-headers: the value of '{name}' is not a valid header value"))?;
        v.set_sensitive(true);
        map.append(n, v);
    }
    if let Some((user, pw)) = &s.basic {
        let mut v = HeaderValue::from_str(&format!("Basic {}", base64(format!("{user}:{pw}").as_bytes())))
            .map_err(|_| "user-id/user-pw cannot be sent in a header".to_string())?;
        v.set_sensitive(true);
        map.insert(AUTHORIZATION, v);
    }
    if let Some(ct) = &s.content_type {
        let v = HeaderValue::from_str(ct).map_err(|_| format!("content-type '{ct}' is not a valid header value"))?;
        map.insert(CONTENT_TYPE, v);
    }
    Ok(map)
}

/// Standard base64 with padding (RFC 4648 §4), for Basic credentials.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn headers_are_checked_and_secrets_marked_sensitive() {
        let s = ClientSettings {
            basic: Some(("user".into(), "s3cret".into())),
            headers: vec![("X-Token".into(), "tok".into())],
            content_type: Some("video/mp4".into()),
            ..ClientSettings::default()
        };
        let h = headers(&s).unwrap();
        assert!(h[AUTHORIZATION].is_sensitive() && h["x-token"].is_sensitive());
        assert_eq!(h[AUTHORIZATION], "Basic dXNlcjpzM2NyZXQ=");
        assert_eq!(h[CONTENT_TYPE], "video/mp4");
        let printed = format!("{s:?} {h:?}");
        assert!(
            !printed.contains("s3cret") && !printed.contains("tok\"") && !printed.contains("dXNlcjpz"),
            "{printed}"
        );
        let bad = ClientSettings { headers: vec![("X Y".into(), "v".into())], ..ClientSettings::default() };
        assert!(headers(&bad).unwrap_err().contains("'X Y'"));
        let bad = ClientSettings { headers: vec![("X".into(), "a\nb".into())], ..ClientSettings::default() };
        assert!(headers(&bad).unwrap_err().contains("value of 'X'"));
    }

    #[test]
    fn extra_headers_read_back_redacted() {
        gst::init().unwrap();
        let s = gst::Structure::builder("h").field("Authorization", "Bearer abc").field("X-Num", 5i32).build();
        let h = headers_from_structure(&s);
        assert_eq!(h[0], ("Authorization".to_string(), Secret("Bearer abc".into())));
        assert_eq!(h[1].1, Secret("5".into()));
        let back = redacted_headers_structure(&h);
        assert_eq!(back.get::<String>("Authorization").unwrap(), "***");
        assert!(!format!("{h:?} {back}").contains("abc"));
    }

    #[test]
    fn files_and_pairs_are_checked() {
        let t = TlsAndAuth { ca_file: Some("/nonexistent/ca.pem".into()), ..TlsAndAuth::default() };
        let e = t.client_settings(Duration::ZERO, "ua").unwrap_err();
        assert!(e.contains("ca-file") && e.contains("/nonexistent/ca.pem"), "{e}");
        let t = TlsAndAuth { client_cert: Some("/x".into()), ..TlsAndAuth::default() };
        assert!(t.client_settings(Duration::ZERO, "ua").unwrap_err().contains("set both"));
        let t = TlsAndAuth {
            user_id: Some("u".into()),
            user_pw: Some(Secret("p".into())),
            content_type: Some(String::new()),
            ..TlsAndAuth::default()
        };
        let c = t.client_settings(Duration::ZERO, "ua").unwrap();
        assert_eq!(c.basic, Some(("u".into(), "p".into())));
        assert_eq!(c.content_type, None);
        assert!(!format!("{t:?}").contains("\"p\""));
    }

    #[test]
    fn bad_pem_is_named() {
        crate::runtime::install_crypto_provider();
        let s = ClientSettings { ca_pem: Some(b"not pem".to_vec()), verify: true, ..ClientSettings::default() };
        assert!(builder(&s).unwrap_err().contains("ca-file"));
        let s = ClientSettings { identity_pem: Some(b"junk".to_vec()), verify: true, ..ClientSettings::default() };
        assert!(builder(&s).unwrap_err().contains("client-cert"));
    }
}
