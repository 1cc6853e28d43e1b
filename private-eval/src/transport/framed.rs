//! The one framed [`Channel`] implementation, generic over the byte stream.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;

use super::channel::Channel;
use super::error::TransportError;
use super::frame::{encode_frame, Header, MsgKind, HEADER_LEN};
use super::limits::{TransportConfig, MAX_ABORT_BYTES};
use super::shaping::ShapedWriter;
use super::stats::Stats;
use super::stream::Stream;

/// Length-prefixed frames over a socket, shaped by a [`NetworkProfile`].
///
/// * Sent bytes are counted when `send` queues the frame (they all reach the
///   wire unless an error is reported later); received bytes as they are read.
/// * After any error except refusing to send an oversized payload, the channel
///   is unusable: later calls return [`TransportError::Broken`] with the first
///   error's message (the stream may be mid-frame). A `Timeout` counts too: in
///   a protocol a silent peer is fatal.
/// * Dropping the channel delivers what is queued (honouring the shaping
///   delay) and then closes our direction; it can block for up to the
///   configured timeout if the peer is alive but not reading.
pub struct FramedChannel<S: Stream> {
    reader: S,
    writer: ShapedWriter,
    session: u64,
    config: TransportConfig,
    profile: NetworkProfile,
    stats: Stats,
    seen_depth: u32,
    max_sent: u32,
    max_received: u32,
    broken: Option<String>,
    /// Largest payload per kind (indexed by the kind's byte).
    limits: [u64; 16],
    /// The next frame must have arrived by then (the first request of an accepted
    /// connection).
    next_by: Option<Instant>,
}

impl<S: Stream> FramedChannel<S> {
    pub fn new(
        stream: S,
        session: u64,
        profile: NetworkProfile,
        config: TransportConfig,
    ) -> Result<Self, TransportError> {
        let setup = |e| TransportError::io("configuring the socket", e);
        stream
            .set_read_timeout(Some(config.read_timeout))
            .map_err(setup)?;
        stream
            .set_write_timeout(Some(config.read_timeout))
            .map_err(setup)?;
        let write_half = stream.try_clone().map_err(setup)?;
        let writer = ShapedWriter::spawn(write_half, profile.clone(), config.clone())?;
        let mut limits = [config.max_frame_bytes; 16];
        limits[MsgKind::Abort as usize] = MAX_ABORT_BYTES;
        Ok(FramedChannel {
            reader: stream,
            writer,
            session,
            config,
            profile,
            stats: Stats::default(),
            seen_depth: 0,
            max_sent: 0,
            max_received: 0,
            broken: None,
            limits,
            next_by: None,
        })
    }

    /// The next frame must arrive by `deadline`, however it trickles in.
    pub fn expect_by(&mut self, deadline: Instant) {
        self.next_by = Some(deadline);
    }

