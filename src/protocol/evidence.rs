//! Equivocation Evidence: detected, checked, kept, gossiped (PROTOCOL.md, "Evidence").

use super::log::payload_bytes;
use super::message::{AppendEntries, Evidence, Message, Vote};
use super::node::{Node, Output, Persist, Suspicion};
use super::types::Index;
use crate::crypto::chain_hash;
use crate::crypto::{Principal, Signed};

/// Votes remembered per (term, voter) to catch double voting.
const VOTES_KEPT: usize = 256;

/// True when the two messages really conflict: no honest node would send both.
pub fn conflicts(e: &Evidence) -> bool {
    match e {
        Evidence::Votes(a, b) => {
            a.body.voter == b.body.voter
                && a.body.term == b.body.term
                && a.body.candidate != b.body.candidate
        }
        Evidence::Acks(a, b) => {
            let (a, b) = (&a.body, &b.body);
            a.from == b.from
                && a.term == b.term
                && a.index == b.index
                && a.hash != b.hash
                && a.success
                && b.success
        }
        Evidence::AppendEntries(a, b) => appends_conflict(&a.body, &b.body),
    }
}

/// Two AppendEntries no honest leader sends both: in one term, different entries at one
/// index, or one building on a hash the other's entries contradict.
fn appends_conflict(a: &AppendEntries, b: &AppendEntries) -> bool {
    a.leader == b.leader
        && a.term == b.term
        && (a
            .entries
            .iter()
            .any(|x| b.entries.iter().any(|y| x.index == y.index && x != y))
            || prev_contradicts(a, b)
            || prev_contradicts(b, a))
}

/// Whether `b`'s `(prev_index, prev_hash)` contradicts the chain `a` carries: `a`'s
/// entries, hashed on from `a.prev_hash`, give another hash at `b.prev_index`. An honest
/// leader's log never changes below an entry it has sent in its term, so it never sends
/// both. (A leader that forks a follower it already fed usually shows this, not two
/// entries at one index: it sends the fork after the real entries' end.)
fn prev_contradicts(a: &AppendEntries, b: &AppendEntries) -> bool {
    let first = a.prev_index.saturating_add(1);
    let covered = first <= b.prev_index && b.prev_index - first < a.entries.len() as Index;
    if !covered {
        return false;
    }
    let mut hash = a.prev_hash;
    for e in &a.entries {
        hash = chain_hash(&hash, e.term, e.index, &payload_bytes(&e.payload));
        if e.index == b.prev_index {
            return hash != b.prev_hash;
        }
    }
    false
}

impl Node {
    pub(super) fn on_evidence(&mut self, e: Evidence) {
        if self.rules.evidence && conflicts(&e) {
            self.record_evidence(e);
        }
    }

    /// Keeps one piece of Evidence per culprit, persists it, tells the peers, and stops
    /// trusting the culprit (no votes; if it leads, it is judged faulty).
    pub(super) fn record_evidence(&mut self, e: Evidence) {
        if !self.rules.evidence {
            return;
        }
        let Principal::Node(culprit) = e.culprit() else {
            return;
        };
        if culprit == self.cfg.id || !self.is_node(culprit) || !self.convicted.insert(culprit) {
            return;
        }
        tracing::info!(node = self.cfg.id, culprit, "evidence of equivocation");
        self.evidence.push(e.clone());
        self.out.push(Output::Persist(Persist::Evidence(e.clone())));
        self.broadcast(Message::Evidence(e));
        if self.follow.as_ref().is_some_and(|f| f.leader == culprit) {
            self.judge_leader_faulty(Suspicion::Evidence);
        }
    }

    /// Remembers a vote; a second one by the same voter in the same term for another
    /// candidate is Evidence.
    pub(super) fn note_vote(&mut self, v: &Signed<Vote>) {
        let key = (v.body.term, v.body.voter);
        match self.seen_votes.get(&key) {
            Some(old) if old.body.candidate != v.body.candidate => {
                let old = old.clone();
                self.record_evidence(Evidence::Votes(old, v.clone()));
            }
            Some(_) => {}
            None => {
                self.seen_votes.insert(key, v.clone());
                if self.seen_votes.len() > VOTES_KEPT {
                    self.seen_votes.pop_first();
                }
            }
        }
    }

    /// The leader sent, in one term, something at `index` (an entry, or the hash its
    /// AppendEntries builds on) that differs from what we Acked there. Evidence if we still
    /// hold the AppendEntries that gave us our entry there; otherwise (evicted, or lost in a
    /// restart) we can only judge the leader faulty ourselves.
    pub(super) fn leader_equivocated(&mut self, ae: &Signed<AppendEntries>, index: Index) {
        let earlier = self
            .accepted_aes
            .iter()
            .find(|old| {
                old.body.entries.iter().any(|e| e.index == index)
                    && appends_conflict(&old.body, &ae.body)
            })
            .cloned();
        match earlier {
            Some(old) => {
                self.record_evidence(Evidence::AppendEntries(Box::new(old), Box::new(ae.clone())))
            }
            None => self.judge_leader_faulty(Suspicion::Misbehaviour),
        }
    }
}
