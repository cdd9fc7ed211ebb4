//! Replication: the leader's AppendEntries, the follower's checks and log repair, Acks
//! (PROTOCOL.md, "Replication and commit").

use super::message::{
    lock_id, lock_rank, Ack, AppendEntries, Entry, Message, Payload, PreparedCert,
};
use super::node::{
    Follow, Node, Output, Persist, Role, Suspicion, MAX_BATCH, MAX_BATCH_BYTES, MAX_CATCHUP,
    MAX_IN_FLIGHT,
};
use super::types::{Index, NodeId, Term};
use crate::crypto::Signed;

impl Node {
    pub(super) fn leader_tick(&mut self) {
        let window = self.quorum_check_window();
        let (due, check) = self.advance_leader_timers();
        if check && !self.quorum_still_acks(window) {
            return self.step_down();
        }
        if self.stuck() {
            tracing::debug!(
                node = self.cfg.id,
                "entries uncommitted for the request timeout"
            );
            return self.step_down();
        }
        if due {
            self.heartbeat();
        }
    }

    /// How often a leader checks that a quorum still Acks it, in ticks.
    fn quorum_check_window(&self) -> u32 {
        self.cfg.timing.election_ticks.saturating_mul(2)
    }

    /// One tick of the leader's timers: is a heartbeat due, and a quorum check?
    pub(super) fn advance_leader_timers(&mut self) -> (bool, bool) {
        let window = self.quorum_check_window();
        let Role::Leader(ls) = &mut self.role else {
            unreachable!("only a leader has leader timers")
        };
        ls.heartbeat_elapsed += 1;
        ls.quorum_check_elapsed += 1;
        let check = ls.quorum_check_elapsed >= window;
        if check {
            ls.quorum_check_elapsed = 0;
        }
        (
            ls.heartbeat_elapsed >= self.cfg.timing.heartbeat_ticks,
            check,
        )
    }

    /// Have our entries stayed uncommitted for the request timeout? The followers'
    /// request timers catch a leader that ignores requests; this catches the leader that
    /// appends them but cannot get them committed: a quorum still Acks it (a Byzantine
    /// node's Acks count for CheckQuorum) while an honest follower that voted in a failed
    /// later election may no longer Ack or Commit this term, and the Byzantine node
    /// withholds its Commits. Only a new term, in which every honest node may Ack, gets
    /// past that, and the leader itself must make room for it (the attacker found it).
    ///
    /// (PROTOCOL.md rule R10)
    fn stuck(&mut self) -> bool {
        let (now, commit, last) = (self.now, self.hard.commit, self.log.last_index());
        let limit = self.cfg.timing.request_ticks as u64;
        let enabled = self.rules.stuck_leader_steps_down;
        let Role::Leader(ls) = &mut self.role else {
            return false;
        };
        if commit > ls.commit_seen || last <= commit {
            ls.commit_seen = commit;
            ls.progress_at = now;
            return false;
        }
        enabled && now - ls.progress_at > limit
    }

    /// CheckQuorum (as in etcd): have q nodes, us included, Acked this term lately?
    ///
    /// (PROTOCOL.md rule E8)
    fn quorum_still_acks(&self, window: u32) -> bool {
        let Role::Leader(ls) = &self.role else {
            return true;
        };
        let recent = ls
            .last_ack
            .iter()
            .filter(|t| t.is_some_and(|t| self.now - t <= window as u64))
            .count();
        recent + 1 >= self.quorum.q
    }

    /// A leader its followers have abandoned (they voted in later terms, so they can no
    /// longer Ack it) must stop believing in itself, or it would never vote and could block
    /// the election that replaces it.
    pub(super) fn step_down(&mut self) {
        tracing::debug!(
            node = self.cfg.id,
            term = self.hard.term,
            "no quorum Acks us: stepping down"
        );
        self.role = Role::Follower;
        self.follow = None;
        self.suspect = Some(Suspicion::Silence);
        self.reset_election_timer();
    }

    /// AppendEntries to every follower (with entries if they lag), plus our own Ack and, if
    /// we are still waiting to commit, our Commit again: messages get lost.
    pub(super) fn heartbeat(&mut self) {
        self.append_to_every_follower();
        if let Some(a) = self.my_ack.clone() {
            self.broadcast(Message::Ack(a));
        }
        self.rebroadcast_commit_if_lagging();
    }

