//! Byte relay between a client and an origin, with large buffers and an idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts bytes moved through a stream, so a watchdog can tell an idle relay from a busy one.
struct Activity<'a, T> {
    inner: T,
    moved: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.moved.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.moved.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.moved.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Waits until `moved` has not changed for `idle`.
pub(crate) async fn idle_watch(moved: &AtomicU64, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(5));
    let mut last = moved.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = moved.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= idle {
            return;
        }
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayEnd {
    /// Both sides finished (EOF both ways) or one side failed.
    Done,
    /// Nothing moved in either direction for the idle timeout.
    Idle,
}

/// Relays bytes both ways until both sides are done, one fails, or nothing moves for `idle`.
pub(crate) async fn relay<A, B>(a: A, b: &mut B, idle: Duration, buf: usize) -> RelayEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let moved = AtomicU64::new(0);
    let mut a = Activity {
        inner: a,
        moved: &moved,
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(&mut a, b, buf, buf) => RelayEnd::Done,
        () = idle_watch(&moved, idle) => RelayEnd::Idle,
    }
}

/// Relays two TCP sockets: on Linux with splice(2) through a pipe per direction (bytes never
/// enter user space), elsewhere with [`relay`]. `prefix` (bytes the client already sent) goes
/// to `b` first.
pub(crate) async fn relay_tcp(
    mut a: tokio::net::TcpStream,
    mut b: tokio::net::TcpStream,
    prefix: &[u8],
    idle: Duration,
    buf: usize,
) -> RelayEnd {
    use tokio::io::AsyncWriteExt;
    if !prefix.is_empty() && b.write_all(prefix).await.is_err() {
        return RelayEnd::Done;
    }
    #[cfg(target_os = "linux")]
    {
        if let Some(end) = splice::relay(&mut a, &mut b, idle).await {
            return end;
        }
    }
    relay(a, &mut b, idle, buf).await
}

#[cfg(target_os = "linux")]
pub(crate) mod splice {
    use super::{RelayEnd, idle_watch};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{ReadHalf, WriteHalf};

    /// Bytes asked of one splice call (the pipe is enlarged to this when the system allows).
    pub(crate) const CHUNK: usize = 1 << 20;

    /// A pipe used to splice one direction of a connection; always drained before reuse.
    pub(crate) struct Pipe {
        r: OwnedFd,
        w: OwnedFd,
    }

    pub(crate) fn pipe() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe means fewer calls for bulk transfers; the default (64 KiB) still works.
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok(Pipe { r, w })
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: plain descriptors and null offsets (both ends are streams or pipes).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Bytes read by plain `read` before switching to splice.
    const SMALL: usize = 16 * 1024;

    fn shutdown_write(to: &TcpStream) {
        // SAFETY: shutdown on a socket descriptor `to` keeps open.
        unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
    }

    /// Moves up to `len` bytes from the socket `from` into the (empty) pipe, waiting until some
    /// are there; `Ok(0)` at end of stream.
    pub(crate) async fn fill(pipe: &Pipe, from: &TcpStream, len: usize) -> io::Result<usize> {
        from.async_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.w.as_raw_fd(), len)
        })
        .await
    }

    /// Moves `n` bytes from the pipe to `to`.
    pub(crate) async fn drain(pipe: &Pipe, to: &TcpStream, n: usize) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            left -= to
                .async_io(Interest::WRITABLE, || {
                    splice(pipe.r.as_raw_fd(), to.as_raw_fd(), left)
                })
                .await?;
        }
        Ok(())
    }

    /// One direction until EOF (then the write side of `to` is shut down) or an error.
    ///
    /// Small messages (requests, responses, interactive traffic) take one `read` and one
    /// `write`: tokio knows a short read drained the socket, so no extra call is made to learn
    /// it. A read that fills the buffer starts a bulk transfer: from then on bytes are spliced
    /// (never copied into user space) until a splice comes back short.
    async fn one_way(
        mut from: ReadHalf<'_>,
        mut to: WriteHalf<'_>,
        pipe: &Pipe,
        moved: &AtomicU64,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; SMALL];
        let mut bulk = false;
        loop {
            let n = if bulk {
                let n = fill(pipe, from.as_ref(), CHUNK).await?;
                if n > 0 {
                    drain(pipe, to.as_ref(), n).await?;
                }
                bulk = n >= SMALL;
                n
            } else {
                let n = from.read(&mut buf).await?;
                if n > 0 {
                    to.write_all(&buf[..n]).await?;
                }
                bulk = n == buf.len();
                n
            };
            if n == 0 {
                shutdown_write(to.as_ref());
                return Ok(());
            }
            moved.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// `None` when pipes cannot be had (the caller falls back to copying).
    pub(super) async fn relay(
        a: &mut TcpStream,
        b: &mut TcpStream,
        idle: Duration,
    ) -> Option<RelayEnd> {
        let (up, down) = match (pipe(), pipe()) {
            (Ok(u), Ok(d)) => (u, d),
            _ => return None,
        };
        let moved = AtomicU64::new(0);
        let (ar, aw) = a.split();
        let (br, bw) = b.split();
        let both = async {
            let _ = tokio::try_join!(one_way(ar, bw, &up, &moved), one_way(br, aw, &down, &moved));
        };
        Some(tokio::select! {
            () = both => RelayEnd::Done,
            () = idle_watch(&moved, idle) => RelayEnd::Idle,
        })
    }
}
