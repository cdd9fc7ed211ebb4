//! Elections: lazy voting, election proofs, locks on votes, penalties (PROTOCOL.md,
//! "Election"). Plain Raft's eager voting lives in `raft.rs`.

use super::message::{
    lock_id, lock_rank, ElectionProof, LockId, Message, PreparedCert, RequestVote, Vote,
};
use super::node::{Follow, LeaderState, Node, Role, Suspicion};
use super::types::{NodeId, Term};
use crate::crypto::Signed;
use std::collections::{BTreeMap, BTreeSet};

impl Node {
    fn voted_term(&self) -> Term {
        self.hard.voted.map_or(0, |(t, _)| t)
    }

    fn follow_term(&self) -> Term {
        self.follow.as_ref().map_or(0, |f| f.term)
    }

    /// Whether a liar could have pushed `term` on us (`TermReach::in_reach`).
    pub(super) fn term_in_reach(&self, term: Term) -> bool {
        self.reach.in_reach(term)
    }

    /// The election timer fired (the timer is already reset; we do not lead): lazy voters
    /// suspect their leader, and campaign if no other candidate waits for their vote.
    ///
    /// (PROTOCOL.md rule E2)
    pub(super) fn election_timeout_fired(&mut self) {
        let now = self.now;
        self.ballot.expire(now);
        // A candidate we voted for that produced no valid AppendEntries within a whole
        // election timeout sits out the next round: otherwise a Byzantine candidate could
        // soak up every round's votes by always offering the highest term, and never lead.
        // One round only: an honest candidate may have failed because others refused it,
        // and a longer penalty would feed on itself (the simulator found that deadlock).
        if let Some((t, c)) = self.hard.voted {
            if c != self.cfg.id && t > self.follow_term() && self.rules.candidate_sit_out {
                self.ballot.sit_out_until(c, now + self.round_ticks());
            }
        }
        self.judge_leader_faulty(Suspicion::Silence);
    }

    /// One election round: the longest election timeout.
    fn round_ticks(&self) -> u64 {
        2 * self.cfg.timing.election_ticks as u64 // u32 widened: no overflow
    }

    /// (PROTOCOL.md rule E6, E12)
    fn penalize(&mut self, node: NodeId) {
        if self.rules.depose_penalty && node != self.cfg.id {
            // "grants L no vote for the next n terms". We count election rounds of our own
            // clock rather than term numbers: a Byzantine candidate can jump term numbers,
            // but it cannot make time pass faster. Counting rounds by our timer firing (as
            // before) let a penalty last for ever on a node that campaigns from request
            // timers, whose campaigns reset that timer (the attacker found it).
            let until = self.now + self.cfg.n as u64 * self.round_ticks();
            self.ballot.penalize_until(node, until);
        }
    }

    /// This node now believes its leader faulty: vote for a remembered candidate, or run.
    ///
    /// (PROTOCOL.md rule E2)
    pub(super) fn judge_leader_faulty(&mut self, why: Suspicion) {
        if self.is_leader() {
            return;
        }
        if let Some(f) = &self.follow {
            // "grants L no vote for the next n terms": counted from the judgement, not
            // renewed at every timeout, or the only holder of the highest lock could be
            // shut out forever (the simulator found that deadlock).
            let judged = (f.term, f.leader);
            if self.ballot.first_judgement(judged) {
                self.penalize(judged.1);
            }
        }
        if self.suspect.is_none() || self.suspect == Some(Suspicion::Silence) {
            self.suspect = Some(why);
        }
        if !self.grant_remembered_vote() {
            (self.book.campaign)(self);
        }
    }

    /// Candidate: term += 1, vote for itself (persisted first), broadcast RequestVote.
    pub(super) fn campaign(&mut self) {
        if let Some(term) = self.next_campaign_term() {
            self.campaign_in(term);
        }
    }

