// SPDX-License-Identifier: MPL-2.0
//! The HTTP/1.1 client every request of the element goes through, on connections it opens and
//! owns itself (hyper's client connection API over tokio and rustls).
//!
//! A Smooth request goes on a connection of its own, closed after the answer: a failed POST must
//! never be retried on a pooled socket (docs/protocol.md §3.3), and a sparse stream leaves no
//! idle connection (§5.4). A CMAF track keeps its connection for request after request
//! (§6.2): [`Connection::exchange`] waits until the connection can take the next one, and
//! [`Connection::read_body`] and [`Connection::closed`] keep hyper's side of it running between
//! requests. Owning the connection gives the sink what a pooled client hides:
//! the socket from its first byte (the kernel's counters, the send buffer, a reset when a
//! connection is abandoned) and exact counts of what was written under the HTTP layer (see
//! [`meter`]). No redirect is followed here: a streamed body cannot be replayed, so the uploader
//! follows redirects of the probe when allowed, by [`redirect`]'s rules.
//!
//! Nothing is process-wide: the TLS provider is this client's own, and proxies are only those
//! the element's `proxy` property names (the environment's `http_proxy` and friends are not
//! read). Secrets (the password, header values) are marked sensitive and never printed.

pub mod failure;
pub mod meter;
pub mod proxy;
pub mod redirect;
pub mod socket;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use failure::RequestFailure;
use fmp4ingest_core::session::TransportError;
use meter::{FlushMeter, Meter, WireMeter};
use proxy::Proxy;
use socket::SocketWatch;
pub use tls::TlsSettings;

/// The body of any request.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// What requests are made with.
#[derive(Clone, Default)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    pub user_agent: String,
    pub tls: TlsSettings,
    /// Basic authentication: user and password.
    pub basic: Option<(String, String)>,
    /// Extra request headers, name and value.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    /// SO_SNDBUF of the connections; `None` leaves the kernel's autotuning.
    pub send_buffer: Option<u32>,
    pub proxy: Option<Proxy>,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("user_agent", &self.user_agent)
            .field("ca_pem", &self.tls.ca_pem.as_ref().map(Vec::len))
            .field("verify", &self.tls.verify)
            .field("identity_pem", &self.tls.identity_pem.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field("headers", &self.headers.iter().map(|(n, _)| (n, "***")).collect::<Vec<_>>())
            .field("content_type", &self.content_type)
            .field("send_buffer", &self.send_buffer)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The request target: path and query.
    pub path: String,
    /// The Host header: the host, and the port when it is not the scheme's default.
    pub authority: String,
}

impl Target {
    /// An http(s) URL; credentials in it are not part of the target.
    pub fn parse(url: &str) -> Result<Target, String> {
        let u = url::Url::parse(url).map_err(|e| format!("cannot read the URL: {e}"))?;
        let tls = match u.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("{other}: URLs are not supported")),
        };
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?.to_string();
        let port = u.port_or_known_default().ok_or("the URL has no port")?;
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let authority = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        Ok(Target { tls, host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port, path, authority })
    }
}

/// One element's HTTP client.
#[derive(Clone)]
pub struct Client {
    settings: ClientSettings,
    tls: Option<TlsConnector>,
    headers: HeaderMap,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("settings", &self.settings).finish()
    }
}

/// A connection, open and ready for its one request. Dropping it closes the socket (but for
/// the duplicates of [`SocketWatch`]es taken from it).
pub struct Connection {
    sender: SendRequest<Body>,
    /// hyper's side of the connection: writes the request and body, reads the answer. Polled
    /// by [`Connection::exchange`], in the request's own task, so that the socket lives exactly
    /// as long as that task.
    io: Io,
    /// The socket: the kernel's counters, the send buffer, the reset when abandoned.
    pub watch: SocketWatch,
    /// What was written under the HTTP layer.
    pub meter: Arc<Meter>,
    /// Through a proxy, the socket's counters describe the connection to the proxy.
    pub proxied: bool,
    /// hyper's side of the connection has ended (it must not be polled again).
    io_done: bool,
}

