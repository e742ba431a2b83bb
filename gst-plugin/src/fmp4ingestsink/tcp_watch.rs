//! What the kernel knows about a POST's TCP connection: bytes the peer acknowledged and bytes
//! still in the send queue (Linux `TCP_INFO` and `SIOCOUTQ`).
//!
//! reqwest does not hand out its sockets, so a connector layer notes the addresses of every new
//! connection ([`ConnectionTap`]), and [`TcpWatch::find`] locates that socket among the
//! process's descriptors (`/proc/net/tcp*` for its inode, `/proc/self/fd` for the descriptor)
//! and keeps a duplicate to query. With it the session knows which fragments cannot have
//! reached the server when a connection dies, and resends them (docs/protocol.md §3.5: data sitting
//! in kernel buffers is lost with the connection). Where any of this is unavailable the session
//! falls back to a conservative estimate.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection, HttpInfo};

/// Addresses of the connections a client opened, newest last.
#[derive(Debug, Default, Clone)]
pub struct ConnectionLog(Arc<Mutex<VecDeque<(SocketAddr, SocketAddr)>>>);

impl ConnectionLog {
    fn note(&self, local: SocketAddr, remote: SocketAddr) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.push_back((local, remote));
        // Only the newest matter; keep the log bounded.
        while log.len() > 8 {
            log.pop_front();
        }
    }

    /// The newest connection's (local, remote) addresses, taken out of the log.
    pub fn take_newest(&self) -> Option<(SocketAddr, SocketAddr)> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let newest = log.pop_back();
        log.clear();
        newest
    }
}

/// A tower layer for reqwest's connector that records each new connection's addresses.
#[derive(Debug, Clone)]
pub struct ConnectionTap {
    pub log: ConnectionLog,
}

impl<S> tower_layer::Layer<S> for ConnectionTap {
    type Service = TapService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TapService { inner, log: self.log.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct TapService<S> {
    inner: S,
    log: ConnectionLog,
}

impl<S, R> tower_service::Service<R> for TapService<S>
where
    S: tower_service::Service<R>,
    S::Response: Connection,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        let log = self.log.clone();
        Box::pin(async move {
            let conn = fut.await?;
            if let Some((local, remote)) = addresses(conn.connected()) {
                log.note(local, remote);
            }
            Ok(conn)
        })
    }
}

fn addresses(connected: Connected) -> Option<(SocketAddr, SocketAddr)> {
    let mut ext = http::Extensions::new();
    connected.get_extras(&mut ext);
    let info = ext.get::<HttpInfo>()?;
    Some((info.local_addr(), info.remote_addr()))
}

/// Kernel counters of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpCounters {
    /// Bytes the peer acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Bytes written but not yet acknowledged, sent or not (`SIOCOUTQ`).
    pub unacked: u64,
    /// The receive window the peer advertises (`tcpi_snd_wnd`, Linux 6.2+): the free space of
    /// its socket buffer.
    pub peer_window: Option<u64>,
}