    /// Above every term we know of, including our log's last entry: catch-up can bring
    /// entries of terms we never followed, and a leader appends in its own term. None
    /// once terms are exhausted (only a liar's raft term gets there).
    ///
    /// (PROTOCOL.md rule E9)
    pub(super) fn next_campaign_term(&self) -> Option<Term> {
        let known = self
            .hard
            .term
            .max(self.voted_term())
            .max(self.follow_term())
            .max(self.reach.highest_request());
        let term = known.max(self.log.last_term()).saturating_add(1);
        (term > self.voted_term() && term > self.log.last_term()).then_some(term)
    }

    /// (PROTOCOL.md rule E3)
    pub(super) fn campaign_in(&mut self, term: Term) {
        let me = self.cfg.id;
        self.reach.we_campaign(me, term);
        self.hard.term = term;
        self.hard.voted = Some((term, me));
        self.save_hard();
        let lock = if self.rules.lock_vote_check {
            self.hard.lock.clone()
        } else {
            None
        };
        let own = self.sign(Vote {
            term,
            voter: me,
            candidate: me,
            lock: lock_id(&lock),
        });
        let mut votes = BTreeMap::new();
        votes.insert(me, own);
        self.role = Role::Candidate {
            votes,
            lock: lock.clone(),
        };
        self.reset_election_timer();
        let rv = RequestVote {
            term,
            candidate: me,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            last_hash: self.log.last_hash(),
            lock,
        };
        let rv = self.sign(rv);
        self.broadcast(Message::RequestVote(rv));
        self.maybe_won();
    }

    /// (PROTOCOL.md rule E4)
    pub(super) fn on_request_vote(&mut self, rv: Signed<RequestVote>) {
        let b = &rv.body;
        self.reach.request_seen(b.candidate, b.term);
        if !self.term_in_reach(b.term) {
            return;
        }
        self.reach.request_in_reach(b.term);
        if b.term <= self.voted_term() {
            return;
        }
        // Lazy voter: remember the request (the newest per candidate, so memory is bounded
        // by n) and grant it when, and if, we come to believe our leader faulty.
        self.ballot.remember(rv);
        if !self.rules.lazy_voting || self.suspect.is_some() || self.follow.is_none() {
            self.grant_remembered_vote();
        }
    }

    /// Grants the best remembered RequestVote that passes every test. Returns whether it did.
    ///
    /// (PROTOCOL.md rule E4)
    fn grant_remembered_vote(&mut self) -> bool {
        let floor = self.voted_term().max(self.follow_term());
        self.ballot.forget_up_to(floor);
        let best = self.ballot.best(|rv| self.may_vote_for(rv));
        match best {
            Some(rv) => {
                self.grant(&rv);
                true
            }
            None => false,
        }
    }

    /// (PROTOCOL.md rule E4)
    fn may_vote_for(&self, rv: &RequestVote) -> bool {
        if rv.term <= self.voted_term()
            || rv.term <= self.follow_term()
            || !self.term_in_reach(rv.term)
        {
            return false;
        }
        let penalized = self.ballot.is_penalized(rv.candidate, self.now);
        if penalized || self.accounts.is_convicted(rv.candidate) {
            return false;
        }
        let lock_ok = !self.rules.lock_vote_check || {
            // bft: the candidate's lock, a valid certificate, must be at least ours.
            let valid = rv.lock.as_ref().is_none_or(|c| self.valid_cert(c));
            valid && lock_rank(&rv.lock) >= lock_rank(&self.hard.lock)
        };
        lock_ok && (!self.rules.log_vote_check || self.log_up_to_date(rv))
    }

    pub(super) fn log_up_to_date(&self, rv: &RequestVote) -> bool {
        (rv.last_term, rv.last_index) >= (self.log.last_term(), self.log.last_index())
    }

    /// (PROTOCOL.md rule E11)
    fn grant(&mut self, rv: &Signed<RequestVote>) {
        // Pass the RequestVote on: a candidate may have sent it to us alone, and then our
        // vote puts us at a term our peers never saw, too far above them to vote for their
        // candidates or they for ours (the tally of campaign terms moves only with f+1
        // nodes). Relayed, it lifts every honest node's campaigns above it.
        let candidate = rv.body.candidate;
        let relay: Vec<NodeId> = self.peers().filter(|&p| p != candidate).collect();
        for p in relay {
            self.send(p, Message::RequestVote(rv.clone()));
        }
        self.grant_vote(&rv.body);
    }

