// SPDX-License-Identifier: MPL-2.0
//! Counting what a request's transport writes, under the HTTP layer.
//!
//! Two wrappers around a connection's byte stream: [`WireMeter`] right on the socket counts the
//! bytes written to the kernel; [`FlushMeter`] on top of everything (TLS included) notes a
//! [`FlushMark`] each time the HTTP layer's flush went through — then every body byte handed to
//! it has been written, as the wire bytes counted so far. The session maps the kernel's
//! acknowledgements to body bytes through those marks (`fmp4ingest_core::session::delivery`):
//! no guess of the head, the chunk framing, TLS records or anyone's buffer sizes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use fmp4ingest_core::session::FlushMark;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one connection's meters counted.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes written to the socket.
    wire: AtomicU64,
    /// Body bytes handed to the HTTP layer (counted by the body as it gives them).
    body: AtomicU64,
    /// Marks not yet taken, oldest first.
    marks: Mutex<Vec<FlushMark>>,
    last: Mutex<Option<FlushMark>>,
}

impl Meter {
    pub fn wire(&self) -> u64 {
        self.wire.load(Ordering::Acquire)
    }

    /// The body handed `n` more bytes to the HTTP layer.
    pub fn body_taken(&self, n: u64) {
        self.body.fetch_add(n, Ordering::AcqRel);
    }

    /// The marks noted since the last call.
    pub fn take_marks(&self) -> Vec<FlushMark> {
        std::mem::take(&mut *self.marks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn flushed(&self) {
        let mark = FlushMark { wire: self.wire(), body: self.body.load(Ordering::Acquire) };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(mark) {
            *last = Some(mark);
            self.marks.lock().unwrap_or_else(|e| e.into_inner()).push(mark);
        }
    }
}

/// Counts the bytes written to the socket underneath.
#[derive(Debug)]
pub struct WireMeter<T> {
    inner: T,
    meter: Arc<Meter>,
}

impl<T> WireMeter<T> {
    pub fn new(inner: T, meter: Arc<Meter>) -> Self {
        WireMeter { inner, meter }
    }
}

/// Notes a mark after every flush of everything underneath.
#[derive(Debug)]
pub struct FlushMeter<T> {
    inner: T,
    meter: Arc<Meter>,
}

impl<T> FlushMeter<T> {
    pub fn new(inner: T, meter: Arc<Meter>) -> Self {
        FlushMeter { inner, meter }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WireMeter<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WireMeter<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.meter.wire.fetch_add(n as u64, Ordering::AcqRel);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.meter.wire.fetch_add(n as u64, Ordering::AcqRel);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FlushMeter<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FlushMeter<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The HTTP layer flushes once its own buffer is written: everything it was handed is
        // below; once TLS underneath has written its records too, the wire count carries it all.
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            self.meter.flushed();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn counts_the_wire_and_marks_each_flush() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let meter = Arc::new(Meter::default());
            let (a, _b) = tokio::io::duplex(1 << 16);
            let mut io = FlushMeter::new(WireMeter::new(a, meter.clone()), meter.clone());
            io.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
            meter.body_taken(5);
            io.write_all(b"5\r\nhello\r\n").await.unwrap();
            io.flush().await.unwrap();
            // A flush with nothing new adds no mark.
            io.flush().await.unwrap();
            assert_eq!(meter.take_marks(), [FlushMark { wire: 29, body: 5 }]);
            meter.body_taken(2);
            io.write_all(b"2\r\nab\r\n").await.unwrap();
            io.flush().await.unwrap();
            assert_eq!(meter.take_marks(), [FlushMark { wire: 36, body: 7 }]);
            assert_eq!(meter.wire(), 36);
        });
    }
}
