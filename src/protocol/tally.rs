//! What a node has heard of its peers' Acks and Commits (PROTOCOL.md rules R4, R6, R9):
//! the material of prepared certificates and commit points, and of how far each peer's
//! log is known to match ours. A part of `Node` with its own tests; it never signs, and it
//! judges hashes only through the `hash_at` its caller passes (our log, or our log
//! followed by a chain a peer pushed).

use super::message::{Ack, Commit};
use super::node::{ACKS_KEPT, COMMITS_KEPT};
use super::types::{Index, NodeId, Term};
use crate::crypto::{Digest, Signed};
use std::collections::{BTreeMap, VecDeque};

/// A certificate's `(term, index)`, by which locks are ordered.
pub(super) type Rank = (Term, Index);

pub(super) struct Tally {
    /// Per node, its latest positive Acks (at most `ACKS_KEPT`).
    acks: Vec<VecDeque<Signed<Ack>>>,
    /// Per node, its latest distinct Commits (at most `COMMITS_KEPT`, oldest first): not
    /// only its highest, see `keep_commit`.
    commits: Vec<VecDeque<Signed<Commit>>>,
    /// The Commits (at most one per node) behind the highest commit point that relayed
    /// Commits gave us. Relayed Commits are never put in `commits` (see
    /// `commit_point_with`), yet a node that committed on them must be able to prove its
    /// commit in turn: otherwise a proof reaches only the relayer's direct peers, and a
    /// node below its Ack floor that can be pushed only by such a node never commits
    /// (`withhold-commits`, n=4 seed 67000022). Replaced only by the proof of a higher
    /// point, so a liar cannot flush it.
    cert: Vec<Signed<Commit>>,
}

/// What keeping an Ack did.
pub(super) enum AckKept {
    /// We held it already.
    Known,
    /// It disagrees with one we hold from that node at that `(term, index)`: that one is
    /// returned, and the pair is Evidence.
    Clash(Signed<Ack>),
    Kept,
}

impl Tally {
    pub fn new(n: usize) -> Tally {
        Tally {
            acks: vec![VecDeque::new(); n],
            commits: vec![VecDeque::new(); n],
            cert: Vec::new(),
        }
    }

    /// Keeps a positive Ack of a cluster member.
    pub fn keep_ack(&mut self, a: Signed<Ack>) -> AckKept {
        let kept = &mut self.acks[a.body.from as usize];
        if kept.iter().any(|k| k.body == a.body) {
            return AckKept::Known;
        }
        let clash = kept
            .iter()
            .find(|k| k.body.term == a.body.term && k.body.index == a.body.index);
        if let Some(old) = clash {
            return AckKept::Clash(old.clone());
        }
        kept.push_back(a);
        if kept.len() > ACKS_KEPT {
            kept.pop_front();
        }
        AckKept::Kept
    }

    /// The highest `(term, index)` above `floor` that q distinct nodes Acked with the hash
    /// `hash_at` gives there, and those Acks.
    pub fn best_prepared(
        &self,
        q: usize,
        floor: Rank,
        hash_at: impl Fn(Index) -> Option<Digest>,
    ) -> Option<(Rank, Vec<Signed<Ack>>)> {
        let mut support: BTreeMap<Rank, Vec<&Signed<Ack>>> = BTreeMap::new();
        for a in self.acks.iter().flatten() {
            let b = &a.body;
            if (b.term, b.index) > floor && hash_at(b.index) == Some(b.hash) {
                support.entry((b.term, b.index)).or_default().push(a);
            }
        }
        let (rank, acks) = support.into_iter().rev().find(|(_, v)| v.len() >= q)?;
        Some((rank, acks.into_iter().cloned().collect()))
    }

    /// Whether we hold this Commit, and if so whether it is its sender's latest (a
    /// repeat of the latest is a retransmission: the sender still waits to commit).
    pub fn holds_commit(&self, c: &Commit) -> Option<bool> {
        let kept = &self.commits[c.from as usize];
        let at = kept.iter().position(|k| k.body == *c)?;
        Some(at + 1 == kept.len())
    }