    fn grant_vote(&mut self, rv: &RequestVote) {
        let me = self.cfg.id;
        self.hard.voted = Some((rv.term, rv.candidate));
        self.hard.term = self.hard.term.max(rv.term);
        self.hard.ack_floor = self.hard.ack_floor.max(rv.term);
        self.save_hard();
        self.ballot.forget_candidate(rv.candidate);
        self.role = Role::Follower;
        self.reset_election_timer();
        let vote = self.sign(Vote {
            term: rv.term,
            voter: me,
            candidate: rv.candidate,
            lock: lock_id(&rv.lock),
        });
        self.send(rv.candidate, Message::Vote(vote));
    }

    /// (PROTOCOL.md rule E5)
    pub(super) fn on_vote(&mut self, v: Signed<Vote>) {
        let b = v.body.clone();
        if !self.is_node(b.voter) || b.candidate != self.cfg.id {
            return;
        }
        self.note_vote(&v);
        let my_term = self.hard.term;
        let binds = self.rules.vote_binds_lock;
        if let Role::Candidate { votes, lock } = &mut self.role {
            // A vote counts only for the lock it was granted on (bft).
            if b.term == my_term && (!binds || b.lock == lock_id(lock)) {
                votes.insert(b.voter, v);
            }
        }
        self.maybe_won();
    }

    fn maybe_won(&mut self) {
        let won = match &self.role {
            Role::Candidate { votes, .. } => votes.len() >= self.quorum.q,
            _ => false,
        };
        if won {
            self.become_leader();
        }
    }

    /// (PROTOCOL.md rule E5)
    fn become_leader(&mut self) {
        let Role::Candidate { votes, lock } = std::mem::replace(&mut self.role, Role::Follower)
        else {
            unreachable!("only a candidate becomes leader")
        };
        if lock_id(&lock) != lock_id(&self.hard.lock) && self.rules.lock_vote_check {
            // Our lock rose while we campaigned: the votes bind the lower one, whose
            // entries our log may no longer hold. Give the candidacy up; the next one
            // carries the new lock.
            return;
        }
        let term = self.hard.term;
        let me = self.cfg.id;
        let proof = ElectionProof {
            term,
            leader: me,
            votes: votes.into_values().collect(),
        };
        let lock = if self.rules.follow_leader_lock {
            lock
        } else {
            None
        };
        self.restore_lock_chain();
        if self.log.last_term() > term {
            // Entries of a later term reached us (catch-up) while we campaigned: leading
            // this term would append below them. Give the candidacy up.
            self.role = Role::Follower;
            return;
        }
        self.hard.leader = Some((term, me));
        self.reach.proven(term);
        self.save_hard();
        self.follow = Some(Follow {
            term,
            leader: me,
            lock: lock.clone(),
        });
        self.suspect = None;
        self.ballot.forget_all();
        self.role = Role::Leader(Box::new(LeaderState::new(
            proof,
            lock,
            self.cfg.n,
            self.log.last_index(),
            self.hard.commit,
            self.now,
        )));
        tracing::debug!(node = me, term, "became leader");
        (self.book.on_elected)(self)
    }

    /// A new leader Acks its log (its election lock's entries included) and tells everyone.
    pub(super) fn on_elected(&mut self) {
        self.ack_own_log();
        self.heartbeat();
    }

    /// Checks an election proof: q granted votes from distinct nodes for exactly
    /// `(term, leader)`, all naming one lock (bft). Returns that lock: the only one the
    /// leader may claim. Signatures were checked by `auth`.
    ///
    /// (PROTOCOL.md rule E5)
    pub(super) fn valid_proof(
        &mut self,
        p: &ElectionProof,
        term: Term,
        leader: NodeId,
    ) -> Option<Option<LockId>> {
        if p.term != term || p.leader != leader || p.votes.len() > self.cfg.n {
            return None;
        }
        let bound = p.votes.first().and_then(|v| v.body.lock);
        let mut voters = BTreeSet::new();
        let mut count = 0;
        for v in &p.votes {
            let b = &v.body;
            if b.term != term || b.candidate != leader || !self.is_node(b.voter) {
                return None;
            }
            if self.rules.vote_binds_lock && b.lock != bound {
                return None;
            }
            voters.insert(b.voter);
            count += 1;
        }
        for v in &p.votes {
            self.note_vote(v);
        }
        let counted = if self.rules.distinct_voters {
            voters.len()
        } else {
            count
        };
        (counted >= self.quorum.q).then_some(bound)
    }