    /// The heartbeat every variant sends: an AppendEntries to each follower.
    pub(super) fn append_to_every_follower(&mut self) {
        if let Role::Leader(ls) = &mut self.role {
            ls.heartbeat_elapsed = 0;
        }
        for j in self.peers() {
            self.send_append(j);
        }
    }

    pub(super) fn leader_append(&mut self, payload: Payload) {
        let entry = Entry {
            term: self.hard.term,
            index: self.log.last_index() + 1,
            payload,
        };
        self.log.append(entry.clone());
        self.out.push(Output::Persist(Persist::Append(vec![entry])));
    }

    /// End of every step: ship what the leader appended during it, as one batch.
    /// Followers with `MAX_IN_FLIGHT` batches outstanding get theirs later: when an Ack
    /// frees a slot (this runs at the end of every step) or at the next heartbeat.
    pub(super) fn replicate_new_entries(&mut self) {
        let last = self.log.last_index();
        let (ready, fresh): (Vec<NodeId>, bool) = match &self.role {
            Role::Leader(ls) => (
                self.peers()
                    .filter(|&j| {
                        ls.next[j as usize] <= last
                            && ls.in_flight[j as usize].len() < MAX_IN_FLIGHT
                    })
                    .collect(),
                ls.replicated_to < last,
            ),
            _ => return,
        };
        for j in ready {
            self.send_append(j);
        }
        if fresh {
            if let Role::Leader(ls) = &mut self.role {
                ls.replicated_to = last;
            }
            (self.book.ack_own_log)(self);
        }
    }

    /// (PROTOCOL.md rule R1, R11)
    pub(super) fn send_append(&mut self, j: NodeId) {
        let now = self.now;
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        if !ls.take_send_budget(j as usize, now) {
            return; // the next heartbeat or Ack after this tick serves it
        }
        let last = self.log.last_index();
        let base = self.log.base().index;
        let next = ls.next[j as usize].clamp(1, last + 1);
        if next <= base {
            // The entries it needs are in our snapshot: offer that, and go on from the base
            // (refused until it is installed). (PROTOCOL.md rule K4)
            self.offer_snapshot(j);
        }
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        let next = next.max(base + 1);
        let prev = next - 1;
        let mut to = last.min(prev + MAX_BATCH as Index);
        if let Some(lock) = &ls.lock {
            // Followers Ack only once they reach our election lock: bring them there in one go.
            if prev < lock.index {
                to = to.max(lock.index.min(prev + MAX_CATCHUP as Index));
            }
        }
        let to = if to >= next {
            self.log.end_within(next, to, MAX_BATCH_BYTES)
        } else {
            to
        };
        let convinced = ls.convinced(j as usize, now, self.cfg.timing.election_ticks as u64);
        // Only signed votes prove anything: unsigned (Raft) leaders never send a proof.
        let with_proof = !convinced && self.rules.signed;
        let ae = AppendEntries {
            term: self.hard.term,
            leader: self.cfg.id,
            prev_index: prev,
            prev_term: self.log.term_at(prev).expect("prev is in the log"),
            prev_hash: self.log.hash_at(prev).expect("prev is in the log"),
            entries: self.log.slice(next, to).to_vec(),
            commit: self.hard.commit,
            proof: with_proof.then(|| ls.proof.clone()),
            lock: if with_proof { ls.lock.clone() } else { None },
        };
        ls.sent(j as usize, to, !ae.entries.is_empty());
        let ae = self.domain.sign(&self.key, ae);
        self.send(j, Message::AppendEntries(ae));
    }

