//! Plain Raft (the `raft` variant, the benchmark's baseline): eager voting with Raft's
//! log-recency check, adopting any leader of the current term or later, and commit by
//! counting the leader's matched indexes (Raft paper, sections 5.2 to 5.4). Its rules live
//! here, apart from the Byzantine variants' (`election`, `replication`, `commit`); the
//! log, messages, batching and the driver are shared.

use super::message::{AppendEntries, Message, RequestVote, Vote};
use super::node::{Follow, Node, Role};
use super::types::{Term, Variant};
use crate::crypto::Signed;

impl Node {
    pub(super) fn is_raft(&self) -> bool {
        self.rules.variant == Variant::Raft
    }

    /// Raft: any AppendEntries of our term or later comes from that term's leader (one
    /// per term, by majority votes); adopt it and step down from candidacy or leadership.
    pub(super) fn raft_accept_leader(&mut self, b: &AppendEntries) -> bool {
        if b.term < self.hard.term {
            return false;
        }
        let known = matches!(&self.follow, Some(f) if f.term == b.term);
        if !known || !matches!(self.role, Role::Follower) {
            self.hard.term = b.term;
            self.hard.leader = Some((b.term, b.leader));
            self.save_hard();
            self.role = Role::Follower;
            self.follow = Some(Follow {
                term: b.term,
                leader: b.leader,
                lock: None,
            });
        }
        self.follow.as_ref().is_some_and(|f| f.leader == b.leader)
    }

    /// Raft: the leader commits the highest index a majority holds, if it is of its term.
    pub(super) fn raft_leader_commit(&mut self) {
        let Role::Leader(ls) = &self.role else { return };
        let mut m = ls.matched.clone();
        m.sort_unstable_by(|a, b| b.cmp(a));
        let n = m[self.quorum.q - 1];
        if self.log.term_at(n) == Some(self.hard.term) {
            self.commit_to(n);
        }
    }

    pub(super) fn raft_step_down(&mut self, term: Term) {
        self.hard.term = term;
        self.follow = None;
        self.role = Role::Follower;
        self.save_hard();
    }

    pub(super) fn raft_on_request_vote(&mut self, rv: Signed<RequestVote>) {
        let b = rv.body;
        if b.term > self.hard.term {
            self.raft_step_down(b.term);
        }
        let free = match self.hard.voted {
            Some((t, c)) if t == b.term => c == b.candidate,
            _ => true,
        };
        if b.term == self.hard.term && free && self.log_up_to_date(&b) {
            self.hard.voted = Some((b.term, b.candidate));
            self.save_hard();
            self.reset_election_timer();
            let vote = self.sign(Vote {
                term: b.term,
                voter: self.cfg.id,
                candidate: b.candidate,
                lock: None,
            });
            self.send(b.candidate, Message::Vote(vote));
        }
    }
}
