//! Network shaping inside the transport (this machine's kernel has no netem).
//!
//! Every send goes through a per-channel writer thread with a FIFO queue, like
//! a kernel socket buffer: `send` returns at once. A frame of `b` bytes queued
//! at `now` is written to the socket at
//!
//! ```text
//! start   = max(now, link_free_at)
//! link_free_at = start + b*8/bandwidth      (the link is busy serializing)
//! release = link_free_at + one_way_delay    (propagation)
//! ```
//!
//! so back-to-back frames are paced at the bandwidth, each arrives one delay
//! after its last bit left, and both parties' sends overlap as on a full-duplex
//! link. Release times only grow, so FIFO order is release order.
//!
//! The thread is also used with profile `none` (release = now): writing
//! directly from `send` could deadlock when both parties send large messages at
//! once and neither is reading yet.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;

use super::error::TransportError;
use super::frame::MsgKind;
use super::limits::TransportConfig;
use super::stream::Stream;

/// Computes release times from the profile.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    profile: NetworkProfile,
    link_free_at: Instant,
}

impl Pacer {
    pub(crate) fn new(profile: NetworkProfile) -> Self {
        Pacer {
            profile,
            link_free_at: Instant::now(),
        }
    }

    /// When a frame of `bytes` queued at `now` reaches the peer's socket.
    pub(crate) fn release(&mut self, bytes: usize, now: Instant) -> Instant {
        let start = now.max(self.link_free_at);
        let ser = Duration::from_secs_f64(self.profile.serialization_s(bytes as u64));
        self.link_free_at = start + ser;
        self.link_free_at + self.profile.delay()
    }
}

enum Job {
    Frame {
        release: Instant,
        kind: MsgKind,
        bytes: Vec<u8>,
    },
    Flush(mpsc::Sender<()>),
}

/// The sending half: a queue into the writer thread.
pub(crate) struct ShapedWriter {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
    /// The first error the writer thread hit; it stops writing after it.
    failure: Arc<Mutex<Option<TransportError>>>,
    pacer: Pacer,
}

impl ShapedWriter {
    pub(crate) fn spawn<S: Stream>(
        stream: S,
        profile: NetworkProfile,
        config: TransportConfig,
    ) -> Result<Self, TransportError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let link = profile.clone();
        let failure = Arc::new(Mutex::new(None));
        let fail = Arc::clone(&failure);
        let handle = std::thread::Builder::new()
            .name("transport-writer".into())
            .spawn(move || writer_loop(stream, rx, fail, config, link))
            .map_err(|e| TransportError::io("starting the transport writer thread", e))?;
        Ok(ShapedWriter {
            tx: Some(tx),
            handle: Some(handle),
            failure,
            pacer: Pacer::new(profile),
        })
    }

    /// The writer thread's error, if it failed since the last call.
    pub(crate) fn take_failure(&self) -> Option<TransportError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Queues a whole encoded frame; returns at once.
    pub(crate) fn send(&mut self, kind: MsgKind, bytes: Vec<u8>) -> Result<(), TransportError> {
        if let Some(e) = self.take_failure() {
            return Err(e);
        }
        let release = self.pacer.release(bytes.len(), Instant::now());
        let job = Job::Frame {
            release,
            kind,
            bytes,
        };
        self.queue(job)
    }

    /// Waits until every queued frame has been written to the socket (which,
    /// under shaping, includes waiting out its delay).
    pub(crate) fn flush(&mut self) -> Result<(), TransportError> {
        let (ack_tx, ack_rx) = mpsc::channel();
        self.queue(Job::Flush(ack_tx))?;
        // The thread drops the ack sender without answering only when it failed.
        let _ = ack_rx.recv();
        match self.take_failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn queue(&mut self, job: Job) -> Result<(), TransportError> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| TransportError::Broken("channel already closed".into()))?;
        if tx.send(job).is_err() {
            // The thread has exited, which it only does after a failure.
            return Err(self.take_failure().unwrap_or_else(|| {
                TransportError::Broken("transport writer thread exited".into())
            }));
        }
        Ok(())
    }

    /// Closes the queue and waits for the thread to write what is queued.
    pub(crate) fn close(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for ShapedWriter {
    /// Delivers pending frames: a party that sends its last message and drops
    /// the channel must still get it to the peer.
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes each frame when due, within its [`TransportConfig::frame_budget`]: a peer
/// that stops reading fails the channel instead of holding this thread.
fn writer_loop<S: Stream>(
    mut stream: S,
    rx: mpsc::Receiver<Job>,
    failure: Arc<Mutex<Option<TransportError>>>,
    config: TransportConfig,
    profile: NetworkProfile,
) {
    let fail = |e: TransportError| {
        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    };
    precise_timers();
    while let Ok(job) = rx.recv() {
        match job {
            Job::Frame {
                release,
                kind,
                bytes,
            } => {
                wait_until(release);
                let budget = config.frame_budget(bytes.len() as u64, &profile);
                if let Err(e) = stream.write_all_by(&bytes, Instant::now() + budget) {
                    fail(write_error(kind, bytes.len(), budget, e));
                    return;
                }
            }
            Job::Flush(ack) => {
                // Frames leave whole from `write_all_by`; this flush has only the
                // socket's own to do, within the plain timeout.
                let _ = stream.set_write_timeout(Some(config.read_timeout));
                if let Err(e) = stream.flush() {
                    fail(TransportError::io("flushing the socket", e));
                    return;
                }
                let _ = ack.send(());
            }
        }
    }
    let _ = stream.set_write_timeout(Some(config.read_timeout));
    let _ = stream.flush();
    let _ = stream.shutdown_write();
}

/// Sleeps until `t`. The writer thread asks for 1 ns timer slack (see
/// [`precise_timers`]), so the overshoot is microseconds, not the default
/// 50-100 us that would add 10-20% to every 0.5 ms LAN delay. (A yield or spin
/// loop is worse: on a loaded 2-core machine it hands whole time slices away.)
fn wait_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Linux: sets this thread's timer slack to 1 ns.
fn precise_timers() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects
    // the calling thread; failure just leaves the default slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

fn write_error(kind: MsgKind, bytes: usize, budget: Duration, e: std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected => {
            TransportError::PeerClosed {
                during: format!("sending a {kind} frame"),
            }
        }
        WouldBlock | TimedOut => TransportError::io(
            format!(
                "sending a {kind} frame of {bytes} bytes (the peer did not take it within {:.1} s)",
                budget.as_secs_f64()
            ),
            e,
        ),
        _ => TransportError::io(format!("sending a {kind} frame"), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_serializes_back_to_back_frames() {
        let profile = NetworkProfile {
            name: "t".into(),
            bandwidth_bps: Some(8e6), // 1 byte per microsecond
            one_way_delay_s: 0.01,
        };
        let mut p = Pacer::new(profile);
        let t0 = Instant::now();
        let r1 = p.release(1000, t0);
        let r2 = p.release(1000, t0);
        assert_eq!(r1 - t0, Duration::from_micros(11_000));
        assert_eq!(r2 - t0, Duration::from_micros(12_000));
        // An idle link starts afresh.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(p.release(0, later) - later, Duration::from_millis(10));
    }
}
