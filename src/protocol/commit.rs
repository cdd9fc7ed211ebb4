//! Prepared certificates, locks, the Commit round, and applying committed entries
//! (PROTOCOL.md, "Replication and commit").

use super::message::{lock_rank, Ack, Commit, Evidence, Message, PreparedCert};
use super::node::{Node, Output};
use super::tally::AckKept;
use super::types::Index;
use crate::crypto::Signed;

impl Node {
    pub(super) fn on_ack(&mut self, a: Signed<Ack>) {
        self.leader_on_ack(&a.body);
        if a.body.success {
            self.record_ack(a);
        }
    }

    /// Keeps a positive Ack for certificate assembly; two of one term that disagree at one
    /// index are Evidence.
    ///
    /// (PROTOCOL.md rule R4, V1)
    pub(super) fn record_ack(&mut self, a: Signed<Ack>) {
        match self.tally.keep_ack(a.clone()) {
            AckKept::Known => {}
            AckKept::Clash(old) => self.record_evidence(Evidence::Acks(old, a)),
            AckKept::Kept => self.try_prepare(),
        }
    }

    /// Looks for a prepared certificate above our lock: Acks of one term from q distinct
    /// nodes, all for the same `(index, hash)`, that hash being ours at that index.
    ///
    /// (PROTOCOL.md rule R4)
    pub(super) fn try_prepare(&mut self) {
        let floor = lock_rank(&self.hard.lock);
        let best = self
            .tally
            .best_prepared(self.quorum.q, floor, |i| self.log.hash_at(i));
        let Some(((term, index), acks)) = best else {
            return;
        };
        let cert = PreparedCert {
            term,
            index,
            hash: self.log.hash_at(index).expect("checked above"),
            acks,
        };
        self.set_lock(cert);
    }

    /// Our lock rises. bft announces it with a Commit; tangaroa commits right away (the
    /// published flaw: a prepared entry may still be unknown to the next leader's voters).
    ///
    /// (PROTOCOL.md rule R5, R6)
    pub(super) fn set_lock(&mut self, cert: PreparedCert) {
        debug_assert!(cert.rank() > lock_rank(&self.hard.lock));
        debug_assert_eq!(self.log.hash_at(cert.index), Some(cert.hash));
        let (term, index, hash) = (cert.term, cert.index, cert.hash);
        self.hard.lock = Some(cert);
        self.hard.lock_chain.clear();
        self.save_hard();
        if term < self.hard.ack_floor {
            return;
        }
        if self.rules.commit_round {
            let c = self.sign(Commit {
                term,
                from: self.cfg.id,
                index,
                hash,
            });
            self.my_commit = Some(c.clone());
            self.tally.keep_commit(c.clone());
            self.broadcast(Message::Commit(c));
            self.try_commit();
        } else {
            self.commit_to(index);
        }
    }

    /// (PROTOCOL.md rule R6, R9)
    pub(super) fn on_commit(&mut self, c: Signed<Commit>) {
        let from = c.body.from;
        if !self.rules.commit_round || !self.is_node(from) || from == self.cfg.id {
            return;
        }
        match self.tally.holds_commit(&c.body) {
            Some(true) if self.rules.commit_retransmit => {
                // A retransmission of its latest: the sender is still waiting to commit.
                // Help it, once per election timeout per peer, so that two helpers never
                // ping-pong.
                let Some(mine) = self.my_commit.clone() else {
                    return;
                };
                let now = self.now;
                let window = self.cfg.timing.election_ticks as u64;
                let key = (mine.body.term, mine.body.index);
                let fresh = match self.helped[from as usize] {
                    Some((t, i, at)) => (t, i) != key || now - at > window,
                    None => true,
                };
                if fresh {
                    self.helped[from as usize] = Some((key.0, key.1, now));
                    self.send(from, Message::Commit(mine));
                    if self.hard.commit >= c.body.index {
                        // We committed what it waits on: hand it the q Commits that
                        // prove it, for some of them may never reach it directly (a
                        // Byzantine node withholds its own).
                        self.prove_commit_to(from, c.body.index);
                    }
                }
            }
            Some(_) => {} // held already
            None => {
                self.tally.keep_commit(c);
                self.try_commit();
            }
        }
    }

    /// bft: commit index i once q distinct nodes sent Commits of one term whose
    /// `(index, hash)` match our log at an index >= i.
    ///
    /// (PROTOCOL.md rule R6)
    pub(super) fn try_commit(&mut self) {
        let point = self.commit_point_on(self.log.last_index(), &[], &[]);
        self.commit_to(point);
    }

    /// Resends our Commit while our own commit lags our lock; peers answer a repeated
    /// Commit with theirs. Without it one lost message could leave a node uncommitted in an
    /// idle cluster forever.
    ///
    /// (PROTOCOL.md rule R9)
    pub(super) fn rebroadcast_commit_if_lagging(&mut self) {
        if !self.rules.commit_retransmit {
            return;
        }
        let Some(lock) = &self.hard.lock else { return };
        if lock.index <= self.hard.commit || lock.term < self.hard.ack_floor {
            return;
        }
        if self
            .my_commit
            .as_ref()
            .is_none_or(|c| (c.body.term, c.body.index) != lock.rank())
        {
            // After a restart: announce the persisted lock again (same content, no conflict).
            let body = Commit {
                term: lock.term,
                from: self.cfg.id,
                index: lock.index,
                hash: lock.hash,
            };
            let c = self.sign(body);
            self.tally.keep_commit(c.clone());
            self.my_commit = Some(c);
        }
        let c = self.my_commit.clone().expect("set above");
        self.broadcast(Message::Commit(c));
    }

    pub(super) fn commit_to(&mut self, index: Index) {
        let index = index.min(self.log.last_index());
        if index > self.hard.commit {
            self.hard.commit = index;
            self.save_hard();
        }
    }

    /// Emits every newly committed entry once, in order.
    pub(super) fn apply_committed(&mut self) {
        while self.applied < self.hard.commit {
            self.applied += 1;
            let e = self
                .log
                .entry(self.applied)
                .expect("committed entries are in the log")
                .clone();
            if let Some(r) = e.payload.request() {
                let (c, seq) = (r.body.client, r.body.seq);
                let s = self.applied_seq.entry(c).or_insert(0);
                *s = (*s).max(seq);
                self.watch.applied(c, seq);
            }
            self.out.push(Output::Apply(e));
            self.maybe_take_snapshot(self.applied);
        }
    }
}
