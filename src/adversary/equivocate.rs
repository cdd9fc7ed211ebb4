//! `equivocate`: as leader, sends different entries at one index to different followers.
//!
//! The followers are split in two. The majority side (the lower ids) gets the leader's real
//! log. The minority side (the highest ⌊(n-1)/2⌋ ids) gets a fork in which the entries of
//! the leader's own term are swapped pairwise: `[r1, r2, r3, r4]` becomes `[r2, r1, r4, r3]`.
//! Every entry still carries a validly signed client request, and the fork's hash chain is
//! recomputed, so each side sees a perfectly consistent leader; only comparing notes
//! (Acks, Commits, votes) can reveal the lie. This is the Byzantine leader of Cachin &
//! Vukolić's counterexample.

use super::Context;
use crate::actor::Actor;
use crate::crypto::Domain;
use crate::protocol::log::Log;
use crate::protocol::{AppendEntries, Entry, Input, Message, Node, NodeId, Output, Term};
use ed25519_dalek::SigningKey;

pub struct Equivocate {
    inner: Node,
    key: SigningKey,
    domain: Domain,
    cluster_id: String,
    minority: Vec<NodeId>,
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
        Equivocate {
            inner: ctx.honest_node(),
            domain: ctx.domain(),
            key: ctx.key.clone(),
            cluster_id: ctx.cfg.cluster_id.clone(),
            minority,
            fork_term: 0,
            base: 0,
            fork: None,
            fork_built_for: 0,
        }
    }

    /// The minority's log: the real one up to `base`, then pairs swapped.
    fn fork(&mut self) -> &Log {
        let real = self.inner.log();
        let last = real.last_index();
        if self.fork.is_none() || self.fork_built_for != last {
            let mut log = Log::new(&self.cluster_id, self.domain.signed);
            for e in real.slice(1, self.base) {
                log.append(e.clone());
            }
            let mut i = self.base + 1;
            while i < last {
                let (a, b) = (real.entry(i).expect("in log"), real.entry(i + 1).expect("in log"));
                log.append(Entry { term: b.term, index: i, payload: b.payload.clone() });
                log.append(Entry { term: a.term, index: i + 1, payload: a.payload.clone() });
                i += 2;
            }
            self.fork = Some(log);
            self.fork_built_for = last;
        }
        self.fork.as_ref().expect("built above")
    }

    fn rewrite(&mut self, ae: &AppendEntries) -> AppendEntries {
        let fork = self.fork();
        let prev = ae.prev_index.min(fork.last_index());
        let to = (ae.prev_index + ae.entries.len() as u64).min(fork.last_index());
        AppendEntries {
            prev_index: prev,
            prev_term: fork.term_at(prev).expect("prev in fork"),
            prev_hash: fork.hash_at(prev).expect("prev in fork"),
            entries: fork.slice(prev + 1, to).to_vec(),
            ..ae.clone()
        }
    }
}

impl Actor for Equivocate {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let out = self.inner.step(input);
        if !self.inner.is_leader() {
            return out;
        }
        let term = self.inner.hard_state().term;
        if term != self.fork_term {
            // A new term of ours: both sides share everything logged before it.
            self.fork_term = term;
            self.base = self.inner.log().entries().iter().take_while(|e| e.term < term).count() as u64;
            self.fork = None;
        }
        out.into_iter()
            .map(|o| match o {
                Output::Send { to, msg: Message::AppendEntries(ae) } if self.minority.contains(&to) => {
                    let forged = self.rewrite(&ae.body);
                    Output::Send { to, msg: Message::AppendEntries(self.domain.sign(&self.key, forged)) }
                }
                other => other,
            })
            .collect()
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}
