//! Rule tests below the simulator: one node, messages built by hand, outputs inspected.
//! Each test names the PROTOCOL.md rule it checks and switches the rule off where a
//! `Rules` flag exists, to show the test can fail.

use super::checkpoint::SnapshotVerdict;
use super::log::LogBase;
use super::message::{
    Ack, AppendEntries, Checkpoint, CheckpointCert, ElectionProof, Entry, LockId, Message, Payload,
    Request, Vote,
};
use super::node::{Durable, Input, Node, NodeConfig, Output, Persist, MAX_APPENDS_PER_TICK};
use super::types::{NodeId, Rules, Term, Timing, Variant};
use crate::crypto::{signing_key_from_seed, Digest, Domain, Principal, Signed};
use ed25519_dalek::SigningKey;

const N: usize = 4;

struct Harness {
    keys: Vec<SigningKey>,
    client: SigningKey,
    domain: Domain,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            keys: (0..N as u8)
                .map(|i| signing_key_from_seed([i + 7; 32]))
                .collect(),
            client: signing_key_from_seed([99; 32]),
            domain: Domain::new(Variant::Bft, "t"),
        }
    }

    fn node(&self, id: NodeId, rules: Rules, durable: Durable) -> Node {
        self.node_checkpointing(id, rules, durable, 0)
    }

    /// A node that checkpoints every `interval` applied entries.
    fn node_checkpointing(
        &self,
        id: NodeId,
        rules: Rules,
        durable: Durable,
        interval: u64,
    ) -> Node {
        let cfg = NodeConfig {
            id,
            n: N,
            cluster_id: "t".into(),
            rules,
            timing: Timing::default(),
            checkpoint_interval: interval,
        };
        Node::new(cfg, self.keys[id as usize].clone(), 1, durable)
    }

    fn sign<T: crate::crypto::Signable>(&self, by: NodeId, body: T) -> Signed<T> {
        self.domain.sign(&self.keys[by as usize], body)
    }

    fn vote(
        &self,
        voter: NodeId,
        term: Term,
        candidate: NodeId,
        lock: Option<LockId>,
    ) -> Signed<Vote> {
        self.sign(
            voter,
            Vote {
                term,
                voter,
                candidate,
                lock,
            },
        )
    }

    fn proof(&self, term: Term, leader: NodeId, lock: Option<LockId>) -> ElectionProof {
        let votes = (1..=3).map(|v| self.vote(v, term, leader, lock)).collect();
        ElectionProof {
            term,
            leader,
            votes,
        }
    }

    fn entry(&self, term: Term, index: u64, seq: u64) -> Entry {
        let op = super::message::Op::Put {
            key: "k".into(),
            value: format!("v{seq}").into(),
        };
        let r = self
            .domain
            .sign(&self.client, Request { client: 0, seq, op });
        Entry {
            term,
            index,
            payload: Payload::Request(r),
        }
    }

    /// The body of an AppendEntries from leader 1 of `term`, with its proof, after `prev`
    /// on `to`'s log; tests change fields with `..`.
    fn append_body(&self, to: &Node, term: Term, prev: u64, entries: Vec<Entry>) -> AppendEntries {
        AppendEntries {
            term,
            leader: 1,
            prev_index: prev,
            prev_term: to.log().term_at(prev).unwrap_or(0),
            prev_hash: to.log().hash_at(prev).unwrap_or_default(),
            entries,
            commit: 0,
            proof: Some(self.proof(term, 1, None)),
            lock: None,
        }
    }

    /// That AppendEntries, signed and delivered from leader 1.
    fn append(&self, to: &Node, term: Term, prev: u64, entries: Vec<Entry>) -> Input {
        let ae = self.append_body(to, term, prev, entries);
        deliver(1, Message::AppendEntries(self.sign(1, ae)))
    }
}

fn deliver(from: NodeId, msg: Message) -> Input {
    Input::Message {
        from: Principal::Node(from),
        msg,
    }
}

fn positive_acks(out: &[Output]) -> Vec<Ack> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broadcast(Message::Ack(a))
            | Output::Send {
                msg: Message::Ack(a),
                ..
            } if a.body.success => Some(a.body.clone()),
            _ => None,
        })
        .collect()
}

fn restart(h: &Harness, n: &Node, rules: Rules) -> Node {
    let durable = Durable {
        hard: n.hard_state().clone(),
        entries: n.log().entries().to_vec(),
        evidence: vec![],
        snapshot: None,
        stable: None,
    };
    h.node(n.id(), rules, durable)
}

/// Durability: a restarted node never signs what would be Evidence against it together
/// with what it signed before; here, an Ack of a fork in the term it Acked the real log.
fn acks_after_restart(rules: Rules) -> Vec<Ack> {
    let h = Harness::new();
    let mut n = h.node(0, rules, Durable::default());
    let real = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let out = n.step(h.append(&n, 1, 0, real));
    assert_eq!(positive_acks(&out).last().map(|a| a.index), Some(2));
    let mut n = restart(&h, &n, rules);
    // The same leader, same term, now sends a fork at index 1.
    let fork = vec![h.entry(1, 1, 7)];
    let mut out = n.step(h.append(&n, 1, 0, fork));
    out.extend(n.step(Input::Tick));
    positive_acks(&out)
}