    /// Checks a prepared certificate: q Acks from distinct nodes, all of `cert.term`, all for
    /// exactly `(cert.index, cert.hash)`.
    pub(super) fn valid_cert(&self, cert: &PreparedCert) -> bool {
        if cert.acks.len() > self.cfg.n {
            return false;
        }
        let mut from = BTreeSet::new();
        for a in &cert.acks {
            let b = &a.body;
            let matches = b.term == cert.term && b.index == cert.index && b.hash == cert.hash;
            if !matches || !b.success || !self.is_node(b.from) {
                return false;
            }
            from.insert(b.from);
        }
        from.len() >= self.quorum.q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Digest, Domain};
    use crate::protocol::message::Ack;
    use crate::protocol::node::{Durable, NodeConfig};
    use crate::protocol::types::{Rules, Timing, Variant, MAX_TERM_GAP};
    use ed25519_dalek::SigningKey;

    fn keys(n: u8) -> Vec<SigningKey> {
        (0..n).map(|i| signing_key_from_seed([i + 7; 32])).collect()
    }

    fn node(rules: Rules, n: usize) -> Node {
        let cfg = NodeConfig {
            id: 0,
            n,
            cluster_id: "t".into(),
            rules,
            timing: Timing::default(),
            checkpoint_interval: 0,
        };
        Node::new(cfg, keys(n as u8)[0].clone(), 1, Durable::default())
    }

    fn vote(k: &[SigningKey], voter: u32, term: Term, candidate: u32) -> Signed<Vote> {
        Domain::new(Variant::Bft, "t").sign(
            &k[voter as usize],
            Vote {
                term,
                voter,
                candidate,
                lock: None,
            },
        )
    }

    fn ack(k: &[SigningKey], from: u32, term: Term, index: u64, hash: Digest) -> Signed<Ack> {
        let body = Ack {
            term,
            from,
            index,
            hash,
            success: true,
        };
        Domain::new(Variant::Bft, "t").sign(&k[from as usize], body)
    }

    #[test]
    fn election_proofs_need_q_distinct_granted_votes_for_exactly_this_term_and_leader() {
        let k = keys(4);
        let mut n = node(Rules::for_variant(Variant::Bft), 4);
        let proof = |votes| ElectionProof {
            term: 5,
            leader: 2,
            votes,
        };
        let good = proof(vec![
            vote(&k, 1, 5, 2),
            vote(&k, 2, 5, 2),
            vote(&k, 3, 5, 2),
        ]);
        assert!(n.valid_proof(&good, 5, 2).is_some());
        // Claimed for another term or leader than the AppendEntries carrying it.
        assert!(n.valid_proof(&good, 6, 2).is_none());
        assert!(n.valid_proof(&good, 5, 1).is_none());
        // Too few.
        assert!(n
            .valid_proof(&proof(vec![vote(&k, 1, 5, 2), vote(&k, 2, 5, 2)]), 5, 2)
            .is_none());
        // The same voter three times.
        let dup = proof(vec![
            vote(&k, 1, 5, 2),
            vote(&k, 1, 5, 2),
            vote(&k, 1, 5, 2),
        ]);
        assert!(n.valid_proof(&dup, 5, 2).is_none());
        // A vote for someone else, or from another term, or from a non-member.
        assert!(n
            .valid_proof(
                &proof(vec![
                    vote(&k, 1, 5, 2),
                    vote(&k, 2, 5, 2),
                    vote(&k, 3, 5, 1)
                ]),
                5,
                2
            )
            .is_none());
        assert!(n
            .valid_proof(
                &proof(vec![
                    vote(&k, 1, 5, 2),
                    vote(&k, 2, 5, 2),
                    vote(&k, 3, 4, 2)
                ]),
                5,
                2
            )
            .is_none());
        let mut outsider = vote(&k, 3, 5, 2);
        outsider.body.voter = 9;
        assert!(n
            .valid_proof(
                &proof(vec![vote(&k, 1, 5, 2), vote(&k, 2, 5, 2), outsider]),
                5,
                2
            )
            .is_none());
        // With the distinct-voters rule switched off (the planted bug), duplicates pass.
        let mut rules = Rules::for_variant(Variant::Bft);
        rules.distinct_voters = false;
        assert!(node(rules, 4).valid_proof(&dup, 5, 2).is_some());
    }

