//! Protocol messages (PROTOCOL.md, "Messages"). Every consensus message is signed by its
//! sender in the Byzantine variants; replies travel unsigned on the client's authenticated
//! link.

use super::types::{ClientId, Index, NodeId, Term};
use crate::crypto::{Digest, Principal, Signable, Signed};
use serde::{Deserialize, Serialize};

/// A key-value operation. Keys are text; values are bytes (any bytes, not only UTF-8).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    /// Compare-and-swap: set `key` to `new` if its current value is `expected`
    /// (`None` meaning absent).
    Cas {
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

/// Most bytes of keys and values one operation may carry. Larger requests are ignored:
/// bounded entries keep every AppendEntries and catch-up well within a frame.
pub const MAX_OP_BYTES: usize = 64 << 10;

impl Op {
    /// Bytes of keys and values in the operation.
    pub fn data_bytes(&self) -> usize {
        match self {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Get { key } | Op::Delete { key } => key.len(),
            Op::Cas { key, expected, new } => {
                key.len() + expected.as_ref().map_or(0, Vec::len) + new.len()
            }
        }
    }
}

impl Entry {
    /// An upper bound on the entry's encoded size, cheap to compute: the operation's data
    /// plus a generous allowance for ids, numbers, signature and framing.
    pub fn size_bound(&self) -> usize {
        256 + self.payload.request().map_or(0, |r| r.body.op.data_bytes())
    }
}

/// A client's request; `(client, seq)` makes it unique and lets the state machine apply it
/// at most once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    pub client: ClientId,
    pub seq: u64,
    pub op: Op,
}

impl Signable for Request {
    const KIND: &'static str = "request";
    fn signer(&self) -> Principal {
        Principal::Client(self.client)
    }
}

pub type SignedRequest = Signed<Request>;

/// What an entry carries. `Noop` is appended by a new `raft` leader so that it can commit
/// entries of earlier terms (Raft paper, section 5.4.2 and section 8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    Noop,
    Request(SignedRequest),
}

impl Payload {
    pub fn request(&self) -> Option<&SignedRequest> {
        match self {
            Payload::Noop => None,
            Payload::Request(r) => Some(r),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub payload: Payload,
}

/// The result of applying an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpResult {
    Ok,
    Value(Option<Vec<u8>>),
    /// A compare-and-swap whose expected value did not match; carries the current value.
    CasFailed(Option<Vec<u8>>),
    /// The client already had a newer request applied; this one was not executed.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVote {
    pub term: Term,
    pub candidate: NodeId,
    pub last_index: Index,
    pub last_term: Term,
    pub last_hash: Digest,
    /// The candidate's highest prepared certificate (bft).
    pub lock: Option<PreparedCert>,
}

impl Signable for RequestVote {
    const KIND: &'static str = "request-vote";
    fn signer(&self) -> Principal {
        Principal::Node(self.candidate)
    }
}

/// A granted vote. Refusals are never sent: they would prove nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    pub term: Term,
    pub voter: NodeId,
    pub candidate: NodeId,
    /// The certificate the candidate's RequestVote carried (bft; `None` elsewhere): a vote
    /// binds the lock it was granted on, so the leader cannot claim another one later
    /// (PROTOCOL.md, "Messages" and "Election").
    pub lock: Option<LockId>,
}

/// Names a prepared certificate without its Acks: what a Vote binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockId {
    pub term: Term,
    pub index: Index,
    pub hash: Digest,
}

/// The name of an optional lock.
pub fn lock_id(lock: &Option<PreparedCert>) -> Option<LockId> {
    lock.as_ref().map(PreparedCert::id)
}

impl Signable for Vote {
    const KIND: &'static str = "vote";
    fn signer(&self) -> Principal {
        Principal::Node(self.voter)
    }
}

/// q signed votes for one `(term, leader)`: the leader's proof of election.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionProof {
    pub term: Term,
    pub leader: NodeId,
    #[serde(deserialize_with = "crate::codec::at_most_signers")]
    pub votes: Vec<Signed<Vote>>,
}

/// `PC(term, index, hash)`: Acks of `term` from q distinct nodes, each for exactly
/// `(index, hash)`. Transferable: anyone can check it without the entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCert {
    pub term: Term,
    pub index: Index,
    pub hash: Digest,
    #[serde(deserialize_with = "crate::codec::at_most_signers")]
    pub acks: Vec<Signed<Ack>>,
}