#[test]
fn a_restarted_follower_never_acks_a_fork_in_the_term_it_acked_the_real_log() {
    let bft = Rules::for_variant(Variant::Bft);
    assert_eq!(acks_after_restart(bft), vec![], "it Acked the fork");
    let mut volatile = bft;
    volatile.durable_acks = false;
    assert!(
        !acks_after_restart(volatile).is_empty(),
        "with the Acked position forgotten the fork is Acked: the test can fail"
    );
}

/// Election: the AppendEntries' lock must be exactly the one its proof's votes name.
fn follows_with(rules: Rules, voted_on: Option<LockId>) -> bool {
    let h = Harness::new();
    let mut n = h.node(0, rules, Durable::default());
    // It claims no lock (`lock: None`) whatever its votes name.
    let ae = AppendEntries {
        proof: Some(h.proof(1, 1, voted_on)),
        ..h.append_body(&n, 1, 0, vec![])
    };
    n.step(deliver(1, Message::AppendEntries(h.sign(1, ae))));
    n.leader() == Some((1, 1))
}

#[test]
fn a_leader_claiming_another_lock_than_its_votes_name_is_not_followed() {
    let bft = Rules::for_variant(Variant::Bft);
    let named = Some(LockId {
        term: 1,
        index: 3,
        hash: Digest([5; 32]),
    });
    assert!(
        follows_with(bft, None),
        "votes naming no lock and no lock claimed"
    );
    assert!(
        !follows_with(bft, named),
        "elected on a lock, it claims none"
    );
    let mut planted = bft;
    planted.vote_binds_lock = false;
    assert!(
        follows_with(planted, named),
        "without the rule the claim is believed"
    );
}

/// Makes node 0 the leader of term 1 with votes from 1 and 2.
fn leader(h: &Harness, rules: Rules) -> Node {
    let mut n = h.node(0, rules, Durable::default());
    n.step(Input::Timeout);
    for v in [1, 2] {
        n.step(deliver(v, Message::Vote(h.vote(v, 1, 0, None))));
    }
    assert!(n.is_leader());
    n
}

/// A bft leader whose entries stay uncommitted for the request timeout steps down, even
/// while a quorum keeps Acking it (so CheckQuorum never fires).
fn still_leads_when_stuck(rules: Rules) -> bool {
    let h = Harness::new();
    let mut n = leader(&h, rules);
    let r = h.entry(1, 0, 1).payload.request().unwrap().clone();
    n.step(Input::Message {
        from: Principal::Client(0),
        msg: Message::Request(r),
    });
    let last = n.log().last_index();
    let hash = n.log().hash_at(last).unwrap();
    for _ in 0..=2 * Timing::default().request_ticks {
        for from in [1, 2] {
            let ack = Ack {
                term: 1,
                from,
                index: last,
                hash,
                success: true,
            };
            n.step(deliver(from, Message::Ack(h.sign(from, ack))));
        }
        n.step(Input::Tick);
    }
    assert!(
        n.commit_index() < last,
        "nobody sent a Commit: nothing may commit"
    );
    n.is_leader()
}

#[test]
fn a_leader_whose_entries_stay_uncommitted_steps_down() {
    let bft = Rules::for_variant(Variant::Bft);
    assert!(!still_leads_when_stuck(bft));
    let mut planted = bft;
    planted.stuck_leader_steps_down = false;
    assert!(still_leads_when_stuck(planted), "the test can fail");
}

#[test]
fn refusals_cannot_drive_more_than_the_per_tick_budget_of_append_entries() {
    let h = Harness::new();
    let mut n = leader(&h, Rules::for_variant(Variant::Bft));
    for seq in 1..=3 {
        let r = h.entry(1, 0, seq).payload.request().unwrap().clone();
        n.step(Input::Message {
            from: Principal::Client(0),
            msg: Message::Request(r),
        });
    }
    let mut sent = 0;
    for _ in 0..500 {
        let nack = Ack {
            term: 1,
            from: 3,
            index: 0,
            hash: n.log().hash_at(0).unwrap(),
            success: false,
        };
        let out = n.step(deliver(3, Message::Ack(h.sign(3, nack))));
        sent += out
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Send {
                        to: 3,
                        msg: Message::AppendEntries(_)
                    }
                )
            })
            .count();
    }
    assert!(
        sent as u32 <= MAX_APPENDS_PER_TICK,
        "{sent} AppendEntries in one tick"
    );
}

/// Evidence: a leader that, in one term, builds on another hash at an index whose entry it
/// already sent us is convicted by its two AppendEntries (not only judged by us).
#[test]
fn a_leader_building_on_another_hash_where_it_fed_us_is_convicted_with_evidence() {
    let h = Harness::new();
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    let out = n.step(h.append(&n, 1, 0, vec![h.entry(1, 1, 1), h.entry(1, 2, 2)]));
    assert_eq!(positive_acks(&out).len(), 1);
    // The fork's chain, as a leader feeding another follower would build it.
    let mut fork = h.node(2, Rules::for_variant(Variant::Bft), Durable::default());
    fork.step(h.append(&fork, 1, 0, vec![h.entry(1, 1, 2), h.entry(1, 2, 1)]));
    let ae = AppendEntries {
        proof: None,
        ..h.append_body(&fork, 1, 2, vec![h.entry(1, 3, 3)])
    };
    let out = n.step(deliver(1, Message::AppendEntries(h.sign(1, ae))));
    assert_convicted_by_evidence(&n, &out);
}

