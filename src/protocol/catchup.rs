//! Catch-up of committed entries from any peer (bft).
//!
//! PROTOCOL.md only lets a leader bring a follower up to date, so a Byzantine leader that
//! starves some followers (`selective`) or feeds them a fork (`equivocate`) while a quorum
//! stays happy is never deposed, and its victims never commit. Here any node that sees a
//! peer's Acks and Commits lag behind its own commit index pushes it the committed entries.
//! The receiver keeps only what its own table of q Commits proves committed on the chain
//! it recomputes, so a lying sender can at most waste its time.

use super::message::{CatchUp, Commit, Entry, Message};
use super::node::{Node, Output, Persist, MAX_BATCH, MAX_BATCH_BYTES};
use super::types::{Index, NodeId};
use crate::crypto::{Digest, Signed};
use std::collections::BTreeMap;

impl Node {
    /// Every heartbeat interval: push committed entries to peers that lag, at most once per
    /// election timeout each.
    ///
    /// (PROTOCOL.md rule R9)
    pub(super) fn push_catch_up(&mut self) {
        if !self.rules.catch_up || self.hard.commit == 0 {
            return;
        }
        let window = self.cfg.timing.election_ticks as u64;
        // Proofs depend only on how far the receiver can check them: built once per reach.
        let mut proofs: BTreeMap<Index, Vec<Signed<Commit>>> = BTreeMap::new();
        for j in self.peers() {
            let ju = j as usize;
            if self.pushed[ju].is_some_and(|t| self.now - t < window) {
                continue;
            }
            let mut from = self.known_match(ju);
            let base = self.log.base().index;
            if from < base {
                // We cannot match anything below our base. If it says it holds less than
                // the base, or has said nothing since we started (it may be down, or so far
                // behind that it cannot Ack anything we send), what it lacks is in our
                // snapshot (PROTOCOL.md rule K4): at most once per election timeout. If it
                // claims more, go on from the base. (Offering only on a claimed index left
                // a node that a restarted leader could not serve stranded: lie-checkpoint,
                // n=4 seed 10.)
                if self.tally.claimed(j).is_none_or(|c| c < base) {
                    self.pushed[ju] = Some(self.now);
                    self.offer_snapshot(j);
                    continue;
                }
                from = base;
            }
            if from >= self.hard.commit {
                self.prove_if_lagging(j, from);
                continue;
            }
            let to = self.hard.commit.min(from + MAX_BATCH as Index);
            let to = self.log.end_within(from + 1, to, MAX_BATCH_BYTES);
            let msg = CatchUp {
                from: self.cfg.id,
                prev_index: from,
                prev_hash: self.log.hash_at(from).expect("below commit"),
                entries: self.log.slice(from + 1, to).to_vec(),
                proof: proofs
                    .entry(to)
                    .or_insert_with(|| self.commit_proof_for(to))
                    .clone(),
            };
            self.pushed[ju] = Some(self.now);
            tracing::trace!(
                node = self.cfg.id,
                to = j,
                from,
                upto = to,
                "pushing catch-up"
            );
            self.send(j, Message::CatchUp(msg));
        }
    }

    /// A peer that holds our committed entries (it Acked them) but whose Commits stay
    /// behind our commit point for a whole election timeout may sit below its Ack floor:
    /// it may neither Ack nor Commit its leader's term, so it commits only on others'
    /// Commits, and a Byzantine node may withhold its own. Nothing else would push it
    /// (its Acks say it holds the entries), so hand it the proof of our commit point. A
    /// healthy peer's Commits catch up within the window and cost nothing.
    ///
    /// (PROTOCOL.md rule R9)
    fn prove_if_lagging(&mut self, j: NodeId, reach: Index) {
        let ju = j as usize;
        let theirs = self.tally.known_commit(j, |i| self.log.hash_at(i));
        let window = self.cfg.timing.election_ticks as u64;
        match self.commit_lag[ju] {
            Some((_, behind)) if theirs >= behind => self.commit_lag[ju] = None,
            Some((since, _)) if self.now - since >= window => {
                self.commit_lag[ju] = None;
                self.pushed[ju] = Some(self.now);
                self.prove_commit_to(j, reach);
            }
            Some(_) => {}
            None if theirs < self.hard.commit => {
                self.commit_lag[ju] = Some((self.now, self.hard.commit));
            }
            None => {}
        }
    }

    /// The Commits that prove our commit point to a peer known to hold our chain up to
    /// `reach`: those behind our commit point on our whole log (a peer that holds more
    /// than we know, as a node below its Ack floor holds its leader's entries, can check
    /// them), and, if some of those lie past `reach`, those behind the highest point at or
    /// below `reach` too (which the peer can surely check). At most 2n, one or two per
    /// node; `auth` refuses more.
    ///
    /// (PROTOCOL.md rule R9)
    pub(super) fn commit_proof_for(&self, reach: Index) -> Vec<Signed<Commit>> {
        let q = self.quorum.q;
        let mut proof = self.tally.commit_proof(q, |i| self.log.hash_at(i));
        if proof.iter().any(|c| c.body.index > reach) {
            let within = |i: Index| (i <= reach).then(|| self.log.hash_at(i)).flatten();
            for c in self.tally.commit_proof(q, within) {
                if !proof.iter().any(|p| p.body == c.body) {
                    proof.push(c);
                }
            }
        }
        proof
    }

