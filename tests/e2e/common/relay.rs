// SPDX-License-Identifier: MPL-2.0
//! A relay in front of a server, as a load balancer or reverse proxy stands in front of an
//! origin: it keeps the client's connections while the server behind it is replaced. Each
//! client connection gets a connection to the server when it first sends; after
//! [`Relay::resume`] names a new server, the next bytes a client sends go over a new
//! connection to it — the client's connection stays up, so a client that sent a header on it
//! learns that the new server lacks it only from its answers (a 412).
//!
//! [`Relay::pause`] holds what clients send until [`Relay::resume`]: the server is replaced
//! between requests, not in the middle of one.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

struct State {
    upstream: SocketAddr,
    paused: bool,
    /// Bumped by every resume: a client's connection to an older server is replaced.
    generation: u64,
}

pub struct Relay {
    addr: SocketAddr,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Relay {
    pub fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new((Mutex::new(State { upstream, paused: false, generation: 0 }), Condvar::new()));
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(client, &s));
            }
        });
        Relay { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Holds what clients send from now on.
    pub fn pause(&self) {
        self.shared.0.lock().unwrap().paused = true;
    }

    /// Sends what clients send to `upstream`, over new connections.
    pub fn resume(&self, upstream: SocketAddr) {
        let mut st = self.shared.0.lock().unwrap();
        st.upstream = upstream;
        st.generation += 1;
        st.paused = false;
        self.shared.1.notify_all();
    }
}

fn serve(mut client: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut up: Option<(u64, TcpStream)> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (addr, generation) = {
            let mut st = shared.0.lock().unwrap();
            while st.paused {
                st = shared.1.wait(st).unwrap();
            }
            (st.upstream, st.generation)
        };
        if up.as_ref().is_none_or(|(g, _)| *g != generation) {
            if let Some((_, old)) = up.take() {
                let _ = old.shutdown(Shutdown::Both);
            }
            let Ok(s) = TcpStream::connect(addr) else { break };
            let (mut back, mut to) = (s.try_clone().unwrap(), client.try_clone().unwrap());
            // The server's answers go back; when it goes, the client's connection stays.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back, &mut to);
            });
            up = Some((generation, s));
        }
        let (_, s) = up.as_mut().expect("connected");
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if let Some((_, s)) = up {
        let _ = s.shutdown(Shutdown::Both);
    }
    let _ = client.shutdown(Shutdown::Both);
}
