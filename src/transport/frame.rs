//! What travels on a stream: length-prefixed, versioned postcard frames, bounded in size.
//!
//! A frame is `u32 little-endian length || WIRE_VERSION || postcard(Wire)` (the length
//! counts the version byte). The length is checked against [`MAX_FRAME`] before anything
//! is allocated, the version before anything is decoded (a peer of another format
//! version is refused, naming both versions), and decoding is bounded by the same limit,
//! so a peer can neither make us allocate without bound nor crash us with garbage: a bad
//! frame is an error the reader logs, counts, and answers by dropping the connection.

use crate::codec::{self, Peek, WIRE_VERSION};
use crate::protocol::node::MAX_CATCHUP;
use crate::protocol::{Index, Message, NodeId, Term, MAX_OP_BYTES};
use serde::{Deserialize, Serialize};

/// The largest frame accepted or sent: a catch-up of `MAX_CATCHUP` entries with signed
/// requests fits with room to spare.
pub const MAX_FRAME: usize = 16 << 20;

/// The largest frame a client or operator sends: one request (`MAX_OP_BYTES` of keys and
/// values) or a Revolution carrying one, with signatures and encoding overhead to spare.
pub const MAX_CLIENT_FRAME: usize = MAX_OP_BYTES + (16 << 10);

/// Who sent a frame, as far as what it may contain goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Node,
    /// A client or an operator: requests, Revolutions and status queries only.
    Client,
    /// A node answering a client or operator: replies and status reports only.
    Server,
}

impl Sender {
    /// The longest frame body this sender may announce; longer ones are refused before
    /// the body is read.
    pub fn max_len(self) -> usize {
        match self {
            Sender::Node => MAX_FRAME,
            Sender::Client | Sender::Server => MAX_CLIENT_FRAME,
        }
    }
}

// postcard tags: a varint variant index per enum, in declaration order.
// `tags_match_the_encoding` below pins them to the real types.
const WIRE_PROTOCOL: u64 = 0;
const WIRE_STATUS_QUERY: u64 = 1;
const WIRE_STATUS: u64 = 2;
const WIRE_HELLO: u64 = 3;
const MSG_APPEND_ENTRIES: u64 = 2;
const MSG_REQUEST: u64 = 6;
const MSG_REVOLUTION: u64 = 7;
const MSG_REPLY: u64 = 8;
const MSG_CATCH_UP: u64 = 9;
/// What precedes the entry count in an AppendEntries body: term, leader, prev_index and
/// prev_term (varints), then prev_hash (32 bytes).
const AE_VARINTS: usize = 4;
/// The same in a CatchUp: from and prev_index, then prev_hash.
const CATCH_UP_VARINTS: usize = 2;
const HASH_BYTES: usize = 32;

/// The entry count of a protocol message body after its tags, skipping `varints`
/// integers and a hash.
fn entry_count(p: &mut Peek<'_>, varints: usize) -> Option<u64> {
    p.skip_varints(varints)?;
    p.skip(HASH_BYTES)?;
    p.varint()
}

