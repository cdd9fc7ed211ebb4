//! `impersonate`: an honest node that also, every other tick, sends a message claiming to
//! come from someone else. It has only its own key, so it signs with that (or sends
//! garbage): Votes, Acks, Commits, RequestVotes and AppendEntries naming another node as
//! sender; Evidence "against" an honest node made of that node's real but harmless
//! messages, or of one real message and a doctored copy; and Requests and Revolutions
//! claiming to be a client. Link authentication and signature checks must refuse all of
//! it (in `raft`, which signs nothing, forged client requests do get through).

use super::{request_vote_of, Context, Kit};
use crate::actor::Actor;
use crate::crypto::{Principal, Signed};
use crate::protocol::{
    Ack, AppendEntries, Commit, ElectionProof, Evidence, Input, Message, Node, Op, Output, Request,
    Revolution, Vote,
};
use rand::Rng;
use std::collections::VecDeque;

/// Real Acks kept per other node, as material for bogus Evidence.
const ACKS_KEPT: usize = 2;
/// One impersonation every this many ticks.
const EVERY: u64 = 2;

pub struct Impersonate {
    inner: Node,
    kit: Kit,
    acks: Vec<VecDeque<Signed<Ack>>>,
    ticks: u64,
    count: u64,
}

impl Impersonate {
    pub fn new(ctx: &Context) -> Impersonate {
        let kit = Kit::new(ctx, 18);
        Impersonate {
            inner: ctx.honest_node(),
            acks: vec![VecDeque::new(); kit.n],
            kit,
            ticks: 0,
            count: 0,
        }
    }

    fn harvest(&mut self, msg: &Message) {
        if let Message::Ack(a) = msg {
            let kept = &mut self.acks[a.body.from as usize % self.kit.n];
            if a.body.from != self.kit.id && !kept.iter().any(|k| k.body == a.body) {
                kept.push_back(a.clone());
                if kept.len() > ACKS_KEPT {
                    kept.pop_front();
                }
            }
        }
    }

    /// A client request "from" client `client`, not signed by it.
    fn fake_request(&mut self, client: u32) -> Signed<Request> {
        let seq = self.kit.rng.gen_range(1..1_000_000);
        let body = Request {
            client,
            seq,
            op: Op::Put {
                key: "k0".into(),
                value: "impersonated".into(),
            },
        };
        let sig = if self.kit.rng.gen_bool(0.5) {
            self.kit.sign(body.clone()).sig
        } else {
            self.kit.garbage_sig()
        };
        Signed { body, sig }
    }

    /// The next lie, rotating over the kinds.
    fn impersonation(&mut self) -> Output {
        let victim = self.kit.random_other();
        let term = self.inner.hard_state().term;
        let log = self.inner.log();
        let (last, last_hash, last_term) = (log.last_index(), log.last_hash(), log.last_term());
        self.count += 1;
        match self.count % 8 {
            0 => {
                let candidate = self
                    .kit
                    .others()
                    .into_iter()
                    .find(|&c| c != victim)
                    .unwrap_or(self.kit.id);
                let v = self.kit.sign(Vote {
                    term,
                    voter: victim,
                    candidate,
                    lock: super::candidate_lock(&self.inner),
                });
                Output::Send {
                    to: candidate,
                    msg: Message::Vote(v),
                }
            }
            1 => {
                let a = Ack {
                    term,
                    from: victim,
                    index: last,
                    hash: last_hash,
                    success: true,
                };
                Output::Broadcast(Message::Ack(self.kit.sign(a)))
            }
            2 => {
                let c = Commit {
                    term,
                    from: victim,
                    index: last,
                    hash: last_hash,
                };
                Output::Broadcast(Message::Commit(self.kit.sign(c)))
            }
            3 => {
                let mut rv = request_vote_of(&self.inner, term.saturating_add(1));
                rv.candidate = victim;
                Output::Broadcast(Message::RequestVote(self.kit.sign(rv)))
            }
            4 => {
                // A heartbeat from "victim" as leader of a new term, with a proof of votes
                // that all carry our signature.
                let t = term.saturating_add(1);
                let votes = self
                    .kit
                    .others()
                    .into_iter()
                    .chain([self.kit.id])
                    .map(|voter| {
                        self.kit.sign(Vote {
                            term: t,
                            voter,
                            candidate: victim,
                            lock: super::candidate_lock(&self.inner),
                        })
                    });
                let proof = ElectionProof {
                    term: t,
                    leader: victim,
                    votes: votes.collect(),
                };
                let ae = AppendEntries {
                    term: t,
                    leader: victim,
                    prev_index: last,
                    prev_term: last_term,
                    prev_hash: last_hash,
                    entries: vec![],
                    commit: self.inner.commit_index(),
                    proof: Some(proof),
                    lock: self.inner.hard_state().lock.clone(),
                };
                Output::Broadcast(Message::AppendEntries(self.kit.sign(ae)))
            }
            5 => Output::Broadcast(Message::Evidence(self.fake_evidence(victim))),
            6 => {
                let client = self.pick_client();
                Output::Broadcast(Message::Request(self.fake_request(client)))
            }
            _ => {
                let client = self.pick_client();
                let (t, leader) = self.inner.leader().unwrap_or((term, victim));
                let request = self.fake_request(client);
                let body = Revolution {
                    client,
                    term: t,
                    leader,
                    request,
                };
                let sig = self.kit.garbage_sig();
                Output::Broadcast(Message::Revolution(Signed { body, sig }))
            }
        }
    }

    fn pick_client(&mut self) -> u32 {
        let clients = self.kit.clients();
        if clients.is_empty() {
            return 0;
        }
        clients[self.kit.rng.gen_range(0..clients.len())]
    }

    /// Evidence against `victim`: two of its real Acks that do not conflict, or a real Ack
    /// and a doctored copy (its signature no longer matches), or votes we signed for it.
    fn fake_evidence(&mut self, victim: u32) -> Evidence {
        let kept = &self.acks[victim as usize];
        match (kept.front().cloned(), kept.back().cloned()) {
            (Some(a), Some(b)) if a.body != b.body && self.kit.rng.gen_bool(0.5) => {
                Evidence::Acks(a, b)
            }
            (Some(a), _) => {
                let mut doctored = a.clone();
                doctored.body.hash = self.kit.random_digest();
                Evidence::Acks(a, doctored)
            }
            _ => {
                let term = self.inner.hard_state().term;
                let v = |candidate| {
                    self.kit.sign(Vote {
                        term,
                        voter: victim,
                        candidate,
                        lock: super::candidate_lock(&self.inner),
                    })
                };
                Evidence::Votes(v(self.kit.id), v(victim))
            }
        }
    }
}

impl Actor for Impersonate {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        if let Input::Message {
            from: Principal::Node(_),
            msg,
        } = &input
        {
            self.harvest(msg);
        }
        let mut out = self.inner.step(input);
        if tick {
            self.ticks += 1;
            if self.ticks.is_multiple_of(EVERY) {
                out.push(self.impersonation());
            }
        }
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