impl Connection {
    /// Sends `req` and waits for the answer's head. On a connection that carried a request
    /// before, it first waits until the connection can take another one (the previous
    /// answer's body must have been read, see [`Connection::read_body`]).
    pub async fn exchange(&mut self, req: Request<Body>) -> Result<http::Response<Incoming>, RequestFailure> {
        let sender = &mut self.sender;
        let ready = std::future::poll_fn(|cx| sender.poll_ready(cx));
        Self::driving(&mut self.io, &mut self.io_done, ready).await?.map_err(|e| RequestFailure::exchange(&e))?;
        let send = self.sender.send_request(req);
        tokio::pin!(send);
        // The connection may fail after the server answered — it answers early, then closes
        // while the body is still being written — so the answer, when there is one, wins over
        // the connection's error: hyper hands it to the request once its side has ended.
        let mut failed = None;
        loop {
            tokio::select! {
                r = &mut send => {
                    return match (r, failed) {
                        (Ok(resp), _) => Ok(resp),
                        (Err(_), Some(f)) => Err(f),
                        (Err(e), None) => Err(RequestFailure::exchange(&e)),
                    };
                }
                r = &mut self.io, if !self.io_done => {
                    self.io_done = true;
                    if let Err(e) = r {
                        failed = Some(RequestFailure::exchange(&e));
                    }
                }
            }
        }
    }

    /// Reads the body of an answer, at most `limit` bytes (more is a failure: the connection
    /// cannot be used again), so that the connection can carry the next request.
    pub async fn read_body(&mut self, body: Incoming, limit: usize) -> Result<Bytes, RequestFailure> {
        let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit));
        match Self::driving(&mut self.io, &mut self.io_done, read).await? {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) => Err(RequestFailure::new(TransportError::Other, format!("reading the answer: {e}"))),
        }
    }

    /// Waits until the connection ends while idle (the server closed it, its keep-alive ran out).
    pub async fn closed(&mut self) -> RequestFailure {
        if !self.io_done {
            let r = (&mut self.io).await;
            self.io_done = true;
            if let Err(e) = r {
                return RequestFailure::exchange(&e);
            }
        }
        RequestFailure::new(TransportError::Closed, "the server closed the connection")
    }

    /// Runs `work` while hyper's side of the connection runs; a failure of the connection ends
    /// it. When the connection ended without an error, `work` alone decides.
    async fn driving<T>(io: &mut Io, io_done: &mut bool, work: impl Future<Output = T>) -> Result<T, RequestFailure> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return Ok(r),
                r = &mut *io, if !*io_done => {
                    *io_done = true;
                    if let Err(e) = r {
                        return Err(RequestFailure::exchange(&e));
                    }
                }
            }
        }
    }
}