/// Checks what a frame is before it is decoded: its format version, the kinds its
/// sender may send, and the entry count of messages that carry entries. Decoding
/// allocates per element (an entry of a few encoded bytes becomes a few hundred in
/// memory), so an unchecked 16 MiB frame of tiny entries would decode to gigabytes; with
/// at most `MAX_CATCHUP` entries the decoded size stays within a small multiple of the
/// frame.
pub fn admit(from: Sender, body: &[u8]) -> Result<(), FrameError> {
    let refuse = |why: String| Err(FrameError::Refused(why));
    let Some((&version, rest)) = body.split_first() else {
        return refuse("an empty frame".into());
    };
    if body.len() > from.max_len() {
        return Err(FrameError::TooLarge(body.len()));
    }
    if version != WIRE_VERSION {
        return Err(FrameError::Version(version));
    }
    let mut p = Peek::new(rest);
    let Some(wire) = p.varint() else {
        return refuse("shorter than its tag".into());
    };
    match (from, wire) {
        (Sender::Server, WIRE_STATUS) => return Ok(()),
        (Sender::Server, WIRE_PROTOCOL) => {}
        (Sender::Server, t) => return refuse(format!("frame kind {t} from a node")),
        (_, WIRE_STATUS_QUERY) => return Ok(()),
        (Sender::Client, WIRE_HELLO) => return Ok(()),
        (_, WIRE_PROTOCOL) => {}
        (_, t) => return refuse(format!("frame kind {t} is never sent to a node")),
    }
    let Some(msg) = p.varint() else {
        return refuse("protocol frame without a message tag".into());
    };
    let varints = match (from, msg) {
        (Sender::Client, MSG_REQUEST | MSG_REVOLUTION) => return Ok(()),
        (Sender::Client, t) => return refuse(format!("a client sent message kind {t}")),
        (Sender::Server, MSG_REPLY) => return Ok(()),
        (Sender::Server, t) => return refuse(format!("a node answered with message kind {t}")),
        (Sender::Node, MSG_APPEND_ENTRIES) => AE_VARINTS,
        (Sender::Node, MSG_CATCH_UP) => CATCH_UP_VARINTS,
        (Sender::Node, _) => return Ok(()),
    };
    match entry_count(&mut p, varints) {
        Some(n) if n <= MAX_CATCHUP as u64 => Ok(()),
        Some(n) => refuse(format!(
            "{n} entries in one message; the most is {MAX_CATCHUP}"
        )),
        None => refuse("cut short before its entries".into()),
    }
}

/// Everything a stream carries: protocol messages, and the operator's status query.
// Nearly every frame is a protocol message; boxing it would cost an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Wire {
    Protocol(Message),
    StatusQuery,
    Status(Box<NodeReport>),
    /// A client's first frame on a new stream: replies to its requests may come here.
    /// (Nodes see a stream only once something is sent on it; without this, only the
    /// node a request went to learned the stream, and the f+1 matching replies had to
    /// wait for the client's timeout broadcast.)
    Hello,
}

/// A node's account of itself, for `tangaroa status` and the cluster view. It is what the
/// node says, not a proof: a Byzantine node may lie here as anywhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub role: crate::protocol::node::RoleName,
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
    /// The log's base: entries at or below it were replaced by a snapshot (0: none).
    pub log_base: Index,
    /// Index of the latest snapshot in the data directory, if any.
    pub snapshot_index: Option<Index>,
    /// Bytes in the node's data directory (log segments, snapshot, evidence).
    pub disk_bytes: u64,
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
    /// Where this process's CPU went (signing, verifying, hashing, codec, fsync).
    #[serde(default)]
    pub cost: crate::cost::Costs,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("wire format version {0}, but this node speaks version {WIRE_VERSION}: the peer runs an incompatible tangaroa build (run one version on every node and client)")]
    Version(u8),
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("refused before decoding: {0}")]
    Refused(String),
    #[error("frame body not complete within {0:?}")]
    Slow(std::time::Duration),
}

