//! Bounded in-memory capture of a guest's stdout or stderr.
//!
//! Unlike `wasmtime_wasi::p2::pipe::MemoryOutputPipe`, which traps the guest once its
//! capacity is reached, a [`CapturePipe`] never fails a write: it keeps the newest
//! `capacity` bytes and counts what it dropped. The host drains it after every call and
//! forwards the text to `tracing`.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    data: Vec<u8>,
    dropped: u64,
}

/// A bounded capture buffer for one output stream; clones share the buffer.
#[derive(Debug, Clone)]
pub(crate) struct CapturePipe {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl CapturePipe {
    /// A pipe keeping at most `capacity` bytes (the newest) between drains.
    pub(crate) fn new(capacity: usize) -> Self {
        CapturePipe {
            capacity: capacity.max(1),
            buffer: Arc::default(),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut b = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = if bytes.len() > self.capacity {
            b.dropped += (bytes.len() - self.capacity) as u64;
            &bytes[bytes.len() - self.capacity..]
        } else {
            bytes
        };
        let overflow = (b.data.len() + bytes.len()).saturating_sub(self.capacity);
        if overflow > 0 {
            b.data.drain(..overflow);
            b.dropped += overflow as u64;
        }
        b.data.extend_from_slice(bytes);
    }

    /// Takes what was written since the last drain, and how many bytes were dropped.
    pub(crate) fn drain(&self) -> (Vec<u8>, u64) {
        let mut b = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = std::mem::take(&mut b.dropped);
        (std::mem::take(&mut b.data), dropped)
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: overflow drops the oldest bytes instead of blocking or trapping.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes() {
        let p = CapturePipe::new(8);
        p.append(b"hello ");
        p.append(b"world");
        assert_eq!(p.drain(), (b"lo world".to_vec(), 3));
        p.append(b"0123456789");
        assert_eq!(p.drain(), (b"23456789".to_vec(), 2));
        assert_eq!(p.drain(), (Vec::new(), 0));
    }
}
