//! `crash`: the node stops. It keeps its honest core only so that status displays have
//! something to show; the core never sees an input, so it never speaks again.

use super::Context;
use crate::actor::Actor;
use crate::protocol::{Input, Node, Output};

pub struct Crash {
    inner: Node,
}

impl Crash {
    pub fn new(ctx: &Context) -> Crash {
        Crash {
            inner: ctx.honest_node(),
        }
    }
}

impl Actor for Crash {
    fn step(&mut self, _input: Input) -> Vec<Output> {
        Vec::new()
    }

    fn node(&self) -> &Node {
        &self.inner
    }

    fn reply(&mut self, _r: crate::protocol::Reply) -> Option<crate::protocol::Reply> {
        None // a stopped node answers nobody, not even from its state-machine cache
    }
}
