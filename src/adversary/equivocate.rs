//! `equivocate`: as leader, sends different entries at one index to different followers.
//!
//! The followers are split in two. The majority side (the lower ids) gets the leader's real
//! log. The minority side (the highest ⌊(n-1)/2⌋ ids) gets a fork in which the entries of
//! the leader's own term are swapped pairwise: `[r1, r2, r3, r4]` becomes `[r2, r1, r4, r3]`.
//! Every entry still carries a validly signed client request, and the fork's hash chain is
//! recomputed, so each side sees a perfectly consistent leader; only comparing notes
//! (Acks, Commits, votes) can reveal the lie. This is the Byzantine leader of Cachin &
//! Vukolić's counterexample. The leader also backs the fork with its own signed Acks and
//! Commits of it, sent to the fork's side only.
//!
//! After `WIDEN_TICKS` of forking (ticks as leader with a pair of its term's entries to
//! swap; less than the request timeout, after which an honest leader that cannot commit
//! steps down) it widens the fork to every follower but the lowest, so
//! followers that Acked the real log are now offered the fork in the same term: that is
//! what the append-only rule catches, as Evidence.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::protocol::log::Log;
use crate::protocol::{
    Ack, AppendEntries, Commit, Entry, Input, Message, Node, NodeId, Output, Term,
};

/// Ticks of forking before the fork widens. Counted from the first pair to swap, not from
/// election: a leader elected long before any request arrives would otherwise widen an
/// empty fork, and no follower would ever see both orders.
const WIDEN_TICKS: u32 = 30;

pub struct Equivocate {
    inner: Node,
    kit: Kit,
    /// Highest index of a real Ack or Commit of ours each follower has seen: backing the
    /// fork at or below it would hand that follower two conflicting Acks, i.e. Evidence.
    shown_real: Vec<u64>,
    minority: Vec<NodeId>,
    widened: Vec<NodeId>,
    ticks_forking: u32,
    /// The leader term the fork belongs to, and the last index shared by both sides.
    fork_term: Term,
    base: u64,
    fork: Option<Log>,
    fork_built_for: u64,
}

impl Equivocate {
    pub fn new(ctx: Context) -> Equivocate {
        let me = ctx.cfg.id;
        let n = ctx.cfg.n as NodeId;
        let others: Vec<NodeId> = (0..n).filter(|&i| i != me).collect();
        let minority = others[others.len() - others.len() / 2..].to_vec();
        let widened = others[1..].to_vec();
        Equivocate {
            inner: ctx.honest_node(),
            kit: Kit::new(&ctx, 0xe9),
            minority,
            widened,
            shown_real: vec![0; n as usize],
            ticks_forking: 0,
            fork_term: 0,
            base: 0,
            fork: None,
            fork_built_for: 0,
        }
    }

    /// Where the fork parts from the real log: `base`, or the real log's compaction base
    /// if that is higher (the entries below it are gone, and committed on both sides).
    fn fork_base(&self) -> u64 {
        self.base.max(self.inner.log().base().index)
    }

    /// The minority's log: the real one up to `fork_base`, then pairs swapped. Rebuilt
    /// when the real log grows or compacts.
    fn fork(&mut self) -> &Log {
        self.base = self.fork_base();
        let from = self.base;
        let real = self.inner.log();
        let last = real.last_index();
        let stale = self.fork.as_ref().is_none_or(|f| f.base() != real.base());
        if stale || self.fork_built_for != last {
            let mut log = Log::from_base(self.kit.domain.signed, real.base());
            for e in real.slice(real.base().index + 1, from) {
                log.append(e.clone());
            }
            let mut i = from + 1;
            while i < last {
                let (a, b) = (
                    real.entry(i).expect("in log"),
                    real.entry(i + 1).expect("in log"),
                );
                log.append(Entry {
                    term: b.term,
                    index: i,
                    payload: b.payload.clone(),
                });
                log.append(Entry {
                    term: a.term,
                    index: i + 1,
                    payload: a.payload.clone(),
                });
                i += 2;
            }
            self.fork = Some(log);
            self.fork_built_for = last;
        }
        self.fork.as_ref().expect("built above")
    }