    /// Is this AppendEntries from the leader we follow? Adopts a new leader on a valid proof.
    ///
    /// (PROTOCOL.md rule E5, R12)
    fn accept_leader(&mut self, ae: &Signed<AppendEntries>) -> bool {
        let b = &ae.body;
        // Below our Ack floor (we voted for another node in a later term) we still take a
        // leader's entries and commit from others' Commits; `send_ack` and `set_lock` keep
        // us from Acking or Committing anything of that term. Refusing the entries too
        // would strand us forever if the candidate we voted for lost.
        if !self.term_in_reach(b.term) {
            return false;
        }
        match &self.follow {
            Some(f) if f.term == b.term && f.leader == b.leader => return true,
            Some(f) if f.term >= b.term => return false,
            _ => {}
        }
        if self.hard.leader.is_some_and(|(t, _)| t > b.term) {
            // We followed a later proven leader before a restart: never go back to an
            // earlier term, whose Acks we no longer have on record.
            return false;
        }
        let Some(proof) = &b.proof else { return false };
        let Some(elected_on) = self.valid_proof(proof, b.term, b.leader) else {
            return false;
        };
        let lock = if self.rules.follow_leader_lock {
            b.lock.clone()
        } else {
            None
        };
        if lock.as_ref().is_some_and(|c| !self.valid_cert(c)) {
            return false;
        }
        if self.rules.vote_binds_lock && lock_id(&lock) != elected_on {
            // It claims another lock than its voters granted it on: a lower one (or none)
            // would make us truncate locked entries. Faulty, whatever else it sends.
            return false;
        }
        self.adopt_leader(b.term, b.leader, lock);
        true
    }

    /// Follows the proven leader of `term`, elected on `lock`. A failed candidacy does not
    /// strand us: we follow the highest proven leader.
    ///
    /// (PROTOCOL.md rule E7)
    fn adopt_leader(&mut self, term: Term, leader: NodeId, lock: Option<PreparedCert>) {
        self.hard.term = self.hard.term.max(term);
        self.hard.leader = Some((term, leader));
        self.reach.proven(term);
        self.save_hard();
        self.follow = Some(Follow { term, leader, lock });
        self.role = Role::Follower;
        self.suspect = None;
        self.ballot.forget_up_to(term);
        self.accounts.forget_accepted();
        tracing::debug!(
            node = self.cfg.id,
            term = term,
            leader = leader,
            "following"
        );
        self.on_new_leader();
    }

    /// (PROTOCOL.md rule R1)
    pub(super) fn on_append_entries(&mut self, ae: Signed<AppendEntries>) {
        let leader = ae.body.leader;
        if !self.accept_leader(&ae) {
            return;
        }
        let b = &ae.body;
        let (term, prev) = (b.term, b.prev_index);
        if !self.reaches_prev(leader, term, prev) {
            return;
        }
        if prev < self.log.base().index {
            // Below our base we can check nothing, and it is committed: tell the leader
            // where we go on from (a stale next index is no equivocation).
            // (PROTOCOL.md rule K5)
            return self.send_nack(leader, term, self.log.base().index);
        }
        if self.log.hash_at(prev) != Some(b.prev_hash) {
            if self.rules.append_only_in_term && prev <= self.acked_in(term) {
                // It told us otherwise earlier in this very term: Evidence if we still hold
                // the AppendEntries that gave us our entry at `prev`.
                return self.leader_equivocated(&ae, prev);
            }
            return self.send_nack(leader, term, prev.saturating_sub(1));
        }
        if !self.well_formed(b) {
            return self.judge_leader_faulty(Suspicion::Misbehaviour);
        }
        if !self.merge_entries(&ae) {
            return;
        }
        let b = &ae.body;
        let matched = prev + b.entries.len() as Index;
        if !b.entries.is_empty() {
            self.accounts.keep_accepted(&ae);
        }
        if !self.reached_leader_lock(matched) {
            return; // still catching up to the leader's lock: no Ack yet
        }
        self.send_ack(term, matched);
        if b.entries.is_empty() {
            self.rebroadcast_commit_if_lagging();
        }
    }

    /// Every variant, once it accepted `leader`'s AppendEntries: the leader is heard from,
    /// and a log that ends before `prev` says where it ends. Whether the log reaches `prev`.
    pub(super) fn reaches_prev(&mut self, leader: NodeId, term: Term, prev: Index) -> bool {
        self.heard_from_leader();
        let last = self.log.last_index();
        if prev > last {
            self.send_nack(leader, term, last);
        }
        prev <= last
    }

    /// A valid AppendEntries from our leader: it is not silent, and while we do not
    /// suspect it otherwise our election timer starts over.
    fn heard_from_leader(&mut self) {
        if self.suspect == Some(Suspicion::Silence) {
            self.suspect = None;
        }
        if self.suspect.is_none() {
            self.reset_election_timer();
        }
    }

