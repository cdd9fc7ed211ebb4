//! `lie-ack`: an honest node that also signs Acks and Commits it has no right to. After
//! every Ack of its own, and every heartbeat interval, it sends a few lies drawn from:
//! an Ack for a hash it does not hold, a second Ack with another hash at the same
//! `(term, index)` (a double Ack: Evidence against itself), Acks of its real hash in the
//! terms around the real one, Acks and Commits at indexes beyond its log, Commits of
//! random hashes, and a premature Commit of its log end (claiming a lock it lacks).
//! Honest nodes count only Acks and Commits whose hash matches their own log, from
//! distinct nodes, so f such lies must never prepare or commit anything.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Ack, Commit, Index, Input, Message, Node, Output, Term};
use rand::Rng;

/// Lies told per occasion: enough to try every kind over a run, few enough not to flood.
const LIES_PER_ACK: usize = 2;

pub struct LieAck {
    inner: Node,
    kit: Kit,
    ticks: u64,
}

impl LieAck {
    pub fn new(ctx: &Context) -> LieAck {
        LieAck {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 15),
            ticks: 0,
        }
    }

    /// One lie about `(term, index)`, a position we really Acked or hold.
    fn lie(&mut self, term: Term, index: Index) -> Message {
        let me = self.kit.id;
        let log = self.inner.log();
        let real = log.hash_at(index).unwrap_or_default();
        let (last, last_hash) = (log.last_index(), log.last_hash());
        let beyond = last + self.kit.rng.gen_range(1..8);
        let fake = self.kit.random_digest();
        let ack = |term, index, hash| Ack {
            term,
            from: me,
            index,
            hash,
            success: true,
        };
        let commit = |term, index, hash| Commit {
            term,
            from: me,
            index,
            hash,
        };
        match self.kit.rng.gen_range(0..8) {
            0 => Message::Ack(self.kit.sign(ack(term, index, fake))), // double Ack / unheld hash
            1 => Message::Ack(self.kit.sign(ack(term.saturating_add(1), index, real))),
            2 => Message::Ack(self.kit.sign(ack(term.saturating_sub(1), index, real))),
            3 => Message::Ack(self.kit.sign(ack(term, beyond, fake))),
            4 => Message::Commit(self.kit.sign(commit(term, index, fake))),
            5 => Message::Commit(self.kit.sign(commit(term, beyond, fake))),
            6 => Message::Commit(self.kit.sign(commit(term.saturating_add(1), index, real))),
            _ => Message::Commit(self.kit.sign(commit(term, last, last_hash))), // premature
        }
    }
}

impl Actor for LieAck {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        let mut out = self.inner.step(input);
        // Each of our own positive Acks is a cue: lie about the position it names.
        let acked: Vec<(Term, Index)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Broadcast(Message::Ack(a))
                | Output::Send {
                    msg: Message::Ack(a),
                    ..
                } if a.body.success && a.body.from == self.kit.id => {
                    Some((a.body.term, a.body.index))
                }
                _ => None,
            })
            .collect();
        for (term, index) in acked {
            for _ in 0..LIES_PER_ACK {
                let m = self.lie(term, index);
                out.push(Output::Broadcast(m));
            }
        }
        if tick {
            self.ticks += 1;
            if self.ticks.is_multiple_of(self.kit.heartbeat_ticks as u64) {
                // Unprompted too, about our log end in our current term.
                let term = self.inner.hard_state().term;
                let last = self.inner.log().last_index();
                let m = self.lie(term, last);
                out.push(Output::Broadcast(m));
            }
        }
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
