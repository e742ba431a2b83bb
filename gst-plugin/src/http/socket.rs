// SPDX-License-Identifier: MPL-2.0
//! What the kernel knows about one of our TCP connections, read from its own descriptor: the
//! bytes in the send queue the peer has not acknowledged (`SIOCOUTQ`) and the receive window it
//! advertises (`TCP_INFO`, Linux 6.2+); and the two options the sink sets on it: the send buffer
//! size, and a reset instead of a graceful close when a connection is abandoned.
//!
//! The sink opens every connection itself, so it holds the socket from the first byte: no
//! search among the process's descriptors, no race with other sockets.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// A duplicate descriptor of a connection's socket, for queries and options only: the
/// connection itself stays with the HTTP layer.
#[derive(Debug)]
pub struct SocketWatch {
    fd: OwnedFd,
}

/// One reading of the kernel's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketCounters {
    /// Bytes written but not yet acknowledged by the peer, sent or not (`SIOCOUTQ`).
    pub unacked: u64,
    /// The receive window the peer advertises (`tcpi_snd_wnd`), when the kernel tells.
    pub peer_window: Option<u64>,
}

impl SocketWatch {
    /// Watches the socket of `stream`.
    pub fn new(stream: &tokio::net::TcpStream) -> std::io::Result<SocketWatch> {
        Ok(SocketWatch { fd: stream.as_fd().try_clone_to_owned()? })
    }

    /// Another watch of the same socket.
    pub fn try_clone(&self) -> std::io::Result<SocketWatch> {
        Ok(SocketWatch { fd: self.fd.try_clone()? })
    }

    /// Caps the kernel's send buffer (SO_SNDBUF), which turns its autotuning off: less data can
    /// wait unacknowledged, so less is at risk and a stall shows sooner.
    pub fn set_send_buffer(&self, bytes: u32) -> std::io::Result<()> {
        socket2::SockRef::from(&self.fd).set_send_buffer_size(bytes as usize)
    }

    /// From now on closing the socket resets the connection (SO_LINGER with a zero timeout):
    /// whatever it still holds is discarded, not delivered behind a newer connection's bytes.
    pub fn reset_on_close(&self) -> std::io::Result<()> {
        socket2::SockRef::from(&self.fd).set_linger(Some(Duration::ZERO))
    }

    /// Has the kernel probe the peer once the connection was idle for `after`, and again every
    /// `after` while it stays idle (TCP keepalive; idle: nothing unacknowledged, nothing
    /// received). The peer answers each probe with an acknowledgement that carries its receive
    /// window as it is *now*. Without it, the window the sender sees after a burst is the one
    /// the peer advertised as the burst arrived, before its application read it: Linux sends a
    /// window update on a read only when the window at least doubles, so an application that
    /// read everything can look, for as long as the link is idle, as if it had stopped reading.
    pub fn probe_when_idle(&self, after: Duration) -> std::io::Result<()> {
        let keepalive = socket2::TcpKeepalive::new().with_time(after).with_interval(after);
        socket2::SockRef::from(&self.fd).set_tcp_keepalive(&keepalive)
    }

    pub fn counters(&self) -> Option<SocketCounters> {
        counters(&self.fd)
    }
}

#[cfg(target_os = "linux")]
fn counters(fd: &OwnedFd) -> Option<SocketCounters> {
    let mut outq: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut outq) };
    if rc != 0 {
        return None;
    }
    // SAFETY: tcp_info is plain old data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `info`, which outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // tcpi_snd_wnd came with Linux 6.2; older kernels return a shorter struct.
    let window_end = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + 4;
    let peer_window = (rc == 0 && (len as usize) >= window_end).then_some(u64::from(info.tcpi_snd_wnd));
    Some(SocketCounters { unacked: u64::try_from(outq).unwrap_or(0), peer_window })
}

#[cfg(not(target_os = "linux"))]
fn counters(_fd: &OwnedFd) -> Option<SocketCounters> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn reads_the_counters_and_resets_on_close() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            let watch = SocketWatch::new(&client).unwrap();
            watch.set_send_buffer(64 * 1024).unwrap();
            client.write_all(&[7u8; 10_000]).await.unwrap();
            let mut buf = vec![0u8; 10_000];
            server.read_exact(&mut buf).await.unwrap();
            // Loopback acknowledges at once; allow the ACK to be processed.
            let mut c = watch.counters().unwrap();
            for _ in 0..100 {
                if c.unacked == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                c = watch.counters().unwrap();
            }
            assert_eq!(c.unacked, 0);
            assert!(c.peer_window.is_none_or(|w| w > 0));
            // Abandoned with data the server never read: it sees a reset, not an orderly end.
            client.write_all(&[1u8; 1000]).await.unwrap();
            watch.reset_on_close().unwrap();
            drop(client);
            drop(watch);
            let mut rest = Vec::new();
            let err = server.read_to_end(&mut rest).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "read {} bytes first", rest.len());
        });
    }

    #[test]
    fn an_idle_connection_is_probed_after_the_time_asked() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let watch = SocketWatch::new(&client).unwrap();
            let sock = socket2::SockRef::from(&client);
            assert!(!sock.keepalive().unwrap());
            watch.probe_when_idle(Duration::from_secs(1)).unwrap();
            // Set through the watch's duplicate descriptor, on the connection's own socket.
            assert!(sock.keepalive().unwrap());
            assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(1));
            assert_eq!(sock.tcp_keepalive_interval().unwrap(), Duration::from_secs(1));
        });
    }
}
