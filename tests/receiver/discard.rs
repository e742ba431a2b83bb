// SPDX-License-Identifier: MPL-2.0
//! A discard ingest server: answers the probe, reads and throws away the body (chunked or with
//! a Content-Length), answers at the end, and keeps the connection for the next request
//! (CMAF ingest, a DASH push). For benchmarks, where the receiver's own parsing must not cost
//! anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::http;

/// Bytes of body discarded so far, across all requests.
#[derive(Debug, Default)]
pub struct DiscardCounters {
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
}

/// Serves forever on `listener`.
pub async fn serve(listener: TcpListener, counters: Arc<DiscardCounters>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else { continue };
        let c = counters.clone();
        tokio::spawn(async move {
            let _ = discard(sock, c).await;
        });
    }
}

async fn discard(sock: TcpStream, counters: Arc<DiscardCounters>) -> std::io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    // Request after request, until the client closes the connection.
    while let Some(head) = http::read_head(&mut rd).await? {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        http::continue_if_expected(&head, &mut wr).await?;
        let mut body = http::IncomingBody::new(&head);
        while let Some(piece) = body.next(&mut rd, 256 * 1024).await? {
            counters.bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        http::respond_keep_alive(&mut wr, 200, "OK").await?;
    }
    Ok(())
}

/// Binds 127.0.0.1:`port` (0 for any).
pub async fn bind(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(("127.0.0.1", port)).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