    /// Keeps a node's Commit among its latest `COMMITS_KEPT`. PROTOCOL.md counts the
    /// Commits a node *holds* from q distinct nodes; it does not say to keep only each
    /// node's highest. **Chosen**: keep each node's recent distinct Commits, whatever their
    /// rank, and count a node when any of them matches. Keeping only the highest-ranked
    /// one let a single signed Commit of an unreachable rank (term or index u64::MAX, from
    /// a Byzantine node) shadow every later Commit of that node for ever: a victim lagging
    /// below its Ack floor then never gathered q Commits while the rest of the cluster
    /// committed (the simulator found it, n=7, seed 60000149). It also let a peer's newest
    /// Commit, past the end of a catch-up chain, shadow the one that proves that chain.
    /// Every Commit is a signed claim "I hold a lock at (t, i, h)", and locks only rise, so
    /// an older one stays true: counting it is sound. A liar can flush only its own
    /// Commits, which it could as well withhold.
    pub fn keep_commit(&mut self, c: Signed<Commit>) {
        let kept = &mut self.commits[c.body.from as usize];
        if kept.iter().any(|k| k.body == c.body) {
            return;
        }
        kept.push_back(c);
        if kept.len() > COMMITS_KEPT {
            kept.pop_front();
        }
    }

    /// The highest index q nodes' Commits of one term prove committed on the chain
    /// `hash_at` describes: each Commit counts for its index and every index below it, and
    /// a node counts once per term, at its highest matching Commit of that term.
    #[cfg(test)]
    pub fn commit_point(&self, q: usize, hash_at: impl Fn(Index) -> Option<Digest>) -> Index {
        self.commit_point_with(q, hash_at, &[])
    }

    /// `commit_point`, counting `relayed` Commits too (a catch-up's proof). A relayed
    /// Commit is its signer's claim whoever carries it, so it counts like a direct one;
    /// it is counted on the spot and never stored, so a relayer cannot flush a node's
    /// own Commits, nor a signer's Commit of unreachable rank shadow relays of its real ones.
    pub fn commit_point_with(
        &self,
        q: usize,
        hash_at: impl Fn(Index) -> Option<Digest>,
        relayed: &[Signed<Commit>],
    ) -> Index {
        point_among(q, hash_at, self.candidates(relayed))
    }

    /// Every Commit that may count: each node's kept ones, the kept certificate, and the
    /// `relayed` ones of members.
    fn candidates<'a>(
        &'a self,
        relayed: &'a [Signed<Commit>],
    ) -> impl Iterator<Item = &'a Signed<Commit>> {
        let n = self.commits.len();
        let relayed = relayed.iter().filter(move |c| (c.body.from as usize) < n);
        self.commits
            .iter()
            .flatten()
            .chain(&self.cert)
            .chain(relayed)
    }

    /// The Commits behind our commit point on the chain `hash_at` describes: per node, its
    /// highest matching Commit of the term that gives the point (at most one per node, so
    /// at most n). Empty if nothing is committed. What a catch-up push carries as proof.
    /// A `hash_at` that stops at index `k` gives the proof of the highest point at or
    /// below `k` made of Commits at or below `k`: what a node that holds our chain only
    /// up to `k` can check.
    pub fn commit_proof(
        &self,
        q: usize,
        hash_at: impl Fn(Index) -> Option<Digest>,
    ) -> Vec<Signed<Commit>> {
        self.commit_proof_with(q, hash_at, &[])
    }

    /// `commit_proof`, counting `relayed` Commits too.
    fn commit_proof_with(
        &self,
        q: usize,
        hash_at: impl Fn(Index) -> Option<Digest>,
        relayed: &[Signed<Commit>],
    ) -> Vec<Signed<Commit>> {
        let point = self.commit_point_with(q, &hash_at, relayed);
        if point == 0 {
            return Vec::new();
        }
        let mut best: BTreeMap<(Term, NodeId), &Signed<Commit>> = BTreeMap::new();
        for c in self.candidates(relayed) {
            if c.body.index >= point && hash_at(c.body.index) == Some(c.body.hash) {
                let slot = best.entry((c.body.term, c.body.from)).or_insert(c);
                if c.body.index > slot.body.index {
                    *slot = c;
                }
            }
        }
        let mut by_term: BTreeMap<Term, Vec<Signed<Commit>>> = BTreeMap::new();
        for ((term, _), c) in best {
            by_term.entry(term).or_default().push(c.clone());
        }
        by_term
            .into_values()
            .find(|v| v.len() >= q)
            .unwrap_or_default()
    }

    /// After `relayed` Commits moved our commit point: keep the proof of the new point (a
    /// relay is never stored in the per-node tables) so that we can hand it on.
    pub fn keep_cert(
        &mut self,
        q: usize,
        hash_at: impl Fn(Index) -> Option<Digest>,
        relayed: &[Signed<Commit>],
    ) {
        let proof = self.commit_proof_with(q, &hash_at, relayed);
        if point_among(q, &hash_at, proof.iter()) > point_among(q, &hash_at, self.cert.iter()) {
            self.cert = proof;
        }
    }

    /// The highest index of `node`'s Commits that matches the chain `hash_at` describes:
    /// how far we know it holds a lock on our chain; the genesis if none.
    pub fn known_commit(&self, node: NodeId, hash_at: impl Fn(Index) -> Option<Digest>) -> Index {
        self.commits[node as usize]
            .iter()
            .filter(|c| hash_at(c.body.index) == Some(c.body.hash))
            .map(|c| c.body.index)
            .max()
            .unwrap_or(0)
    }

    /// The highest index `node` claimed to hold (by positive Ack or Commit), whatever the
    /// chain; `None` if we have heard nothing from it.
    pub fn claimed(&self, node: NodeId) -> Option<Index> {
        let j = node as usize;
        let acks = self.acks[j].iter().map(|a| a.body.index);
        acks.chain(self.commits[j].iter().map(|c| c.body.index))
            .max()
    }

    /// The highest index at which `node` told us (by Ack or Commit) that its log is the
    /// chain `hash_at` describes; the genesis if none.
    pub fn known_match(&self, node: NodeId, hash_at: impl Fn(Index) -> Option<Digest>) -> Index {
        let j = node as usize;
        let acks = self.acks[j].iter().map(|a| (a.body.index, a.body.hash));
        let commit = self.commits[j].iter().map(|c| (c.body.index, c.body.hash));
        acks.chain(commit)
            .filter(|(i, h)| hash_at(*i) == Some(*h))
            .map(|(i, _)| i)
            .max()
            .unwrap_or(0)
    }
}

