//! Hostile peers, for the hostile-peer suite and `load-test`'s hostile phase: they
//! speak just enough of the protocol to misbehave (trickle a handshake or a request,
//! announce an oversized frame). They connect from a loopback address of their own
//! (127.0.0.2), so per-address caps tell them from honest clients on 127.0.0.1.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use cryptpeft_private_eval::transport::{Channel, MsgKind, Stats, TransportError, HEADER_LEN};

/// Where attackers connect from.
pub const ATTACKER_ADDRESS: &str = "127.0.0.2";

/// A TCP connection to `addr` from [`ATTACKER_ADDRESS`].
pub fn connect(addr: &str) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let from: SocketAddr = format!("{ATTACKER_ADDRESS}:0")
        .parse()
        .map_err(io::Error::other)?;
    s.bind(&from.into())?;
    let to: SocketAddr = addr.parse().map_err(io::Error::other)?;
    s.connect(&to.into())?;
    Ok(s.into())
}

/// An anonymous TLS session to `addr` trusting the CA in `ca` (a PEM file), with the
/// plaintext stream open to crafted frames.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub fn tls(addr: &str, ca: &Path) -> io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
        roots
            .add(c.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = ServerName::try_from(host).map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, connect(addr)?);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A frame header: payload length, kind, session 0, depth 1.
pub fn header(len: u32, kind: MsgKind) -> [u8; HEADER_LEN] {
    cryptpeft_private_eval::transport::frame::Header {
        len,
        kind: kind as u8,
        session: 0,
        depth: 1,
    }
    .encode()
}

/// A header and its payload.
pub fn frame(kind: MsgKind, payload: &[u8]) -> Vec<u8> {
    let mut f = header(payload.len() as u32, kind).to_vec();
    f.extend_from_slice(payload);
    f
}

/// Waits until the peer closes `sock` (EOF or reset) or `within` passes; returns how
/// long it took, None if it stayed open.
pub fn closed_within(sock: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    while t.elapsed() < within {
        match sock.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(t.elapsed()),
        }
    }
    None
}

/// The attacks a hostile phase runs continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// One byte of a TLS ClientHello every `every`.
    SlowHandshake,
    /// A complete handshake, then the first frame a byte every `every`.
    SlowRequest(MsgKind),
    /// A complete handshake, then a frame announcing 1 GiB.
    Oversized(MsgKind),
}

/// One attacker: repeats `attack` on `addr` until `stop`, counting connections the
/// peer cut off in `cut`.
pub fn run(
    attack: Attack,
    addr: &str,
    ca: &Path,
    every: Duration,
    stop: &AtomicBool,
    cut: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        let outcome = match attack {
            Attack::SlowHandshake => connect(addr)
                .ok()
                .map(|s| trickle(s, &[0x16; 64], every, stop)),
            Attack::SlowRequest(kind) => tls(addr, ca)
                .ok()
                .map(|t| trickle(t, &header(2, kind), every, stop)),
            Attack::Oversized(kind) => tls(addr, ca).ok().map(|mut t| {
                let _ = t.write_all(&header(1 << 30, kind));
                let _ = t.write_all(&[0u8; 4096]);
                let _ = t.flush();
                trickle(t, &[], every, stop)
            }),
        };
        if outcome == Some(true) {
            cut.fetch_add(1, Ordering::Relaxed);
        }
        // Refused at connect (a full address share), or cut off: again a little later.
        std::thread::sleep(every / 4);
    }
}

/// Writes `bytes` one at a time, `every` apart, then waits; true once the peer has
/// closed the connection.
fn trickle(mut s: impl Write + Peer, bytes: &[u8], every: Duration, stop: &AtomicBool) -> bool {
    for b in bytes {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if s.write_all(&[*b]).and_then(|()| s.flush()).is_err() || s.gone(every) {
            return true;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        if s.gone(every) {
            return true;
        }
    }
    false
}

/// The raw socket under an attacker's stream.
trait Peer {
    /// Whether the peer closed the connection, waiting up to `wait` to see.
    fn gone(&mut self, wait: Duration) -> bool;
}

impl Peer for TcpStream {
    fn gone(&mut self, wait: Duration) -> bool {
        closed_within(self, wait).is_some()
    }
}

impl Peer for Tls {
    fn gone(&mut self, wait: Duration) -> bool {
        closed_within(&mut self.sock, wait).is_some()
    }
}

/// A client's channel that disappears after a number of operations: the connection is
/// dropped without a word, as by a client that crashes or walks away (`load-test`'s
/// abandoning clients).
pub struct Abandon<C: Channel> {
    inner: Option<C>,
    left: usize,
    budget: usize,
}

impl<C: Channel> Abandon<C> {
    /// `inner`, dropped at its operation number `left` (counting from 0).
    pub fn after(inner: C, left: usize) -> Self {
        Abandon {
            inner: Some(inner),
            left,
            budget: left,
        }
    }

    /// Operations made so far.
    pub fn used(&self) -> usize {
        self.budget - self.left
    }

    fn tick(&mut self) -> Result<&mut C, TransportError> {
        if self.left == 0 {
            self.inner = None;
        }
        self.left = self.left.saturating_sub(1);
        self.inner
            .as_mut()
            .ok_or_else(|| TransportError::Broken("abandoned by the client".into()))
    }
}

impl<C: Channel> Channel for Abandon<C> {
    fn send(&mut self, kind: MsgKind, payload: &[u8]) -> Result<(), TransportError> {
        self.tick()?.send(kind, payload)
    }
    fn recv(&mut self, kind: MsgKind) -> Result<Vec<u8>, TransportError> {
        self.tick()?.recv(kind)
    }
    fn stats(&self) -> Stats {
        self.inner.as_ref().map_or_else(Stats::default, C::stats)
    }
    fn reset_rounds(&mut self) {
        if let Some(c) = &mut self.inner {
            c.reset_rounds()
        }
    }
    fn session(&self) -> u64 {
        self.inner.as_ref().map_or(0, C::session)
    }
    fn set_session(&mut self, id: u64) {
        if let Some(c) = &mut self.inner {
            c.set_session(id)
        }
    }
    fn flush(&mut self) -> Result<(), TransportError> {
        self.tick()?.flush()
    }
    fn limit(&mut self, kind: MsgKind, max_bytes: u64) {
        if let Some(c) = &mut self.inner {
            c.limit(kind, max_bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptpeft_private_eval::transport::memory_pair;
    use cryptpeft_types::NetworkProfile;

    #[test]
    fn an_abandoning_channel_breaks_at_its_operation_and_counts_what_it_did() {
        let (c, mut s) = memory_pair(NetworkProfile::none(), Duration::from_secs(1));
        let mut a = Abandon::after(c, 2);
        a.send(MsgKind::Open, &[1]).unwrap();
        a.send(MsgKind::Open, &[2]).unwrap();
        assert_eq!(a.used(), 2);
        let e = a.send(MsgKind::Open, &[3]).unwrap_err();
        assert!(e.to_string().contains("abandoned"), "{e}");
        // The peer got the two frames, then finds the link gone.
        assert_eq!(s.recv(MsgKind::Open).unwrap(), vec![1]);
        assert_eq!(s.recv(MsgKind::Open).unwrap(), vec![2]);
        assert!(s.recv(MsgKind::Open).is_err());
    }
}
