//! The client's side of the protocol, sans-IO like the node: it signs requests, sends them
//! to the node it believes leads, broadcasts on timeout, escalates to a Revolution, and
//! accepts a result only with enough matching replies from distinct nodes (f+1 in bft).

use crate::crypto::Domain;
use crate::protocol::{
    ClientId, Message, NodeId, Op, OpResult, Quorum, Reply, Request, Revolution, SignedRequest,
    Term, Variant,
};
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    Send {
        to: NodeId,
        msg: Message,
    },
    /// To every node.
    Broadcast(Message),
    /// The result is accepted: enough matching replies arrived.
    Accepted {
        seq: u64,
        result: OpResult,
    },
}

struct Pending {
    request: SignedRequest,
    elapsed: u32,
    timeouts: u32,
    replies: BTreeMap<NodeId, OpResult>,
}

pub struct ClientCore {
    pub id: ClientId,
    key: SigningKey,
    domain: Domain,
    n: usize,
    needed: usize,
    timeout_ticks: u32,
    next_seq: u64,
    leader: Option<(Term, NodeId)>,
    pending: Option<Pending>,
}

impl ClientCore {
    /// `first_seq` must exceed every sequence number this client used before (the CLI
    /// uses the wall clock; the simulator counts from 1).
    pub fn new(
        id: ClientId,
        key: SigningKey,
        variant: Variant,
        cluster_id: &str,
        n: usize,
        timeout_ticks: u32,
        first_seq: u64,
    ) -> ClientCore {
        ClientCore {
            id,
            key,
            domain: Domain::new(variant, cluster_id),
            n,
            needed: Quorum::new(variant, n).reply_quorum(variant),
            timeout_ticks,
            next_seq: first_seq,
            leader: None,
            pending: None,
        }
    }

    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    pub fn leader_hint(&self) -> Option<(Term, NodeId)> {
        self.leader
    }

    /// Gives up on the pending request (its outcome stays unknown) so another may be sent.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// What the client learned elsewhere (e.g. from status reports) about who leads.
    pub fn hint_leader(&mut self, term: Term, leader: NodeId) {
        if self.leader.is_none_or(|(t, _)| term >= t) {
            self.leader = Some((term, leader));
        }
    }

    pub fn pending_request(&self) -> Option<&SignedRequest> {
        self.pending.as_ref().map(|p| &p.request)
    }

    /// Signs and sends a new request. One request is outstanding at a time.
    pub fn submit(&mut self, op: Op) -> Vec<ClientOutput> {
        assert!(self.pending.is_none(), "one outstanding request per client");
        let seq = self.next_seq;
        self.next_seq += 1;
        let request = self.domain.sign(
            &self.key,
            Request {
                client: self.id,
                seq,
                op,
            },
        );
        let target = self.leader.map_or(0, |(_, l)| l);
        self.pending = Some(Pending {
            request: request.clone(),
            elapsed: 0,
            timeouts: 0,
            replies: BTreeMap::new(),
        });
        vec![ClientOutput::Send {
            to: target,
            msg: Message::Request(request),
        }]
    }

    pub fn on_reply(&mut self, from: NodeId, r: Reply) -> Vec<ClientOutput> {
        if r.node != from || r.client != self.id || (from as usize) >= self.n {
            return vec![];
        }
        if let Some(hint) = r.leader {
            if self.leader.is_none_or(|(t, _)| hint.0 >= t) {
                self.leader = Some(hint);
            }
        }
        let Some(p) = &mut self.pending else {
            return vec![];
        };
        if p.request.body.seq != r.seq {
            return vec![];
        }
        p.replies.insert(from, r.result);
        let mut counts: BTreeMap<&OpResult, usize> = BTreeMap::new();
        for res in p.replies.values() {
            *counts.entry(res).or_default() += 1;
        }
        let agreed = counts
            .into_iter()
            .find(|(_, c)| *c >= self.needed)
            .map(|(r, _)| r.clone());
        match agreed {
            Some(result) => {
                let seq = p.request.body.seq;
                self.pending = None;
                vec![ClientOutput::Accepted { seq, result }]
            }
            None => vec![],
        }
    }

    /// On timeout the request goes to every node; on the second and later timeouts a
    /// signed Revolution against the leader we last heard of goes with it.
    pub fn tick(&mut self) -> Vec<ClientOutput> {
        let Some(p) = &mut self.pending else {
            return vec![];
        };
        p.elapsed += 1;
        if p.elapsed < self.timeout_ticks {
            return vec![];
        }
        p.elapsed = 0;
        p.timeouts += 1;
        let mut out = vec![ClientOutput::Broadcast(Message::Request(p.request.clone()))];
        if p.timeouts >= 2 {
            if let Some((term, leader)) = self.leader {
                out.push(ClientOutput::Broadcast(self.revolution(term, leader)));
            }
        }
        out
    }

    /// A signed demand to depose `leader` of `term`, carrying the pending request.
    pub fn revolution(&self, term: Term, leader: NodeId) -> Message {
        let request = self
            .pending
            .as_ref()
            .expect("a revolution carries the pending request")
            .request
            .clone();
        let rev = Revolution {
            client: self.id,
            term,
            leader,
            request,
        };
        Message::Revolution(self.domain.sign(&self.key, rev))
    }
}
