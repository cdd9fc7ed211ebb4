//! Byzantine behaviours. Each one wraps an honest [`Node`] (or replaces it) and rewrites
//! what goes in and out; none of them is a branch inside honest code.
//!
//! Every adversary holds its node's real signing key: it can sign anything its node could,
//! and nothing else.

mod equivocate;
mod extreme;

use crate::actor::Actor;
use crate::crypto::{Digest, Domain, Keyring, Signable, Signed};
use crate::protocol::{ClientId, Durable, Node, NodeConfig, NodeId, RequestVote};
use ed25519_dalek::{Signature, SigningKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

mod bad_snapshot;
mod crash;
mod disrupt;
mod double_vote;
mod forge_proof;
mod impersonate;
mod lie_ack;
mod lie_checkpoint;
mod lie_reply;
mod lockless;
mod replay;
mod selective;
mod stall;
mod tamper;
mod withhold_commits;

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
    /// As leader, claims no lock in its AppendEntries (it was elected on one) and forks
    /// the locked entries above its commit point.
    Lockless,
    /// Sends messages whose terms, indexes and commit points sit at the edges of their
    /// range (0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX).
    Extreme,
    /// Never gives some peers its Commits or catch-up pushes.
    WithholdCommits,
    /// Serves only bad snapshots: wrong bytes, stale or forged certificates, endless chunks.
    BadSnapshot,
    /// Signs Checkpoints with a wrong state digest or chain hash.
    LieCheckpoint,
}

impl Behaviour {
    pub const ALL: [Behaviour; 18] = [
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
        Behaviour::Lockless,
        Behaviour::Extreme,
        Behaviour::WithholdCommits,
        Behaviour::BadSnapshot,
        Behaviour::LieCheckpoint,
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
            Behaviour::Lockless => "lockless",
            Behaviour::Extreme => "extreme",
            Behaviour::WithholdCommits => "withhold-commits",
            Behaviour::BadSnapshot => "bad-snapshot",
            Behaviour::LieCheckpoint => "lie-checkpoint",
        }
    }

    pub fn parse(s: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Behaviour::Equivocate => {
                "as leader, sends different entries at one index to different followers"
            }
            Behaviour::ForgeProof => {
                "election proofs with refused, duplicated, wrong-term or badly signed votes"
            }
            Behaviour::Disrupt => "floods RequestVote, with rising and with huge terms",
            Behaviour::Stall => {
                "rushes its timeout, wins, then heartbeats but never replicates client requests"
            }
            Behaviour::LieAck => {
                "Acks and Commits hashes it does not hold, double-Acks, Acks for other terms"
            }
            Behaviour::Tamper => {
                "alters client requests or their signatures in entries it sends or forwards"
            }
            Behaviour::Replay => {
                "resends old signed messages (its own and others', from earlier terms)"
            }
            Behaviour::Impersonate => "claims another node's id",
            Behaviour::Selective => "as leader, serves only some followers",
            Behaviour::Twins => {
                "two copies of one node with one key, on different sides of partitions"
            }
            Behaviour::Crash => "stops",
            Behaviour::DoubleVote => "votes for every candidate in every term",
            Behaviour::LieReply => "lies to clients in its replies",
            Behaviour::Lockless => {
                "as leader, claims no lock (it was elected on one) and forks the locked entries"
            }
            Behaviour::Extreme => "sends terms, indexes and commit points at the edges of u64",
            Behaviour::WithholdCommits => {
                "never gives some peers its Commits or pushes them committed entries"
            }
            Behaviour::BadSnapshot => {
                "serves snapshots with wrong bytes, stale or forged certificates, or no end"
            }
            Behaviour::LieCheckpoint => "signs Checkpoints with a wrong state digest or chain hash",
        }
    }
}