    /// Sends `j` the Commits behind our commit point, with no entries: enough for a peer
    /// that holds the entries but lacks Commits (PROTOCOL.md rule R9). `reach`: how far
    /// `j` is known to hold our chain.
    pub(super) fn prove_commit_to(&mut self, j: NodeId, reach: Index) {
        let proof = self.commit_proof_for(reach);
        if proof.is_empty() {
            return;
        }
        let at = self.hard.commit;
        let msg = CatchUp {
            from: self.cfg.id,
            prev_index: at,
            prev_hash: self.log.hash_at(at).expect("commit is in the log"),
            entries: Vec::new(),
            proof,
        };
        self.send(j, Message::CatchUp(msg));
    }

    /// The highest index at which peer `j` has told us (by Ack or Commit) that its log
    /// equals ours; the genesis if none (a forked peer Acked nothing we hold).
    fn known_match(&self, j: usize) -> Index {
        self.tally.known_match(j as NodeId, |i| self.log.hash_at(i))
    }

    /// (PROTOCOL.md rule R9)
    pub(super) fn on_catch_up(&mut self, c: CatchUp) {
        if !self.rules.catch_up || c.from == self.cfg.id || !self.is_node(c.from) {
            return;
        }
        // The proof's Commits (each signed by its own node, checked by `auth`) count with
        // ours, on the spot. Our log may hold the entries already (a node below its Ack
        // floor still takes its leader's entries): the proof alone may commit them.
        if !c.proof.is_empty() {
            let own = self.commit_point_on(self.log.last_index(), &[], &c.proof);
            self.commit_on_proof(own, &c.proof);
        }
        if self.log.hash_at(c.prev_index) != Some(c.prev_hash) {
            tracing::debug!(
                node = self.cfg.id,
                from = c.from,
                prev = c.prev_index,
                "catch-up does not fit our log"
            );
            return;
        }
        // Recompute the chain the pushed entries would give us.
        let mut hashes = Vec::with_capacity(c.entries.len());
        let mut prev = c.prev_hash;
        let mut last_term = self.log.term_at(c.prev_index).unwrap_or(0);
        for (k, e) in c.entries.iter().enumerate() {
            if e.index != c.prev_index + 1 + k as Index || e.term < last_term {
                return;
            }
            last_term = e.term;
            prev = self.log.hash_after(&prev, e);
            hashes.push(prev);
        }
        let commit = self.commit_point_on(c.prev_index, &hashes, &c.proof);
        tracing::debug!(
            node = self.cfg.id,
            from = c.from,
            prev = c.prev_index,
            entries = c.entries.len(),
            commit,
            proof = c.proof.len(),
            "catch-up"
        );
        if commit <= self.hard.commit {
            return;
        }
        // Our own Commits table may prove a commit point inside the log we already hold
        // (below `prev_index`): then there is nothing to install, only a commit to advance.
        if commit > c.prev_index {
            let keep = &c.entries[..(commit - c.prev_index) as usize];
            self.install_committed(keep);
        }
        self.commit_on_proof(commit, &c.proof);
    }

    /// Commits up to `point`, which `relayed` Commits may have helped prove; if they did,
    /// keeps the proof of the new point so that we can hand it on (`Tally::keep_cert`).
    fn commit_on_proof(&mut self, point: Index, relayed: &[Signed<Commit>]) {
        if point <= self.hard.commit {
            return;
        }
        if !relayed.is_empty() {
            self.tally
                .keep_cert(self.quorum.q, |i| self.log.hash_at(i), relayed);
        }
        self.commit_to(point);
    }

    /// Highest index committed (q Commits of one term, each matching the chain at an index
    /// at or above it) on our log up to `base` followed by a chain whose hashes are
    /// `hashes`, counting the `relayed` Commits with ours. With `base` our last index and
    /// nothing else: our own commit point.
    pub(super) fn commit_point_on(
        &self,
        base: Index,
        hashes: &[Digest],
        relayed: &[Signed<Commit>],
    ) -> Index {
        let hash_at = |i: Index| {
            if i <= base {
                self.log.hash_at(i)
            } else {
                hashes.get((i - base - 1) as usize).copied()
            }
        };
        self.tally
            .commit_point_with(self.quorum.q, hash_at, relayed)
    }

    /// Puts committed entries into the log, replacing whatever conflicts with them.
    fn install_committed(&mut self, entries: &[Entry]) {
        let Some(first) = entries
            .iter()
            .position(|e| self.log.entry(e.index) != Some(e))
        else {
            return;
        };
        let at = entries[first].index;
        if at <= self.log.last_index() {
            assert!(at > self.hard.commit, "two committed chains conflict");
            if let Some(acked) = self.hard.acked.filter(|a| at <= a.index && a.term > 0) {
                // We Acked, in `acked.term`, a chain that a quorum did not commit: our leader
                // of that term forked us. Never Ack or Commit in that term again, so that we
                // stand behind one chain per term.
                self.hard.ack_floor = self.hard.ack_floor.max(acked.term.saturating_add(1));
                self.save_hard();
            }
            self.retain_lock_chain(at);
            self.log.truncate_from(at);
            self.out.push(Output::Persist(Persist::TruncateFrom(at)));
        }
        let fresh = entries[first..].to_vec();
        for e in &fresh {
            self.log.append(e.clone());
        }
        self.out.push(Output::Persist(Persist::Append(fresh)));
        self.tidy_lock_chain();
        if self.is_leader() && self.log.last_term() > self.hard.term {
            // A later term has committed entries: we are no longer the leader, whatever we
            // believed, and must not append below them.
            self.step_down();
        }
    }
}
