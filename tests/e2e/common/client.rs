// SPDX-License-Identifier: MPL-2.0
//! A bare HTTP/1.1 client on a raw socket, for tests that look at what goes over the wire:
//! several requests on one connection (keep-alive, pipelining), HEAD answers, exact status
//! lines and headers, a connection's close.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { reader: BufReader::new(s) }
    }

    /// Writes a request (with `Host` and, for a body, `Content-Length`) without reading.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" || method == "PATCH" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
    }

    /// Writes raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one response; `head_only` for an answer to HEAD (no body whatever the length).
    pub fn read(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut r = Response { status, headers, body: Vec::new() };
        if !head_only {
            let len: usize = r.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            r.body = vec![0; len];
            self.reader.read_exact(&mut r.body)?;
        }
        Ok(r)
    }

    /// A request and its response.
    pub fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Response {
        self.send(method, path, &[("Content-Type", "application/json")], body);
        self.read(method == "HEAD").unwrap()
    }

    /// Whether the server closed the connection (reads EOF within `wait`).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.reader.get_mut().set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        match self.reader.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// One request on a connection of its own.
pub fn call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    Client::connect(addr).call(method, path, body)
}

/// A GET of an absolute `http://host:port/path` URL.
pub fn get(url: &str) -> Response {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    call(host.parse().unwrap(), "GET", path, b"")
}