/// The highest index q nodes' Commits among `commits` prove on the chain `hash_at`
/// describes: each Commit counts for its index and every index below it, and a node
/// counts once per term, at its highest matching Commit of that term.
fn point_among<'a>(
    q: usize,
    hash_at: impl Fn(Index) -> Option<Digest>,
    commits: impl Iterator<Item = &'a Signed<Commit>>,
) -> Index {
    let mut by_term: BTreeMap<Term, BTreeMap<NodeId, Index>> = BTreeMap::new();
    for c in commits {
        if hash_at(c.body.index) == Some(c.body.hash) {
            let signer = c.body.from;
            let at = by_term
                .entry(c.body.term)
                .or_default()
                .entry(signer)
                .or_default();
            *at = (*at).max(c.body.index);
        }
    }
    by_term
        .into_values()
        .map(|per_node| per_node.into_values().collect::<Vec<Index>>())
        .filter(|v| v.len() >= q)
        .map(|mut v| {
            v.sort_unstable_by(|a, b| b.cmp(a));
            v[q - 1]
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Domain};
    use crate::protocol::Variant;

    fn domain() -> Domain {
        Domain::new(Variant::Bft, "t")
    }

    fn key(from: NodeId) -> ed25519_dalek::SigningKey {
        signing_key_from_seed([from as u8 + 1; 32])
    }

    fn ack(from: NodeId, term: Term, index: Index, hash: u8) -> Signed<Ack> {
        let body = Ack {
            term,
            from,
            index,
            hash: Digest([hash; 32]),
            success: true,
        };
        domain().sign(&key(from), body)
    }

    fn commit(from: NodeId, term: Term, index: Index, hash: u8) -> Signed<Commit> {
        let body = Commit {
            term,
            from,
            index,
            hash: Digest([hash; 32]),
        };
        domain().sign(&key(from), body)
    }

    /// Our log in these tests: hash `i` at index `i`.
    fn ours(i: Index) -> Option<Digest> {
        (i <= 10).then_some(Digest([i as u8; 32]))
    }

    #[test]
    fn a_certificate_needs_q_distinct_acks_matching_our_log_above_the_floor() {
        let mut t = Tally::new(4);
        for from in [0, 1] {
            t.keep_ack(ack(from, 2, 5, 5));
        }
        t.keep_ack(ack(2, 2, 5, 9)); // another chain
        assert!(t.best_prepared(3, (0, 0), ours).is_none());
        t.keep_ack(ack(3, 2, 5, 5));
        let (rank, acks) = t.best_prepared(3, (0, 0), ours).expect("q = 3 match");
        assert_eq!((rank, acks.len()), ((2, 5), 3));
        assert!(
            t.best_prepared(3, (2, 5), ours).is_none(),
            "not above the floor"
        );
    }

    #[test]
    fn two_acks_of_one_term_and_index_that_disagree_clash() {
        let mut t = Tally::new(4);
        assert!(matches!(t.keep_ack(ack(1, 2, 5, 5)), AckKept::Kept));
        assert!(matches!(t.keep_ack(ack(1, 2, 5, 5)), AckKept::Known));
        assert!(matches!(t.keep_ack(ack(1, 2, 5, 6)), AckKept::Clash(_)));
        assert!(
            matches!(t.keep_ack(ack(1, 3, 5, 6)), AckKept::Kept),
            "another term"
        );
    }

    #[test]
    fn acks_kept_per_node_are_bounded() {
        let mut t = Tally::new(2);
        for i in 0..(ACKS_KEPT as Index + 10) {
            t.keep_ack(ack(1, 1, i, 0));
        }
        assert_eq!(t.acks[1].len(), ACKS_KEPT);
    }

    #[test]
    fn the_commit_point_is_the_qth_highest_matching_commit_of_one_term() {
        let mut t = Tally::new(4);
        t.keep_commit(commit(0, 1, 9, 9));
        t.keep_commit(commit(1, 1, 7, 7));
        t.keep_commit(commit(2, 2, 8, 8)); // another term: not counted with these
        assert_eq!(t.commit_point(3, ours), 0);
        t.keep_commit(commit(3, 1, 4, 4));
        assert_eq!(t.commit_point(3, ours), 4);
        t.keep_commit(commit(3, 1, 6, 66)); // a fork's hash: node 3's earlier one still counts
        assert_eq!(t.commit_point(3, ours), 4);
        for i in 0..3 {
            t.keep_commit(commit(0, 1, i + 1, i as u8 + 1)); // older ones: node 0 counts once
        }
        assert_eq!(t.commit_point(3, ours), 4);
    }

    #[test]
    fn an_out_of_range_commit_does_not_hide_its_senders_later_ones() {
        let mut t = Tally::new(4);
        t.keep_commit(commit(3, u64::MAX, u64::MAX, 1));
        for from in 0..4 {
            t.keep_commit(commit(from, 1, 4, 4));
        }
        assert_eq!(t.commit_point(4, ours), 4);
        assert_eq!(
            t.holds_commit(&commit(3, 1, 4, 4).body),
            Some(true),
            "the latest"
        );
        assert_eq!(
            t.holds_commit(&commit(3, u64::MAX, u64::MAX, 1).body),
            Some(false)
        );
        assert_eq!(t.holds_commit(&commit(3, 1, 5, 5).body), None);
    }

    #[test]
    fn the_proof_of_a_commit_point_is_q_commits_of_its_term_and_relays_cannot_flush() {
        let mut t = Tally::new(4);
        assert!(t.commit_proof(3, ours).is_empty(), "nothing committed");
        for from in 0..3 {
            t.keep_commit(commit(from, 1, 5 + from as Index, 5 + from as u8));
        }
        let proof = t.commit_proof(3, ours);
        assert_eq!(proof.len(), 3);
        let other = Tally::new(4);
        assert_eq!(
            other.commit_point_with(3, ours, &proof),
            5,
            "the proof proves the same point"
        );
        assert_eq!(
            other.commit_point(3, ours),
            0,
            "relayed Commits are not stored"
        );
    }

    /// A Byzantine signer's Commit of unreachable rank, held directly, must not make us
    /// refuse relays of its real Commits (the reviewer's case against a rank filter).
    #[test]
    fn a_held_commit_of_unreachable_rank_does_not_shadow_relays() {
        let mut t = Tally::new(4);
        t.keep_commit(commit(3, u64::MAX, u64::MAX, 1));
        for from in [0, 1] {
            t.keep_commit(commit(from, 1, 5, 5));
        }
        assert_eq!(t.commit_point(3, ours), 0);
        assert_eq!(t.commit_point_with(3, ours, &[commit(3, 1, 5, 5)]), 5);
    }

    #[test]
    fn a_peer_is_known_to_match_where_its_acks_or_commit_name_our_hash() {
        let mut t = Tally::new(4);
        assert_eq!(t.known_match(2, ours), 0);
        t.keep_ack(ack(2, 1, 3, 3));
        t.keep_ack(ack(2, 1, 8, 99));
        t.keep_commit(commit(2, 1, 5, 5));
        assert_eq!(t.known_match(2, ours), 5);
    }
}
