//! A lazy voter's memory (PROTOCOL.md rules E4, E6, E12): the RequestVotes it holds back
//! until it believes its leader faulty, and the nodes it gives no vote until a tick of its
//! own clock. A part of `Node` with its own tests; the election rules decide when to use it.

use super::message::RequestVote;
use super::types::{NodeId, Term};
use crate::crypto::Signed;
use std::collections::BTreeMap;

#[derive(Default)]
pub(super) struct Ballot {
    /// The newest RequestVote of each candidate: memory bounded by n.
    pending: BTreeMap<NodeId, Signed<RequestVote>>,
    /// Until which tick each judged node gets no vote from us.
    penalties: BTreeMap<NodeId, u64>,
    /// The leadership (term, leader) we last penalized: judged once, penalized once.
    penalized_for: Option<(Term, NodeId)>,
}

impl Ballot {
    /// Keeps `rv` unless we hold a RequestVote of that candidate for a term as high.
    pub fn remember(&mut self, rv: Signed<RequestVote>) {
        let newer = self
            .pending
            .get(&rv.body.candidate)
            .is_none_or(|old| old.body.term < rv.body.term);
        if newer {
            self.pending.insert(rv.body.candidate, rv);
        }
    }

    /// Drops every RequestVote of `term` or below: we can no longer grant them.
    pub fn forget_up_to(&mut self, term: Term) {
        self.pending.retain(|_, rv| rv.body.term > term);
    }

    pub fn forget_candidate(&mut self, candidate: NodeId) {
        self.pending.remove(&candidate);
    }

    pub fn forget_all(&mut self) {
        self.pending.clear();
    }

    /// The highest (term, then candidate id) remembered RequestVote that `grantable` allows.
    pub fn best(&self, grantable: impl Fn(&RequestVote) -> bool) -> Option<Signed<RequestVote>> {
        self.pending
            .values()
            .filter(|rv| grantable(&rv.body))
            .max_by_key(|rv| (rv.body.term, rv.body.candidate))
            .cloned()
    }

    /// `node` gets no vote before tick `until` (a new judgement replaces the old one).
    pub fn penalize_until(&mut self, node: NodeId, until: u64) {
        self.penalties.insert(node, until);
    }

    /// `node` sits out until `until` at least: a longer penalty already running stays.
    pub fn sit_out_until(&mut self, node: NodeId, until: u64) {
        let p = self.penalties.entry(node).or_insert(0);
        *p = (*p).max(until);
    }

    /// Forgets penalties that ran out by `now`.
    pub fn expire(&mut self, now: u64) {
        self.penalties.retain(|_, until| *until > now);
    }

    pub fn is_penalized(&self, node: NodeId, now: u64) -> bool {
        self.penalties.get(&node).is_some_and(|&until| until > now)
    }

    /// Whether this is the first judgement of leadership `judged` (and records it): a
    /// leader is penalized once per judgement, not renewed at every timeout, or the only
    /// holder of the highest lock could be shut out for ever.
    pub fn first_judgement(&mut self, judged: (Term, NodeId)) -> bool {
        let first = self.penalized_for != Some(judged);
        self.penalized_for = Some(judged);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Digest, Domain};
    use crate::protocol::Variant;

    fn rv(candidate: NodeId, term: Term) -> Signed<RequestVote> {
        let body = RequestVote {
            term,
            candidate,
            last_index: 0,
            last_term: 0,
            last_hash: Digest::default(),
            lock: None,
        };
        Domain::new(Variant::Bft, "t").sign(&signing_key_from_seed([candidate as u8; 32]), body)
    }

    #[test]
    fn it_keeps_the_newest_request_of_each_candidate_and_grants_the_highest() {
        let mut b = Ballot::default();
        b.remember(rv(1, 5));
        b.remember(rv(1, 3)); // older: ignored
        b.remember(rv(2, 5));
        let best = b.best(|_| true).expect("two held");
        assert_eq!(
            (best.body.term, best.body.candidate),
            (5, 2),
            "ties go to the higher id"
        );
        let best = b.best(|r| r.candidate == 1).expect("candidate 1 held");
        assert_eq!(best.body.term, 5);
        b.forget_up_to(5);
        assert!(b.best(|_| true).is_none());
    }

    #[test]
    fn penalties_run_out_by_the_clock_and_a_sit_out_never_shortens_one() {
        let mut b = Ballot::default();
        b.penalize_until(1, 100);
        b.sit_out_until(1, 40);
        assert!(b.is_penalized(1, 99));
        assert!(!b.is_penalized(1, 100));
        b.sit_out_until(2, 40);
        b.expire(40);
        assert!(!b.is_penalized(2, 0), "expired entries are gone");
        assert!(b.is_penalized(1, 50));
    }

    #[test]
    fn a_leadership_is_judged_once() {
        let mut b = Ballot::default();
        assert!(b.first_judgement((3, 1)));
        assert!(!b.first_judgement((3, 1)));
        assert!(b.first_judgement((4, 1)));
    }
}
