//! Client requests, forwarding, request timers and Revolutions (PROTOCOL.md, "Clients and
//! leader change").

use super::message::{Message, Payload, Revolution, SignedRequest, MAX_OP_BYTES};
use super::node::{Node, Suspicion};
use crate::crypto::{Principal, Signed};

impl Node {
    /// (PROTOCOL.md rule C3)
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
        self.watch.start(r, deadline);
    }

    /// (PROTOCOL.md rule C3)
    pub(super) fn check_request_timers(&mut self) {
        let again = self.now + self.cfg.timing.request_ticks as u64;
        if !self.watch.expire(self.now, again) {
            return;
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
        let pending = self.watch.restart_all(deadline);
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

    /// (PROTOCOL.md rule C4)
    pub(super) fn on_revolution(&mut self, rev: Signed<Revolution>) {
        let b = rev.body;
        let Some(f) = &self.follow else { return };
        if b.term != f.term || b.leader != f.leader {
            return; // valid for one term, against that term's leader only
        }
        if !self.watch.first_revolution(b.client, b.term) {
            return; // acted on once
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
