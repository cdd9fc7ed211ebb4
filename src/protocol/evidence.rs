//! Equivocation Evidence: detected, checked, kept, gossiped (PROTOCOL.md, "Evidence").

use super::log::payload_bytes;
use super::message::{AppendEntries, Evidence, Message, Vote};
use super::node::{Node, Output, Persist, Suspicion};
use super::types::{Index, NodeId, Term};
use crate::crypto::chain_hash;
use crate::crypto::{Principal, Signed};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Votes remembered per (term, voter) to catch double voting.
const VOTES_KEPT: usize = 256;
/// AppendEntries with entries we Acked, kept as Evidence material (the current leader's).
const AES_KEPT: usize = 16;

/// What a node holds to hold others to account: the Evidence it keeps (one piece per
/// culprit), who stands convicted, and the signed messages a later conflict would be
/// proven against. Bounded: `VOTES_KEPT` votes, `AES_KEPT` AppendEntries.
#[derive(Default)]
pub(super) struct Accountability {
    held: Vec<Evidence>,
    convicted: BTreeSet<NodeId>,
    seen_votes: BTreeMap<(Term, NodeId), Signed<Vote>>,
    accepted: VecDeque<Signed<AppendEntries>>,
}

impl Accountability {
    /// Restarts from the Evidence on disk.
    pub fn restored(held: Vec<Evidence>) -> Accountability {
        let convicted = held
            .iter()
            .filter_map(|e| match e.culprit() {
                Principal::Node(c) => Some(c),
                Principal::Client(_) => None,
            })
            .collect();
        Accountability {
            held,
            convicted,
            ..Default::default()
        }
    }

    pub fn held(&self) -> &[Evidence] {
        &self.held
    }

    pub fn is_convicted(&self, node: NodeId) -> bool {
        self.convicted.contains(&node)
    }

    /// Keeps `e` against `culprit` if it is the first piece against it; true if kept.
    pub fn convict(&mut self, culprit: NodeId, e: &Evidence) -> bool {
        if !self.convicted.insert(culprit) {
            return false;
        }
        self.held.push(e.clone());
        true
    }

    /// Remembers a vote; returns Evidence if the same voter voted for another candidate
    /// in the same term.
    pub fn note_vote(&mut self, v: &Signed<Vote>) -> Option<Evidence> {
        let key = (v.body.term, v.body.voter);
        match self.seen_votes.get(&key) {
            Some(old) if old.body.candidate != v.body.candidate => {
                Some(Evidence::Votes(old.clone(), v.clone()))
            }
            Some(_) => None,
            None => {
                self.seen_votes.insert(key, v.clone());
                if self.seen_votes.len() > VOTES_KEPT {
                    self.seen_votes.pop_first();
                }
                None
            }
        }
    }

    /// Keeps an AppendEntries whose entries we Acked.
    pub fn keep_accepted(&mut self, ae: &Signed<AppendEntries>) {
        self.accepted.push_back(ae.clone());
        if self.accepted.len() > AES_KEPT {
            self.accepted.pop_front();
        }
    }

    /// A new leader: what the old one sent can no longer conflict with what it sends.
    pub fn forget_accepted(&mut self) {
        self.accepted.clear();
    }

    /// The kept AppendEntries that gave us an entry at `index` and conflicts with `ae`.
    pub fn earlier_conflicting(
        &self,
        ae: &Signed<AppendEntries>,
        index: Index,
    ) -> Option<Signed<AppendEntries>> {
        self.accepted
            .iter()
            .find(|old| {
                old.body.entries.iter().any(|e| e.index == index)
                    && appends_conflict(&old.body, &ae.body)
            })
            .cloned()
    }
}

/// True when the two messages really conflict: no honest node would send both.
///
/// (PROTOCOL.md rule V2)
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
        if culprit == self.cfg.id || !self.is_node(culprit) || !self.accounts.convict(culprit, &e) {
            return;
        }
        tracing::info!(node = self.cfg.id, culprit, "evidence of equivocation");
        self.out.push(Output::Persist(Persist::Evidence(e.clone())));
        self.broadcast(Message::Evidence(e));
        if self.follow.as_ref().is_some_and(|f| f.leader == culprit) {
            self.judge_leader_faulty(Suspicion::Evidence);
        }
    }

    /// Remembers a vote; a second one by the same voter in the same term for another
    /// candidate is Evidence.
    pub(super) fn note_vote(&mut self, v: &Signed<Vote>) {
        if let Some(e) = self.accounts.note_vote(v) {
            self.record_evidence(e);
        }
    }

    /// The leader sent, in one term, something at `index` (an entry, or the hash its
    /// AppendEntries builds on) that differs from what we Acked there. Evidence if we still
    /// hold the AppendEntries that gave us our entry there; otherwise (evicted, or lost in a
    /// restart) we can only judge the leader faulty ourselves.
    pub(super) fn leader_equivocated(&mut self, ae: &Signed<AppendEntries>, index: Index) {
        match self.accounts.earlier_conflicting(ae, index) {
            Some(old) => {
                self.record_evidence(Evidence::AppendEntries(Box::new(old), Box::new(ae.clone())))
            }
            None => self.judge_leader_faulty(Suspicion::Misbehaviour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Domain};
    use crate::protocol::types::Variant;

    fn vote(term: Term, voter: NodeId, candidate: NodeId) -> Signed<Vote> {
        let key = signing_key_from_seed([voter as u8 + 1; 32]);
        let body = Vote {
            term,
            voter,
            candidate,
            lock: None,
        };
        Domain::new(Variant::Bft, "t").sign(&key, body)
    }

    #[test]
    fn two_votes_of_one_voter_in_one_term_are_evidence_and_convict_it_once() {
        let mut a = Accountability::default();
        assert!(a.note_vote(&vote(3, 1, 0)).is_none());
        assert!(a.note_vote(&vote(3, 1, 0)).is_none(), "the same vote again");
        assert!(a.note_vote(&vote(4, 1, 2)).is_none(), "another term");
        let e = a
            .note_vote(&vote(3, 1, 2))
            .expect("another candidate, same term");
        assert!(conflicts(&e));
        assert!(a.convict(1, &e));
        assert!(!a.convict(1, &e), "one piece per culprit");
        assert!(a.is_convicted(1) && !a.is_convicted(2));
        assert_eq!(a.held().len(), 1);
        let again = Accountability::restored(a.held().to_vec());
        assert!(again.is_convicted(1), "conviction survives a restart");
    }

    #[test]
    fn remembered_votes_are_bounded() {
        let mut a = Accountability::default();
        for t in 0..(VOTES_KEPT as Term + 50) {
            a.note_vote(&vote(t, 1, 0));
        }
        assert_eq!(a.seen_votes.len(), VOTES_KEPT);
    }
}
