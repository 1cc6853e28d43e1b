//! TCP set-up: connect with retries (the peer may start later), listen, accept.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;

use super::error::TransportError;
use super::framed::FramedChannel;
use super::limits::TransportConfig;

const RETRY_EVERY: Duration = Duration::from_millis(50);

impl FramedChannel<TcpStream> {
    /// Wraps a connected stream (sets `TCP_NODELAY`: frames are written whole).
    pub fn tcp(
        stream: TcpStream,
        session: u64,
        profile: NetworkProfile,
        config: TransportConfig,
    ) -> Result<Self, TransportError> {
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        FramedChannel::new(stream, session, profile, config)
    }
}

/// Connects to `addr`, retrying every 50 ms for up to `wait`.
pub fn connect(
    addr: &str,
    session: u64,
    profile: NetworkProfile,
    config: TransportConfig,
    wait: Duration,
) -> Result<FramedChannel<TcpStream>, TransportError> {
    FramedChannel::tcp(dial(addr, wait)?, session, profile, config)
}

/// Opens a TCP connection to `addr` (`TCP_NODELAY` set: frames are written whole),
/// retrying every 50 ms for up to `wait`: the peer may start later.
pub fn dial(addr: &str, wait: Duration) -> Result<TcpStream, TransportError> {
    let start = Instant::now();
    loop {
        let attempt = addr
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs.next().ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "address resolves to nothing",
                    )
                })
            })
            .and_then(|sa| {
                let left = wait.saturating_sub(start.elapsed());
                TcpStream::connect_timeout(&sa, left.max(RETRY_EVERY))
            });
        match attempt {
            Ok(stream) => {
                stream
                    .set_nodelay(true)
                    .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
                return Ok(stream);
            }
            Err(e) if start.elapsed() >= wait => {
                return Err(TransportError::Connect {
                    addr: addr.to_string(),
                    waited: start.elapsed(),
                    source: e,
                })
            }
            Err(_) => std::thread::sleep(RETRY_EVERY),
        }
    }
}

/// Binds a listener (`"127.0.0.1:0"` picks a free port; see `local_addr`).
pub fn listen(addr: &str) -> Result<TcpListener, TransportError> {
    TcpListener::bind(addr).map_err(|e| TransportError::io(format!("binding {addr}"), e))
}

/// Accepts one peer within `wait`.
pub fn accept(
    listener: &TcpListener,
    session: u64,
    profile: NetworkProfile,
    config: TransportConfig,
    wait: Duration,
) -> Result<FramedChannel<TcpStream>, TransportError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let io = |e| TransportError::io(format!("accepting on {addr}"), e);
    listener.set_nonblocking(true).map_err(io)?;
    let start = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() >= wait {
                    return Err(TransportError::AcceptTimeout { addr, waited: wait });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io(e)),
        }
    };
    stream.set_nonblocking(false).map_err(io)?;
    FramedChannel::tcp(stream, session, profile, config)
}

/// Accepts connections until `stop` returns true (checked every 20 ms while idle) and
/// hands each blocking stream to `serve`, which decides whether to spawn.
pub fn serve_connections(
    listener: &TcpListener,
    stop: impl Fn() -> bool,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) -> Result<(), TransportError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let io = |e| TransportError::io(format!("accepting on {addr}"), e);
    listener.set_nonblocking(true).map_err(io)?;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    while !stop() {
        match listener.accept() {
            // A stream that cannot be made blocking is dropped; the service goes on.
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                if stream.set_nonblocking(false).is_ok() {
                    serve(stream, peer);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            // Out of descriptors or memory, a connection reset before it was taken:
            // the service waits and goes on instead of stopping.
            Err(e) => {
                log::warn!("accepting on {addr}: {e}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    Ok(())
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A cap on connections served at once: a service takes a slot per connection and
/// refuses the connection when none is left.
#[derive(Clone)]
pub struct Slots {
    active: Arc<AtomicUsize>,
    max: usize,
}

/// A taken slot, given back when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Slots {
    pub fn new(max: usize) -> Self {
        Self {
            active: Arc::default(),
            max,
        }
    }

    pub fn take(&self) -> Option<Slot> {
        let prev = self.active.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(self.active.clone());
        (prev < self.max).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connections open per peer address.
type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One address's share of the connections, given back when dropped.
pub struct AddressSlot {
    counts: PerAddress,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Admission of a new connection: at most `per_address` at once from one address
/// (so one host cannot take every slot), served while slots last; past that, a few
/// more are taken only to be told "busy" (under TLS that needs a handshake, so a
/// thread), and the rest are dropped unanswered.
pub struct Gate {
    serving: Slots,
    refusing: Slots,
    per_address: usize,
    counts: PerAddress,
}

/// What to do with an admitted connection; the slots are held until dropped.
pub enum Admit {
    Serve(Slot, AddressSlot),
    Refuse(Slot, AddressSlot),
}

/// Connections at once that are only told "busy".
const REFUSALS: usize = 4;

impl Gate {
    pub fn new(max: usize, per_address: usize) -> Self {
        Self {
            serving: Slots::new(max),
            refusing: Slots::new(REFUSALS),
            per_address: per_address.max(1),
            counts: Arc::default(),
        }
    }

    /// None: drop the connection unanswered (its address holds its share, or even
    /// the "busy" slots are taken).
    pub fn admit(&self, ip: IpAddr) -> Option<Admit> {
        let mine = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(ip).or_default();
            if *n >= self.per_address {
                return None;
            }
            *n += 1;
            AddressSlot {
                counts: self.counts.clone(),
                ip,
            }
        };
        match self.serving.take() {
            Some(s) => Some(Admit::Serve(s, mine)),
            None => self.refusing.take().map(|s| Admit::Refuse(s, mine)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_slot() {
        let gate = Gate::new(4, 2);
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 2].into(), [127, 0, 0, 3].into());
        let held: Vec<_> = (0..2).map(|_| gate.admit(a).unwrap()).collect();
        assert!(gate.admit(a).is_none(), "a third from one address");
        let other = gate.admit(b).unwrap();
        assert!(matches!(other, Admit::Serve(..)));
        drop(held);
        assert!(gate.admit(a).is_some(), "slots come back when dropped");
    }
}