/// Evidence first: a leader that offers, in one term, another entry at an index it already
/// gave us is convicted by its two AppendEntries even when that index is committed (the
/// committed-entry guard alone would only judge it faulty, convincing nobody else).
#[test]
fn a_leader_rewriting_a_committed_index_it_fed_us_is_convicted_with_evidence() {
    let h = Harness::new();
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    n.step(h.append(&n, 1, 0, vec![h.entry(1, 1, 1), h.entry(1, 2, 2)]));
    let hash = n.log().hash_at(2).unwrap();
    for from in 1..N as NodeId {
        let ack = Ack {
            term: 1,
            from,
            index: 2,
            hash,
            success: true,
        };
        n.step(deliver(from, Message::Ack(h.sign(from, ack))));
    }
    commits_from_peers(&h, &mut n, 1, 2, hash);
    assert_eq!(n.commit_index(), 2, "the real order is committed");
    let out = n.step(h.append(&n, 1, 0, vec![h.entry(1, 1, 2), h.entry(1, 2, 1)]));
    assert_convicted_by_evidence(&n, &out);
}

/// The node refused to Ack and holds one piece of Evidence that really conflicts.
fn assert_convicted_by_evidence(n: &Node, out: &[Output]) {
    assert!(positive_acks(out).is_empty());
    assert_eq!(n.evidence().len(), 1, "the two AppendEntries are Evidence");
    assert!(super::evidence::conflicts(&n.evidence()[0]));
}

/// Numbers from the network never wrap (overflow checks are on in release): a Nack at the
/// edge of u64 only makes the leader back off within its own log.
#[test]
fn a_nack_at_the_edge_of_u64_does_not_wrap_the_leader() {
    let h = Harness::new();
    let mut n = leader(&h, Rules::for_variant(Variant::Bft));
    let nack = Ack {
        term: 1,
        from: 3,
        index: u64::MAX,
        hash: Digest::default(),
        success: false,
    };
    n.step(deliver(3, Message::Ack(h.sign(3, nack))));
    n.step(Input::Tick);
    assert!(n.is_leader());
}

// ---- catch-up ---------------------------------------------------------------------

/// The chain `entries` makes on an empty log of this cluster, and its hash at `index`.
fn chain_hash(entries: &[Entry], index: u64) -> Digest {
    let mut log = super::log::Log::new("t", true);
    for e in entries {
        log.append(e.clone());
    }
    log.hash_at(index).unwrap()
}

/// Commits of `(term, index, hash)` from nodes 1..=3, delivered to `n`.
fn commits_from_peers(h: &Harness, n: &mut Node, term: Term, index: u64, hash: Digest) {
    commits_from(h, n, 1..N as NodeId, (term, index, hash));
}

fn commits_from(
    h: &Harness,
    n: &mut Node,
    peers: impl IntoIterator<Item = NodeId>,
    (term, index, hash): (Term, u64, Digest),
) {
    use super::message::Commit;
    for from in peers {
        let c = Commit {
            term,
            from,
            index,
            hash,
        };
        n.step(deliver(from, Message::Commit(h.sign(from, c))));
    }
}

/// PROTOCOL.md, "Replication and commit" (bft): an entry commits once q distinct nodes
/// sent matching Commits for it, never on fewer, however often they repeat. (A Commit
/// of another hash at that index would be the sender's equivocation: Evidence, tested
/// with the evidence rules.)
#[test]
fn an_entry_commits_on_q_distinct_commits_and_not_before() {
    let h = Harness::new();
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    n.step(h.append(&n, 1, 0, chain.clone()));
    assert_eq!(n.log().last_index(), 2);
    let at_2 = (1, 2, chain_hash(&chain, 2));
    commits_from(&h, &mut n, [1, 2, 1, 2], at_2);
    assert_eq!(n.commit_index(), 0, "two nodes, twice each, are not q = 3");
    commits_from(&h, &mut n, [3], at_2);
    assert_eq!(n.commit_index(), 2);
}

fn catch_up(from: NodeId, entries: Vec<Entry>) -> Input {
    let c = super::message::CatchUp {
        from,
        prev_index: 0,
        prev_hash: super::log::Log::new("t", true).hash_at(0).unwrap(),
        entries,
        proof: vec![],
    };
    deliver(from, Message::CatchUp(c))
}