    #[test]
    fn certificates_need_q_distinct_matching_acks() {
        let k = keys(4);
        let n = node(Rules::for_variant(Variant::Bft), 4);
        let h = Digest([1; 32]);
        let cert = |acks| PreparedCert {
            term: 3,
            index: 7,
            hash: h,
            acks,
        };
        assert!(n.valid_cert(&cert(vec![
            ack(&k, 0, 3, 7, h),
            ack(&k, 1, 3, 7, h),
            ack(&k, 3, 3, 7, h)
        ])));
        assert!(!n.valid_cert(&cert(vec![ack(&k, 0, 3, 7, h), ack(&k, 1, 3, 7, h)])));
        assert!(!n.valid_cert(&cert(vec![
            ack(&k, 0, 3, 7, h),
            ack(&k, 0, 3, 7, h),
            ack(&k, 1, 3, 7, h)
        ])));
        // Every Ack must be for exactly (term, index, hash).
        let other = Digest([2; 32]);
        assert!(!n.valid_cert(&cert(vec![
            ack(&k, 0, 3, 7, h),
            ack(&k, 1, 3, 7, h),
            ack(&k, 3, 3, 7, other)
        ])));
        assert!(!n.valid_cert(&cert(vec![
            ack(&k, 0, 3, 7, h),
            ack(&k, 1, 3, 7, h),
            ack(&k, 3, 3, 8, h)
        ])));
        assert!(!n.valid_cert(&cert(vec![
            ack(&k, 0, 3, 7, h),
            ack(&k, 1, 3, 7, h),
            ack(&k, 3, 2, 7, h)
        ])));
        let mut refused = ack(&k, 3, 3, 7, h);
        refused.body.success = false;
        assert!(!n.valid_cert(&cert(vec![
            ack(&k, 0, 3, 7, h),
            ack(&k, 1, 3, 7, h),
            refused
        ])));
    }

    #[test]
    fn locks_order_by_term_then_index_and_any_lock_beats_none() {
        let h = Digest::default();
        let pc = |term, index| {
            Some(PreparedCert {
                term,
                index,
                hash: h,
                acks: vec![],
            })
        };
        assert!(lock_rank(&pc(2, 1)) > lock_rank(&pc(1, 100)));
        assert!(lock_rank(&pc(2, 5)) > lock_rank(&pc(2, 4)));
        assert!(lock_rank(&pc(1, 1)) > lock_rank(&None));
        assert_eq!(lock_rank(&pc(3, 3)), (3, 3));
    }

    /// Makes `n` follow leader 1 of term 1 with a valid proof.
    fn follow_leader_one(k: &[SigningKey], n: &mut Node) {
        let proof = ElectionProof {
            term: 1,
            leader: 1,
            votes: vec![vote(k, 1, 1, 1), vote(k, 2, 1, 1), vote(k, 3, 1, 1)],
        };
        let ae = crate::protocol::message::AppendEntries {
            term: 1,
            leader: 1,
            prev_index: 0,
            prev_term: 0,
            prev_hash: n.log().hash_at(0).unwrap(),
            entries: vec![],
            commit: 0,
            proof: Some(proof),
            lock: None,
        };
        let ae = Domain::new(Variant::Bft, "t").sign(&k[1], ae);
        n.step(crate::protocol::Input::Message {
            from: crate::crypto::Principal::Node(1),
            msg: Message::AppendEntries(ae),
        });
        assert_eq!(n.leader(), Some((1, 1)));
    }

