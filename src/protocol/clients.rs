//! Client requests, forwarding, request timers and Revolutions (PROTOCOL.md, "Clients and
//! leader change").

use super::message::{Message, Payload, Revolution, SignedRequest, MAX_OP_BYTES};
use super::node::{Node, Suspicion, MAX_REQUEST_TIMERS};
use crate::crypto::{Principal, Signed};

/// Revolutions remembered (one per client and term) so each is acted on once.
const REVOLUTIONS_KEPT: usize = 1024;

impl Node {
    pub(super) fn on_request(&mut self, from: Principal, r: SignedRequest) {
        if r.body.op.data_bytes() > MAX_OP_BYTES {
            return; // too large to replicate; honest clients never send one (`Session`)
        }
        let (client, seq) = (r.body.client, r.body.seq);
        if self.applied_seq.get(&client).is_some_and(|&s| s >= seq) {
            return; // already applied: the driver answers from the state machine's cache
        }
        if self.is_leader() {
            if !self.in_uncommitted_log(&r) {
                self.leader_append(Payload::Request(r));
            }
            return;
        }
        // Only requests straight from a client are forwarded and timed: a request another
        // node forwarded to us (it thinks we lead) goes nowhere, so nothing loops.
        if !matches!(from, Principal::Client(_)) {
            return;
        }
        if let Some(f) = &self.follow {
            let leader = f.leader;
            self.send(leader, Message::Request(r.clone()));
        }
        if self.rules.request_timers {
            self.start_request_timer(r);
        }
    }

    fn in_uncommitted_log(&self, r: &SignedRequest) -> bool {
        let from = self.hard.commit + 1;
        self.log.slice(from, self.log.last_index()).iter().any(|e| {
            e.payload
                .request()
                .is_some_and(|x| x.body.client == r.body.client && x.body.seq == r.body.seq)
        })
    }

    fn start_request_timer(&mut self, r: SignedRequest) {
        let deadline = self.now + self.cfg.timing.request_ticks as u64;
        let client = r.body.client;
        match self.request_timers.get(&client) {
            Some((_, old)) if old.body.seq >= r.body.seq => {}
            _ if self.request_timers.len() >= MAX_REQUEST_TIMERS
                && !self.request_timers.contains_key(&client) => {}
            _ => {
                self.request_timers.insert(client, (deadline, r));
            }
        }
    }

    pub(super) fn check_request_timers(&mut self) {
        let now = self.now;
        let expired = self.request_timers.values().any(|(d, _)| *d <= now);
        if !expired {
            return;
        }
        let again = now + self.cfg.timing.request_ticks as u64;
        for (d, _) in self.request_timers.values_mut() {
            if *d <= now {
                *d = again;
            }
        }
        tracing::debug!(
            node = self.cfg.id,
            "request timer expired: leader judged faulty"
        );
        self.judge_leader_faulty(Suspicion::RequestTimer);
    }

    /// A new leader gets every request we are still waiting on, and a fresh deadline.
    pub(super) fn on_new_leader(&mut self) {
        let deadline = self.now + self.cfg.timing.request_ticks as u64;
        let pending: Vec<SignedRequest> = self
            .request_timers
            .values_mut()
            .map(|(d, r)| {
                *d = deadline;
                r.clone()
            })
            .collect();
        let Some(leader) = self.follow.as_ref().map(|f| f.leader) else {
            return;
        };
        if leader == self.cfg.id {
            return;
        }
        for r in pending {
            self.send(leader, Message::Request(r));
        }
    }

    pub(super) fn on_revolution(&mut self, rev: Signed<Revolution>) {
        let b = rev.body;
        let Some(f) = &self.follow else { return };
        if b.term != f.term || b.leader != f.leader {
            return; // valid for one term, against that term's leader only
        }
        if !self.revolutions_seen.insert((b.client, b.term)) {
            return; // acted on once
        }
        if self.revolutions_seen.len() > REVOLUTIONS_KEPT {
            let oldest = *self
                .revolutions_seen
                .iter()
                .min_by_key(|(_, t)| *t)
                .expect("non-empty");
            self.revolutions_seen.remove(&oldest);
        }
        if self.rules.revolution_needs_timeout {
            // bft: depose only if the carried request is still uncommitted after the request
            // timeout, so a lying client cannot depose a healthy leader.
            self.on_request(Principal::Client(b.client), b.request);
        } else {
            tracing::debug!(node = self.cfg.id, "revolution: leader deposed at once");
            self.judge_leader_faulty(Suspicion::Revolution);
        }
    }
}
