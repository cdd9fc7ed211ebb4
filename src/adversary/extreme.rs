//! `extreme`: an honest node that also sends, every heartbeat interval, one message whose
//! numbers sit at the edges of their range: terms, indexes and commit points of 0, 1,
//! `u64::MAX / 2`, `u64::MAX - 1` and `u64::MAX`, in every field of every kind it can
//! sign. Honest nodes must saturate or refuse each one; none may wrap, panic or be moved
//! past what the protocol allows (PROTOCOL.md, "Resource bounds").

use super::{Context, Kit};
use crate::actor::Actor;
use crate::crypto::Digest;
use crate::protocol::{
    Ack, AppendEntries, CatchUp, Commit, Entry, Input, Message, Node, Output, Payload, RequestVote,
    Vote,
};
use rand::Rng;

const EDGES: [u64; 5] = [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];

pub struct Extreme {
    inner: Node,
    kit: Kit,
    ticks: u64,
}

impl Extreme {
    pub fn new(ctx: &Context) -> Extreme {
        Extreme {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 22),
            ticks: 0,
        }
    }

    fn edge(&mut self) -> u64 {
        EDGES[self.kit.rng.gen_range(0..EDGES.len())]
    }

    fn message(&mut self) -> Message {
        let me = self.kit.id;
        let (a, b, c, d) = (self.edge(), self.edge(), self.edge(), self.edge());
        let success = self.kit.rng.gen_bool(0.5);
        let hash = Digest::default();
        match self.kit.rng.gen_range(0..8) {
            0 => Message::RequestVote(self.kit.sign(RequestVote {
                term: a,
                candidate: me,
                last_index: b,
                last_term: c,
                last_hash: hash,
                lock: None,
            })),
            1 => {
                let candidate = self.kit.random_other();
                Message::Vote(self.kit.sign(Vote {
                    term: a,
                    voter: me,
                    candidate,
                    lock: None,
                }))
            }
            2 => Message::AppendEntries(self.kit.sign(AppendEntries {
                term: a,
                leader: me,
                prev_index: b,
                prev_term: c,
                prev_hash: hash,
                entries: vec![],
                commit: d,
                proof: None,
                lock: None,
            })),
            3 => Message::AppendEntries(self.kit.sign(AppendEntries {
                term: a,
                leader: me,
                prev_index: 0,
                prev_term: 0,
                prev_hash: self.inner.log().hash_at(0).unwrap_or_default(),
                entries: vec![Entry {
                    term: b,
                    index: c,
                    payload: Payload::Noop,
                }],
                commit: u64::MAX,
                proof: None,
                lock: None,
            })),
            4 => Message::Ack(self.kit.sign(Ack {
                term: a,
                from: me,
                index: b,
                hash,
                success,
            })),
            5 => Message::Commit(self.kit.sign(Commit {
                term: a,
                from: me,
                index: b,
                hash,
            })),
            6 => Message::CatchUp(CatchUp {
                from: me,
                prev_index: a,
                prev_hash: hash,
                entries: vec![],
                proof: vec![],
            }),
            _ => Message::CatchUp(CatchUp {
                from: me,
                prev_index: 0,
                prev_hash: self.inner.log().hash_at(0).unwrap_or_default(),
                entries: vec![Entry {
                    term: a,
                    index: 1,
                    payload: Payload::Noop,
                }],
                proof: vec![],
            }),
        }
    }
}

impl Actor for Extreme {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        let mut out = self.inner.step(input);
        if tick {
            self.ticks += 1;
            if self.ticks.is_multiple_of(self.kit.heartbeat_ticks as u64) {
                let to = self.kit.random_other();
                let msg = self.message();
                out.push(Output::Send { to, msg });
            }
        }
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
