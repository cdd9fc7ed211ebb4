//! `double-vote`: votes for every candidate in every term. For each RequestVote it sees it
//! signs a Vote at once, whatever its inner node decides (which may vote for someone else in
//! the same term: that pair is Evidence). Honest candidates must count distinct voters and
//! honest nodes must catch and gossip the double vote.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, Output, Vote};

pub struct DoubleVote {
    inner: Node,
    kit: Kit,
}

impl DoubleVote {
    pub fn new(ctx: &Context) -> DoubleVote {
        DoubleVote {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 11),
        }
    }
}

impl Actor for DoubleVote {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if let Input::Message {
            msg: Message::RequestVote(rv),
            ..
        } = &input
        {
            let (term, candidate) = (rv.body.term, rv.body.candidate);
            if candidate != self.kit.id && (candidate as usize) < self.kit.n {
                let vote = self.kit.sign(Vote {
                    term,
                    voter: self.kit.id,
                    candidate,
                    lock: crate::protocol::lock_id(&rv.body.lock),
                });
                out.push(Output::Send {
                    to: candidate,
                    msg: Message::Vote(vote),
                });
            }
        }
        out.extend(self.inner.step(input));
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