/// PROTOCOL.md, catch-up: a lagging node keeps pushed entries only as far as its own table
/// of q Commits proves them committed on the chain it recomputes; the rest is dropped.
#[test]
fn catch_up_installs_only_what_q_commits_prove() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2), h.entry(1, 3, 3)];
    let run = |rules: Rules| {
        let mut n = h.node(0, rules, Durable::default());
        commits_from_peers(&h, &mut n, 1, 2, chain_hash(&chain, 2));
        n.step(catch_up(1, chain.clone()));
        (n.commit_index(), n.log().last_index())
    };
    assert_eq!(run(Rules::for_variant(Variant::Bft)), (2, 2));
    let mut off = Rules::for_variant(Variant::Bft);
    off.switch_off("catch-up").unwrap();
    assert_eq!(run(off), (0, 0), "with catch-up off nothing is installed");
}

/// A liar's chain (other entries than the ones the Commits name) installs nothing.
#[test]
fn catch_up_from_a_liar_installs_nothing() {
    let h = Harness::new();
    let real = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let forged = vec![h.entry(1, 1, 2), h.entry(1, 2, 1)];
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    commits_from_peers(&h, &mut n, 1, 2, chain_hash(&real, 2));
    n.step(catch_up(3, forged));
    assert_eq!((n.commit_index(), n.log().last_index()), (0, 0));
    n.step(catch_up(1, real));
    assert_eq!(n.commit_index(), 2, "the real chain is then installed");
}

/// PROTOCOL.md, "Replication and commit" (bft): a node commits on the Commits it holds
/// from q distinct nodes. One signed Commit of an unreachable rank from a liar (term and
/// index u64::MAX, the `extreme` behaviour) must not shadow that node's real Commits: in
/// the n=7 run that found it, the liar's Commit was one a victim below its Ack floor
/// needed, and the victim never committed again while the rest of the cluster did.
#[test]
fn an_out_of_range_commit_does_not_shadow_the_senders_later_commits() {
    let h = Harness::new();
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    let junk = (Term::MAX, u64::MAX, Digest::default());
    commits_from(&h, &mut n, [3], junk);
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    n.step(h.append(&n, 1, 0, chain.clone()));
    commits_from_peers(&h, &mut n, 1, 2, chain_hash(&chain, 2));
    assert_eq!(n.commit_index(), 2, "node 3's real Commit counts");
}

/// Catch-up proves a pushed chain with the Commits the lagging node holds. A peer's newer
/// Commit (past the chain's end: the cluster moved on while the push travelled) must not
/// replace the one that proves the chain, or a node that lags under load never catches up.
#[test]
fn catch_up_is_proven_by_commits_older_than_the_newest() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2), h.entry(1, 3, 3)];
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    commits_from_peers(&h, &mut n, 1, 2, chain_hash(&chain, 2));
    commits_from_peers(&h, &mut n, 1, 3, chain_hash(&chain, 3));
    n.step(catch_up(1, chain[..2].to_vec()));
    assert_eq!((n.commit_index(), n.log().last_index()), (2, 2));
}

fn signed_commit(
    h: &Harness,
    from: NodeId,
    (term, index, hash): (Term, u64, Digest),
) -> Signed<super::message::Commit> {
    let body = super::message::Commit {
        term,
        from,
        index,
        hash,
    };
    h.sign(from, body)
}

/// Rule R9 (withhold-commits): a node that holds the entries but never gets one node's
/// Commit (a Byzantine node withholds it) commits on the q Commits a peer relays in a
/// catch-up proof; without the proof it never would.
#[test]
fn a_node_missing_a_withheld_commit_commits_on_a_relayed_proof() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let at_2 = (1, 2, chain_hash(&chain, 2));
    let run = |proof: Vec<NodeId>| {
        let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
        n.step(h.append(&n, 1, 0, chain.clone()));
        commits_from(&h, &mut n, [2], at_2); // node 3's (and 1's) never arrive
        let c = super::message::CatchUp {
            from: 2,
            prev_index: 2,
            prev_hash: at_2.2,
            entries: vec![],
            proof: proof
                .into_iter()
                .map(|j| signed_commit(&h, j, at_2))
                .collect(),
        };
        n.step(deliver(2, Message::CatchUp(c)));
        n.commit_index()
    };
    assert_eq!(run(vec![]), 0, "node 2's Commit alone is not q");
    assert_eq!(run(vec![1, 2, 3]), 2, "the relayed proof commits it");
}

/// Rule R9: a peer that retransmits its Commit still waits to commit; a node that has
/// committed it answers with its Commit and the proof behind its commit point.
#[test]
fn a_retransmitted_commit_is_answered_with_the_proof() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let at_2 = (1, 2, chain_hash(&chain, 2));
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    n.step(h.append(&n, 1, 0, chain.clone()));
    commits_from_peers(&h, &mut n, 1, 2, at_2.2);
    assert_eq!(n.commit_index(), 2);
    // Our own lock and Commit (from the peers' Acks) make the help possible.
    for from in 1..N as NodeId {
        let ack = Ack {
            term: 1,
            from,
            index: 2,
            hash: at_2.2,
            success: true,
        };
        n.step(deliver(from, Message::Ack(h.sign(from, ack))));
    }
    let again = signed_commit(&h, 3, at_2);
    let out = n.step(deliver(3, Message::Commit(again)));
    let proof = out.iter().find_map(|o| match o {
        Output::Send {
            to: 3,
            msg: Message::CatchUp(c),
        } => Some(c.proof.len()),
        _ => None,
    });
    assert_eq!(
        proof,
        Some(4),
        "our Commit and the three peers', one per node"
    );
}

