//! How far a node lets terms rise (PROTOCOL.md, "Numbers"; the base is our choice, see
//! `TermReach::in_reach`): what it has seen proven and campaigned, per node. A part of
//! the node with its own tests; the election rules in `election.rs` consult it.

use super::types::{NodeId, Term, MAX_TERM_GAP};

pub(super) struct TermReach {
    /// Liars tolerated: the (f+1)-th highest campaign term is one an honest node reached.
    f: usize,
    /// Highest term of a leader proven to us (or that we led).
    highest_proven: Term,
    /// Highest term of any RequestVote within reach: a candidate campaigns above it, or a
    /// candidate whose term fell behind could never catch up.
    highest_request: Term,
    /// Per node, the highest term of a validly signed RequestVote it sent (ours: the
    /// highest we campaigned in).
    campaigned: Vec<Term>,
}

impl TermReach {
    /// For a cluster of `n` with `f` liars, after a restart that remembers `proven`.
    pub fn new(n: usize, f: usize, proven: Term) -> TermReach {
        TermReach {
            f,
            highest_proven: proven,
            highest_request: 0,
            campaigned: vec![0; n],
        }
    }

    pub fn proven(&mut self, term: Term) {
        self.highest_proven = self.highest_proven.max(term);
    }

    /// We campaign in `term`.
    pub fn we_campaign(&mut self, me: NodeId, term: Term) {
        self.campaigned[me as usize] = term;
    }

    /// `node` signed a RequestVote for `term` (counted whether or not it is in reach).
    pub fn request_seen(&mut self, node: NodeId, term: Term) {
        let t = &mut self.campaigned[node as usize];
        *t = (*t).max(term);
    }

    /// A RequestVote for `term` is in reach: our next campaign goes above it.
    pub fn request_in_reach(&mut self, term: Term) {
        self.highest_request = self.highest_request.max(term);
    }

    pub fn highest_request(&self) -> Term {
        self.highest_request
    }

    /// A term a liar may not push us past: `MAX_TERM_GAP` above the highest proven term,
    /// or above the (f+1)-th highest campaign term we have seen, whichever is higher. The
    /// second base is our choice where the spec asks only that the bound never become a
    /// ceiling honest nodes cannot pass: failed elections (a long partition, a disruptor's
    /// storm) raise honest campaign terms with no leader ever proven, and with the proven
    /// term alone as the base every honest node eventually sat at the edge with nobody
    /// allowed to vote (the attacker found it, with no Byzantine node at all after a 150 s
    /// partition). f liars cannot raise the (f+1)-th highest term alone, so it still
    /// bounds how far they push us.
    ///
    /// (PROTOCOL.md rule E10)
    pub fn in_reach(&self, term: Term) -> bool {
        term <= self.base().saturating_add(MAX_TERM_GAP)
    }

    fn base(&self) -> Term {
        let mut terms = self.campaigned.clone();
        terms.sort_unstable_by(|a, b| b.cmp(a));
        let honest_reached = terms.get(self.f).copied().unwrap_or(0);
        self.highest_proven.max(honest_reached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_liars_cannot_raise_the_reach_but_f_plus_one_campaigners_can() {
        let mut r = TermReach::new(4, 1, 0);
        let far = 5 * MAX_TERM_GAP;
        assert!(r.in_reach(MAX_TERM_GAP) && !r.in_reach(MAX_TERM_GAP + 1));
        r.request_seen(3, far);
        assert!(!r.in_reach(far), "one liar alone");
        r.request_seen(2, far);
        assert!(r.in_reach(far), "f + 1 nodes reached it");
        assert!(!r.in_reach(far + MAX_TERM_GAP + 1));
    }

    #[test]
    fn a_proven_term_is_a_base_and_campaign_terms_only_rise() {
        let mut r = TermReach::new(4, 1, 7);
        assert!(r.in_reach(7 + MAX_TERM_GAP) && !r.in_reach(8 + MAX_TERM_GAP));
        r.proven(100);
        assert!(r.in_reach(100 + MAX_TERM_GAP));
        r.request_seen(1, 50);
        r.request_seen(1, 20);
        assert_eq!(r.campaigned[1], 50);
        r.request_in_reach(9);
        r.request_in_reach(3);
        assert_eq!(r.highest_request(), 9);
        assert!(!r.in_reach(Term::MAX), "no wrap at the edge");
    }
}