/// A duplicate descriptor of a connection's socket, for queries only.
#[derive(Debug)]
pub struct TcpWatch {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// /proc/net/tcp's form of an address: the IP as host-order 32-bit words in hex, then the
    /// port in hex.
    pub fn proc_form(addr: SocketAddr) -> String {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => {
                v6.octets().chunks(4).map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).collect()
            }
        };
        format!("{ip}:{:04X}", addr.port())
    }

    /// The inode of the socket with these addresses.
    pub fn inode_of(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
        let table = if local.is_ipv4() { "/proc/net/tcp" } else { "/proc/net/tcp6" };
        let text = std::fs::read_to_string(table).ok()?;
        let (l, r) = (proc_form(local), proc_form(remote));
        text.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == l && f[2] == r).then(|| f[9].parse().ok()).flatten()
        })
    }

    /// A duplicate of this process's descriptor for socket `inode`.
    pub fn dup_socket(inode: u64, local: SocketAddr, remote: SocketAddr) -> Option<OwnedFd> {
        let want = format!("socket:[{inode}]");
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else { continue };
            if target.as_os_str() != want.as_str() {
                continue;
            }
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an arbitrary descriptor number is sound: it
            // fails with EBADF if the number is not open. The result, when >= 0, is a new
            // descriptor that this function alone owns.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                continue;
            }
            // SAFETY: `dup` is a fresh descriptor owned by nobody else.
            let owned = unsafe { OwnedFd::from_raw_fd(dup) };
            // The number may have been closed and reused between readlink and fcntl: check
            // that the duplicate is the connection we look for.
            let sock = std::net::TcpStream::from(owned);
            let same = sock.local_addr().ok() == Some(local) && sock.peer_addr().ok() == Some(remote);
            let owned = OwnedFd::from(sock);
            if same {
                return Some(owned);
            }
        }
        None
    }

    pub fn set_send_buffer(fd: &OwnedFd, bytes: u32) -> bool {
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the pointer and length describe `v`, which outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    }

    pub fn counters(fd: &OwnedFd) -> Option<super::TcpCounters> {
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
        // Kernels older than 4.1 return a shorter struct without tcpi_bytes_acked.
        let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
        if rc != 0 || (len as usize) < needed {
            return None;
        }
        let mut outq: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut outq) };
        let unacked = if rc == 0 { u64::try_from(outq).unwrap_or(0) } else { 0 };
        let window_end = std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd) + 4;
        let peer_window = ((len as usize) >= window_end).then_some(u64::from(info.tcpi_snd_wnd));
        // The kernel counts the SYN as one acknowledged byte.
        Some(super::TcpCounters { bytes_acked: info.tcpi_bytes_acked.saturating_sub(1), unacked, peer_window })
    }
}

impl TcpWatch {
    /// Finds the socket of the connection with these addresses in this process.
    pub fn find(local: SocketAddr, remote: SocketAddr) -> Option<TcpWatch> {
        #[cfg(target_os = "linux")]
        {
            let inode = linux::inode_of(local, remote)?;
            let fd = linux::dup_socket(inode, local, remote)?;
            let watch = TcpWatch { fd };
            // Only useful if the counters can be read.
            watch.counters()?;
            Some(watch)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (local, remote);
            None
        }
    }

    /// Caps the kernel's send buffer (SO_SNDBUF), which turns its autotuning off: less data can
    /// wait unacknowledged, so less is at risk and a stall shows sooner.
    pub fn set_send_buffer(&self, bytes: u32) -> bool {
        #[cfg(target_os = "linux")]
        {
            linux::set_send_buffer(&self.fd, bytes)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = bytes;
            false
        }
    }

    pub fn counters(&self) -> Option<TcpCounters> {
        #[cfg(target_os = "linux")]
        {
            linux::counters(&self.fd)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn finds_a_connection_and_reads_its_counters() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let watch = TcpWatch::find(client.local_addr().unwrap(), client.peer_addr().unwrap()).expect("socket found");
        client.write_all(&[7u8; 10_000]).unwrap();
        let mut buf = vec![0u8; 10_000];
        server.read_exact(&mut buf).unwrap();
        // Loopback acknowledges at once; allow the ACK to be processed.
        let mut c = watch.counters().unwrap();
        for _ in 0..100 {
            if c.bytes_acked >= 10_000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            c = watch.counters().unwrap();
        }
        assert_eq!(c.bytes_acked, 10_000);
        assert_eq!(c.unacked, 0);
    }

    #[test]
    fn an_unknown_connection_is_not_found() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(TcpWatch::find(a, a).is_none());
    }

    #[test]
    fn proc_form_matches_the_kernel_table() {
        assert_eq!(linux::proc_form("127.0.0.1:8080".parse().unwrap()), "0100007F:1F90");
    }
}