/// Rule R9, transitively: a node that committed on a relayed proof can prove its commit
/// in turn. Relayed Commits are never stored with the signers' own, so without the kept
/// certificate its proof would be empty and a third node, which only it pushes, would
/// never commit (`withhold-commits`, n=4 seed 67000022).
#[test]
fn a_node_that_committed_on_a_relayed_proof_can_hand_the_proof_on() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let at_2 = (1, 2, chain_hash(&chain, 2));
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    n.step(h.append(&n, 1, 0, chain.clone()));
    commits_from(&h, &mut n, [2], at_2);
    assert!(n.commit_proof_for(2).is_empty(), "nothing committed yet");
    let relayed: Vec<_> = [1, 2, 3]
        .iter()
        .map(|&j| signed_commit(&h, j, at_2))
        .collect();
    let c = super::message::CatchUp {
        from: 2,
        prev_index: 2,
        prev_hash: at_2.2,
        entries: vec![],
        proof: relayed,
    };
    n.step(deliver(2, Message::CatchUp(c)));
    assert_eq!(n.commit_index(), 2);
    let proof = n.commit_proof_for(2);
    let signers: std::collections::BTreeSet<NodeId> = proof.iter().map(|c| c.body.from).collect();
    assert!(signers.len() >= 3, "q distinct signers: {signers:?}");
}

/// Rule R9: a proof that names another chain, or mixes terms so that no term has q
/// signers, commits nothing.
#[test]
fn a_relayed_proof_of_another_chain_or_of_mixed_terms_commits_nothing() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let hash = chain_hash(&chain, 2);
    let run = |proof: Vec<(NodeId, Term, Digest)>| {
        let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
        n.step(h.append(&n, 1, 0, chain.clone()));
        let c = super::message::CatchUp {
            from: 2,
            prev_index: 2,
            prev_hash: hash,
            entries: vec![],
            proof: proof
                .into_iter()
                .map(|(j, t, d)| signed_commit(&h, j, (t, 2, d)))
                .collect(),
        };
        n.step(deliver(2, Message::CatchUp(c)));
        n.commit_index()
    };
    let other = Digest([7; 32]);
    assert_eq!(run(vec![(1, 1, hash), (2, 1, hash), (3, 1, other)]), 0);
    assert_eq!(run(vec![(1, 1, hash), (2, 1, hash), (3, 2, hash)]), 0);
    assert_eq!(run(vec![(1, 1, hash), (2, 1, hash), (3, 1, hash)]), 2);
}

/// Rule R9: a peer that Acked our committed entries but whose Commits stay behind our
/// commit point for a whole election timeout (it may sit below its Ack floor, unable to
/// Commit, with a liar's Commit withheld) is handed the proof, once per window; a peer
/// whose Commits keep up is sent nothing.
#[test]
fn a_peer_whose_commits_lag_for_a_window_is_handed_the_proof() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let at_2 = (1, 2, chain_hash(&chain, 2));
    let proofs_to_3 = |peer_3_commits: bool| {
        let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
        n.step(h.append(&n, 1, 0, chain.clone()));
        // The peers' Acks give node 0 its lock and its own Commit; node 3 Acked the
        // entries, so nothing else would push it.
        for from in 1..N as NodeId {
            let ack = Ack {
                term: 1,
                from,
                index: 2,
                hash: at_2.2,
                success: true,
            };
            n.step(deliver(from, Message::Ack(h.sign(from, ack))));
        }
        let peers: Vec<NodeId> = if peer_3_commits {
            vec![1, 2, 3]
        } else {
            vec![1, 2]
        };
        commits_from(&h, &mut n, peers, at_2);
        let ticks = 3 * Timing::default().election_ticks;
        let mut sent = 0;
        for _ in 0..ticks {
            let out = n.step(Input::Tick);
            sent += out
                .iter()
                .filter(|o| {
                    matches!(o, Output::Send { to: 3, msg: Message::CatchUp(c) } if !c.proof.is_empty())
                })
                .count();
        }
        (n.commit_index(), sent)
    };
    let (commit, sent) = proofs_to_3(false);
    assert_eq!(commit, 2, "setup: node 0 committed");
    assert!(
        (1..=3).contains(&sent),
        "lagging peer proved to once per window: {sent}"
    );
    assert_eq!(proofs_to_3(true).1, 0, "a peer whose Commits keep up");
}

// ---- checkpoints, compaction, state transfer ----------------------------------------

/// A bft node (id 0) that committed entries 1..=3 and checkpoints every 2: its first
/// snapshot request is at 2.
fn checkpointing_node(h: &Harness) -> (Node, Vec<Entry>) {
    let mut n = h.node_checkpointing(0, Rules::for_variant(Variant::Bft), Durable::default(), 2);
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2), h.entry(1, 3, 3)];
    n.step(h.append(&n, 1, 0, chain.clone()));
    commits_from_peers(h, &mut n, 1, 3, chain_hash(&chain, 3));
    assert_eq!(n.commit_index(), 3);
    (n, chain)
}

