//! Setup, once per model and client: the server sends `E = W - B` for every masked
//! weight ([`crate::gates::keys`]), the client keeps it, and one synchronizing exchange
//! checks that both hold halves of one dealer generation before the online rounds are
//! counted.

use super::*;

/// A synchronizing exchange that ends setup: both sides check that their material halves
/// come from one dealer generation, then reset the round count so online rounds start
/// from zero on both ends.
pub fn sync(chan: &mut dyn Channel, pair: u64) -> Result<(), ExecError> {
    chan.send_u64s(MsgKind::Hello, &[pair])
        .map_err(ExecError::Setup)?;
    let theirs = chan
        .recv_u64s(MsgKind::Hello, 1)
        .map_err(ExecError::Setup)?[0];
    if theirs != pair {
        return Err(ExecError::Material(format!(
            "the two parties hold material of different dealer generations ({pair:016x} vs {theirs:016x})"
        )));
    }
    chan.reset_rounds();
    Ok(())
}

/// Server: sends `E` to the client (once per model and client).
pub fn server_setup(keys: &ServerKeys, chan: &mut dyn Channel) -> Result<(), ExecError> {
    send_setup(chan, &keys.setup_message())
}

/// Sends a setup message in frames of at most [`crate::online::comm::CHUNK`] bytes (one, empty,
/// for a plan without masked weights).
pub fn send_setup(chan: &mut dyn Channel, setup: &[u64]) -> Result<(), ExecError> {
    let per = crate::online::comm::CHUNK / 8;
    if setup.is_empty() {
        return chan
            .send_u64s(MsgKind::Setup, &[])
            .map_err(ExecError::Setup);
    }
    for c in setup.chunks(per) {
        chan.send_u64s(MsgKind::Setup, c)
            .map_err(ExecError::Setup)?;
    }
    Ok(())
}

/// Client: receives `E` (the raw message, to cache; see [`ClientKeys::from_message`]).
pub fn client_setup_message(
    plan: &SecurePlan,
    chan: &mut dyn Channel,
) -> Result<Vec<u64>, ExecError> {
    let (n, per) = (ClientKeys::setup_len(plan), crate::online::comm::CHUNK / 8);
    // Grown as frames arrive, not sized up front by the peer's plan.
    let mut setup = Vec::new();
    loop {
        let want = per.min(n - setup.len());
        setup.extend(
            chan.recv_u64s(MsgKind::Setup, want)
                .map_err(ExecError::Setup)?,
        );
        if setup.len() == n {
            return Ok(setup);
        }
    }
}

/// Client: receives `E`.
pub fn client_setup(plan: &SecurePlan, chan: &mut dyn Channel) -> Result<ClientKeys, ExecError> {
    Ok(ClientKeys::from_message(
        plan,
        &client_setup_message(plan, chan)?,
    ))
}
