//! `stall` (Cachin & Vukolić's liveness attack on Tangaroa): rush into leadership, then
//! heartbeat faithfully but never replicate a client request. Every `Request` and
//! `Revolution` is dropped before the inner node sees it, so as leader it appends nothing
//! and as follower it forwards nothing. Heartbeats keep the silence timers of its
//! followers quiet; only request timers (bft) can depose it.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, Output};

pub struct Stall {
    inner: Node,
    /// Ticks since we last led or last rushed a timeout.
    idle: u32,
    /// How early we fire our election timeout: a fraction of the honest minimum T.
    rush: u32,
}

impl Stall {
    pub fn new(ctx: &Context) -> Stall {
        let kit = Kit::new(ctx, 13);
        Stall {
            inner: ctx.honest_node(),
            idle: 0,
            rush: (kit.election_ticks / 4).max(2),
        }
    }
}

impl Actor for Stall {
    fn step(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Message {
                msg: Message::Request(_) | Message::Revolution(_),
                ..
            } => Vec::new(),
            Input::Tick => {
                let mut out = self.inner.step(Input::Tick);
                if self.inner.is_leader() {
                    self.idle = 0;
                    return out;
                }
                self.idle += 1;
                if self.idle >= self.rush {
                    // Campaign long before any honest node would: as soon as anyone is
                    // willing to vote, our RequestVote has the highest term.
                    self.idle = 0;
                    out.extend(self.inner.step(Input::Timeout));
                }
                out
            }
            other => self.inner.step(other),
        }
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
