//! `replay`: an honest node that also keeps the last messages it received or sent and,
//! every few ticks, resends some of them to random nodes: its own old votes, Acks,
//! Commits and AppendEntries (validly signed, from earlier terms), and other nodes'
//! messages (which the link check must refuse when they name their sender, and which
//! must do no harm when they are relayable: requests, Revolutions, Evidence).

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, Output};
use rand::Rng;
use std::collections::VecDeque;

/// Messages remembered (the newest).
const KEPT: usize = 256;
/// Resend this many old messages...
const BURST: usize = 2;
/// ...every this many ticks.
const EVERY: u64 = 2;

pub struct Replay {
    inner: Node,
    kit: Kit,
    seen: VecDeque<Message>,
    ticks: u64,
}

impl Replay {
    pub fn new(ctx: &Context) -> Replay {
        Replay {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 17),
            seen: VecDeque::new(),
            ticks: 0,
        }
    }

    fn keep(&mut self, m: &Message) {
        if matches!(m, Message::Reply(_)) {
            return; // replies go to clients, on their own links
        }
        self.seen.push_back(m.clone());
        if self.seen.len() > KEPT {
            self.seen.pop_front();
        }
    }
}

impl Actor for Replay {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        if let Input::Message { msg, .. } = &input {
            self.keep(msg);
        }
        let mut out = self.inner.step(input);
        for o in &out {
            if let Output::Send { msg, .. } | Output::Broadcast(msg) = o {
                self.keep(msg);
            }
        }
        if tick {
            self.ticks += 1;
            if self.ticks.is_multiple_of(EVERY) && !self.seen.is_empty() {
                for _ in 0..BURST {
                    // Uniform over what we kept: the oldest are terms behind by now.
                    let m = self.seen[self.kit.rng.gen_range(0..self.seen.len())].clone();
                    let to = self.kit.random_other();
                    out.push(Output::Send { to, msg: m });
                }
            }
        }
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
