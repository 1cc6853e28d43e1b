//! Transport errors: each says what was expected and what happened instead.

use std::time::Duration;

use super::frame::MsgKind;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("peer closed the connection while we were {during}")]
    PeerClosed { during: String },
    #[error("timed out after {timeout:?} waiting for a {expected:?} frame from the peer")]
    Timeout {
        timeout: Duration,
        expected: MsgKind,
    },
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: u64, limit: u64 },
    #[error("unknown message kind byte {byte} in a frame header (expected a {expected:?} frame)")]
    UnknownKind { byte: u8, expected: MsgKind },
    #[error("expected a {expected:?} frame, got a {got:?} frame")]
    UnexpectedKind { expected: MsgKind, got: MsgKind },
    #[error("peer aborted the protocol while we were waiting for a {expected:?} frame: {message}")]
    PeerAborted { expected: MsgKind, message: String },
    #[error("frame belongs to session {got:#x}, this channel is session {expected:#x}")]
    WrongSession { expected: u64, got: u64 },
    #[error("{kind:?} payload has {got} bytes, expected {expected} u64 values ({} bytes)", expected * 8)]
    WrongLength {
        kind: MsgKind,
        expected: usize,
        got: usize,
    },
    #[error("could not connect to {addr} within {waited:?}: {source}")]
    Connect {
        addr: String,
        waited: Duration,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no peer connected to {addr} within {waited:?}")]
    AcceptTimeout { addr: String, waited: Duration },
    #[error("channel unusable after an earlier error: {0}")]
    Broken(String),
}

impl TransportError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TransportError::Io {
            context: context.into(),
            source,
        }
    }
}