    /// Entries must be contiguous after `prev`, of non-decreasing terms, none above the
    /// leader's term.
    pub(super) fn well_formed(&self, b: &AppendEntries) -> bool {
        let mut last_term = self.log.term_at(b.prev_index).unwrap_or(0);
        for (k, e) in b.entries.iter().enumerate() {
            if e.index != b.prev_index + 1 + k as Index || e.term < last_term || e.term > b.term {
                return false;
            }
            last_term = e.term;
        }
        true
    }

    /// Appends the AppendEntries' entries, repairing a conflicting suffix as Raft does,
    /// except where that would break an invariant. Returns false if it refused.
    ///
    /// (PROTOCOL.md rule R1, R2, R8)
    pub(super) fn merge_entries(&mut self, ae: &Signed<AppendEntries>) -> bool {
        let b = &ae.body;
        let mut fresh = Vec::new();
        for e in &b.entries {
            if !fresh.is_empty() || e.index > self.log.last_index() {
                fresh.push(e.clone());
                continue;
            }
            if self.log.entry(e.index) == Some(e) {
                continue;
            }
            // Conflict at e.index. If this leader gave us another entry there in this
            // term, that is provable (Evidence), committed or not: look for it first.
            if self.rules.append_only_in_term && e.index <= self.acked_in(b.term) {
                self.leader_equivocated(ae, e.index);
                return false;
            }
            if e.index <= self.hard.commit {
                // Never truncate a committed entry; whoever asks is faulty.
                tracing::debug!(
                    node = self.cfg.id,
                    index = e.index,
                    "leader asked to truncate a committed entry"
                );
                self.judge_leader_faulty(Suspicion::Misbehaviour);
                return false;
            }
            self.retain_lock_chain(e.index);
            self.log.truncate_from(e.index);
            self.out
                .push(Output::Persist(Persist::TruncateFrom(e.index)));
            fresh.push(e.clone());
        }
        if !fresh.is_empty() {
            for e in &fresh {
                self.log.append(e.clone());
            }
            self.out.push(Output::Persist(Persist::Append(fresh)));
            self.tidy_lock_chain();
        }
        true
    }

    /// bft: Ack only once our log holds the leader's election lock, and adopt that lock.
    ///
    /// (PROTOCOL.md rule R7)
    fn reached_leader_lock(&mut self, matched: Index) -> bool {
        if !self.rules.follow_leader_lock {
            return true;
        }
        let Some(lock) = self.follow.as_ref().and_then(|f| f.lock.clone()) else {
            return true;
        };
        if lock.index < self.log.base().index {
            // **Chosen** (PROTOCOL.md rule K5): a lock below our base is reached. Our base
            // is a stable checkpoint, committed, and the AppendEntries we accept matched
            // our chain at or past it, so what we Ack extends both. We cannot check its
            // hash any more, so we do not adopt it: our own lock stays.
            return matched >= lock.index;
        }
        if matched < lock.index || self.log.hash_at(lock.index) != Some(lock.hash) {
            return false;
        }
        if lock.rank() > lock_rank(&self.hard.lock) {
            self.set_lock(lock);
        }
        true
    }

    /// Signs our Ack, records it durably and broadcasts it: every node counts it towards
    /// certificates.
    ///
    /// (PROTOCOL.md rule R3, R12)
    fn send_ack(&mut self, term: Term, index: Index) {
        if term < self.hard.ack_floor {
            return;
        }
        let last = self.hard.acked.unwrap_or_default();
        // Our Acks of an earlier term are no longer on record: never go back to one.
        if term < last.term {
            return;
        }
        let ack = self.positive_ack(term, index);
        if (term, index) > (last.term, last.index) {
            let hash = ack.body.hash;
            self.hard.acked = Some(super::node::AckedPosition { term, index, hash });
            self.save_hard();
        }
        self.record_ack(ack.clone());
        self.broadcast(Message::Ack(ack));
    }

    /// Our signed positive Ack of our log at `index` in `term`.
    pub(super) fn positive_ack(&mut self, term: Term, index: Index) -> Signed<Ack> {
        let hash = self.log.hash_at(index).expect("acked index is in the log");
        let body = Ack {
            term,
            from: self.cfg.id,
            index,
            hash,
            success: true,
        };
        self.signed_ack(body)
    }

    /// Re-uses our previous signature when the Ack is unchanged (heartbeats).
    fn signed_ack(&mut self, body: Ack) -> Signed<Ack> {
        match &self.my_ack {
            Some(a) if a.body == body => a.clone(),
            _ => {
                let a = self.sign(body);
                self.my_ack = Some(a.clone());
                a
            }
        }
    }

