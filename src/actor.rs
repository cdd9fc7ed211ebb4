//! What occupies a node's slot in the simulator or the runtime: the honest [`Node`], or an
//! adversary that wraps or replaces one. Honest code knows nothing of adversaries; the
//! drivers only ever see this trait.

use crate::protocol::{ClientId, Input, Node, OpResult, Output, Reply};

pub trait Actor: Send {
    fn step(&mut self, input: Input) -> Vec<Output>;

    /// Several inputs that arrived together. Adversaries see them one by one; the honest
    /// node batches what it appends (`Node::step_batch`).
    fn step_batch(&mut self, inputs: Vec<Input>) -> Vec<Output> {
        let mut out = Vec::new();
        for i in inputs {
            out.extend(self.step(i));
        }
        out
    }

    /// The honest core inside (every adversary wraps one), for status displays.
    fn node(&self) -> &Node;

    /// The reply this slot sends a client for a request it applied. An honest node sends
    /// `r`; a liar may change it or stay silent.
    fn reply(&mut self, r: Reply) -> Option<Reply> {
        Some(r)
    }

    /// What this slot answers `client` for request `seq`, applied with `result`: the
    /// honest reply (with the leader hint) as `reply` lets it through. One place for the
    /// simulator and the runtime.
    fn reply_to(&mut self, client: ClientId, seq: u64, result: OpResult) -> Option<Reply> {
        let node = self.node();
        let honest = Reply {
            node: node.id(),
            client,
            seq,
            result,
            leader: node.leader(),
        };
        self.reply(honest)
    }
}

impl Actor for Node {
    fn step(&mut self, input: Input) -> Vec<Output> {
        Node::step(self, input)
    }

    fn step_batch(&mut self, inputs: Vec<Input>) -> Vec<Output> {
        Node::step_batch(self, inputs)
    }

    fn node(&self) -> &Node {
        self
    }
}
