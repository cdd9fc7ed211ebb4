//! The client requests a follower watches on its leader's behalf (PROTOCOL.md, "Clients
//! and leader change"): one timer per client for the newest request it forwarded, and the
//! Revolutions already acted on. A part of the node with its own small state and tests;
//! the rules that use it are in `clients.rs`.

use super::message::SignedRequest;
use super::node::MAX_REQUEST_TIMERS;
use super::types::{ClientId, Term};
use std::collections::{BTreeMap, BTreeSet};

/// Revolutions remembered (one per client and term) so each is acted on once.
pub(super) const REVOLUTIONS_KEPT: usize = 1024;

#[derive(Default)]
pub(super) struct ClientWatch {
    /// Per client: the deadline (tick) and the newest request we forwarded for it.
    timers: BTreeMap<ClientId, (u64, SignedRequest)>,
    revolutions: BTreeSet<(ClientId, Term)>,
}

impl ClientWatch {
    /// Times `r` until `deadline`, unless a request of its client at least as new is
    /// already timed, or `MAX_REQUEST_TIMERS` other clients are (memory stays bounded).
    pub fn start(&mut self, r: SignedRequest, deadline: u64) {
        let client = r.body.client;
        match self.timers.get(&client) {
            Some((_, old)) if old.body.seq >= r.body.seq => {}
            _ if self.timers.len() >= MAX_REQUEST_TIMERS && !self.timers.contains_key(&client) => {}
            _ => {
                self.timers.insert(client, (deadline, r));
            }
        }
    }

    /// Whether a timer has expired by `now`; expired timers run again until `again`, so
    /// one stalled request judges the leader once per request timeout, not every tick.
    pub fn expire(&mut self, now: u64, again: u64) -> bool {
        let expired = self.timers.values().any(|(d, _)| *d <= now);
        if expired {
            for (d, _) in self.timers.values_mut() {
                if *d <= now {
                    *d = again;
                }
            }
        }
        expired
    }

    /// Every request still waited on, each timer restarted to `deadline`: a new leader
    /// gets them all and a fresh request timeout.
    pub fn restart_all(&mut self, deadline: u64) -> Vec<SignedRequest> {
        self.timers
            .values_mut()
            .map(|(d, r)| {
                *d = deadline;
                r.clone()
            })
            .collect()
    }

    /// Request `seq` of `client` was applied: its timer stops if it waited on that
    /// request or an earlier one.
    pub fn applied(&mut self, client: ClientId, seq: u64) {
        if self
            .timers
            .get(&client)
            .is_some_and(|(_, r)| r.body.seq <= seq)
        {
            self.timers.remove(&client);
        }
    }

    /// True the first time a Revolution of `client` in `term` is seen. Keeps at most
    /// `REVOLUTIONS_KEPT`, forgetting the lowest term first.
    pub fn first_revolution(&mut self, client: ClientId, term: Term) -> bool {
        if !self.revolutions.insert((client, term)) {
            return false;
        }
        if self.revolutions.len() > REVOLUTIONS_KEPT {
            let oldest = *self
                .revolutions
                .iter()
                .min_by_key(|(_, t)| *t)
                .expect("non-empty");
            self.revolutions.remove(&oldest);
        }
        true
    }

    #[cfg(test)]
    fn timed(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Domain};
    use crate::protocol::message::{Op, Request};
    use crate::protocol::types::Variant;

    fn request(client: ClientId, seq: u64) -> SignedRequest {
        let key = signing_key_from_seed([5; 32]);
        let op = Op::Get { key: "k".into() };
        Domain::new(Variant::Bft, "t").sign(&key, Request { client, seq, op })
    }

    #[test]
    fn a_timer_follows_the_newest_request_and_stops_when_it_is_applied() {
        let mut w = ClientWatch::default();
        w.start(request(1, 5), 10);
        w.start(request(1, 4), 20); // older: ignored, the deadline stays 10
        assert!(!w.expire(9, 50));
        assert!(w.expire(10, 50), "expired at its deadline");
        assert!(!w.expire(11, 60), "re-armed until 50");
        w.applied(1, 4);
        assert_eq!(w.timed(), 1, "an older request applied does not stop it");
        w.applied(1, 5);
        assert_eq!(w.timed(), 0);
    }

    #[test]
    fn timers_are_bounded_per_client_count_and_restart_for_a_new_leader() {
        let mut w = ClientWatch::default();
        for c in 0..MAX_REQUEST_TIMERS as ClientId + 10 {
            w.start(request(c, 1), 5);
        }
        assert_eq!(w.timed(), MAX_REQUEST_TIMERS);
        let pending = w.restart_all(100);
        assert_eq!(pending.len(), MAX_REQUEST_TIMERS);
        assert!(!w.expire(99, 200), "every timer restarted to 100");
    }

    #[test]
    fn a_revolution_counts_once_and_memory_is_bounded() {
        let mut w = ClientWatch::default();
        assert!(w.first_revolution(1, 3));
        assert!(!w.first_revolution(1, 3));
        for t in 0..REVOLUTIONS_KEPT as Term + 5 {
            w.first_revolution(2, 100 + t);
        }
        assert!(w.revolutions.len() <= REVOLUTIONS_KEPT);
        assert!(
            w.first_revolution(1, 3),
            "the lowest term was forgotten first"
        );
    }
}
