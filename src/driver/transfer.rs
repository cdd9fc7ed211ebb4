//! State transfer's mechanics (PROTOCOL.md, "Checkpoints, compaction and state transfer"):
//! cutting a stored snapshot into `Snapshot` chunks, and assembling the chunks a peer
//! streams into a state machine whose digest is the certified one. What to send and what
//! to accept is the core's (`Output::SendSnapshot`, `Node::snapshot_wanted`); this only
//! moves bytes, within bounds: one incoming snapshot at a time, decoded as it arrives
//! (`kv::SnapshotBuilder` refuses a stream over its size or chunk bound).

use crate::kv::{Kv, SnapshotBuilder, SnapshotError};
use crate::protocol::{CheckpointCert, Message, NodeId, SnapshotChunk, MAX_SNAPSHOT_CHUNK_BYTES};

/// Ticks without a chunk after which an incoming snapshot may be replaced by another
/// sender's: a liar that starts a stream and stalls cannot hold the slot.
pub const STALLED_TICKS: u64 = 50;
/// Ticks a stream may hold the slot in all, however steadily it drips: a liar sending one
/// real chunk just inside `STALLED_TICKS` cannot hold it either. (At 10 ms ticks, 10 s:
/// far more than a 1 GiB state needs over a LAN.)
pub const STREAM_TICKS: u64 = 1000;

/// The `Snapshot` messages that carry `state` certified by `cert`, in order.
pub fn chunks(from: NodeId, cert: &CheckpointCert, state: &[u8]) -> Vec<Message> {
    let pieces: Vec<&[u8]> = if state.is_empty() {
        vec![&[]]
    } else {
        state.chunks(MAX_SNAPSHOT_CHUNK_BYTES).collect()
    };
    let last = pieces.len() - 1;
    let mut offset = 0u64;
    pieces
        .into_iter()
        .enumerate()
        .map(|(k, piece)| {
            let m = Message::Snapshot(SnapshotChunk {
                from,
                cert: cert.clone(),
                offset,
                chunk: piece.to_vec(),
                last: k == last,
            });
            offset += piece.len() as u64;
            m
        })
        .collect()
}

/// A snapshot being received.
pub struct Incoming {
    pub from: NodeId,
    pub cert: CheckpointCert,
    builder: SnapshotBuilder,
    /// The encoding as received, to be stored once it proves right.
    bytes: Vec<u8>,
    next_offset: u64,
    /// The driver's tick count at the last chunk taken, and at the first.
    last_progress: u64,
    started: u64,
}

/// What one chunk did.
pub enum Taken {
    /// Nothing to act on yet (or a chunk out of place, dropped).
    Pending,
    /// The stream is malformed, oversized or its digest is not the certified one.
    Bad(SnapshotError),
    /// The whole snapshot, its digest the certified one.
    Complete {
        cert: CheckpointCert,
        kv: Kv,
        bytes: Vec<u8>,
    },
}

impl Incoming {
    /// Whether a stream starting now (offset 0) from `from` at `index` takes the slot
    /// held by `current`: a higher snapshot, the same sender starting again (it lost a
    /// chunk), or a stalled one.
    /// The leader we follow takes it too (Raft's InstallSnapshot comes from the leader,
    /// and an honest leader's stream must not wait behind a liar's).
    pub fn yields_to(
        current: &Option<Incoming>,
        from: NodeId,
        index: u64,
        now: u64,
        from_leader: bool,
    ) -> bool {
        match current {
            None => true,
            Some(c) => {
                index > c.cert.index()
                    || c.from == from
                    || from_leader
                    || now.saturating_sub(c.last_progress) >= STALLED_TICKS
                    || now.saturating_sub(c.started) >= STREAM_TICKS
            }
        }
    }

    pub fn start(from: NodeId, cert: CheckpointCert, now: u64) -> Incoming {
        Incoming {
            from,
            cert,
            builder: SnapshotBuilder::new(),
            bytes: Vec::new(),
            next_offset: 0,
            last_progress: now,
            started: now,
        }
    }

    /// Whether `c` is the next chunk of this stream.
    pub fn is_next(&self, from: NodeId, c: &SnapshotChunk) -> bool {
        from == self.from && c.cert == self.cert && c.offset == self.next_offset
    }

    /// Takes the next chunk (`is_next` holds); on the last one, checks the digest
    /// (`check_digest` is `Rules::snapshot_digest`, off only in the planted-bug test).
    pub fn take(
        mut self,
        c: SnapshotChunk,
        now: u64,
        check_digest: bool,
    ) -> (Option<Incoming>, Taken) {
        if let Err(e) = self.builder.push(&c.chunk) {
            return (None, Taken::Bad(e));
        }
        self.next_offset += c.chunk.len() as u64;
        self.bytes.extend_from_slice(&c.chunk);
        self.last_progress = now;
        if !c.last {
            return (Some(self), Taken::Pending);
        }
        let digest = self
            .cert
            .first()
            .expect("a wanted certificate is not empty")
            .state_digest;
        let built = if check_digest {
            self.builder.finish(&digest)
        } else {
            self.builder.finish_unchecked().map(|(kv, _)| kv)
        };
        match built {
            Ok(kv) => (
                None,
                Taken::Complete {
                    cert: self.cert,
                    kv,
                    bytes: self.bytes,
                },
            ),
            Err(e) => (None, Taken::Bad(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that drips one chunk just inside `STALLED_TICKS` still loses the slot to
    /// another sender once it has held it `STREAM_TICKS`; the leader takes it at once.
    #[test]
    fn a_dripping_stream_cannot_hold_the_slot() {
        let cert = CheckpointCert {
            checkpoints: vec![],
        };
        let mut current = Some(Incoming::start(3, cert, 0));
        let drip = |c: &mut Option<Incoming>, now: u64| {
            c.as_mut().expect("a stream").last_progress = now;
            Incoming::yields_to(c, 1, 0, now, false)
        };
        assert!(
            !drip(&mut current, STALLED_TICKS - 1),
            "a fresh chunk holds it"
        );
        assert!(!drip(&mut current, STREAM_TICKS - 1), "within its time");
        assert!(
            drip(&mut current, STREAM_TICKS),
            "out of time, however fresh"
        );
        let fresh = Some(Incoming::start(3, current.unwrap().cert, 500));
        assert!(
            Incoming::yields_to(&fresh, 1, 0, 500, true),
            "the leader takes it"
        );
        assert!(
            Incoming::yields_to(&fresh, 3, 0, 500, false),
            "its sender restarts"
        );
        assert!(!Incoming::yields_to(&fresh, 1, 0, 500, false));
    }
}