impl PreparedCert {
    /// Locks are ordered by `(term, index)`.
    pub fn rank(&self) -> (Term, Index) {
        (self.term, self.index)
    }

    pub fn id(&self) -> LockId {
        LockId {
            term: self.term,
            index: self.index,
            hash: self.hash,
        }
    }
}

/// Rank of an optional lock; no lock ranks below every certificate.
pub fn lock_rank(lock: &Option<PreparedCert>) -> (Term, Index) {
    lock.as_ref().map_or((0, 0), |c| c.rank())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntries {
    pub term: Term,
    pub leader: NodeId,
    pub prev_index: Index,
    pub prev_term: Term,
    pub prev_hash: Digest,
    pub entries: Vec<Entry>,
    /// Leader's commit index. Only `raft` followers act on it; the Byzantine variants
    /// commit on their own evidence.
    pub commit: Index,
    /// Sent until the follower is convinced.
    pub proof: Option<ElectionProof>,
    /// The certificate the leader was elected on (bft), sent with the proof.
    pub lock: Option<PreparedCert>,
}

impl Signable for AppendEntries {
    const KIND: &'static str = "append-entries";
    fn signer(&self) -> Principal {
        Principal::Node(self.leader)
    }
}

/// The AppendEntries response. Positive Acks are broadcast to every node; `(index, hash)`
/// is the end of the prefix the sender has verified against the leader's log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ack {
    pub term: Term,
    pub from: NodeId,
    pub index: Index,
    pub hash: Digest,
    pub success: bool,
}

impl Signable for Ack {
    const KIND: &'static str = "ack";
    fn signer(&self) -> Principal {
        Principal::Node(self.from)
    }
}

/// Second round (bft): "my lock is now `PC(term, index, hash)`".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Commit {
    pub term: Term,
    pub from: NodeId,
    pub index: Index,
    pub hash: Digest,
}

impl Signable for Commit {
    const KIND: &'static str = "commit";
    fn signer(&self) -> Principal {
        Principal::Node(self.from)
    }
}

/// A client's signed demand to depose the leader of one term. In bft it carries the
/// request the leader is ignoring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revolution {
    pub client: ClientId,
    pub term: Term,
    pub leader: NodeId,
    pub request: SignedRequest,
}

impl Signable for Revolution {
    const KIND: &'static str = "revolution";
    fn signer(&self) -> Principal {
        Principal::Client(self.client)
    }
}

/// Two signed messages from one node that no honest node would both send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    /// Different entries at one `(term, index)` from one leader.
    AppendEntries(Box<Signed<AppendEntries>>, Box<Signed<AppendEntries>>),
    /// Votes for two candidates in one term.
    Votes(Signed<Vote>, Signed<Vote>),
    /// Two Acks of one term with different hashes at one index.
    Acks(Signed<Ack>, Signed<Ack>),
}

impl Evidence {
    /// The node both messages convict.
    pub fn culprit(&self) -> Principal {
        match self {
            Evidence::AppendEntries(a, _) => a.signer(),
            Evidence::Votes(a, _) => a.signer(),
            Evidence::Acks(a, _) => a.signer(),
        }
    }
}

/// A node's answer to a client, on the client's own authenticated connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub node: NodeId,
    pub client: ClientId,
    pub seq: u64,
    pub result: OpResult,
    /// Who this node follows, so the client can address its next request (and a
    /// Revolution) well. A hint only; never trusted for safety.
    pub leader: Option<(Term, NodeId)>,
}

/// Committed entries pushed by a peer to a node that lags behind (bft). Not signed: the
/// receiver keeps only entries q Commits prove committed, recomputing the hash chain
/// itself, so the sender need not be trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUp {
    pub from: NodeId,
    pub prev_index: Index,
    pub prev_hash: Digest,
    pub entries: Vec<Entry>,
    /// The sender's Commits (one per node, each signed by its node) behind its commit
    /// point. The receiver counts them with its own: a node that may not Commit itself
    /// (below its Ack floor) and whose peers' Commits never reached it (a Byzantine node
    /// withholds its own) still gets q of them this way.
    pub proof: Vec<Signed<Commit>>,
}

