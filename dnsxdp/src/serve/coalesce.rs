//! Writes that leave together: a stream whose flushes wait for the tasks already ready to run
//! first, so that the replies they finish meanwhile go out in the same write.
//!
//! hyper answers each HTTP/2 request in a task of its own and flushes the connection after
//! each; with a reply per write, the system call and the TCP segment are most of a cached
//! answer's cost.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before they are written without waiting for a flush.
const HOLD: usize = 16 * 1024;

pub struct Coalescing<S> {
    inner: S,
    buffer: Vec<u8>,
    /// Written of `buffer` so far.
    written: usize,
    /// The yield a flush waits on, once.
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    yielded: bool,
}

impl<S> Coalescing<S> {
    pub fn new(inner: S) -> Self {
        Coalescing {
            inner,
            buffer: Vec::new(),
            written: 0,
            yielding: None,
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Writes all of `buffer`.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buffer.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buffer.len() >= HOLD {
            ready!(self.drain(cx))?;
        }
        self.buffer.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buffer.is_empty() && !self.yielded {
            let yielding = self
                .yielding
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            ready!(yielding.as_mut().poll(cx));
            self.yielding = None;
            self.yielded = true;
        }
        ready!(self.drain(cx))?;
        self.yielded = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// Records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_before_a_flush_leave_in_one() {
        let mut c = Coalescing::new(Writes::default());
        c.write_all(b"one").await.unwrap();
        c.write_all(b"two").await.unwrap();
        assert!(c.inner.0.is_empty(), "nothing written before the flush");
        c.flush().await.unwrap();
        assert_eq!(c.inner.0, [b"onetwo".to_vec()]);
        // More than it holds is written without a flush.
        c.write_all(&vec![0; HOLD]).await.unwrap();
        c.write_all(b"x").await.unwrap();
        assert_eq!(c.inner.0.len(), 2);
    }
}