    /// The AppendEntries `to` gets instead of `ae`. A follower that first saw the real log
    /// is sent the whole fork from where the two part: our inner leader would never back
    /// off below what it already matched.
    fn rewrite(&mut self, to: NodeId, ae: &AppendEntries) -> AppendEntries {
        let converted = !self.minority.contains(&to);
        let base = self.fork_base();
        let fork = self.fork();
        let base = base.max(fork.base().index);
        let prev = if converted {
            base
        } else {
            ae.prev_index.min(fork.last_index())
        };
        // The inner leader may have compacted past `ae`'s prev in the step that sent it.
        let prev = prev.max(fork.base().index);
        let to = if converted {
            fork.last_index()
        } else {
            (ae.prev_index + ae.entries.len() as u64).min(fork.last_index())
        };
        let (Some(prev_term), Some(prev_hash)) = (fork.term_at(prev), fork.hash_at(prev)) else {
            return ae.clone(); // nothing of the fork to show from there: send the real one
        };
        AppendEntries {
            prev_index: prev,
            prev_term,
            prev_hash,
            entries: fork.slice(prev + 1, to).to_vec(),
            ..ae.clone()
        }
    }
}

impl Equivocate {
    /// Our own Ack and Commit of the fork's end, to make the fork look certified.
    fn back_fork(&mut self, to: NodeId, term: Term, out: &mut Vec<Output>) {
        let from = self.inner.id();
        let fork = self.fork();
        let (index, hash) = (fork.last_index(), fork.last_hash());
        if index <= self.shown_real[to as usize] {
            return;
        }
        let ack = self.kit.sign(Ack {
            term,
            from,
            index,
            hash,
            success: true,
        });
        let commit = self.kit.sign(Commit {
            term,
            from,
            index,
            hash,
        });
        out.push(Output::Send {
            to,
            msg: Message::Ack(ack),
        });
        out.push(Output::Send {
            to,
            msg: Message::Commit(commit),
        });
    }
}

impl Actor for Equivocate {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        let out = self.inner.step(input);
        if !self.inner.is_leader() {
            self.ticks_forking = 0;
            return out;
        }
        let term = self.inner.hard_state().term;
        if term != self.fork_term {
            // A new term of ours: both sides share everything logged before it.
            self.fork_term = term;
            let log = self.inner.log();
            let before = log.entries().iter().take_while(|e| e.term < term).count();
            // An index, not a count: the log's entries start after its base.
            self.base = log.base().index + before as u64;
            self.fork = None;
            self.ticks_forking = 0;
        }
        let pair_to_swap = self.inner.log().last_index() >= self.fork_base() + 2;
        if tick && pair_to_swap {
            self.ticks_forking += 1;
        }
        let side = if self.ticks_forking >= WIDEN_TICKS {
            self.widened.clone()
        } else {
            self.minority.clone()
        };
        let mut rewritten = Vec::with_capacity(out.len());
        for o in out {
            match o {
                Output::Send {
                    to,
                    msg: Message::AppendEntries(ae),
                } if side.contains(&to) => {
                    let forged = self.rewrite(to, &ae.body);
                    let carried = !forged.entries.is_empty();
                    let msg = Message::AppendEntries(self.kit.sign(forged));
                    rewritten.push(Output::Send { to, msg });
                    if carried {
                        self.back_fork(to, term, &mut rewritten);
                    }
                }
                // Each side hears only its own story: our real Acks and Commits go to the
                // real side, never to followers that see the fork.
                Output::Broadcast(msg @ (Message::Ack(_) | Message::Commit(_))) => {
                    let index = match &msg {
                        Message::Ack(a) => a.body.index,
                        Message::Commit(c) => c.body.index,
                        _ => 0,
                    };
                    for to in self.kit.others() {
                        if !side.contains(&to) {
                            let shown = &mut self.shown_real[to as usize];
                            *shown = (*shown).max(index);
                            rewritten.push(Output::Send {
                                to,
                                msg: msg.clone(),
                            });
                        }
                    }
                }
                other => rewritten.push(other),
            }
        }
        rewritten
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