impl Client {
    /// The client for `settings`, with the TLS configuration built (and its files parsed) now;
    /// an error names the setting at fault.
    pub fn new(settings: ClientSettings) -> Result<Client, String> {
        let headers = headers(&settings)?;
        let tls = Some(TlsConnector::from(tls::client_config(&settings.tls)?));
        Ok(Client { settings, tls, headers })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Opens a connection to `target`: TCP (through the proxy's tunnel when there is one), then
    /// TLS for https, then HTTP/1.1; all within the connect timeout.
    pub async fn connect(&self, target: &Target) -> Result<Connection, RequestFailure> {
        let limit = self.settings.connect_timeout;
        match tokio::time::timeout(limit, self.open(target)).await {
            Ok(r) => r,
            Err(_) => {
                Err(RequestFailure::timeout(&format!("connecting to {}:{} ({limit:?})", target.host, target.port)))
            }
        }
    }

    async fn open(&self, target: &Target) -> Result<Connection, RequestFailure> {
        let (host, port) = match &self.settings.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (target.host.as_str(), target.port),
        };
        let mut tcp = tcp_connect(host, port)
            .await
            .map_err(|e| RequestFailure::connect(&format!("connecting to {host}:{port}"), &e))?;
        let _ = tcp.set_nodelay(true);
        let watch = SocketWatch::new(&tcp).map_err(|e| RequestFailure::connect("the connection's socket", &e))?;
        if let Some(size) = self.settings.send_buffer {
            let _ = watch.set_send_buffer(size);
        }
        if let Some(p) = &self.settings.proxy {
            p.connect(&mut tcp, &target.host, target.port, &self.settings.user_agent)
                .await
                .map_err(|e| RequestFailure::new(TransportError::Connect, e))?;
        }
        let meter = Arc::new(Meter::default());
        let wire = WireMeter::new(tcp, meter.clone());
        let (sender, io) = if target.tls {
            let connector = self.tls.as_ref().ok_or_else(|| RequestFailure::new(TransportError::Other, "no TLS"))?;
            let name = tls::server_name(&target.host).map_err(|e| RequestFailure::new(TransportError::Connect, e))?;
            let stream = connector.connect(name, wire).await.map_err(|e| {
                RequestFailure::connect(&format!("TLS handshake with {}:{}", target.host, target.port), &e)
            })?;
            handshake(FlushMeter::new(stream, meter.clone())).await?
        } else {
            handshake(FlushMeter::new(wire, meter.clone())).await?
        };
        Ok(Connection { sender, io, watch, meter, proxied: self.settings.proxy.is_some(), io_done: false })
    }

    /// A POST to `target` with these headers; `length` is the body's size when it is known,
    /// else it is sent chunked.
    pub fn post(&self, target: &Target, body: Body, length: Option<u64>) -> Request<Body> {
        self.request(Method::POST, target, body, length)
    }

    /// A request with `method` (POST or PUT) to `target`, as [`Client::post`].
    pub fn request(&self, method: Method, target: &Target, body: Body, length: Option<u64>) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = target.path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
        let h = req.headers_mut();
        h.clone_from(&self.headers);
        if let Ok(v) = HeaderValue::from_str(&target.authority) {
            h.insert(HOST, v);
        }
        if let Some(n) = length {
            h.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        req
    }
}

type Io = std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;

async fn handshake<T>(io: T) -> Result<(SendRequest<Body>, Io), RequestFailure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| RequestFailure::exchange(&e))?;
    Ok((sender, Box::pin(conn)))
}

/// User and password of a URL's `user:password@`, percent-decoded.
pub fn url_credentials(url: &str) -> Option<(String, String)> {
    let u = url::Url::parse(url).ok()?;
    if u.username().is_empty() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some((decode(u.username()), decode(u.password().unwrap_or(""))))
}

/// The first address of `host` that accepts a connection.
async fn tcp_connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {host}"))))
}

