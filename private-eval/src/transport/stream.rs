//! The byte streams a [`FramedChannel`](super::FramedChannel) runs over.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A full-duplex socket: one handle reads, a clone writes from the writer
/// thread, both with OS-level timeouts so no call blocks forever.
pub trait Stream: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// Tells the peer no more bytes follow (it then reads EOF).
    fn shutdown_write(&self) -> io::Result<()>;
    /// Bytes on the wire so far, where they differ from the frames' (TLS records).
    fn wire_bytes(&self) -> Option<u64> {
        None
    }
    /// Whether the peer has closed its end or the connection broke, without reading
    /// (for work done on a peer's behalf while it should be waiting).
    fn peer_gone(&self) -> bool {
        false
    }
    /// Reads what is there, failing with `TimedOut` at `deadline`: a peer that
    /// trickles bytes cannot stretch a read past it.
    fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.set_read_timeout(Some(left(deadline)?))?;
        self.read(buf)
    }
    /// Writes what the socket takes, failing with `TimedOut` at `deadline`: a peer
    /// that reads slowly cannot hold the writer past it.
    fn write_by(&mut self, buf: &[u8], deadline: Instant) -> io::Result<usize> {
        self.set_write_timeout(Some(left(deadline)?))?;
        self.write(buf)
    }
    /// [`write_by`](Stream::write_by) until all of `buf` is written.
    fn write_all_by(&mut self, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_by(buf, deadline) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Linux's `POLLRDHUP`: the peer shut its sending side (bytes it sent before, a TLS
/// close_notify say, may still be unread), or the socket hung up or failed.
pub fn hung_up(sock: &impl std::os::fd::AsRawFd) -> bool {
    let mut fd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor this stream owns; a zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Time left until `deadline`, or `TimedOut` if none (a zero socket timeout would
/// mean "none").
pub fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    match left.is_zero() {
        true => Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed")),
        false => Ok(left),
    }
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn peer_gone(&self) -> bool {
        hung_up(self)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Stream for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn peer_gone(&self) -> bool {
        hung_up(self)
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}
