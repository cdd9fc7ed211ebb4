//! Plain Raft (the `raft` variant, the benchmark's baseline): eager voting with Raft's
//! log-recency check, adopting any leader of the current term or later, and commit by
//! counting the leader's matched indexes (Raft paper, sections 5.2 to 5.4). Its rules live
//! here, apart from the Byzantine variants' (`election`, `replication`, `commit`); the
//! log, messages, batching and the driver are shared.

use super::message::{Ack, AppendEntries, Message, Payload, RequestVote, Vote};
use super::node::{Follow, Node, Role, Suspicion};
use super::types::{Index, Term};
use crate::crypto::Signed;

impl Node {
    /// Raft's candidate forgets its leader (no lazy voting: it stops following the moment
    /// it runs). With terms exhausted there is no campaign, and the leader stays followed.
    pub(super) fn raft_campaign(&mut self) {
        if let Some(term) = self.next_campaign_term() {
            self.follow = None;
            self.campaign_in(term);
        }
    }

    /// Raft section 8: a new leader appends an entry of its own term so that earlier
    /// entries can be committed by counting, then heartbeats.
    pub(super) fn raft_on_elected(&mut self) {
        self.leader_append(Payload::Noop);
        self.raft_ack_own_log();
        self.append_to_every_follower();
    }

    /// Raft's leader has no quorum check and no Acks of its own to resend: it heartbeats.
    pub(super) fn raft_leader_tick(&mut self) {
        let (heartbeat_due, _) = self.advance_leader_timers();
        if heartbeat_due {
            self.append_to_every_follower();
        }
    }

    pub(super) fn raft_ack_own_log(&mut self) {
        self.record_own_match();
        self.raft_leader_commit();
    }

    /// Raft's AppendEntries: consistency by `prev_term` (logs are not hash-chained), a
    /// stale leader is told our term, and the Ack goes to the leader alone, with the
    /// leader's commit index taken on trust.
    pub(super) fn raft_on_append_entries(&mut self, ae: Signed<AppendEntries>) {
        let leader = ae.body.leader;
        if !self.raft_accept_leader(&ae.body) {
            if ae.body.term < self.hard.term {
                // Tell the stale leader our term so it steps down.
                self.send_nack(leader, self.hard.term, self.log.last_index());
            }
            return;
        }
        let b = &ae.body;
        let (term, prev) = (b.term, b.prev_index);
        if !self.reaches_prev(leader, term, prev) {
            return;
        }
        if self.log.term_at(prev) != Some(b.prev_term) {
            return self.send_nack(leader, term, prev.saturating_sub(1));
        }
        if !self.well_formed(b) {
            return self.judge_leader_faulty(Suspicion::Misbehaviour);
        }
        if !self.merge_entries(&ae) {
            return;
        }
        let matched = prev + ae.body.entries.len() as Index;
        let ack = self.positive_ack(term, matched);
        self.send(leader, Message::Ack(ack));
        self.commit_to(ae.body.commit.min(matched));
    }

    /// Raft's Ack: a later term deposes us; otherwise it is progress towards commit.
    pub(super) fn raft_on_ack(&mut self, a: Signed<Ack>) {
        if a.body.term > self.hard.term {
            return self.raft_step_down(a.body.term);
        }
        self.leader_on_ack(&a.body);
        self.raft_leader_commit();
    }

    /// Raft: any AppendEntries of our term or later comes from that term's leader (one
    /// per term, by majority votes); adopt it and step down from candidacy or leadership.
    fn raft_accept_leader(&mut self, b: &AppendEntries) -> bool {
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
    fn raft_leader_commit(&mut self) {
        let Role::Leader(ls) = &self.role else { return };
        let mut m = ls.matched.clone();
        m.sort_unstable_by(|a, b| b.cmp(a));
        let n = m[self.quorum.q - 1];
        if self.log.term_at(n) == Some(self.hard.term) {
            self.commit_to(n);
        }
    }

    fn raft_step_down(&mut self, term: Term) {
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
