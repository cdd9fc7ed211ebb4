//! `lockless`: wins its elections honestly, on its real lock, then leads as if it had been
//! elected on none. Its AppendEntries claim no lock and replace everything above its
//! commit point with no-ops of its own term, so followers that believe the claim truncate
//! locked, uncommitted entries (which another honest node may already have committed);
//! it Acks and Commits that fork itself, so with its followers' Acks the fork can prepare
//! and commit. PROTOCOL.md stops it by binding the lock into every Vote: a follower
//! accepts an AppendEntries only if its lock is exactly the one the proof's votes name.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::crypto::Signed;
use crate::protocol::{
    Ack, AppendEntries, Commit, Entry, Index, Input, Message, Node, Output, Payload,
};

pub struct Lockless {
    inner: Node,
    kit: Kit,
}

impl Lockless {
    pub fn new(ctx: &Context) -> Lockless {
        Lockless {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 21),
        }
    }

    /// The fork: no-ops of `term` from our commit point to our log's end.
    fn fork(&self, term: u64) -> (Index, Vec<Entry>) {
        let base = self.inner.commit_index();
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
        &self,
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

impl Actor for Lockless {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let out = self.inner.step(input);
        if !self.inner.is_leader() {
            return out; // as follower it is honest
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
