//! `lockless`: wins its elections honestly, on its real lock, then leads as if it had been
//! elected on none. Its AppendEntries claim no lock and replace everything above its
//! commit point with no-ops of its own term, so followers that believe the claim truncate
//! locked, uncommitted entries (which another honest node may already have committed);
//! it Acks and Commits that fork itself, so with its followers' Acks the fork can prepare
//! and commit. PROTOCOL.md stops it by binding the lock into every Vote: a follower
//! accepts an AppendEntries only if its lock is exactly the one the proof's votes name.
//! Like `stall`, it campaigns early and often, so that it leads whenever anyone will vote.
//! As a follower it sends each of its Commits to one peer only: that peer may commit on
//! it while the others only lock, the state in which truncating locked entries forks a
//! committed one.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::crypto::Signed;
use crate::protocol::{
    Ack, AppendEntries, Commit, Entry, Index, Input, Message, Node, Output, Payload,
};
use rand::Rng;

pub struct Lockless {
    inner: Node,
    kit: Kit,
    /// The term we lead and the index our fork starts after, fixed for the term so that
    /// our AppendEntries stay consistent with each other: a few entries below our own
    /// commit point, since a follower that lags in commits (lost Commits) accepts a fork
    /// of what a better-informed honest node already committed.
    base: Option<(u64, Index)>,
    /// Ticks since we last rushed a timeout, and how early we rush it.
    idle: u32,
    rush: u32,
}

impl Lockless {
    pub fn new(ctx: &Context) -> Lockless {
        Lockless {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 21),
            base: None,
            idle: 0,
            rush: (ctx.cfg.timing.election_ticks / 4).max(2),
        }
    }

    fn base(&mut self, term: u64) -> Index {
        match self.base {
            Some((t, b)) if t == term => b,
            _ => {
                let b = self
                    .inner
                    .commit_index()
                    .saturating_sub(self.kit.rng.gen_range(0..4));
                self.base = Some((term, b));
                b
            }
        }
    }

    /// The fork: no-ops of `term` from our base to our log's end.
    fn fork(&mut self, term: u64) -> (Index, Vec<Entry>) {
        let base = self.base(term);
        let last = self.inner.log().last_index();
        let entries = (base + 1..=last)
            .map(|index| Entry {
                term,
                index,
                payload: Payload::Noop,
            })
            .collect();
        (base, entries)
    }

    /// Rewrites one of our AppendEntries to carry the fork and no lock; returns it with
    /// the fork's last position, which we then Ack and Commit ourselves.
    fn rewrite(
        &mut self,
        ae: Signed<AppendEntries>,
    ) -> (
        Signed<AppendEntries>,
        Option<(Index, crate::crypto::Digest)>,
    ) {
        let mut b = ae.body;
        b.lock = None;
        let (base, entries) = self.fork(b.term);
        let log = self.inner.log();
        let mut end = None;
        if !entries.is_empty() && b.prev_index >= base {
            let mut hash = log.hash_at(base).unwrap_or_default();
            for e in &entries {
                hash = log.hash_after(&hash, e);
            }
            end = entries.last().map(|e| (e.index, hash));
            b.prev_index = base;
            b.prev_term = log.term_at(base).unwrap_or(0);
            b.prev_hash = log.hash_at(base).unwrap_or_default();
            b.entries = entries;
        }
        (self.kit.sign(b), end)
    }
}

impl Lockless {
    /// Narrows a broadcast Commit to one peer; passes anything else through.
    fn commit_to_one(&mut self, o: Output) -> Output {
        match o {
            Output::Broadcast(msg @ Message::Commit(_)) => Output::Send {
                to: self.kit.random_other(),
                msg,
            },
            o => o,
        }
    }
}

impl Actor for Lockless {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        let mut out = self.inner.step(input);
        if !self.inner.is_leader() {
            // As follower it is honest, but it campaigns early and often (as `stall`
            // does), so that it leads whenever anyone will vote.
            if tick {
                self.idle += 1;
                if self.idle >= self.rush {
                    self.idle = 0;
                    out.extend(self.inner.step(Input::Timeout));
                }
            }
            return out.into_iter().map(|o| self.commit_to_one(o)).collect();
        }
        let term = self.inner.hard_state().term;
        let me = self.kit.id;
        let mut fork_end = None;
        let mut rewritten: Vec<Output> = out
            .into_iter()
            // Our inner node's Acks and Commits vouch for the real log; we vouch for the fork.
            .filter(|o| {
                !matches!(
                    o,
                    Output::Broadcast(Message::Ack(_)) | Output::Broadcast(Message::Commit(_))
                )
            })
            .map(|o| match o {
                Output::Send {
                    to,
                    msg: Message::AppendEntries(ae),
                } => {
                    let (ae, end) = self.rewrite(ae);
                    fork_end = fork_end.max(end);
                    Output::Send {
                        to,
                        msg: Message::AppendEntries(ae),
                    }
                }
                o => o,
            })
            .collect();
        if let Some((index, hash)) = fork_end {
            let ack = Ack {
                term,
                from: me,
                index,
                hash,
                success: true,
            };
            let commit = Commit {
                term,
                from: me,
                index,
                hash,
            };
            rewritten.push(Output::Broadcast(Message::Ack(self.kit.sign(ack))));
            rewritten.push(Output::Broadcast(Message::Commit(self.kit.sign(commit))));
        }
        rewritten
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