impl Behaviour {
    /// What the honest nodes do about it: the rule that defeats the attack.
    pub fn defence(self) -> &'static str {
        match self {
            Behaviour::Equivocate => "the fork never gathers q Acks; followers offered both orders in one term keep the two signed AppendEntries as Evidence and depose it; the victims catch up the committed entries from their peers",
            Behaviour::ForgeProof => "proofs without q distinct valid votes are refused; a bad signature inside a signed message counts as misbehaviour",
            Behaviour::Disrupt => "lazy voters ignore its RequestVotes while the leader is healthy; terms beyond the honest nodes' reach are refused",
            Behaviour::Stall => "request timers, started by forwarded requests or a Revolution, depose it",
            Behaviour::LieAck => "certificates need q matching Acks from distinct nodes; one liar cannot make one",
            Behaviour::Tamper => "client signatures are checked; a leader that signs a forged request is judged faulty",
            Behaviour::Replay => "terms, indexes and hashes make old messages stale; they change nothing",
            Behaviour::Impersonate => "the claimed sender must match the TLS-authenticated link; refused",
            Behaviour::Selective => "the starved followers catch up from their peers' committed entries",
            Behaviour::Twins => "two copies that sign different things are convicted by their own signatures",
            Behaviour::Crash => "the rest go on: n - f nodes are enough",
            Behaviour::DoubleVote => "one vote cannot make a proof; two of its votes in one term for different candidates, once one node sees both (a candidate, or a follower checking election proofs), are Evidence",
            Behaviour::LieReply => "clients accept a result only on f+1 matching replies",
            Behaviour::Lockless => "votes name the lock they were granted on, so an AppendEntries claiming another lock is refused and it is never followed",
            Behaviour::Extreme => "every edge-of-range number is refused or saturates; nothing wraps",
            Behaviour::BadSnapshot => "a snapshot is taken only under q distinct members' matching Checkpoints and only if its bytes hash to the certified digest; the lagging node installs an honest peer's instead",
            Behaviour::LieCheckpoint => "a stable checkpoint needs q distinct members agreeing on one point; f liars cannot make one, nor stop the honest q",
            Behaviour::WithholdCommits => "catch-up pushes, and answers to a retransmitted Commit, carry the q signed Commits behind the sender's commit point, so a victim that never gets the withheld Commits (or may not Commit itself) still commits",
        }
    }

    /// Whether the attack needs the node to lead: the demo then gives it a head start.
    pub fn attacks_as_leader(self) -> bool {
        matches!(
            self,
            Behaviour::Equivocate | Behaviour::Stall | Behaviour::Selective | Behaviour::Lockless
        )
    }
}

impl Behaviour {
    /// Whether the attack works on the entries of its own term (reordering, withholding or
    /// replacing them): the demo then has several clients write at once while it leads.
    pub fn attacks_entries(self) -> bool {
        matches!(
            self,
            Behaviour::Equivocate | Behaviour::Selective | Behaviour::Lockless
        )
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
        Node::new(
            self.cfg.clone(),
            self.key.clone(),
            self.seed,
            self.durable.clone(),
        )
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
        Behaviour::Equivocate => Box::new(equivocate::Equivocate::new(ctx)),
        Behaviour::ForgeProof => Box::new(forge_proof::ForgeProof::new(&ctx)),
        Behaviour::Disrupt => Box::new(disrupt::Disrupt::new(&ctx)),
        Behaviour::Stall => Box::new(stall::Stall::new(&ctx)),
        Behaviour::LieAck => Box::new(lie_ack::LieAck::new(&ctx)),
        Behaviour::Tamper => Box::new(tamper::Tamper::new(&ctx)),
        Behaviour::Replay => Box::new(replay::Replay::new(&ctx)),
        Behaviour::Impersonate => Box::new(impersonate::Impersonate::new(&ctx)),
        Behaviour::Selective => Box::new(selective::Selective::new(&ctx)),
        Behaviour::Crash => Box::new(crash::Crash::new(&ctx)),
        Behaviour::DoubleVote => Box::new(double_vote::DoubleVote::new(&ctx)),
        Behaviour::LieReply => Box::new(lie_reply::LieReply::new(&ctx)),
        Behaviour::Lockless => Box::new(lockless::Lockless::new(&ctx)),
        Behaviour::Extreme => Box::new(extreme::Extreme::new(&ctx)),
        Behaviour::WithholdCommits => Box::new(withhold_commits::WithholdCommits::new(&ctx)),
        Behaviour::BadSnapshot => Box::new(bad_snapshot::BadSnapshot::new(&ctx)),
        Behaviour::LieCheckpoint => Box::new(lie_checkpoint::LieCheckpoint::new(&ctx)),
    }
}

/// What every wrapper needs besides its inner node: who it is, its one key, and a private
/// RNG. The RNG is seeded from `ctx.seed` (salted per behaviour, so it does not mirror the
/// inner node's election-timeout draws): same seed, same run.
pub(crate) struct Kit {
    pub id: NodeId,
    pub n: usize,
    pub key: SigningKey,
    pub domain: Domain,
    pub ring: Keyring,
    pub rng: ChaCha8Rng,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
}