    #[test]
    fn a_penalty_runs_out_by_the_clock_even_if_the_election_timer_never_fires() {
        let k = keys(4);
        let mut n = node(Rules::for_variant(Variant::Bft), 4);
        follow_leader_one(&k, &mut n);
        n.step(crate::protocol::Input::Timeout); // judged faulty: penalized
        let rv = |term| RequestVote {
            term,
            candidate: 1,
            last_index: 0,
            last_term: 0,
            last_hash: Digest::default(),
            lock: None,
        };
        assert!(
            !n.may_vote_for(&rv(50)),
            "a judged leader gets no vote at once"
        );
        // Campaigns from request timers reset the election timer at every round, so it
        // never fires; the penalty must still run out after n rounds of 2T ticks.
        let rounds = 4 * 2 * Timing::default().election_ticks as u64;
        for _ in 0..=rounds {
            n.election_elapsed = 0;
            n.step(crate::protocol::Input::Tick);
        }
        assert!(n.may_vote_for(&rv(50)), "the penalty never ran out");
    }

    #[test]
    fn terms_out_of_reach_come_into_reach_once_f_plus_one_nodes_campaign_there() {
        let k = keys(4);
        let mut n = node(Rules::for_variant(Variant::Bft), 4);
        let far = MAX_TERM_GAP + 10;
        assert!(!n.term_in_reach(far));
        let rv = |from: u32, term| {
            let rv = RequestVote {
                term,
                candidate: from,
                last_index: 0,
                last_term: 0,
                last_hash: Digest::default(),
                lock: None,
            };
            crate::protocol::Input::Message {
                from: crate::crypto::Principal::Node(from),
                msg: Message::RequestVote(
                    Domain::new(Variant::Bft, "t").sign(&k[from as usize], rv),
                ),
            }
        };
        // One node (a liar, for all we know) far above: still out of reach.
        n.step(rv(3, far));
        assert!(!n.term_in_reach(far + 1));
        // A second one there (f + 1 = 2 at n = 4): some honest node reached it.
        n.step(rv(2, far));
        assert!(n.term_in_reach(far + 1));
        assert!(
            !n.term_in_reach(far + MAX_TERM_GAP + 1),
            "still bounded above"
        );
    }

    #[test]
    fn lazy_voter_grants_only_once_it_believes_the_leader_faulty() {
        let k = keys(4);
        let mut n = node(Rules::for_variant(Variant::Bft), 4);
        follow_leader_one(&k, &mut n);
        let rv = RequestVote {
            term: 2,
            candidate: 3,
            last_index: 0,
            last_term: 0,
            last_hash: n.log().hash_at(0).unwrap(),
            lock: None,
        };
        let rv = Domain::new(Variant::Bft, "t").sign(&k[3], rv);
        let out = n.step(crate::protocol::Input::Message {
            from: crate::crypto::Principal::Node(3),
            msg: Message::RequestVote(rv),
        });
        let votes = |out: &[crate::protocol::Output]| {
            out.iter()
                .filter(|o| {
                    matches!(
                        o,
                        crate::protocol::Output::Send {
                            msg: Message::Vote(_),
                            ..
                        }
                    )
                })
                .count()
        };
        assert_eq!(votes(&out), 0, "a healthy leader means no vote");
        // The leader goes silent: the remembered request is granted, after the vote is persisted.
        let out = n.step(crate::protocol::Input::Timeout);
        assert_eq!(votes(&out), 1);
        let persisted = out
            .iter()
            .position(|o| matches!(o, crate::protocol::Output::Persist(_)))
            .unwrap();
        let sent = out
            .iter()
            .position(|o| matches!(o, crate::protocol::Output::Send { .. }))
            .unwrap();
        assert!(persisted < sent, "persist before you speak");
        assert_eq!(n.hard_state().voted, Some((2, 3)));
    }
}