    pub(super) fn send_nack(&mut self, leader: NodeId, term: Term, hint: Index) {
        // Nothing below our base can be named: the base is where we go on from.
        let hint = hint.clamp(self.log.base().index, self.log.last_index());
        let body = Ack {
            term,
            from: self.cfg.id,
            index: hint,
            hash: self.log.hash_at(hint).expect("hint is in the log"),
            success: false,
        };
        let nack = self.sign(body);
        self.send(leader, Message::Ack(nack));
    }

    /// The leader accepts its own AppendEntries: it Acks its log end like everyone else.
    pub(super) fn ack_own_log(&mut self) {
        let last = self.record_own_match();
        self.send_ack(self.hard.term, last);
    }

    /// The leader holds its whole log: its own progress is its log end (returned).
    pub(super) fn record_own_match(&mut self) -> Index {
        let last = self.log.last_index();
        let me = self.cfg.id;
        if let Role::Leader(ls) = &mut self.role {
            ls.matched[me as usize] = last;
        }
        last
    }

    /// Leader side of an Ack: track progress, back off on refusals.
    ///
    /// (PROTOCOL.md rule R1)
    pub(super) fn leader_on_ack(&mut self, a: &Ack) {
        let now = self.now;
        let term = self.hard.term;
        let last = self.log.last_index();
        let Role::Leader(ls) = &mut self.role else {
            return;
        };
        if a.term != term || a.from == self.cfg.id {
            return;
        }
        let j = a.from as usize;
        if a.success {
            // A liar may claim more than we ever sent: never believe past our log.
            ls.acked(j, a.index.min(last), now);
        } else if ls.refused(j, a.index, now) {
            self.send_append(a.from);
        }
    }

    /// Before truncating entries our lock certifies, keep them: if we are ever elected on
    /// that lock we must be able to hand its entries to our followers. Without this a node
    /// can hold a lock nobody can satisfy and block every election (a liveness hole the
    /// simulator found in the rules as written).
    ///
    /// (PROTOCOL.md rule R9)
    pub(super) fn retain_lock_chain(&mut self, from: Index) {
        let Some(lock) = &self.hard.lock else { return };
        if from > lock.index {
            return;
        }
        let keep: Vec<Entry> = match self.hard.lock_chain.first() {
            None if self.log.hash_at(lock.index) == Some(lock.hash) => {
                self.log.slice(from, lock.index).to_vec()
            }
            Some(first) if from < first.index => {
                let mut v = self.log.slice(from, first.index - 1).to_vec();
                v.extend(self.hard.lock_chain.iter().cloned());
                v
            }
            _ => return,
        };
        self.hard.lock_chain = keep;
        self.save_hard();
    }

    /// Drops the retained chain once the log holds the lock again.
    pub(super) fn tidy_lock_chain(&mut self) {
        let on_log = self
            .hard
            .lock
            .as_ref()
            .is_some_and(|l| self.log.hash_at(l.index) == Some(l.hash));
        if on_log && !self.hard.lock_chain.is_empty() {
            self.hard.lock_chain.clear();
            self.save_hard();
        }
    }

    /// A new leader puts its lock's entries back into its log.
    pub(super) fn restore_lock_chain(&mut self) {
        let Some(first) = self.hard.lock_chain.first().map(|e| e.index) else {
            return;
        };
        // Impossible for an honest leader: its lock outranks every voter's, and a quorum of
        // them locked whatever committed, so its chain extends the committed log; and the
        // chain was kept at a truncation point, so it starts within the log or just past it.
        assert!(
            first > self.hard.commit && first <= self.log.last_index() + 1,
            "node {}: lock chain from {first} cannot be restored (commit {}, log end {})",
            self.cfg.id,
            self.hard.commit,
            self.log.last_index()
        );
        if first <= self.log.last_index() {
            self.log.truncate_from(first);
            self.out.push(Output::Persist(Persist::TruncateFrom(first)));
        }
        let chain = std::mem::take(&mut self.hard.lock_chain);
        for e in &chain {
            self.log.append(e.clone());
        }
        self.out.push(Output::Persist(Persist::Append(chain)));
        self.save_hard();
    }
}
