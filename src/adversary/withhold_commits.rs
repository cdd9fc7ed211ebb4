//! `withhold-commits`: an otherwise honest node that never gives some peers its Commits,
//! nor pushes them committed entries. A node that voted in a failed later election sits
//! below its Ack floor: it may not Ack or Commit its leader's term, so it commits only on
//! the others' Commits, and with this node's missing it may never gather q of them while
//! the rest of the cluster commits without it. The victims are the lower half of the
//! other ids (at least one), fixed for the run.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::{Input, Message, Node, NodeId, Output};

pub struct WithholdCommits {
    inner: Node,
    victims: Vec<NodeId>,
    others: Vec<NodeId>,
}

impl WithholdCommits {
    pub fn new(ctx: &Context) -> WithholdCommits {
        let others = Kit::new(ctx, 23).others();
        let victims = others[..others.len().div_ceil(2)].to_vec();
        WithholdCommits {
            inner: ctx.honest_node(),
            victims,
            others,
        }
    }

    fn withheld(msg: &Message) -> bool {
        matches!(msg, Message::Commit(_) | Message::CatchUp(_))
    }

    /// A broadcast Commit becomes one Send to each non-victim; a Send to a victim is dropped.
    fn filter(&self, o: Output) -> Vec<Output> {
        match o {
            Output::Broadcast(msg) if Self::withheld(&msg) => self
                .others
                .iter()
                .filter(|j| !self.victims.contains(j))
                .map(|&to| Output::Send {
                    to,
                    msg: msg.clone(),
                })
                .collect(),
            Output::Send { to, msg } if Self::withheld(&msg) && self.victims.contains(&to) => {
                vec![]
            }
            o => vec![o],
        }
    }
}

impl Actor for WithholdCommits {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let out = self.inner.step(input);
        out.into_iter().flat_map(|o| self.filter(o)).collect()
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversary::testkit;
    use crate::protocol::{Commit, Variant};

    #[test]
    fn commits_reach_only_the_non_victims() {
        let ctx = testkit::ctx(0, 4, Variant::Bft);
        let w = WithholdCommits::new(&ctx);
        assert_eq!(w.victims, vec![1, 2]);
        let c = ctx.domain().sign(
            &ctx.key,
            Commit {
                term: 1,
                from: 0,
                index: 1,
                hash: Default::default(),
            },
        );
        let out = w.filter(Output::Broadcast(Message::Commit(c.clone())));
        let to: Vec<NodeId> = out
            .iter()
            .map(|o| match o {
                Output::Send { to, .. } => *to,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(to, vec![3]);
        let to_victim = Output::Send {
            to: 1,
            msg: Message::Commit(c),
        };
        assert!(w.filter(to_victim).is_empty());
    }
}
