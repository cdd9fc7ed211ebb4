//! Where the variants part ways. Plain Raft and the Byzantine variants share the log, the
//! messages, the leader's progress tracking, batching, clients and the driver; they differ
//! in how they elect, accept a leader, Ack and commit. Each variant answers those moments
//! with its own functions, gathered here in one table that a node picks once, from its
//! variant, at construction: `raft.rs` holds Raft's, `election`/`replication`/`commit`
//! hold the Byzantine variants' (tangaroa and bft, which differ only by `Rules`). So a
//! reader of bft's rules never passes Raft's, and the shared machinery never asks which
//! variant it runs.

use super::message::{Ack, AppendEntries, RequestVote};
use super::node::Node;
use super::types::Variant;
use crate::crypto::Signed;

/// One variant's answers. Every entry is called only by the shared machinery in
/// `node.rs` (inputs), `election.rs` (winning) and `replication.rs` (end of step).
pub(super) struct Rulebook {
    /// A RequestVote from a cluster member other than us.
    pub on_request_vote: fn(&mut Node, Signed<RequestVote>),
    /// An AppendEntries naming a cluster member other than us as leader.
    pub on_append_entries: fn(&mut Node, Signed<AppendEntries>),
    /// An Ack from a cluster member other than us.
    pub on_ack: fn(&mut Node, Signed<Ack>),
    /// The election timer fired, or an operator forced it; never called on a leader.
    pub on_election_timeout: fn(&mut Node),
    /// Run for leader in the next free term (timeouts, judged leaders, Revolutions).
    pub campaign: fn(&mut Node),
    /// A tick while leading.
    pub on_leader_tick: fn(&mut Node),
    /// Just took leadership (the role is already `Leader`).
    pub on_elected: fn(&mut Node),
    /// The leader's own log grew: count it towards commit.
    pub ack_own_log: fn(&mut Node),
}

/// Tangaroa and bft: lazy voting, election proofs, broadcast Acks, certificates.
static BYZANTINE: Rulebook = Rulebook {
    on_request_vote: Node::on_request_vote,
    on_append_entries: Node::on_append_entries,
    on_ack: Node::on_ack,
    on_election_timeout: Node::election_timeout_fired,
    campaign: Node::campaign,
    on_leader_tick: Node::leader_tick,
    on_elected: Node::on_elected,
    ack_own_log: Node::ack_own_log,
};

/// Plain Raft (sections 5.2 to 5.4 and 8 of the Raft paper).
static RAFT: Rulebook = Rulebook {
    on_request_vote: Node::raft_on_request_vote,
    on_append_entries: Node::raft_on_append_entries,
    on_ack: Node::raft_on_ack,
    on_election_timeout: Node::raft_campaign,
    campaign: Node::raft_campaign,
    on_leader_tick: Node::raft_leader_tick,
    on_elected: Node::raft_on_elected,
    ack_own_log: Node::raft_ack_own_log,
};

impl Rulebook {
    pub(super) fn for_variant(variant: Variant) -> &'static Rulebook {
        match variant {
            Variant::Raft => &RAFT,
            Variant::Tangaroa | Variant::Bft => &BYZANTINE,
        }
    }
}
