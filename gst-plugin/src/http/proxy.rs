// SPDX-License-Identifier: MPL-2.0
//! A tunnel through an HTTP proxy (RFC 9110 9.3.6, CONNECT), for the `proxy` property: every
//! request, http or https, goes through `CONNECT host:port`, so that the stream's bytes reach the
//! server unchanged and TLS stays end to end.
//!
//! Through a proxy the kernel's counters describe the connection to the proxy, not to the
//! server: the session is told so and counts deliveries conservatively.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest CONNECT response head read.
const MAX_HEAD: usize = 16 * 1024;

/// Where the proxy is, and how to authenticate to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// User and password for `Proxy-Authorization: Basic`.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| (u, "***")))
            .finish()
    }
}

impl Proxy {
    /// The `proxy` property's value: `http://host:port` or `host:port` (port 8080 when none is
    /// given, as curl and souphttpsrc), with user and password from the URL or the
    /// `proxy-id`/`proxy-pw` properties (which win).
    pub fn parse(text: &str, id: Option<&str>, pw: Option<&str>) -> Result<Proxy, String> {
        let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
        let url = url::Url::parse(&with_scheme).map_err(|e| format!("proxy: cannot read '{text}': {e}"))?;
        if url.scheme() != "http" {
            return Err(format!("proxy: only http:// proxies are supported, not {}://", url.scheme()));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("proxy: no host in '{text}'"))?;
        let from_url = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s);
            (decode(url.username()), decode(url.password().unwrap_or("")))
        });
        let credentials = match id.filter(|i| !i.is_empty()) {
            Some(user) => Some((user.to_string(), pw.unwrap_or("").to_string())),
            None => from_url,
        };
        Ok(Proxy { host: host.to_string(), port: url.port().unwrap_or(8080), credentials })
    }

    /// Opens the tunnel to `host:port` on `stream`, a connection to the proxy.
    pub async fn connect(&self, stream: &mut TcpStream, host: &str, port: u16, user_agent: &str) -> Result<(), String> {
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n");
        if let Some((user, pw)) = &self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
            head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| format!("proxy {}:{}: {e}", self.host, self.port))?;
        // Read the answer's head byte by byte: nothing of the tunnel behind it may be taken.
        let mut answer = Vec::with_capacity(256);
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() >= MAX_HEAD {
                return Err(format!("proxy {}:{}: answer head over {MAX_HEAD} bytes", self.host, self.port));
            }
            let mut byte = [0u8; 1];
            match stream.read(&mut byte).await {
                Ok(0) => return Err(format!("proxy {}:{} closed the connection", self.host, self.port)),
                Ok(_) => answer.push(byte[0]),
                Err(e) => return Err(format!("proxy {}:{}: {e}", self.host, self.port)),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(format!("proxy {}:{}: not an HTTP answer to CONNECT", self.host, self.port)),
        }
        match response.code {
            Some(code) if (200..300).contains(&code) => Ok(()),
            Some(code) => Err(format!(
                "proxy {}:{} refused the tunnel to {authority}: HTTP {code} {}",
                self.host,
                self.port,
                response.reason.unwrap_or("")
            )),
            None => Err(format!("proxy {}:{}: no status in the answer", self.host, self.port)),
        }
    }
}

/// The `proxy` property as it reads back: a password in it is shown as `***`.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => text.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_property() {
        let p = Proxy::parse("http://proxy.example:3128", None, None).unwrap();
        assert_eq!((p.host.as_str(), p.port, p.credentials), ("proxy.example", 3128, None));
        let p = Proxy::parse("10.0.0.1", None, None).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 8080));
        let p = Proxy::parse("http://u%40x:p%3Aw@proxy:1", None, None).unwrap();
        assert_eq!(p.credentials, Some(("u@x".into(), "p:w".into())));
        let p = Proxy::parse("http://u:p@proxy:1", Some("id"), Some("pw")).unwrap();
        assert_eq!(p.credentials, Some(("id".into(), "pw".into())));
        assert!(Proxy::parse("socks5://proxy:1080", None, None).unwrap_err().contains("only http://"));
        assert!(!format!("{:?}", Proxy::parse("http://u:secret@p:1", None, None).unwrap()).contains("secret"));
        assert_eq!(redact("http://u:secret@p:1"), "http://u:***@p:1/");
        assert_eq!(redact("p:1"), "p:1");
    }
}
