//! A leader's view of each follower: what it matched, what to send next, what is in
//! flight, and how many AppendEntries it got this tick. A part of the leader's state with
//! its own rules and tests; `replication.rs` builds and signs the messages.

use super::message::{ElectionProof, PreparedCert};
use super::node::{LeaderState, IN_FLIGHT_KEPT, MAX_APPENDS_PER_TICK};
use super::types::Index;
use std::collections::VecDeque;

impl LeaderState {
    /// A new leader of `n` nodes whose log ends at `last`, at tick `now`.
    pub fn new(
        proof: ElectionProof,
        lock: Option<PreparedCert>,
        n: usize,
        last: Index,
        commit: Index,
        now: u64,
    ) -> LeaderState {
        LeaderState {
            proof,
            lock,
            next: vec![last + 1; n],
            matched: vec![0; n],
            last_ack: vec![None; n],
            heartbeat_elapsed: 0,
            replicated_to: last,
            commit_seen: commit,
            progress_at: now,
            quorum_check_elapsed: 0,
            last_resend: vec![u64::MAX; n],
            in_flight: vec![VecDeque::new(); n],
            sent_in_tick: vec![(0, 0); n],
        }
    }

    /// Follower `j` Acked our log up to `index` (already clamped to our log end).
    pub fn acked(&mut self, j: usize, index: Index, now: u64) {
        self.matched[j] = self.matched[j].max(index);
        self.next[j] = self.next[j].max(index + 1);
        self.last_ack[j] = Some(now);
        let flight = &mut self.in_flight[j];
        while flight.front().is_some_and(|&to| to <= index) {
            flight.pop_front();
        }
    }

    /// Follower `j` refused, saying it holds our log up to `hint`. Backs off (never below
    /// what it matched); true if it should be sent again now: at most once per tick, so a
    /// liar's refusals cannot drive a resend storm.
    pub fn refused(&mut self, j: usize, hint: Index, now: u64) -> bool {
        // What was in flight will be refused too: start over from the refusal.
        self.in_flight[j].clear();
        let back = hint.saturating_add(1).max(self.matched[j] + 1);
        if back >= self.next[j] {
            return false;
        }
        self.next[j] = back;
        if self.last_resend[j] == now {
            return false;
        }
        self.last_resend[j] = now;
        true
    }

    /// Takes one of follower `j`'s `MAX_APPENDS_PER_TICK` AppendEntries for tick `now`;
    /// false when they are spent (the next heartbeat or Ack after this tick serves it).
    pub fn take_send_budget(&mut self, j: usize, now: u64) -> bool {
        let budget = &mut self.sent_in_tick[j];
        if budget.0 != now {
            *budget = (now, 0);
        }
        if budget.1 >= MAX_APPENDS_PER_TICK {
            return false;
        }
        budget.1 += 1;
        true
    }

    /// An AppendEntries up to `to` went to `j`; if it carried entries, they are in flight.
    pub fn sent(&mut self, j: usize, to: Index, carried_entries: bool) {
        self.next[j] = to + 1;
        if carried_entries {
            let flight = &mut self.in_flight[j];
            flight.push_back(to);
            if flight.len() > IN_FLIGHT_KEPT {
                flight.pop_front();
            }
        }
    }

    /// Whether `j` Acked this term within `window` ticks: then it knows our proof and we
    /// leave it out of our AppendEntries.
    pub fn convinced(&self, j: usize, now: u64, window: u64) -> bool {
        self.last_ack[j].is_some_and(|t| now - t <= window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(last: Index) -> LeaderState {
        let proof = ElectionProof {
            term: 1,
            leader: 0,
            votes: vec![],
        };
        LeaderState::new(proof, None, 4, last, 0, 0)
    }

    #[test]
    fn acks_advance_and_never_retreat_and_clear_what_they_cover() {
        let mut l = leader(10);
        l.sent(1, 8, true);
        l.sent(1, 10, true);
        l.acked(1, 8, 5);
        assert_eq!((l.matched[1], l.next[1]), (8, 11));
        assert_eq!(l.in_flight[1], VecDeque::from([10]));
        l.acked(1, 3, 6);
        assert_eq!(l.matched[1], 8, "an older Ack does not lower the match");
        assert!(l.convinced(1, 6, 0) && !l.convinced(2, 6, 100));
    }

    #[test]
    fn a_refusal_backs_off_to_the_hint_never_below_the_match_and_resends_once_a_tick() {
        let mut l = leader(20);
        l.acked(1, 5, 1);
        l.next[1] = 15;
        assert!(l.refused(1, 9, 2));
        assert_eq!(l.next[1], 10);
        assert!(
            !l.refused(1, 7, 2),
            "a second resend in the same tick waits"
        );
        assert_eq!(l.next[1], 8, "but the back-off still applies");
        assert!(l.refused(1, 0, 3), "a new tick: resend");
        assert_eq!(l.next[1], 6, "never below what it matched");
        assert!(
            !l.refused(1, u64::MAX, 4),
            "a hint past our log changes nothing"
        );
    }

    #[test]
    fn the_per_tick_budget_is_per_follower_and_renews_each_tick() {
        let mut l = leader(0);
        for _ in 0..MAX_APPENDS_PER_TICK {
            assert!(l.take_send_budget(1, 7));
        }
        assert!(!l.take_send_budget(1, 7));
        assert!(l.take_send_budget(2, 7), "another follower has its own");
        assert!(l.take_send_budget(1, 8), "a new tick");
    }

    #[test]
    fn in_flight_records_are_bounded() {
        let mut l = leader(100);
        for to in 1..=(IN_FLIGHT_KEPT as Index + 5) {
            l.sent(1, to, true);
        }
        assert_eq!(l.in_flight[1].len(), IN_FLIGHT_KEPT);
        l.sent(2, 50, false);
        assert!(l.in_flight[2].is_empty(), "heartbeats are not in flight");
    }
}
