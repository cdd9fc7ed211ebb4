//! `disrupt`: floods signed RequestVotes, as itself, to everyone on every tick, with terms
//! chosen to break term handling: rising ones (each one above the last, so lazy voters
//! always find ours the highest), and huge ones (`u64::MAX / 2`, `u64::MAX`, and right at
//! and just past the `MAX_TERM_GAP` bound above the highest proven term it knows).
//! Each carries the inner node's real log position and lock, so nothing but the term is
//! a lie, and the inner node never campaigns in those terms: votes that come back win
//! nothing. Otherwise it behaves as its inner node.

use super::{request_vote_of, Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, Output, Term, MAX_TERM_GAP};

pub struct Disrupt {
    inner: Node,
    kit: Kit,
    /// Highest rising term sent so far.
    rising: Term,
    floods: u64,
}

impl Disrupt {
    pub fn new(ctx: &Context) -> Disrupt {
        Disrupt {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 14),
            rising: 0,
            floods: 0,
        }
    }

    /// The term of the next flood, rotating over the kinds of lie.
    fn next_term(&mut self) -> Term {
        let hard = self.inner.hard_state();
        let proven = hard.leader.map_or(0, |(t, _)| t);
        self.floods += 1;
        match self.floods % 8 {
            4 => u64::MAX / 2,
            5 => proven.saturating_add(MAX_TERM_GAP), // just inside the bound
            6 => proven.saturating_add(MAX_TERM_GAP + 1), // just outside it
            7 => u64::MAX,
            _ => {
                self.rising = self.rising.max(hard.term).saturating_add(1);
                self.rising
            }
        }
    }
}

impl Actor for Disrupt {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        let mut out = self.inner.step(input);
        if tick {
            let term = self.next_term();
            let rv = self.kit.sign(request_vote_of(&self.inner, term));
            out.push(Output::Broadcast(Message::RequestVote(rv)));
        }
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
