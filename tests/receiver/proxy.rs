// SPDX-License-Identifier: MPL-2.0
//! A small HTTP proxy for the tests: it takes `CONNECT host:port` (RFC 9110 9.3.6), checks
//! `Proxy-Authorization: Basic` when told to, opens the tunnel and copies bytes both ways. It
//! records every tunnel it was asked for, so that a test sees what went through it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::http;

/// A tunnel the proxy was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The CONNECT target, `host:port`.
    pub target: String,
    /// The Basic credentials given, if any.
    pub credentials: Option<(String, String)>,
    /// Whether the proxy opened it.
    pub opened: bool,
}

/// The proxy, on 127.0.0.1 with an ephemeral port; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// Starts the proxy; with `credentials`, a tunnel needs them (else 407).
    pub fn start(credentials: Option<(String, String)>) -> std::io::Result<Proxy> {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("proxy").enable_all().build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let tunnels: Arc<Mutex<Vec<Tunnel>>> = Arc::default();
        let t = tunnels.clone();
        runtime.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (t, creds) = (t.clone(), credentials.clone());
                tokio::spawn(async move {
                    let _ = tunnel(sock, t, creds).await;
                });
            }
        });
        Ok(Proxy { addr, tunnels, _runtime: runtime })
    }

    /// The `proxy` property's value for this proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn tunnel(
    sock: TcpStream,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    required: Option<(String, String)>,
) -> std::io::Result<()> {
    let mut client = BufReader::new(sock);
    let Some(head) = http::read_head(&mut client).await? else { return Ok(()) };
    let credentials = head.header("proxy-authorization").and_then(http::basic_credentials);
    let record = |opened| Tunnel { target: head.path.clone(), credentials: credentials.clone(), opened };
    if head.method != "CONNECT" {
        tunnels.lock().unwrap_or_else(|e| e.into_inner()).push(record(false));
        return http::respond(client.get_mut(), 405, "Method Not Allowed", b"CONNECT only\n").await;
    }
    if required.is_some() && credentials != required {
        tunnels.lock().unwrap_or_else(|e| e.into_inner()).push(record(false));
        return http::respond_with(
            client.get_mut(),
            407,
            "Proxy Authentication Required",
            &[("Proxy-Authenticate", "Basic realm=\"proxy\"")],
        )
        .await;
    }
    let Ok(mut server) = TcpStream::connect(head.path.as_str()).await else {
        tunnels.lock().unwrap_or_else(|e| e.into_inner()).push(record(false));
        return http::respond(client.get_mut(), 502, "Bad Gateway", b"").await;
    };
    tunnels.lock().unwrap_or_else(|e| e.into_inner()).push(record(true));
    client.get_mut().write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?;
    // Whatever the client sent after its head is already in the reader's buffer.
    let early = client.buffer().to_vec();
    server.write_all(&early).await?;
    let mut client = client.into_inner();
    // Either side failing (a reset) ends the tunnel: both connections are dropped.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    Ok(())
}
