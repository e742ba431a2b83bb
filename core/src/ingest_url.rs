// SPDX-License-Identifier: MPL-2.0
//! Ingest URLs: `http(s)://host[:port]/<path>.isml[/Events(<id>)]/Streams(<id>)` ([MS-SSTR]
//! 2.2.7, docs/protocol.md §1.1), and their display form with credentials removed.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// Why a location cannot be an ingest URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Not `http://` or `https://`.
    Scheme,
    /// No host after the scheme.
    NoHost,
    /// The path does not end in `/Streams(<id>)`.
    NoStreamsNoun,
    /// The stream id is empty or holds characters a server cannot route (`(`, `)`, `/`, `?`, `#`, space).
    BadStreamId,
    /// A query or fragment after `Streams(<id>)`.
    TrailingText,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "the URL must start with http:// or https://",
            UrlError::NoHost => "the URL has no host",
            UrlError::NoStreamsNoun => "the URL must end in /Streams(<id>), e.g. http://host/live.isml/Streams(video)",
            UrlError::BadStreamId => {
                "the Streams() id must be non-empty and use only letters, digits, '_', '.' and '-'"
            }
            UrlError::TrailingText => "nothing may follow /Streams(<id>) in the URL",
        })
    }
}

impl core::error::Error for UrlError {}

/// A parsed ingest URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestUrl {
    url: String,
    tls: bool,
    /// Byte range of `user[:password]@` in `url`, if any.
    userinfo: Option<(usize, usize)>,
    /// Offset of `/Streams(` in `url`.
    streams_at: usize,
    stream_id: String,
}

impl IngestUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let has_prefix = |p: &str| url.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
        let (tls, rest_at) = if has_prefix("https://") {
            (true, 8)
        } else if has_prefix("http://") {
            (false, 7)
        } else {
            return Err(UrlError::Scheme);
        };
        let rest = &url[rest_at..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let userinfo = authority.rfind('@').map(|at| (rest_at, rest_at + at + 1));
        let host = match userinfo {
            Some((_, end)) => &url[end..rest_at + authority_end],
            None => authority,
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let path = &rest[authority_end..];
        let lower = path.to_ascii_lowercase();
        let noun = lower.rfind("/streams(").ok_or(UrlError::NoStreamsNoun)?;
        let id_and_rest = &path[noun + "/streams(".len()..];
        let close = id_and_rest.find(')').ok_or(UrlError::NoStreamsNoun)?;
        let id = &id_and_rest[..close];
        if !id_and_rest[close + 1..].is_empty() {
            return Err(UrlError::TrailingText);
        }
        if id.is_empty()
            || id.chars().any(|c| matches!(c, '(' | ')' | '/' | '?' | '#') || c.is_whitespace() || c.is_control())
        {
            return Err(UrlError::BadStreamId);
        }
        Ok(IngestUrl {
            url: url.to_string(),
            tls,
            userinfo,
            streams_at: rest_at + authority_end + noun,
            stream_id: id.to_string(),
        })
    }

    /// The URL as configured (credentials included).
    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The URL of another stream of the same publishing point (the sparse stream, docs/protocol.md §5.1).
    pub fn with_stream_id(&self, id: &str) -> Result<Self, UrlError> {
        IngestUrl::parse(&format!("{}/Streams({id})", &self.url[..self.streams_at]))
    }

    /// Whether the URL carries `user[:password]@`.
    pub fn has_credentials(&self) -> bool {
        self.userinfo.is_some()
    }

    /// The same URL without `user[:password]@` (when credentials are given another way).
    pub fn without_credentials(&self) -> IngestUrl {
        match self.userinfo {
            Some((start, end)) => IngestUrl::parse(&format!("{}{}", &self.url[..start], &self.url[end..]))
                .unwrap_or_else(|_| self.clone()),
            None => self.clone(),
        }
    }

    /// The URL with `user:password@` removed, for logs, messages and errors.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Display for IngestUrl {
    /// Displays the redacted form: an ingest URL is never printed with its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Removes `user[:password]@` from any URL-looking text; other text is returned as is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spec_shapes() {
        let u =
            IngestUrl::parse("http://customer.channel.mediaservices.windows.net/ingest.isml/streams(720p)").unwrap();
        assert_eq!(u.stream_id(), "720p");
        assert!(!u.is_tls());
        let u = IngestUrl::parse("https://x.channel.media.azure.net/token/ingest.isml/Streams(15864-stream0)").unwrap();
        assert_eq!(u.stream_id(), "15864-stream0");
        assert!(u.is_tls());
        let u = IngestUrl::parse("http://127.0.0.1:8080/live.isml/Events(e1)/Streams(a.b_c)").unwrap();
        assert_eq!(u.stream_id(), "a.b_c");
        assert_eq!(
            u.with_stream_id("scte35").unwrap().as_str(),
            "http://127.0.0.1:8080/live.isml/Events(e1)/Streams(scte35)"
        );
    }

    #[test]
    fn refuses_what_a_server_cannot_route() {
        assert_eq!(IngestUrl::parse("rtmp://h/live.isml/Streams(a)"), Err(UrlError::Scheme));
        assert_eq!(IngestUrl::parse("http:///live.isml/Streams(a)"), Err(UrlError::NoHost));
        assert_eq!(IngestUrl::parse("http://h/live.isml"), Err(UrlError::NoStreamsNoun));
        assert_eq!(IngestUrl::parse("http://h/live.isml/Streams()"), Err(UrlError::BadStreamId));
        assert_eq!(IngestUrl::parse("http://h/live.isml/Streams(a b)"), Err(UrlError::BadStreamId));
        assert_eq!(IngestUrl::parse("http://h/live.isml/Streams(a)?x=1"), Err(UrlError::TrailingText));
        assert_eq!(IngestUrl::parse(""), Err(UrlError::Scheme));
        assert_eq!(IngestUrl::parse("héllo://"), Err(UrlError::Scheme));
    }

    #[test]
    fn credentials_never_show() {
        let u = IngestUrl::parse("https://user:s3cret@h:443/p.isml/Streams(v)").unwrap();
        assert_eq!(u.redacted(), "https://***@h:443/p.isml/Streams(v)");
        assert_eq!(format!("{u}"), "https://***@h:443/p.isml/Streams(v)");
        assert!(!format!("{u}").contains("s3cret"));
        assert!(u.has_credentials());
        let bare = u.without_credentials();
        assert_eq!(bare.as_str(), "https://h:443/p.isml/Streams(v)");
        assert!(!bare.has_credentials());
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
