//! TLS 1.3 (rustls) under a [`FramedChannel`](cryptpeft_private_eval::transport::FramedChannel).
//!
//! The channel reads on the caller's thread and writes from its shaping thread,
//! each with its own handle on the socket. rustls keeps one state per connection,
//! so both handles share it behind a mutex, held only while records are
//! encrypted or decrypted, never while a socket blocks: a reader waiting for the
//! peer does not stop the writer. Only the writer's handle writes to the
//! socket after the handshake, so records leave in the order rustls made them.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;
use rustls_pki_types::CertificateDer;

use cryptpeft_private_eval::transport::stream::{left, Stream};

/// Plaintext handed to rustls per `write` call: bounds the ciphertext buffered
/// at once, whatever the frame size.
const WRITE_CHUNK: usize = 64 << 10;
/// Ciphertext read from the socket at once.
const READ_CHUNK: usize = 32 << 10;

/// Bytes on the wire (records, handshake included), to price what TLS adds.
#[derive(Debug, Default)]
pub struct WireBytes {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl WireBytes {
    pub fn total(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) + self.received.load(Ordering::Relaxed)
    }
}

/// The socket during the handshake, counted, shaped and bounded by a deadline: the
/// handshake runs before the channel's shaping thread exists, so each flight (the
/// writes between two reads) pays the link's one-way delay here, and every write
/// its serialization; a peer trickling its flights is cut off at the deadline.
struct Counted<'a> {
    sock: &'a mut TcpStream,
    wire: &'a WireBytes,
    profile: &'a NetworkProfile,
    new_flight: bool,
    deadline: Instant,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(left(self.deadline)?))?;
        let n = self.sock.read(buf)?;
        self.wire.received.fetch_add(n as u64, Ordering::Relaxed);
        self.new_flight = true;
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut wait = self.profile.serialization_s(buf.len() as u64);
        if std::mem::take(&mut self.new_flight) {
            wait += self.profile.one_way_delay_s;
        }
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        self.sock.set_write_timeout(Some(left(self.deadline)?))?;
        let n = self.sock.write(buf)?;
        self.wire.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// One end of an established TLS connection over TCP.
pub struct TlsStream {
    sock: TcpStream,
    conn: Arc<Mutex<rustls::Connection>>,
    wire: Arc<WireBytes>,
    /// Ciphertext read from the socket that rustls has not taken yet.
    pending: Vec<u8>,
    /// Socket reads and writes fail past it (set per call by `read_by`/`write_by`).
    deadline: Option<Instant>,
}

impl TlsStream {
    /// Runs the handshake on `sock` (done by `deadline` or failed; shaped by
    /// `profile`) and returns the stream with the peer's end-entity certificate, if
    /// it presented one (rustls has verified it by then).
    pub fn handshake(
        mut sock: TcpStream,
        conn: impl Into<rustls::Connection>,
        profile: &NetworkProfile,
        deadline: Instant,
    ) -> io::Result<(Self, Option<CertificateDer<'static>>)> {
        let mut conn = conn.into();
        let wire = Arc::new(WireBytes::default());
        let mut io = Counted {
            sock: &mut sock,
            wire: &wire,
            profile,
            new_flight: true,
            deadline,
        };
        while conn.is_handshaking() {
            conn.complete_io(&mut io)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut io)?;
        }
        let peer = conn
            .peer_certificates()
            .and_then(|chain| chain.first().cloned());
        let stream = TlsStream {
            sock,
            conn: Arc::new(Mutex::new(conn)),
            wire,
            pending: Vec::new(),
            deadline: None,
        };
        Ok((stream, peer))
    }

    /// Bytes this connection has put on and taken off the wire so far.
    pub fn wire(&self) -> &WireBytes {
        &self.wire
    }

    fn lock(&self) -> MutexGuard<'_, rustls::Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes out whatever records rustls has queued (encrypted data, alerts).
    fn drain(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        {
            let mut c = self.lock();
            while c.wants_write() {
                c.write_tls(&mut out)?;
            }
        }
        match self.deadline {
            Some(d) => self.sock.write_all_by(&out, d)?,
            None => self.sock.write_all(&out)?,
        }
        self.wire
            .sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Hands buffered ciphertext to rustls and decrypts it; false if none was taken.
    fn feed(&mut self) -> io::Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let mut c = self.lock();
        let mut rd = &self.pending[..];
        let n = c.read_tls(&mut rd)?;
        c.process_new_packets().map_err(tls_error)?;
        drop(c);
        self.pending.drain(..n);
        Ok(n > 0)
    }
}

