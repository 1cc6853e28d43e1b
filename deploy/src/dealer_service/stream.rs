//! A session too large to hold: the client's request generates it step by step,
//! sending its own half as it goes and pushing the server's into a bounded pipe that
//! the server's request drains.

use super::*;

/// Chunks of a streamed half the dealer holds for a server not yet reading (64 MiB).
pub(super) const PIPE_CHUNKS: usize = 16;

pub(super) fn send_half(chan: &mut impl Channel, half: &[u8]) -> Result<(), RoleError> {
    for c in half.chunks(comm::CHUNK) {
        chan.send(MsgKind::Material, c)
            .map_err(ctx("dealer sending material"))?;
    }
    chan.flush().map_err(ctx("dealer flushing"))
}

/// Generates a streamed session: each step's halves leave as soon as they exist, so
/// memory holds one step and the pipe. Fails if the server leaves its half untaken for
/// `ttl`.
pub(super) fn stream_session(
    chan: &mut impl Channel,
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    pipe: SyncSender<Vec<u8>>,
    ttl: Duration,
) -> Result<(), RoleError> {
    let push = |bytes: Vec<u8>| -> Result<(), RoleError> {
        for c in bytes.chunks(comm::CHUNK) {
            let mut c = c.to_vec();
            let since = Instant::now();
            loop {
                match pipe.try_send(c) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) if since.elapsed() < ttl => {
                        c = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => {
                        return Err(RoleError::Protocol(format!(
                            "session {session:016x}: the server stopped taking its material"
                        )))
                    }
                }
            }
        }
        Ok(())
    };
    let mut g = dealer::Generator::new(plan, masks, session, &mut Prg::new(Prg::os_seed()));
    send_half(chan, &g.header(Party::Client))?;
    push(g.header(Party::Server))?;
    while let Some([mut m0, mut m1]) = g.next_step() {
        let mut b = Vec::new();
        write_step(&mut m0, Party::Client, &mut b);
        drop(m0);
        send_half(chan, &b)?;
        let mut b = Vec::new();
        write_step(&mut m1, Party::Server, &mut b);
        drop(m1);
        push(b)?;
    }
    Ok(())
}

/// Hands party 1 of a streamed session what the generator pushes; a session whose
/// generation stopped early is an error the server sees, not a short half.
pub(super) fn forward(
    chan: &mut impl Channel,
    pipe: Receiver<Vec<u8>>,
    bytes: u64,
) -> Result<(), RoleError> {
    let mut sent = 0;
    loop {
        match pipe.recv_timeout(GENERATION_WAIT) {
            Ok(c) => {
                sent += c.len() as u64;
                send_half(chan, &c)?;
            }
            Err(RecvTimeoutError::Disconnected) if sent == bytes => return Ok(()),
            Err(_) => {
                return Err(RoleError::Protocol(format!(
                    "material generation stopped after {sent} of {bytes} bytes (the client's session ended)"
                )))
            }
        }
    }
}