/// A node's signed claim: "after applying `index` (term `term`, chain hash `chain_hash`),
/// my state machine's digest is `state_digest`, and I hold that snapshot durably"
/// (PROTOCOL.md, "Checkpoints, compaction and state transfer"). **Chosen**: it also signs
/// the entry's `term`, which the shared spec leaves out: the chain hash binds it already,
/// and signing it lets a node that installs the snapshot set its log base without
/// trusting whoever sent it. `epoch` is the configuration epoch (0 until reconfiguration).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    pub epoch: u64,
    pub from: NodeId,
    pub index: Index,
    pub term: Term,
    pub chain_hash: Digest,
    pub state_digest: Digest,
}

impl Signable for Checkpoint {
    const KIND: &'static str = "checkpoint";
    fn signer(&self) -> Principal {
        Principal::Node(self.from)
    }
}

impl Checkpoint {
    /// What q signers must agree on for a stable checkpoint.
    pub fn point(&self) -> (Index, Term, Digest, Digest) {
        (self.index, self.term, self.chain_hash, self.state_digest)
    }
}

/// A stable checkpoint: Checkpoints of one point from q distinct members (bft and
/// tangaroa). In `raft`, one unsigned Checkpoint of the leader, trusted as Raft trusts
/// its leader's InstallSnapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCert {
    pub checkpoints: Vec<Signed<Checkpoint>>,
}

impl CheckpointCert {
    /// The certified point (that of the first Checkpoint: `Node::valid_cert` checks that
    /// all agree).
    pub fn first(&self) -> Option<&Checkpoint> {
        self.checkpoints.first().map(|c| &c.body)
    }

    pub fn index(&self) -> Index {
        self.first().map_or(0, |c| c.index)
    }
}

/// Most bytes of state one `Snapshot` message carries.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// One chunk of a state transfer (PROTOCOL.md `Snapshot { cert, offset, chunk, last }`),
/// on an authenticated link. The chunks are not signed: the certificate's `state_digest`
/// proves the whole, and the receiver recomputes it before installing anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub from: NodeId,
    pub cert: CheckpointCert,
    pub offset: u64,
    pub chunk: Vec<u8>,
    pub last: bool,
}

/// Everything that travels between nodes and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    RequestVote(Signed<RequestVote>),
    Vote(Signed<Vote>),
    AppendEntries(Signed<AppendEntries>),
    Ack(Signed<Ack>),
    Commit(Signed<Commit>),
    Evidence(Evidence),
    /// A client request, sent by the client itself or forwarded by a node to its leader.
    Request(SignedRequest),
    Revolution(Signed<Revolution>),
    Reply(Reply),
    CatchUp(CatchUp),
    Checkpoint(Signed<Checkpoint>),
    Snapshot(SnapshotChunk),
}

impl Message {
    /// The principal that must be the authenticated sender of this message on the link it
    /// arrived on. Requests, Revolutions, Evidence and RequestVotes (a voter relays the one
    /// it granted) may be relayed, so they name none.
    pub fn direct_sender(&self) -> Option<Principal> {
        match self {
            Message::RequestVote(_) => None,
            Message::Vote(m) => Some(m.signer()),
            Message::AppendEntries(m) => Some(m.signer()),
            Message::Ack(m) => Some(m.signer()),
            Message::Commit(m) => Some(m.signer()),
            Message::Reply(r) => Some(Principal::Node(r.node)),
            Message::CatchUp(c) => Some(Principal::Node(c.from)),
            Message::Checkpoint(m) => Some(m.signer()),
            Message::Snapshot(s) => Some(Principal::Node(s.from)),
            Message::Evidence(_) | Message::Request(_) | Message::Revolution(_) => None,
        }
    }

    /// Every kind's name, as `kind` gives it, in declaration order: the names scenarios
    /// may block and the order of the transport's per-kind counters.
    pub const KINDS: [&'static str; 12] = [
        "request-vote",
        "vote",
        "append-entries",
        "ack",
        "commit",
        "evidence",
        "request",
        "revolution",
        "reply",
        "catch-up",
        "checkpoint",
        "snapshot",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Message::RequestVote(_) => "request-vote",
            Message::Vote(_) => "vote",
            Message::AppendEntries(_) => "append-entries",
            Message::Ack(_) => "ack",
            Message::Commit(_) => "commit",
            Message::Evidence(_) => "evidence",
            Message::Request(_) => "request",
            Message::Revolution(_) => "revolution",
            Message::Reply(_) => "reply",
            Message::CatchUp(_) => "catch-up",
            Message::Checkpoint(_) => "checkpoint",
            Message::Snapshot(_) => "snapshot",
        }
    }
}