/// A TLS failure after the handshake, said so that a refused certificate reads as one:
/// under TLS 1.3 the server checks the client's certificate after the client's
/// side of the handshake is done, so the client learns of it on its first read.
fn tls_error(e: rustls::Error) -> io::Error {
    let msg = match &e {
        rustls::Error::AlertReceived(alert) => format!(
            "the peer ended the TLS session with alert {alert:?} (it may have refused our certificate)"
        ),
        _ => format!("TLS: {e}"),
    };
    io::Error::new(ErrorKind::InvalidData, msg)
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.lock().reader().read(buf) {
                // Ok(0) only after the peer's close_notify: a clean end.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // A TCP end without close_notify (UnexpectedEof): possibly truncated.
                Err(e) => return Err(e),
            }
            if self.feed()? {
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = match self.deadline {
                Some(d) => self.sock.read_by(&mut chunk, d)?,
                None => self.sock.read(&mut chunk)?,
            };
            self.wire.received.fetch_add(n as u64, Ordering::Relaxed);
            if n == 0 {
                // Tell rustls the transport ended; its reader then says how.
                let mut c = self.lock();
                c.read_tls(&mut &[][..])?;
                c.process_new_packets().map_err(tls_error)?;
                drop(c);
                return self.lock().reader().read(buf);
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(WRITE_CHUNK);
        let n = self.lock().writer().write(&buf[..take])?;
        self.drain()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().writer().flush()?;
        self.drain()?;
        self.sock.flush()
    }
}

impl Stream for TlsStream {
    /// A second handle on the same connection: one handle reads, one writes.
    fn try_clone(&self) -> io::Result<Self> {
        Ok(TlsStream {
            sock: self.sock.try_clone()?,
            conn: Arc::clone(&self.conn),
            wire: Arc::clone(&self.wire),
            pending: Vec::new(),
            deadline: None,
        })
    }
    fn peer_gone(&self) -> bool {
        cryptpeft_private_eval::transport::stream::hung_up(&self.sock)
    }
    /// Every socket read of this call, until a record decrypts, ends by `deadline`.
    fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.deadline = Some(deadline);
        let r = self.read(buf);
        self.deadline = None;
        r
    }
    fn write_by(&mut self, buf: &[u8], deadline: Instant) -> io::Result<usize> {
        self.deadline = Some(deadline);
        let r = self.write(buf);
        self.deadline = None;
        r
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(t)
    }
    /// Sends close_notify, so the peer can tell a clean end from a cut connection.
    fn shutdown_write(&self) -> io::Result<()> {
        let mut out = Vec::new();
        {
            let mut c = self.lock();
            c.send_close_notify();
            while c.wants_write() {
                c.write_tls(&mut out)?;
            }
        }
        (&self.sock).write_all(&out)?;
        self.wire
            .sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        self.sock.shutdown(Shutdown::Write)
    }
}

/// A connected socket, plain or under TLS: what the roles' channels run over.
pub enum Link {
    /// Plaintext TCP: only behind an explicit `--insecure`.
    Plain(TcpStream),
    Tls(TlsStream),
}

impl Link {
    /// Bytes on the wire including TLS overhead (None for plaintext, where they
    /// equal the channel's frame bytes).
    pub fn wire(&self) -> Option<&WireBytes> {
        match self {
            Link::Plain(_) => None,
            Link::Tls(s) => Some(s.wire()),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}

impl Stream for Link {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Link::Plain(s) => Link::Plain(s.try_clone()?),
            Link::Tls(s) => Link::Tls(Stream::try_clone(s)?),
        })
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.set_read_timeout(t),
            Link::Tls(s) => Stream::set_read_timeout(s, t),
        }
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.set_write_timeout(t),
            Link::Tls(s) => Stream::set_write_timeout(s, t),
        }
    }
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Link::Plain(s) => Stream::shutdown_write(s),
            Link::Tls(s) => s.shutdown_write(),
        }
    }
    fn wire_bytes(&self) -> Option<u64> {
        self.wire().map(WireBytes::total)
    }
    fn peer_gone(&self) -> bool {
        match self {
            Link::Plain(s) => Stream::peer_gone(s),
            Link::Tls(s) => Stream::peer_gone(s),
        }
    }
    fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read_by(buf, deadline),
            Link::Tls(s) => s.read_by(buf, deadline),
        }
    }
    fn write_by(&mut self, buf: &[u8], deadline: Instant) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write_by(buf, deadline),
            Link::Tls(s) => s.write_by(buf, deadline),
        }
    }
}