fn checkpoint(h: &Harness, from: NodeId, base: LogBase, digest: Digest) -> Signed<Checkpoint> {
    h.sign(
        from,
        Checkpoint {
            epoch: 0,
            from,
            index: base.index,
            term: base.term,
            chain_hash: base.hash,
            state_digest: digest,
        },
    )
}

fn compacted(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Persist(Persist::Compact(_))))
}

/// Rules K1–K3: after applying every interval-th entry the node asks for a snapshot; told
/// its digest, it signs and broadcasts a Checkpoint; q matching Checkpoints from distinct
/// nodes make it stable and the log below it goes. A peer's Checkpoint of another digest,
/// or the same peer twice, does not count.
#[test]
fn a_checkpoint_is_stable_on_q_distinct_matching_ones_and_then_the_log_compacts() {
    let h = Harness::new();
    let mut n = h.node_checkpointing(0, Rules::for_variant(Variant::Bft), Durable::default(), 2);
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2), h.entry(1, 3, 3)];
    n.step(h.append(&n, 1, 0, chain.clone()));
    let mut asked = Vec::new();
    for from in 1..N as NodeId {
        let c = super::message::Commit {
            term: 1,
            from,
            index: 3,
            hash: chain_hash(&chain, 3),
        };
        asked.extend(n.step(deliver(from, Message::Commit(h.sign(from, c)))));
    }
    let bases: Vec<LogBase> = asked
        .iter()
        .filter_map(|o| match o {
            Output::TakeSnapshot(b) => Some(*b),
            _ => None,
        })
        .collect();
    let base = n.log().base_at(2).expect("index 2 is held");
    assert_eq!(bases, vec![base], "one snapshot, right after applying 2");
    let digest = Digest([5; 32]);
    let out = n.step(Input::Snapshotted {
        base,
        state_digest: digest,
    });
    assert!(out.iter().any(
        |o| matches!(o, Output::Broadcast(Message::Checkpoint(c)) if c.body.state_digest == digest)
    ));
    let mut out = n.step(deliver(
        1,
        Message::Checkpoint(checkpoint(&h, 1, base, digest)),
    ));
    out.extend(n.step(deliver(
        1,
        Message::Checkpoint(checkpoint(&h, 1, base, digest)),
    )));
    let other = checkpoint(&h, 2, base, Digest([6; 32]));
    out.extend(n.step(deliver(2, Message::Checkpoint(other))));
    assert!(
        !compacted(&out),
        "ours, node 1's twice and a disagreeing one: not q"
    );
    assert_eq!(n.log().base().index, 0);
    let out = n.step(deliver(
        3,
        Message::Checkpoint(checkpoint(&h, 3, base, digest)),
    ));
    assert!(compacted(&out));
    assert_eq!(n.log().base(), base);
    assert_eq!(n.log().last_index(), 3, "entries past the checkpoint stay");
}

/// Rule K4: a snapshot's certificate must hold q Checkpoints of one point from distinct
/// members; anything else is a forgery (the sender misbehaves). A valid one at or below
/// our commit point is not needed.
#[test]
fn a_snapshot_certificate_needs_q_distinct_member_signers_of_one_point() {
    let h = Harness::new();
    let n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    let base = LogBase {
        index: 8,
        term: 1,
        hash: Digest([8; 32]),
    };
    let d = Digest([1; 32]);
    let cert = |signers: &[NodeId]| CheckpointCert {
        checkpoints: signers
            .iter()
            .map(|&j| checkpoint(&h, j, base, d))
            .collect(),
    };
    assert_eq!(
        n.snapshot_wanted(1, &cert(&[1, 2, 3])),
        SnapshotVerdict::Wanted
    );
    assert_eq!(
        n.snapshot_wanted(1, &cert(&[1, 2])),
        SnapshotVerdict::Forged
    );
    assert_eq!(
        n.snapshot_wanted(1, &cert(&[1, 2, 2])),
        SnapshotVerdict::Forged
    );
    assert_eq!(n.snapshot_wanted(1, &cert(&[])), SnapshotVerdict::Forged);
    let mut outsider = cert(&[1, 2]);
    let mut c9 = checkpoint(&h, 3, base, d);
    c9.body.from = 9; // not a member (auth would refuse the signature; the core too)
    outsider.checkpoints.push(c9);
    assert_eq!(n.snapshot_wanted(1, &outsider), SnapshotVerdict::Forged);
    let mut mixed = cert(&[1, 2]);
    mixed
        .checkpoints
        .push(checkpoint(&h, 3, base, Digest([2; 32])));
    assert_eq!(n.snapshot_wanted(1, &mixed), SnapshotVerdict::Forged);
    let (done, _) = checkpointing_node(&h);
    let low = LogBase { index: 3, ..base };
    let stale = CheckpointCert {
        checkpoints: [1, 2, 3]
            .iter()
            .map(|&j| checkpoint(&h, j, low, d))
            .collect(),
    };
    assert_eq!(done.snapshot_wanted(1, &stale), SnapshotVerdict::Unneeded);
}

