//! Prepared certificates, locks, the Commit round, and applying committed entries
//! (PROTOCOL.md, "Replication and commit").

use super::message::{lock_rank, Ack, Commit, Evidence, Message, PreparedCert};
use super::node::{Node, Output, ACKS_KEPT, COMMITS_KEPT};
use super::types::{Index, Term};
use crate::crypto::Signed;
use std::collections::BTreeMap;

impl Node {
    pub(super) fn on_ack(&mut self, a: Signed<Ack>) {
        self.leader_on_ack(&a.body);
        if a.body.success {
            self.record_ack(a);
        }
    }

    /// Keeps a positive Ack for certificate assembly; two of one term that disagree at one
    /// index are Evidence.
    pub(super) fn record_ack(&mut self, a: Signed<Ack>) {
        let from = a.body.from as usize;
        let kept = &self.acks[from];
        if kept.iter().any(|k| k.body == a.body) {
            return;
        }
        let clash = kept
            .iter()
            .find(|k| k.body.term == a.body.term && k.body.index == a.body.index)
            .cloned();
        if let Some(old) = clash {
            self.record_evidence(Evidence::Acks(old, a));
            return;
        }
        let kept = &mut self.acks[from];
        kept.push_back(a);
        if kept.len() > ACKS_KEPT {
            kept.pop_front();
        }
        self.try_prepare();
    }

    /// Looks for a prepared certificate above our lock: Acks of one term from q distinct
    /// nodes, all for the same `(index, hash)`, that hash being ours at that index.
    pub(super) fn try_prepare(&mut self) {
        let floor = lock_rank(&self.hard.lock);
        let mut support: BTreeMap<(Term, Index), Vec<&Signed<Ack>>> = BTreeMap::new();
        for kept in &self.acks {
            for a in kept {
                let b = &a.body;
                if (b.term, b.index) > floor && self.log.hash_at(b.index) == Some(b.hash) {
                    support.entry((b.term, b.index)).or_default().push(a);
                }
            }
        }
        let q = self.quorum.q;
        let best = support.into_iter().rev().find(|(_, v)| v.len() >= q);
        let Some(((term, index), acks)) = best else {
            return;
        };
        let cert = PreparedCert {
            term,
            index,
            hash: self.log.hash_at(index).expect("checked above"),
            acks: acks.into_iter().cloned().collect(),
        };
        self.set_lock(cert);
    }

    /// Our lock rises. bft announces it with a Commit; tangaroa commits right away (the
    /// published flaw: a prepared entry may still be unknown to the next leader's voters).
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
            self.keep_commit(c.clone());
            self.broadcast(Message::Commit(c));
            self.try_commit();
        } else {
            self.commit_to(index);
        }
    }

    pub(super) fn on_commit(&mut self, c: Signed<Commit>) {
        let from = c.body.from;
        if !self.rules.commit_round || !self.is_node(from) || from == self.cfg.id {
            return;
        }
        let kept = &self.commits[from as usize];
        if let Some(at) = kept.iter().position(|k| k.body == c.body) {
            if at + 1 == kept.len() && self.rules.commit_retransmit {
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
                }
            }
            return;
        }
        self.keep_commit(c);
        self.try_commit();
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
    pub(super) fn keep_commit(&mut self, c: Signed<Commit>) {
        let kept = &mut self.commits[c.body.from as usize];
        if kept.iter().any(|k| k.body == c.body) {
            return;
        }
        kept.push_back(c);
        if kept.len() > COMMITS_KEPT {
            kept.pop_front();
        }
    }

    /// bft: commit index i once q distinct nodes sent Commits of one term whose
    /// `(index, hash)` match our log at an index >= i.
    pub(super) fn try_commit(&mut self) {
        let point = self.commit_point_on(self.log.last_index(), &[]);
        self.commit_to(point);
    }

    /// Resends our Commit while our own commit lags our lock; peers answer a repeated
    /// Commit with theirs. Without it one lost message could leave a node uncommitted in an
    /// idle cluster forever.
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
            self.keep_commit(c.clone());
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
        }
    }
}
