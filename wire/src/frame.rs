//! How events travel from the host's sender to the collector over a stream socket.
//!
//! A connection opens with the 5-byte [`HELLO`] (magic `STEL` + protocol version). Then frames:
//! `payload_len:u32-BE kind:u8 payload`. The collector answers on the same connection with
//! [`FrameKind::Ack`] frames: how many event frames of this connection, counted from its start,
//! are durable; the sender keeps every frame past that and resends it after a reconnect. A peer that sends a wrong hello, an unknown kind or an
//! empty frame has lost the framing and is disconnected; a frame longer than the receiver's limit is
//! skipped (its bytes are read and thrown away) and counted, so the stream stays usable.

use thiserror::Error;

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u8 = 2;
/// The first bytes a sender writes on a new connection.
pub const HELLO: [u8; 5] = [b'S', b'T', b'E', b'L', PROTOCOL_VERSION];
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 5;
/// Default largest frame payload a collector accepts (1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// One event, a MessagePack map (see [`crate::event`]).
    Event = 1,
    /// The sending host's counters (see [`crate::stats`]), every few seconds.
    Stats = 2,
    /// From the collector: event frames of this connection now durable (u64-BE, cumulative).
    Ack = 3,
}

/// Bytes of a whole ack frame.
pub const ACK_FRAME_LEN: usize = HEADER_LEN + 8;

/// The ack frame for `durable` event frames.
pub fn ack_frame(durable: u64) -> [u8; ACK_FRAME_LEN] {
    let mut f = [0u8; ACK_FRAME_LEN];
    f[..4].copy_from_slice(&8u32.to_be_bytes());
    f[4] = FrameKind::Ack as u8;
    f[HEADER_LEN..].copy_from_slice(&durable.to_be_bytes());
    f
}

/// Reads the count of an ack frame's payload.
pub fn read_ack(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.try_into().ok()?))
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub len: usize,
}

/// Why a byte stream is not (or no longer) a valid frame stream.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("connection did not start with the STEL hello (got {0:02x?})")]
    BadHello([u8; 5]),
    #[error("peer speaks protocol version {0}, this collector speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion(u8),
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    #[error("empty frame")]
    Empty,
}

/// Checks the hello a peer sent.
pub fn check_hello(hello: &[u8; 5]) -> Result<(), FrameError> {
    if hello[..4] != HELLO[..4] {
        return Err(FrameError::BadHello(*hello));
    }
    if hello[4] != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(hello[4]));
    }
    Ok(())
}

/// Decodes a frame header. The caller compares `len` with its own limit.
pub fn read_header(h: &[u8; HEADER_LEN]) -> Result<FrameHeader, FrameError> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let kind = match h[4] {
        1 => FrameKind::Event,
        2 => FrameKind::Stats,
        3 => FrameKind::Ack,
        k => return Err(FrameError::UnknownKind(k)),
    };
    if len == 0 {
        return Err(FrameError::Empty);
    }
    Ok(FrameHeader { kind, len })
}

/// Appends one frame (header and payload) to `out`.
pub fn write_frame(out: &mut Vec<u8>, kind: FrameKind, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Event, b"abc");
        let h: [u8; 5] = buf[..5].try_into().unwrap();
        assert_eq!(read_header(&h), Ok(FrameHeader { kind: FrameKind::Event, len: 3 }));
        assert_eq!(&buf[5..], b"abc");
        let ack = ack_frame(1 << 40);
        let h = read_header(ack[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!((h.kind, h.len), (FrameKind::Ack, 8));
        assert_eq!(read_ack(&ack[HEADER_LEN..]), Some(1 << 40));
        assert_eq!(read_ack(b"short"), None);
    }

    #[test]
    fn bad_streams_are_named() {
        assert_eq!(check_hello(&HELLO), Ok(()));
        assert_eq!(check_hello(b"GET /"), Err(FrameError::BadHello(*b"GET /")));
        assert_eq!(check_hello(b"STEL\x09"), Err(FrameError::UnsupportedVersion(9)));
        assert_eq!(read_header(&[0, 0, 0, 4, 0x99]), Err(FrameError::UnknownKind(0x99)));
        assert_eq!(read_header(&[0, 0, 0, 0, 1]), Err(FrameError::Empty));
    }
}
