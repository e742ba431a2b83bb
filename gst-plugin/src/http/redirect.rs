// SPDX-License-Identifier: MPL-2.0
//! Redirects of a probe, the one request an uploader may follow elsewhere (a streamed body
//! cannot be replayed, so the client itself follows none; docs/protocol.md §3.3): how many
//! hops, and where a `Location` may lead.

use fmp4ingest_core::ingest_url::redact_url;

/// Redirects of one probe followed at most.
pub const MAX_REDIRECTS: u32 = 5;

/// The next hop of a probe answered 3xx after `hops` redirects: where its `Location` leads
/// from `from` (see [`resolve_redirect`]), or why it is not followed.
pub fn next_hop(from: &str, location: Option<&str>, hops: u32, secrets: bool) -> Result<String, String> {
    let Some(location) = location else { return Err("a redirect without a Location header".into()) };
    if hops >= MAX_REDIRECTS {
        return Err(format!("more than {MAX_REDIRECTS} redirects"));
    }
    resolve_redirect(from, location, secrets)
}

/// Where a redirect's `location` leads from `from`: an absolute http(s) URL. Refused when it
/// leaves HTTPS for HTTP, or changes origin (scheme, host, port) while credentials or extra
/// headers would go with it.
fn resolve_redirect(from: &str, location: &str, secrets: bool) -> Result<String, String> {
    let base = url::Url::parse(from).map_err(|e| format!("cannot read the URL: {e}"))?;
    let to = base.join(location).map_err(|_| format!("a redirect to an invalid location {}", redact_url(location)))?;
    match (base.scheme(), to.scheme()) {
        ("https", "http") => {
            return Err(format!("a redirect from HTTPS to HTTP ({}) is not followed", redact_url(to.as_str())));
        }
        (_, "http" | "https") => {}
        (_, other) => return Err(format!("a redirect to a {other}: URL is not followed")),
    }
    if secrets && base.origin() != to.origin() {
        return Err(format!(
            "a redirect to another origin ({}) is not followed: the credentials and headers would go with it",
            redact_url(to.as_str())
        ));
    }
    Ok(to.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_follows_a_bounded_number_of_redirects_with_a_location() {
        let from = "https://a.example/live.isml/Streams(v)";
        assert_eq!(next_hop(from, Some("/b"), MAX_REDIRECTS - 1, false).unwrap(), "https://a.example/b");
        assert!(next_hop(from, Some("/b"), MAX_REDIRECTS, false).unwrap_err().contains("more than 5 redirects"));
        assert!(next_hop(from, None, 0, false).unwrap_err().contains("without a Location"));
    }

    #[test]
    fn redirects_that_may_be_followed() {
        let from = "https://a.example/live.isml/Streams(v)";
        assert_eq!(
            resolve_redirect(from, "/other.isml/Streams(v)", true).unwrap(),
            "https://a.example/other.isml/Streams(v)"
        );
        assert_eq!(
            resolve_redirect(from, "https://b.example/x.isml/Streams(v)", false).unwrap(),
            "https://b.example/x.isml/Streams(v)"
        );
        let e = resolve_redirect(from, "https://b.example/x.isml/Streams(v)", true).unwrap_err();
        assert!(e.contains("another origin"), "{e}");
        let e = resolve_redirect(from, "http://a.example/x", false).unwrap_err();
        assert!(e.contains("HTTPS to HTTP"), "{e}");
        let e = resolve_redirect(from, "ftp://a.example/x", false).unwrap_err();
        assert!(e.contains("ftp"), "{e}");
        // Credentials in a Location are never shown.
        let e = resolve_redirect(from, "https://u:pw@b.example/x", true).unwrap_err();
        assert!(!e.contains("pw@"), "{e}");
    }
}
