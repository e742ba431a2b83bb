// SPDX-License-Identifier: MPL-2.0
//! A small HTTP/1.1 server side: request heads, Content-Length and chunked bodies, responses.
//!
//! Hand-written rather than hyper, because the tests need to control the socket byte by byte
//! (stop reading, reset, answer early) and to see exactly how the client framed its body.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limits that keep a broken client from exhausting the receiver.
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line ending in CRLF (or LF), bounded.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r).take(limit as u64).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(bad("line too long or connection closed mid-line"));
    }
    while buf.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| bad("line is not UTF-8"))
}

/// Reads a request head; `Ok(None)` when the connection closed before a request.
pub async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<RequestHead>> {
    let Some(line) = read_line(r, MAX_HEAD).await? else { return Ok(None) };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line: {line:?}")));
    };
    let mut head =
        RequestHead { method: method.into(), path: path.into(), version: version.into(), headers: Vec::new() };
    let mut total = line.len();
    loop {
        let line = read_line(r, MAX_HEAD).await?.ok_or_else(|| bad("closed in headers"))?;
        total += line.len();
        if line.is_empty() {
            return Ok(Some(head));
        }
        if total > MAX_HEAD || head.headers.len() >= MAX_HEADERS {
            return Err(bad("request head too large"));
        }
        let (n, v) = line.split_once(':').ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        head.headers.push((n.trim().to_string(), v.trim().to_string()));
    }
}

/// Answers `Expect: 100-continue` (curl sends it with a POST body, then waits a second for
/// the interim answer before sending anyway), as a real server does once it takes the request.
pub async fn continue_if_expected<W: AsyncWrite + Unpin>(head: &RequestHead, w: &mut W) -> io::Result<()> {
    if head.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        w.flush().await?;
    }
    Ok(())
}

/// A request body read piece by piece, so that the server decides when (and whether) to read
/// on: Content-Length or chunked.
pub struct IncomingBody {
    chunked: bool,
    /// Bytes left in the current chunk (chunked) or in the body (Content-Length).
    left: u64,
    chunk_no: u64,
    done: bool,
    buf: Vec<u8>,
}

impl IncomingBody {
    pub fn new(head: &RequestHead) -> Self {
        let chunked = head.is_chunked();
        let left = if chunked { 0 } else { head.content_length().unwrap_or(0) };
        IncomingBody { chunked, left, chunk_no: 0, done: !chunked && left == 0, buf: Vec::new() }
    }

    /// Chunks seen so far (0 for a Content-Length body).
    pub fn chunks(&self) -> u64 {
        self.chunk_no
    }

    /// The next at most `max` body bytes; `Ok(None)` once the body ended properly (the last
    /// chunk, or Content-Length reached). An error when the connection closes before that.
    pub async fn next<R: AsyncBufRead + Unpin>(&mut self, r: &mut R, max: usize) -> io::Result<Option<&[u8]>> {
        if self.done {
            return Ok(None);
        }
        if self.chunked && self.left == 0 {
            if self.chunk_no > 0 {
                let crlf = read_line(r, 2).await?.ok_or_else(|| bad("closed after chunk data"))?;
                if !crlf.is_empty() {
                    return Err(bad("chunk data not followed by CRLF"));
                }
            }
            let line = read_line(r, 1024).await?.ok_or_else(|| bad("closed before the last chunk"))?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                loop {
                    let t = read_line(r, MAX_HEAD).await?.ok_or_else(|| bad("closed in trailers"))?;
                    if t.is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(None);
            }
            self.chunk_no += 1;
            self.left = size;
        }
        let n = self.left.min(max.max(1) as u64) as usize;
        self.buf.resize(n, 0);
        r.read_exact(&mut self.buf).await?;
        self.left -= n as u64;
        if !self.chunked && self.left == 0 {
            self.done = true;
        }
        Ok(Some(&self.buf))
    }
}

/// Writes a complete plain-text response and flushes it.
pub async fn respond<W: AsyncWrite + Unpin>(w: &mut W, status: u16, reason: &str, body: &[u8]) -> io::Result<()> {
    respond_typed(w, status, reason, "text/plain", body).await
}

/// Writes a complete response of this content type, closing the connection, and flushes it.
pub async fn respond_typed<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

/// Writes a bodiless response that leaves the connection open (HTTP/1.1 keep-alive), so that
/// whether the client closes it shows.
pub async fn respond_keep_alive<W: AsyncWrite + Unpin>(w: &mut W, status: u16, reason: &str) -> io::Result<()> {
    let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n");
    w.write_all(head.as_bytes()).await?;
    w.flush().await
}

/// A bodiless response with extra headers, closing the connection.
pub async fn respond_with<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    w.flush().await
}

/// The user and password of an `Authorization: Basic ...` header value (RFC 7617).
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
    let (user, pw) = decoded.split_once(':')?;
    Some((user.to_string(), pw.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            super::basic_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Some(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(super::basic_credentials("Bearer x"), None);
        assert_eq!(super::basic_credentials("Basic ***"), None);
    }
}