impl Kit {
    pub fn new(ctx: &Context, salt: u64) -> Kit {
        Kit {
            id: ctx.cfg.id,
            n: ctx.cfg.n,
            key: ctx.key.clone(),
            domain: ctx.domain(),
            ring: ctx.ring.clone(),
            rng: ChaCha8Rng::seed_from_u64(ctx.seed ^ salt.rotate_left(17) ^ 0xad5e_u64),
            election_ticks: ctx.cfg.timing.election_ticks.max(1),
            heartbeat_ticks: ctx.cfg.timing.heartbeat_ticks.max(1),
        }
    }

    /// Signs with our own key: the only key an adversary has.
    pub fn sign<T: Signable>(&self, body: T) -> Signed<T> {
        self.domain.sign(&self.key, body)
    }

    /// Every node id but ours, in id order.
    pub fn others(&self) -> Vec<NodeId> {
        (0..self.n as NodeId).filter(|&i| i != self.id).collect()
    }

    pub fn random_other(&mut self) -> NodeId {
        let others = self.others();
        if others.is_empty() {
            return self.id;
        }
        others[self.rng.gen_range(0..others.len())]
    }

    /// 64 random bytes where a signature should be: what a node without the key can offer.
    pub fn garbage_sig(&mut self) -> Option<Signature> {
        let mut b = [0u8; 64];
        self.rng.fill(&mut b[..]);
        Some(Signature::from_bytes(&b))
    }

    /// A digest no honest log holds.
    pub fn random_digest(&mut self) -> Digest {
        Digest(self.rng.gen())
    }

    /// The registered clients (the public config lists them), probed over a small range.
    pub fn clients(&self) -> Vec<ClientId> {
        (0..64).filter(|&c| self.ring.has_client(c)).collect()
    }
}

/// The RequestVote `node` would send for `term`: its real log end and (bft) its real lock,
/// so that nothing but the term or the sender field is a lie.
pub(crate) fn request_vote_of(node: &Node, term: crate::protocol::Term) -> RequestVote {
    let log = node.log();
    RequestVote {
        term,
        candidate: node.id(),
        last_index: log.last_index(),
        last_term: log.last_term(),
        last_hash: log.last_hash(),
        lock: if node.rules().lock_vote_check {
            node.hard_state().lock.clone()
        } else {
            None
        },
    }
}

/// The lock `node` would campaign on: what the votes for it must name.
pub(crate) fn candidate_lock(node: &Node) -> Option<crate::protocol::LockId> {
    crate::protocol::lock_id(&request_vote_of(node, 0).lock)
}

/// A small cluster's context for the adversaries' unit tests: node keys, one client (id 0).
#[cfg(test)]
pub(crate) mod testkit {
    use super::Context;
    use crate::crypto::{signing_key_from_seed, Domain, Keyring};
    use crate::protocol::{Durable, NodeConfig, NodeId, Rules, Timing, Variant};
    use ed25519_dalek::SigningKey;
    use std::collections::HashMap;

    pub fn client_key() -> SigningKey {
        signing_key_from_seed([99; 32])
    }

    pub fn ctx(id: NodeId, n: usize, variant: Variant) -> Context {
        let keys: Vec<SigningKey> = (0..n as u8)
            .map(|i| signing_key_from_seed([i + 1; 32]))
            .collect();
        let clients = HashMap::from([(0, client_key().verifying_key())]);
        let ring = Keyring::new(
            Domain::new(variant, "t"),
            keys.iter().map(|k| k.verifying_key()).collect(),
            clients,
        )
        .expect("test keys are fine");
        let rules = Rules::for_variant(variant);
        let cfg = NodeConfig {
            id,
            n,
            cluster_id: "t".into(),
            rules,
            timing: Timing::default(),
            checkpoint_interval: 0,
        };
        Context {
            cfg,
            key: keys[id as usize].clone(),
            seed: 7,
            durable: Durable::default(),
            ring,
        }
    }
}

#[cfg(test)]
mod story_tests {
    use super::Behaviour;
    use std::collections::BTreeSet;

    /// The demo ends with the behaviour's own attack and its own defeat: every behaviour
    /// must have texts of its own (issue 9: the demo told the stall story for all).
    #[test]
    fn every_behaviour_tells_its_own_attack_and_defeat() {
        let attacks: BTreeSet<_> = Behaviour::ALL.iter().map(|b| b.describe()).collect();
        let defeats: BTreeSet<_> = Behaviour::ALL.iter().map(|b| b.defence()).collect();
        assert_eq!(attacks.len(), Behaviour::ALL.len());
        assert_eq!(defeats.len(), Behaviour::ALL.len());
    }
}
