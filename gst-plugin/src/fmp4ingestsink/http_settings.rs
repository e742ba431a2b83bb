// SPDX-License-Identifier: MPL-2.0
//! What the element's properties say about how it connects — TLS (`ca-file`, `tls-verify`,
//! `client-cert`/`client-key`), Basic authentication, extra headers, the User-Agent, an optional
//! Content-Type, the send buffer and a proxy — read and checked into the HTTP client's
//! [`ClientSettings`] when the element starts.
//!
//! Secrets (the password, header values) are never printed: this module's `Debug` shows them as
//! `***`.

use std::fmt;
use std::time::Duration;

use gst::prelude::GstValueExt;

use crate::http::proxy::Proxy;
use crate::http::{ClientSettings, TlsSettings};

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
    /// `proxy`, `proxy-id`, `proxy-pw`.
    pub proxy: Option<String>,
    pub proxy_id: Option<String>,
    pub proxy_pw: Option<Secret>,
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
            proxy: None,
            proxy_id: None,
            proxy_pw: None,
        }
    }
}

impl TlsAndAuth {
    /// The client settings, with the files read; an error names the property and the file.
    pub fn client_settings(
        &self,
        connect_timeout: Duration,
        user_agent: &str,
        send_buffer: Option<u32>,
    ) -> Result<ClientSettings, String> {
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
        let proxy = match self.proxy.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(Proxy::parse(p, self.proxy_id.as_deref(), self.proxy_pw.as_ref().map(|s| s.0.as_str()))?),
            None => None,
        };
        Ok(ClientSettings {
            connect_timeout,
            user_agent: user_agent.to_string(),
            tls: TlsSettings { ca_pem, verify: self.tls_verify, identity_pem },
            basic,
            headers: self.extra_headers.iter().map(|(n, v)| (n.clone(), v.0.clone())).collect(),
            content_type: self.content_type.clone().filter(|t| !t.is_empty()),
            send_buffer,
            proxy,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = t.client_settings(Duration::ZERO, "ua", None).unwrap_err();
        assert!(e.contains("ca-file") && e.contains("/nonexistent/ca.pem"), "{e}");
        let t = TlsAndAuth { client_cert: Some("/x".into()), ..TlsAndAuth::default() };
        assert!(t.client_settings(Duration::ZERO, "ua", None).unwrap_err().contains("set both"));
        let t = TlsAndAuth {
            user_id: Some("u".into()),
            user_pw: Some(Secret("p".into())),
            content_type: Some(String::new()),
            ..TlsAndAuth::default()
        };
        let c = t.client_settings(Duration::ZERO, "ua", None).unwrap();
        assert_eq!(c.basic, Some(("u".into(), "p".into())));
        assert_eq!(c.content_type, None);
        assert!(!format!("{t:?}").contains("\"p\""));
    }
}
