//! Byzantine behaviours. Each one wraps an honest [`Node`] (or replaces it) and rewrites
//! what goes in and out; none of them is a branch inside honest code.
//!
//! Every adversary holds its node's real signing key: it can sign anything its node could,
//! and nothing else.

use crate::actor::Actor;
use crate::crypto::{Domain, Keyring};
use crate::protocol::{Durable, Node, NodeConfig};
use ed25519_dalek::SigningKey;
use std::fmt;

/// The adversaries, by the names the CLI uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Behaviour {
    /// As leader, sends different entries at one index to different followers.
    Equivocate,
    /// Election proofs with refused, duplicated, wrong-term or badly signed votes.
    ForgeProof,
    /// Floods RequestVote, with rising and with huge terms.
    Disrupt,
    /// Rushes its timeout, wins, then heartbeats but never replicates client requests.
    Stall,
    /// Acks and Commits hashes it does not hold, double-Acks, Acks for other terms.
    LieAck,
    /// Alters client requests or their signatures in entries it sends or forwards.
    Tamper,
    /// Resends old signed messages (its own and others', from earlier terms).
    Replay,
    /// Claims another node's id.
    Impersonate,
    /// As leader, serves only some followers.
    Selective,
    /// Two copies of one node with one key, on different sides of partitions.
    Twins,
    /// Stops.
    Crash,
    /// Votes for every candidate in every term (double voting).
    DoubleVote,
    /// Lies to clients in its replies.
    LieReply,
}

impl Behaviour {
    pub const ALL: [Behaviour; 13] = [
        Behaviour::Equivocate,
        Behaviour::ForgeProof,
        Behaviour::Disrupt,
        Behaviour::Stall,
        Behaviour::LieAck,
        Behaviour::Tamper,
        Behaviour::Replay,
        Behaviour::Impersonate,
        Behaviour::Selective,
        Behaviour::Twins,
        Behaviour::Crash,
        Behaviour::DoubleVote,
        Behaviour::LieReply,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Equivocate => "equivocate",
            Behaviour::ForgeProof => "forge-proof",
            Behaviour::Disrupt => "disrupt",
            Behaviour::Stall => "stall",
            Behaviour::LieAck => "lie-ack",
            Behaviour::Tamper => "tamper",
            Behaviour::Replay => "replay",
            Behaviour::Impersonate => "impersonate",
            Behaviour::Selective => "selective",
            Behaviour::Twins => "twins",
            Behaviour::Crash => "crash",
            Behaviour::DoubleVote => "double-vote",
            Behaviour::LieReply => "lie-reply",
        }
    }

    pub fn parse(s: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Behaviour::Equivocate => "as leader, sends different entries at one index to different followers",
            Behaviour::ForgeProof => "election proofs with refused, duplicated, wrong-term or badly signed votes",
            Behaviour::Disrupt => "floods RequestVote, with rising and with huge terms",
            Behaviour::Stall => "rushes its timeout, wins, then heartbeats but never replicates client requests",
            Behaviour::LieAck => "Acks and Commits hashes it does not hold, double-Acks, Acks for other terms",
            Behaviour::Tamper => "alters client requests or their signatures in entries it sends or forwards",
            Behaviour::Replay => "resends old signed messages (its own and others', from earlier terms)",
            Behaviour::Impersonate => "claims another node's id",
            Behaviour::Selective => "as leader, serves only some followers",
            Behaviour::Twins => "two copies of one node with one key, on different sides of partitions",
            Behaviour::Crash => "stops",
            Behaviour::DoubleVote => "votes for every candidate in every term",
            Behaviour::LieReply => "lies to clients in its replies",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything an adversary starts from: what its honest node would get, plus the public
/// cluster knowledge any member has.
pub struct Context {
    pub cfg: NodeConfig,
    pub key: SigningKey,
    pub seed: u64,
    pub durable: Durable,
    pub ring: Keyring,
}

impl Context {
    pub fn honest_node(&self) -> Node {
        Node::new(self.cfg.clone(), self.key.clone(), self.seed, self.durable.clone())
    }

    pub fn domain(&self) -> Domain {
        self.ring.domain.clone()
    }
}

/// Builds the actor for one slot. `Twins` is not an actor (the driver runs two honest
/// copies with one key); asked for it here, this returns the honest node, one twin.
pub fn make(behaviour: Behaviour, ctx: Context) -> Box<dyn Actor> {
    match behaviour {
        Behaviour::Twins => Box::new(ctx.honest_node()),
        _ => Box::new(ctx.honest_node()), // placeholder until each behaviour lands
    }
}
