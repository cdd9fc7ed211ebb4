//! `lie-checkpoint`: an honest node whose Checkpoints lie. Each Checkpoint its core
//! broadcasts (at the right index, every `checkpoint_interval` entries) is re-signed with
//! our key after one of: a wrong state digest, a wrong chain hash, both, or a different
//! wrong digest to each peer (equivocating Checkpoints). Honest nodes make a stable
//! checkpoint only of q distinct members agreeing on one point, so f liars never make
//! one, and the honest q still do.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Checkpoint, Input, Message, Node, Output};

pub struct LieCheckpoint {
    inner: Node,
    kit: Kit,
    /// Which lie the next Checkpoint tells.
    next: usize,
}

impl LieCheckpoint {
    pub fn new(ctx: &Context) -> LieCheckpoint {
        LieCheckpoint {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 22),
            next: 0,
        }
    }

    fn lie(&mut self, mut c: Checkpoint, kind: usize) -> Message {
        match kind {
            0 => c.state_digest = self.kit.random_digest(),
            1 => c.chain_hash = self.kit.random_digest(),
            _ => {
                c.state_digest = self.kit.random_digest();
                c.chain_hash = self.kit.random_digest();
            }
        }
        Message::Checkpoint(self.kit.sign(c))
    }

    /// Our Checkpoint, rewritten: one lie to all, or (every fourth) one lie per peer.
    fn rewrite(&mut self, c: Checkpoint) -> Vec<Output> {
        let kind = self.next % 4;
        self.next += 1;
        if kind < 3 {
            return vec![Output::Broadcast(self.lie(c, kind))];
        }
        self.kit
            .others()
            .into_iter()
            .map(|to| Output::Send {
                to,
                msg: self.lie(c.clone(), 0),
            })
            .collect()
    }
}

impl Actor for LieCheckpoint {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let out = self.inner.step(input);
        let me = self.kit.id;
        let mut rewritten = Vec::with_capacity(out.len());
        for o in out {
            match o {
                Output::Broadcast(Message::Checkpoint(c)) if c.body.from == me => {
                    rewritten.extend(self.rewrite(c.body));
                }
                o => rewritten.push(o),
            }
        }
        rewritten
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Digest;
    use crate::protocol::Variant;

    /// Every Checkpoint leaves with our valid signature, at the right index, and a lie in
    /// its digest or chain hash; the fourth goes to each peer with a different digest.
    #[test]
    fn checkpoints_leave_signed_at_the_right_index_but_lying() {
        let ctx = testkit_ctx();
        let mut l = LieCheckpoint::new(&ctx);
        let honest = Checkpoint {
            epoch: 0,
            from: 0,
            index: 16,
            term: 2,
            chain_hash: Digest([1; 32]),
            state_digest: Digest([2; 32]),
        };
        let mut sent = Vec::new();
        for round in 0..4 {
            let out = l.rewrite(honest.clone());
            assert_eq!(out.len(), if round < 3 { 1 } else { 3 });
            for o in out {
                let (Output::Broadcast(Message::Checkpoint(c))
                | Output::Send {
                    msg: Message::Checkpoint(c),
                    ..
                }) = o
                else {
                    panic!("{o:?}")
                };
                assert!(ctx.ring.verify(&c), "signed with our key");
                assert_eq!((c.body.index, c.body.term, c.body.from), (16, 2, 0));
                assert_ne!(c.body.point(), honest.point());
                sent.push(c.body);
            }
        }
        assert_ne!(sent[0].state_digest, honest.state_digest);
        assert_eq!(sent[0].chain_hash, honest.chain_hash);
        assert_eq!(sent[1].state_digest, honest.state_digest);
        assert_ne!(sent[1].chain_hash, honest.chain_hash);
        assert_ne!(sent[3].state_digest, sent[4].state_digest, "equivocates");
    }

    fn testkit_ctx() -> Context {
        crate::adversary::testkit::ctx(0, 4, Variant::Bft)
    }
}