/// The whole frame, length prefix and version included, ready to write.
pub fn encode(w: &Wire) -> Result<Vec<u8>, FrameError> {
    let size = 1 + codec::encoded_size(w);
    if size > MAX_FRAME {
        return Err(FrameError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(4 + size);
    buf.extend_from_slice(&(size as u32).to_le_bytes());
    buf.push(WIRE_VERSION);
    Ok(codec::encode_into(w, buf))
}

/// Checks a length prefix before the body is read, against what `from` may send.
pub fn body_len(prefix: [u8; 4], from: Sender) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > from.max_len() {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (what follows the length prefix), version byte first.
pub fn decode(body: &[u8]) -> Result<Wire, FrameError> {
    match body.split_first() {
        None => Err(FrameError::Decode("an empty frame".into())),
        Some((&v, _)) if v != WIRE_VERSION => Err(FrameError::Version(v)),
        Some((_, rest)) => codec::decode(rest).map_err(|e| FrameError::Decode(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Digest, Signed};
    use crate::protocol::{
        AppendEntries, CatchUp, Entry, Op, Payload, Request, Revolution, SignedRequest,
    };

    #[test]
    fn round_trips_and_refuses_garbage() {
        let w = Wire::Status(Box::new(NodeReport {
            id: 3,
            role: crate::protocol::node::RoleName::Leader,
            commit: 9,
            ..NodeReport::default()
        }));
        let frame = encode(&w).unwrap();
        let len = body_len(frame[..4].try_into().unwrap(), Sender::Node).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode(&frame[4..]).unwrap(), w);
        // Oversized prefix: refused before reading the body.
        assert!(body_len(((MAX_FRAME + 1) as u32).to_le_bytes(), Sender::Node).is_err());
        assert!(body_len(
            ((MAX_CLIENT_FRAME + 1) as u32).to_le_bytes(),
            Sender::Client
        )
        .is_err());
        // Garbage, truncation and trailing bytes are errors, never panics.
        assert!(decode(&[0xff; 7]).is_err());
        assert!(decode(&frame[4..frame.len() - 1]).is_err());
        let mut long = frame[4..].to_vec();
        long.push(0);
        assert!(decode(&long).is_err());
        // A claimed collection length far beyond the frame fails without allocating it.
        // (A Status report whose role string claims u64::MAX bytes.)
        let mut huge = vec![WIRE_VERSION, WIRE_STATUS as u8, 3];
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(decode(&huge).is_err());
    }

    fn entry(index: u64) -> Entry {
        Entry {
            term: 1,
            index,
            payload: Payload::Noop,
        }
    }

    fn append_entries(entries: Vec<Entry>) -> Message {
        Message::AppendEntries(Signed {
            body: AppendEntries {
                term: 7,
                leader: 2,
                prev_index: 3,
                prev_term: 4,
                prev_hash: Digest([9; 32]),
                entries,
                commit: 1,
                proof: None,
                lock: None,
            },
            sig: None,
        })
    }

    fn catch_up(entries: Vec<Entry>) -> Message {
        Message::CatchUp(CatchUp {
            from: 1,
            prev_index: 2,
            prev_hash: Digest([8; 32]),
            entries,
            proof: vec![],
        })
    }

    fn request() -> SignedRequest {
        Signed {
            body: Request {
                client: 0,
                seq: 1,
                op: Op::Get { key: "k".into() },
            },
            sig: None,
        }
    }

    fn body(m: Message) -> Vec<u8> {
        encode(&Wire::Protocol(m)).unwrap()[4..].to_vec()
    }

    /// The tags and offsets `admit` reads are the real encoding's.
    #[test]
    fn tags_match_the_encoding() {
        let tags = |b: &[u8]| {
            assert_eq!(b[0], WIRE_VERSION);
            let mut p = Peek::new(&b[1..]);
            (p.varint().unwrap(), p.varint().unwrap())
        };
        let first = |b: &[u8]| Peek::new(&b[1..]).varint();
        assert_eq!(
            tags(&body(append_entries(vec![]))),
            (WIRE_PROTOCOL, MSG_APPEND_ENTRIES)
        );
        assert_eq!(tags(&body(catch_up(vec![]))), (WIRE_PROTOCOL, MSG_CATCH_UP));
        assert_eq!(
            tags(&body(Message::Request(request()))),
            (WIRE_PROTOCOL, MSG_REQUEST)
        );
        let rev = Message::Revolution(Signed {
            body: Revolution {
                client: 0,
                term: 1,
                leader: 0,
                request: request(),
            },
            sig: None,
        });
        assert_eq!(tags(&body(rev)), (WIRE_PROTOCOL, MSG_REVOLUTION));
        assert_eq!(
            first(&encode(&Wire::StatusQuery).unwrap()[4..]),
            Some(WIRE_STATUS_QUERY)
        );
        assert_eq!(first(&encode(&Wire::Hello).unwrap()[4..]), Some(WIRE_HELLO));
        let three: Vec<Entry> = (1..=3).map(entry).collect();
        let count = |b: &[u8], varints| {
            let mut p = Peek::new(&b[1..]);
            p.skip_varints(2).unwrap();
            entry_count(&mut p, varints)
        };
        assert_eq!(
            count(&body(append_entries(three.clone())), AE_VARINTS),
            Some(3)
        );
        assert_eq!(count(&body(catch_up(three)), CATCH_UP_VARINTS), Some(3));
    }

    /// Kinds a sender may not send, and messages with more entries than any honest node
    /// sends, are refused before decoding; a 16 MiB frame of no-op entries is one of them.
    #[test]
    fn admit_checks_kinds_and_entry_counts_before_decoding() {
        let most: Vec<Entry> = (1..=MAX_CATCHUP as u64).map(entry).collect();
        assert!(admit(Sender::Node, &body(append_entries(most.clone()))).is_ok());
        assert!(admit(Sender::Node, &body(catch_up(most.clone()))).is_ok());
        let mut over = most;
        over.push(entry(MAX_CATCHUP as u64 + 1));
        for m in [append_entries(over.clone()), catch_up(over)] {
            let e = admit(Sender::Node, &body(m)).unwrap_err();
            assert!(matches!(e, FrameError::Refused(_)), "{e}");
        }
        // A frame that claims 800k no-op entries: refused from its first bytes.
        let empty = body(append_entries(vec![]));
        let mut p = Peek::new(&empty[1..]);
        p.skip_varints(2 + AE_VARINTS).unwrap();
        p.skip(HASH_BYTES).unwrap();
        let at = empty.len() - p.remaining();
        assert_eq!(empty[at], 0, "the entry count of an empty AppendEntries");
        let mut flood = empty[..at].to_vec();
        flood.extend_from_slice(&[0x80, 0xea, 0x30]); // 800_000
        flood.resize(MAX_FRAME, 0);
        assert!(admit(Sender::Node, &flood).is_err());
        // Clients: requests, Revolutions and status queries only, and small.
        assert!(admit(Sender::Client, &body(Message::Request(request()))).is_ok());
        assert!(admit(Sender::Client, &encode(&Wire::StatusQuery).unwrap()[4..]).is_ok());
        let e = admit(Sender::Client, &body(append_entries(vec![]))).unwrap_err();
        assert!(matches!(e, FrameError::Refused(_)), "{e}");
        let status = encode(&Wire::Status(Box::default())).unwrap();
        assert!(admit(Sender::Client, &status[4..]).is_err());
        assert!(admit(Sender::Node, &status[4..]).is_err());
        assert!(admit(Sender::Node, &[0, 0]).is_err());
        // What a node sends back to a client: replies and status reports.
        assert!(admit(Sender::Server, &status[4..]).is_ok());
        assert!(admit(Sender::Server, &body(Message::Request(request()))).is_err());
        assert!(admit(Sender::Node, &[0, 0, 0, 0]).is_err());
    }

    /// A frame of another wire format version is refused before decoding, by admission
    /// and by decoding alike, and the error names both versions.
    #[test]
    fn a_frame_of_another_version_is_refused() {
        let mut frame = body(Message::Request(request()));
        assert!(admit(Sender::Client, &frame).is_ok());
        for other in [1u8, WIRE_VERSION + 1, 0xff] {
            frame[0] = other;
            let e = admit(Sender::Client, &frame).unwrap_err();
            assert!(matches!(e, FrameError::Version(v) if v == other), "{e}");
            let text = e.to_string();
            assert!(
                text.contains(&format!("version {other}"))
                    && text.contains(&format!("version {WIRE_VERSION}")),
                "{text}"
            );
            assert!(matches!(decode(&frame), Err(FrameError::Version(_))));
        }
        // A bincode-era frame (no version byte, a u32 tag first) is refused the same way.
        let old: Vec<u8> = [0u32.to_le_bytes(), 6u32.to_le_bytes()].concat();
        assert!(matches!(
            admit(Sender::Client, &old),
            Err(FrameError::Version(0))
        ));
    }
}