/// Rule K4: an installed snapshot makes its base committed and applied, the log starts
/// there, and entries past it that continue its chain stay.
#[test]
fn an_installed_snapshot_sets_base_and_commit_and_keeps_a_continuing_suffix() {
    let h = Harness::new();
    let chain = vec![h.entry(1, 1, 1), h.entry(1, 2, 2), h.entry(1, 3, 3)];
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), Durable::default());
    n.step(h.append(&n, 1, 0, chain.clone()));
    let base = n.log().base_at(2).unwrap();
    let d = Digest([1; 32]);
    let cert = CheckpointCert {
        checkpoints: [1, 2, 3]
            .iter()
            .map(|&j| checkpoint(&h, j, base, d))
            .collect(),
    };
    assert_eq!(n.snapshot_wanted(1, &cert), SnapshotVerdict::Wanted);
    let out = n.step(Input::SnapshotInstalled(cert));
    assert!(compacted(&out));
    assert_eq!(
        (n.log().base(), n.commit_index(), n.log().last_index()),
        (base, 2, 3)
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Apply(_))),
        "what the snapshot holds is not applied again"
    );
}

/// Rule K4: a node whose peer says it holds less than our base, or has said nothing,
/// offers that peer the snapshot, once per election timeout, and pushes no entries it no
/// longer holds; a peer that says it holds our base or more is offered none.
#[test]
fn a_peer_that_needs_compacted_entries_is_offered_the_snapshot() {
    let h = Harness::new();
    let (n, chain) = checkpointing_node(&h);
    let base = n.log().base_at(2).unwrap();
    let d = Digest([5; 32]);
    let cert = CheckpointCert {
        checkpoints: [1, 2, 3]
            .iter()
            .map(|&j| checkpoint(&h, j, base, d))
            .collect(),
    };
    // Restarted after compacting at 2: it knows nothing of its peers yet.
    let durable = Durable {
        hard: n.hard_state().clone(),
        entries: chain[2..].to_vec(),
        evidence: vec![],
        snapshot: Some(super::log::Snapshot {
            base,
            state: vec![],
        }),
        stable: Some(cert),
    };
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), durable);
    assert_eq!((n.log().base(), n.commit_index()), (base, 3));
    let ack = Ack {
        term: 1,
        from: 3,
        index: 1,
        hash: chain_hash(&chain, 1),
        success: true,
    };
    n.step(deliver(3, Message::Ack(h.sign(3, ack.clone()))));
    let past = Ack {
        from: 2,
        index: 3,
        hash: chain_hash(&chain, 3),
        ..ack
    };
    n.step(deliver(2, Message::Ack(h.sign(2, past))));
    let mut offered = Vec::new();
    for _ in 0..2 * Timing::default().election_ticks {
        for o in n.step(Input::Tick) {
            match o {
                Output::SendSnapshot { to, cert } => offered.push((to, cert.index())),
                Output::Send {
                    msg: Message::CatchUp(c),
                    ..
                } => assert!(c.prev_index >= 2, "no entries below the base"),
                _ => {}
            }
        }
    }
    let to: std::collections::BTreeSet<NodeId> = offered.iter().map(|o| o.0).collect();
    assert_eq!(to, [1, 3].into(), "{offered:?}");
    assert!(offered.iter().all(|o| o.1 == 2));
    assert!(offered.len() <= 6, "rate-limited: {offered:?}");
}

/// Rule K5: an AppendEntries from below our base (a leader whose next index for us is
/// stale) is answered with a refusal naming the base, never judged as equivocation, even
/// where we Acked in that term.
#[test]
fn an_append_below_our_base_is_refused_with_the_base_not_judged() {
    let h = Harness::new();
    let (n, chain) = checkpointing_node(&h);
    let base = n.log().base_at(2).unwrap();
    let durable = Durable {
        hard: n.hard_state().clone(),
        entries: chain[2..].to_vec(),
        evidence: vec![],
        snapshot: Some(super::log::Snapshot {
            base,
            state: vec![],
        }),
        stable: None,
    };
    let mut n = h.node(0, Rules::for_variant(Variant::Bft), durable);
    n.step(h.append(&n, 1, 3, vec![]));
    let out = n.step(h.append(&n, 1, 1, chain[1..].to_vec()));
    let nack = out.iter().find_map(|o| match o {
        Output::Send {
            to: 1,
            msg: Message::Ack(a),
        } if !a.body.success => Some(a.body.index),
        _ => None,
    });
    assert_eq!(nack, Some(2), "{out:?}");
    assert_eq!(n.leader(), Some((1, 1)), "still following its leader");
}

// ---- clients ----------------------------------------------------------------------

