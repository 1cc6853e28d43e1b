//! Wire format: a 17-byte header (payload length u32 LE, kind u8, session id
//! u64 LE, depth u32 LE) followed by the payload.

use std::fmt;

/// Bytes of a frame header; a message of `p` payload bytes costs `HEADER_LEN + p`.
pub const HEADER_LEN: usize = 17;

/// What a frame carries. The byte on the wire is the discriminant.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgKind {
    Hello = 1,
    Spec = 2,
    Setup = 3,
    Open = 4,
    Reveal = 5,
    MaterialRequest = 6,
    Material = 7,
    /// Payload: a UTF-8 reason; the receiver reports it as `PeerAborted`.
    Abort = 8,
    /// The session id the client opened at the dealer.
    Session = 9,
}

impl MsgKind {
    pub const ALL: [MsgKind; 9] = [
        MsgKind::Hello,
        MsgKind::Spec,
        MsgKind::Setup,
        MsgKind::Open,
        MsgKind::Reveal,
        MsgKind::MaterialRequest,
        MsgKind::Material,
        MsgKind::Abort,
        MsgKind::Session,
    ];
}

impl TryFrom<u8> for MsgKind {
    type Error = u8;

    /// Rejects (returns) bytes that name no kind.
    fn try_from(b: u8) -> Result<Self, u8> {
        Ok(match b {
            1 => MsgKind::Hello,
            2 => MsgKind::Spec,
            3 => MsgKind::Setup,
            4 => MsgKind::Open,
            5 => MsgKind::Reveal,
            6 => MsgKind::MaterialRequest,
            7 => MsgKind::Material,
            8 => MsgKind::Abort,
            9 => MsgKind::Session,
            other => return Err(other),
        })
    }
}

impl fmt::Display for MsgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A decoded header. `kind` stays a raw byte so the receiver can report an
/// unknown one with context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub kind: u8,
    pub session: u64,
    pub depth: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&self.len.to_le_bytes());
        h[4] = self.kind;
        h[5..13].copy_from_slice(&self.session.to_le_bytes());
        h[13..17].copy_from_slice(&self.depth.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8; HEADER_LEN]) -> Header {
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        Header {
            len: u32_at(0),
            kind: h[4],
            session: u64::from_le_bytes(h[5..13].try_into().unwrap()),
            depth: u32_at(13),
        }
    }
}

/// Header and payload in one buffer, ready for a single write.
pub fn encode_frame(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(payload);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let h = Header {
            len: 0x0102_0304,
            kind: MsgKind::Open as u8,
            session: 0x1122_3344_5566_7788,
            depth: 9,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[0..4], &[4, 3, 2, 1]);
        assert_eq!(bytes[4], 4);
        assert_eq!(bytes[5], 0x88);
        assert_eq!(&bytes[13..17], &[9, 0, 0, 0]);
        assert_eq!(Header::decode(&bytes), h);
    }

    #[test]
    fn kind_bytes() {
        for b in 1..=9u8 {
            assert_eq!(MsgKind::try_from(b).unwrap() as u8, b);
        }
        assert_eq!(MsgKind::try_from(0), Err(0));
        assert_eq!(MsgKind::try_from(10), Err(10));
    }
}
