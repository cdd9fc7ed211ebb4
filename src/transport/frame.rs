//! What travels on a stream: length-prefixed bincode frames, bounded in size.
//!
//! A frame is `u32 little-endian length || bincode(Wire)`. The length is checked against
//! [`MAX_FRAME`] before anything is allocated, and decoding is bounded by the same limit,
//! so a peer can neither make us allocate without bound nor crash us with garbage: a bad
//! frame is an error the reader logs, counts, and answers by dropping the connection.

use crate::protocol::{Index, Message, NodeId, Term};
use bincode::Options;
use serde::{Deserialize, Serialize};

/// The largest frame accepted or sent: a catch-up of `MAX_CATCHUP` entries with signed
/// requests fits with room to spare.
pub const MAX_FRAME: usize = 16 << 20;

/// Everything a stream carries: protocol messages, and the operator's status query.
// Nearly every frame is a protocol message; boxing it would cost an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Wire {
    Protocol(Message),
    StatusQuery,
    Status(Box<NodeReport>),
}

/// A node's account of itself, for `tangaroa status` and the cluster view. It is what the
/// node says, not a proof: a Byzantine node may lie here as anywhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub role: String,
    pub term: Term,
    pub leader: Option<(Term, NodeId)>,
    pub last_index: Index,
    pub commit: Index,
    /// Hash of the committed entry at `commit` (hex), to compare chains across nodes.
    pub commit_hash: String,
    pub lock: Option<(Term, Index)>,
    pub evidence: usize,
    /// Requests applied to the key-value store since this process started.
    pub applied: u64,
    pub counters: Counters,
}

/// Traffic counters of one node process since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub msgs_sent: u64,
    pub bytes_sent: u64,
    pub msgs_received: u64,
    /// Messages whose signatures or claimed sender did not check out.
    pub rejected: u64,
    /// Oversized or undecodable frames (each cost its sender the connection).
    pub bad_frames: u64,
    /// Messages dropped because a peer's bounded send queue was full.
    pub dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("frame body not complete within {0:?}")]
    Slow(std::time::Duration),
}

fn options() -> impl Options {
    bincode::options()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_FRAME as u64)
        .reject_trailing_bytes()
}

/// The whole frame, length prefix included, ready to write.
pub fn encode(w: &Wire) -> Result<Vec<u8>, FrameError> {
    let size = options()
        .serialized_size(w)
        .map_err(|_| FrameError::TooLarge(usize::MAX))? as usize;
    if size > MAX_FRAME {
        return Err(FrameError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(4 + size);
    buf.extend_from_slice(&(size as u32).to_le_bytes());
    options()
        .serialize_into(&mut buf, w)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    Ok(buf)
}

/// Checks a length prefix before the body is read.
pub fn body_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

pub fn decode(body: &[u8]) -> Result<Wire, FrameError> {
    options()
        .deserialize(body)
        .map_err(|e| FrameError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let w = Wire::Status(Box::new(NodeReport {
            id: 3,
            role: "Leader".into(),
            commit: 9,
            ..NodeReport::default()
        }));
        let frame = encode(&w).unwrap();
        let len = body_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode(&frame[4..]).unwrap(), w);
        // Oversized prefix: refused before reading the body.
        assert!(body_len(((MAX_FRAME + 1) as u32).to_le_bytes()).is_err());
        // Garbage, truncation and trailing bytes are errors, never panics.
        assert!(decode(&[0xff; 7]).is_err());
        assert!(decode(&frame[4..frame.len() - 1]).is_err());
        let mut long = frame[4..].to_vec();
        long.push(0);
        assert!(decode(&long).is_err());
        // A claimed collection length far beyond the frame fails without allocating it.
        let mut huge = vec![0u8; 4];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