    pub fn profile(&self) -> &NetworkProfile {
        &self.profile
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Flushes, then closes our sending direction (the peer reads EOF).
    pub fn close(mut self) -> Result<(), TransportError> {
        let r = Channel::flush(&mut self);
        self.writer.close();
        r
    }

    fn usable(&self) -> Result<(), TransportError> {
        if let Some(e) = self.writer.take_failure() {
            return Err(e);
        }
        match &self.broken {
            Some(msg) => Err(TransportError::Broken(msg.clone())),
            None => Ok(()),
        }
    }

    fn mark<T>(&mut self, r: Result<T, TransportError>) -> Result<T, TransportError> {
        if let Err(e) = &r {
            if self.broken.is_none() {
                self.broken = Some(e.to_string());
            }
        }
        r
    }

    /// Fills `buf` by `deadline`.
    fn read_exact(
        &mut self,
        mut buf: &mut [u8],
        deadline: Instant,
        expected: MsgKind,
        what: &str,
    ) -> Result<(), TransportError> {
        let mut r = Ok(());
        while !buf.is_empty() {
            match self.reader.read_by(buf, deadline) {
                Ok(0) => {
                    r = Err(std::io::Error::from(ErrorKind::UnexpectedEof));
                    break;
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::Timeout {
                    timeout: self.config.read_timeout,
                    expected,
                },
                ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe => TransportError::PeerClosed {
                    during: format!("waiting for {what} a {expected} frame"),
                },
                _ => TransportError::io(format!("receiving {what} a {expected} frame"), e),
            }),
        }
    }

    fn recv_frame(&mut self, expected: MsgKind) -> Result<Vec<u8>, TransportError> {
        let start = Instant::now();
        let first = self.next_by.take();
        let cap = |d: Instant| first.map_or(d, |f| f.min(d));
        let header_by = cap(start + self.config.frame_budget(0, &self.profile));
        let mut h = [0u8; HEADER_LEN];
        self.read_exact(&mut h, header_by, expected, "the header of")?;
        self.stats.bytes_received += HEADER_LEN as u64;
        let header = Header::decode(&h);
        let size = u64::from(header.len);
        let kind = MsgKind::try_from(header.kind)
            .map_err(|byte| TransportError::UnknownKind { byte, expected })?;
        let limit = self.limits[kind as usize];
        if size > limit {
            return Err(TransportError::FrameTooLarge { size, limit });
        }
        // An abort concerns the connection: a peer that refuses before the session
        // switch (a busy server) still gets its reason through.
        if header.session != self.session && kind != MsgKind::Abort {
            return Err(TransportError::WrongSession {
                expected: self.session,
                got: header.session,
            });
        }
        let mut payload = vec![0u8; header.len as usize];
        let payload_by = cap(start + self.config.frame_budget(size, &self.profile));
        self.read_exact(
            &mut payload,
            payload_by,
            expected,
            &format!("the {size}-byte payload of"),
        )?;
        self.stats.bytes_received += size;
        self.stats.frames_received += 1;
        self.seen_depth = self.seen_depth.max(header.depth);
        self.max_received = self.max_received.max(header.depth);
        if kind != expected {
            return Err(match kind {
                MsgKind::Abort => TransportError::PeerAborted {
                    expected,
                    message: printable(&payload),
                },
                got => TransportError::UnexpectedKind { expected, got },
            });
        }
        Ok(payload)
    }

    fn send_frame(&mut self, kind: MsgKind, payload: &[u8]) -> Result<(), TransportError> {
        let size = payload.len() as u64;
        let limit = self.config.max_frame_bytes.min(u64::from(u32::MAX));
        if size > limit {
            return Err(TransportError::FrameTooLarge { size, limit });
        }
        let depth = self.seen_depth + 1;
        let header = Header {
            len: size as u32,
            kind: kind as u8,
            session: self.session,
            depth,
        };
        self.writer.send(kind, encode_frame(header, payload))?;
        self.stats.bytes_sent += HEADER_LEN as u64 + size;
        self.stats.frames_sent += 1;
        self.max_sent = self.max_sent.max(depth);
        Ok(())
    }
}

impl<S: Stream> Channel for FramedChannel<S> {
    fn send(&mut self, kind: MsgKind, payload: &[u8]) -> Result<(), TransportError> {
        let r = self.usable().and_then(|()| self.send_frame(kind, payload));
        // An oversized payload is the caller's error; the stream is still fine.
        if matches!(r, Err(TransportError::FrameTooLarge { .. })) {
            return r;
        }
        self.mark(r)
    }

    fn recv(&mut self, kind: MsgKind) -> Result<Vec<u8>, TransportError> {
        let r = self.usable().and_then(|()| self.recv_frame(kind));
        self.mark(r)
    }

    fn stats(&self) -> Stats {
        Stats {
            rounds: u64::from(self.max_sent.max(self.max_received)),
            ..self.stats
        }
    }

    fn reset_rounds(&mut self) {
        self.seen_depth = 0;
        self.max_sent = 0;
        self.max_received = 0;
    }

    fn session(&self) -> u64 {
        self.session
    }

    fn set_session(&mut self, id: u64) {
        self.session = id;
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        let r = self.usable().and_then(|()| self.writer.flush());
        self.mark(r)
    }

    fn wire_bytes(&self) -> Option<u64> {
        self.reader.wire_bytes()
    }

    fn peer_gone(&self) -> bool {
        self.reader.peer_gone()
    }

    fn limit(&mut self, kind: MsgKind, max_bytes: u64) {
        if kind != MsgKind::Abort {
            self.limits[kind as usize] = max_bytes.min(self.config.max_frame_bytes);
        }
    }
}

/// A peer's text made safe to log or show: control characters and non-ASCII
/// escaped, at most [`MAX_ABORT_BYTES`] of it, so an abort reason cannot forge log
/// lines or terminal escapes.
pub fn printable(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_ABORT_BYTES as usize)]);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c),
            _ => out.extend(c.escape_default()),
        }
    }
    out
}

/// Two connected channel ends over a Unix socket pair (real sockets, so reads
/// time out like TCP), session 0, shaped by `profile`; for tests and
/// single-process runs.
///
/// # Panics
/// If the OS cannot create a socket pair or a thread (descriptor or thread
/// exhaustion); [`try_memory_pair`] returns that as an error instead.
pub fn memory_pair(
    profile: NetworkProfile,
    timeout: Duration,
) -> (FramedChannel<UnixStream>, FramedChannel<UnixStream>) {
    try_memory_pair(profile, timeout).expect("creating an in-memory channel pair")
}

pub fn try_memory_pair(
    profile: NetworkProfile,
    timeout: Duration,
) -> Result<(FramedChannel<UnixStream>, FramedChannel<UnixStream>), TransportError> {
    let (a, b) = UnixStream::pair().map_err(|e| TransportError::io("creating a socket pair", e))?;
    let config = TransportConfig {
        read_timeout: timeout,
        ..TransportConfig::default()
    };
    Ok((
        FramedChannel::new(a, 0, profile.clone(), config.clone())?,
        FramedChannel::new(b, 0, profile, config)?,
    ))
}