/// PROTOCOL.md, clients: a follower forwards a client's request to its leader and times
/// it; if it stays uncommitted past the request timeout, the leader is judged faulty and
/// the follower campaigns, even while the leader's heartbeats keep coming.
fn campaigns_on_an_uncommitted_request(rules: Rules) -> bool {
    let h = Harness::new();
    let mut n = h.node(0, rules, Durable::default());
    n.step(h.append(&n, 1, 0, vec![]));
    let r = h.entry(1, 1, 1).payload.request().unwrap().clone();
    let out = n.step(Input::Message {
        from: Principal::Client(0),
        msg: Message::Request(r),
    });
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                to: 1,
                msg: Message::Request(_)
            }
        )),
        "the request is forwarded to the leader"
    );
    let ticks = Timing::default().request_ticks + 2;
    for t in 0..ticks {
        if t % 2 == 0 {
            n.step(h.append(&n, 1, 0, vec![])); // a live, but stalling, leader
        }
        let out = n.step(Input::Tick);
        if out
            .iter()
            .any(|o| matches!(o, Output::Broadcast(Message::RequestVote(_))))
        {
            return true;
        }
    }
    false
}

#[test]
fn an_uncommitted_forwarded_request_makes_the_follower_campaign() {
    assert!(campaigns_on_an_uncommitted_request(Rules::for_variant(
        Variant::Bft
    )));
    let mut off = Rules::for_variant(Variant::Bft);
    off.switch_off("request-timers").unwrap();
    assert!(!campaigns_on_an_uncommitted_request(off));
}

// ---- Plain Raft (`raft.rs`), the benchmark's baseline --------------------------------

fn raft_rules() -> Rules {
    Rules::for_variant(Variant::Raft)
}

/// A Raft AppendEntries from leader 1 of `term` (no proof: Raft leaders prove nothing).
fn raft_append(h: &Harness, to: &Node, term: Term, entries: Vec<Entry>, commit: u64) -> Input {
    let ae = AppendEntries {
        commit,
        proof: None,
        ..h.append_body(to, term, to.log().last_index(), entries)
    };
    deliver(1, Message::AppendEntries(h.sign(1, ae)))
}

fn acks_sent(out: &[Output]) -> Vec<(Option<NodeId>, Ack)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::Ack(a),
            } => Some((Some(*to), a.body.clone())),
            Output::Broadcast(Message::Ack(a)) => Some((None, a.body.clone())),
            _ => None,
        })
        .collect()
}

/// Raft 5.3: a follower Acks its leader alone (no broadcast) and takes the leader's
/// commit index on trust, up to what it holds.
#[test]
fn a_raft_follower_acks_its_leader_alone_and_takes_its_commit_on_trust() {
    let h = Harness::new();
    let mut n = h.node(0, raft_rules(), Durable::default());
    let entries = vec![h.entry(1, 1, 1), h.entry(1, 2, 2)];
    let out = n.step(raft_append(&h, &n, 1, entries, 5));
    let acks = acks_sent(&out);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].0, Some(1), "sent to the leader, not broadcast");
    assert!(acks[0].1.success && acks[0].1.index == 2);
    assert_eq!(
        n.commit_index(),
        2,
        "leader's commit 5, capped at our log end"
    );
    assert_eq!(n.leader(), Some((1, 1)), "followed without any proof");
}

/// Raft 5.1: a stale leader is refused and told the current term, so it steps down.
#[test]
fn a_raft_follower_tells_a_stale_leader_its_term() {
    let h = Harness::new();
    let mut n = h.node(0, raft_rules(), Durable::default());
    n.step(raft_append(&h, &n, 3, vec![], 0));
    let out = n.step(raft_append(&h, &n, 2, vec![h.entry(2, 1, 1)], 0));
    let acks = acks_sent(&out);
    assert_eq!(acks.len(), 1, "{acks:?}");
    let (to, nack) = &acks[0];
    assert_eq!((*to, nack.success, nack.term), (Some(1), false, 3));
    assert_eq!(
        n.log().last_index(),
        0,
        "the stale leader's entry was refused"
    );
}

/// Raft 5.4.2 and 8: a new leader appends a no-op of its term and commits by counting
/// only entries of its own term; an earlier term's entry commits with it, never alone.
#[test]
fn a_raft_leader_commits_by_counting_only_entries_of_its_own_term() {
    let h = Harness::new();
    let old = h.entry(1, 1, 1);
    let durable = Durable {
        hard: super::node::HardState {
            term: 1,
            ..Default::default()
        },
        entries: vec![old],
        ..Default::default()
    };
    let mut n = h.node(0, raft_rules(), durable);
    n.step(Input::Timeout);
    for voter in [1, 2] {
        n.step(deliver(voter, Message::Vote(h.vote(voter, 2, 0, None))));
    }
    assert!(n.is_leader(), "3 of 4 votes elect a Raft leader");
    assert_eq!(n.log().term_at(2), Some(2), "the new leader's no-op");
    let ack = |from: NodeId, index: u64| {
        let body = Ack {
            term: 2,
            from,
            index,
            hash: Digest::default(),
            success: true,
        };
        deliver(from, Message::Ack(h.sign(from, body)))
    };
    n.step(ack(1, 1));
    n.step(ack(2, 1));
    assert_eq!(
        n.commit_index(),
        0,
        "a majority holds index 1, of an earlier term"
    );
    n.step(ack(1, 2));
    assert_eq!(n.commit_index(), 0, "two of four hold index 2: no majority");
    n.step(ack(2, 2));
    assert_eq!(n.commit_index(), 2, "a majority holds the no-op of term 2");
}
