//! `selective`: as leader it serves only some followers. AppendEntries to the lower half
//! of the other ids are dropped, so only a bare quorum (n=4) or less than a quorum (n=7)
//! gets entries. The starved followers must still end up with every committed entry
//! (after calm) and the cluster must not stay stuck behind this leader.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, NodeId, Output};

pub struct Selective {
    inner: Node,
    starved: Vec<NodeId>,
}

impl Selective {
    pub fn new(ctx: &Context) -> Selective {
        let others = Kit::new(ctx, 12).others();
        let starved = others[..others.len() / 2].to_vec();
        Selective {
            inner: ctx.honest_node(),
            starved,
        }
    }
}

impl Actor for Selective {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let out = self.inner.step(input);
        if !self.inner.is_leader() {
            return out; // as follower it is honest
        }
        out.into_iter()
            .filter(|o| {
                !matches!(o, Output::Send { to, msg: Message::AppendEntries(_) }
                    if self.starved.contains(to))
            })
            .collect()
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
