//! `lie-reply`: an honest replica that lies to clients about results. Replies are not
//! signed (they travel on the client's authenticated link), so the only defence is the
//! client's rule of f+1 matching replies (bft); raft and tangaroa accept the first one.

use super::Context;
use crate::actor::Actor;
use crate::protocol::{Input, Node, OpResult, Output, Reply};

/// Every liar tells the same lie, so that colluding liars agree with each other: the
/// strongest form of this attack against a matching-replies rule.
pub const LIE: &str = "forged";

pub struct LieReply {
    inner: Node,
}

impl LieReply {
    pub fn new(ctx: &Context) -> LieReply {
        LieReply {
            inner: ctx.honest_node(),
        }
    }
}

impl Actor for LieReply {
    fn step(&mut self, input: Input) -> Vec<Output> {
        self.inner.step(input)
    }

    fn node(&self) -> &Node {
        &self.inner
    }

    fn reply(&mut self, r: Reply) -> Option<Reply> {
        Some(Reply {
            result: OpResult::Value(Some(LIE.into())),
            ..r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversary::testkit;
    use crate::protocol::Variant;

    #[test]
    fn replies_lie() {
        let mut l = LieReply::new(&testkit::ctx(2, 4, Variant::Bft));
        let r = Reply {
            node: 2,
            client: 0,
            seq: 3,
            result: OpResult::Ok,
            leader: None,
        };
        let lie = l.reply(r.clone()).expect("it answers");
        assert_eq!((lie.node, lie.client, lie.seq), (2, 0, 3));
        assert_ne!(lie.result, r.result);
    }
}