/// The headers of every request: User-Agent, Basic credentials, the extra headers and the
/// Content-Type; an error names the setting at fault.
fn headers(s: &ClientSettings) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    map.insert(
        USER_AGENT,
        HeaderValue::from_str(&s.user_agent).map_err(|_| "user-agent is not a valid header value".to_string())?,
    );
    for (name, value) in &s.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("extra-headers: '{name}' is not a valid header name"))?;
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| format!("extra-headers: the value of '{name}' is not a valid header value"))?;
        v.set_sensitive(true);
        map.append(n, v);
    }
    if let Some((user, pw)) = &s.basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        let mut v = HeaderValue::from_str(&format!("Basic {token}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn targets() {
        let t = Target::parse("https://user:pw@host.example/live.isml/Streams(v)?a=1").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "host.example".into(),
                port: 443,
                path: "/live.isml/Streams(v)?a=1".into(),
                authority: "host.example".into()
            }
        );
        let t = Target::parse("http://[::1]:8080/x").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("::1", 8080, "[::1]:8080"));
        assert!(Target::parse("ftp://x/y").is_err());
    }

    /// Reads one request (head and a Content-Length body) from `rd`; None at EOF.
    async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(rd: &mut R) -> Option<(String, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if rd.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let len = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0usize);
        let mut body = vec![0; len];
        rd.read_exact(&mut body).await.ok()?;
        Some((head, body))
    }

    #[test]
    fn one_connection_carries_request_after_request_until_the_server_closes_it() {
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (sock, _) = listener.accept().await.unwrap();
                let (rd, mut wr) = sock.into_split();
                let mut rd = tokio::io::BufReader::new(rd);
                let mut seen = Vec::new();
                // Three requests, each answered with a body the client must read; then close.
                for answer in ["ok", "again", "bye"] {
                    let (head, body) = read_request(&mut rd).await.unwrap();
                    seen.push((head.lines().next().unwrap().to_string(), body));
                    let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
                    wr.write_all(resp.as_bytes()).await.unwrap();
                }
                seen
            });
            let client = Client::new(ClientSettings {
                connect_timeout: Duration::from_secs(5),
                user_agent: "ua".into(),
                tls: TlsSettings { verify: true, ..TlsSettings::default() },
                ..ClientSettings::default()
            })
            .unwrap();
            let target = Target::parse(&format!("http://127.0.0.1:{port}/pp.isml/Streams(video.cmfv)")).unwrap();
            let mut conn = client.connect(&target).await.unwrap();
            let full = |b: &'static [u8]| {
                http_body_util::Full::new(Bytes::from_static(b)).map_err(|never| match never {}).boxed_unsync()
            };
            for (method, body, answer) in
                [(Method::POST, &b""[..], "ok"), (Method::PUT, b"header", "again"), (Method::POST, b"seg", "bye")]
            {
                let resp = conn.exchange(client.request(method, &target, full(body), Some(body.len() as u64))).await;
                let resp = resp.unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(conn.read_body(resp.into_body(), 1024).await.unwrap(), answer.as_bytes());
            }
            // The server closed the idle connection: seen while idle.
            let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.unwrap();
            assert_eq!(closed.cause, TransportError::Closed);
            let seen = server.await.unwrap();
            let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
            assert_eq!(
                lines,
                [
                    "POST /pp.isml/Streams(video.cmfv) HTTP/1.1",
                    "PUT /pp.isml/Streams(video.cmfv) HTTP/1.1",
                    "POST /pp.isml/Streams(video.cmfv) HTTP/1.1"
                ]
            );
            assert_eq!(seen[2].1, b"seg");
        });
    }

    #[test]
    fn credentials_of_a_url() {
        assert_eq!(url_credentials("http://enc:pa55%3Aword@h/x"), Some(("enc".into(), "pa55:word".into())));
        assert_eq!(url_credentials("http://h/x"), None);
    }

    #[test]
    fn headers_are_checked_and_secrets_marked_sensitive() {
        let s = ClientSettings {
            user_agent: "ua".into(),
            basic: Some(("Aladdin".into(), "open sesame".into())),
            headers: vec![("X-Token".into(), "tok".into())],
            content_type: Some("video/mp4".into()),
            ..ClientSettings::default()
        };
        let h = headers(&s).unwrap();
        assert!(h[AUTHORIZATION].is_sensitive() && h["x-token"].is_sensitive());
        // RFC 7617's example.
        assert_eq!(h[AUTHORIZATION], "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(h[CONTENT_TYPE], "video/mp4");
        let printed = format!("{s:?} {h:?}");
        assert!(!printed.contains("sesame") && !printed.contains("tok\"") && !printed.contains("QWxh"), "{printed}");
        let bad = ClientSettings { headers: vec![("X Y".into(), "v".into())], ..ClientSettings::default() };
        assert!(headers(&bad).unwrap_err().contains("'X Y'"));
        let bad = ClientSettings { headers: vec![("X".into(), "a\nb".into())], ..ClientSettings::default() };
        assert!(headers(&bad).unwrap_err().contains("value of 'X'"));
    }
}
