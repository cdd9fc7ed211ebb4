//! `forge-proof`: leads without being elected. It cycles through three phases:
//!
//! - *Honest*: it follows like anyone, so its log catches up.
//! - *Lag*, for a random while (a heartbeat to two election timeouts), in one of two styles,
//!   alternating per attempt, both leaving it with a log a little behind the cluster's:
//!   *drop*: it drops every AppendEntries it receives (harvesting their proofs first);
//!   *hoard*: it follows, but its own Commits (bft; its Acks in tangaroa, which commits on
//!   Acks) go to one node only, so that one node may commit what the others cannot yet,
//!   and at the end it rolls its inner node back to its log of the start of the phase.
//!   If it gets elected for real meanwhile, it falls silent to be retired.
//! - *Lead*: it fires its inner node's election timeout, then feeds the inner core fake
//!   `Vote`s from q-1 other ids. The core does not check signatures (`auth` does, outside
//!   it), so it believes it won and leads with its stale log. Every AppendEntries it sends
//!   with a proof gets a forged proof instead, re-signed with our own key, the forgery
//!   rotating per attempt:
//!   (a) duplicated: our own valid vote, q times;
//!   (b) refused: our own vote plus real votes for other candidates (harvested from other
//!   leaders' proofs) and votes we signed for other candidates;
//!   (c) wrong term: real votes for us from earlier terms, under this term's proof;
//!   (d) badly signed: votes claiming other voters, with garbage or our own signatures.
//!
//! Each is refused by a rule of `bft` (distinct voters; candidate and term match;
//! signatures). A follower fooled by one is asked to overwrite its longer log with our
//! stale one, so a test that switches a rule off sees a safety violation. Once the inner
//! node no longer leads, the cycle starts again.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::crypto::{Principal, Signed};
use crate::protocol::{
    Durable, ElectionProof, Index, Input, Message, Node, NodeConfig, NodeId, Output, Persist,
    Quorum, Term, Vote,
};
use rand::Rng;
use std::collections::VecDeque;

/// Harvested votes kept, per kind.
const VOTES_KEPT: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forgery {
    Duplicated,
    Refused,
    WrongTerm,
    BadlySigned,
}

const ROTATION: [Forgery; 4] = [
    Forgery::Duplicated,
    Forgery::Refused,
    Forgery::WrongTerm,
    Forgery::BadlySigned,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Ticks spent following honestly.
    Honest(u32),
    /// Lagging: ticks so far, ticks to go, and for the hoard style the node our Acks or
    /// Commits go to and the log end we roll back to.
    Lag(u32, u32, Option<(NodeId, Index)>),
    /// Leading on a forged proof for this term.
    Lead(Term, Forgery),
}

pub struct ForgeProof {
    inner: Node,
    cfg: NodeConfig,
    kit: Kit,
    q: usize,
    phase: Phase,
    attempts: usize,
    /// Real votes for us (any term) and for other candidates (from others' proofs).
    for_us: VecDeque<Signed<Vote>>,
    for_others: VecDeque<Signed<Vote>>,
}

impl ForgeProof {
    pub fn new(ctx: &Context) -> ForgeProof {
        ForgeProof {
            inner: ctx.honest_node(),
            cfg: ctx.cfg.clone(),
            kit: Kit::new(ctx, 19),
            q: Quorum::new(ctx.cfg.rules.variant, ctx.cfg.n).q,
            phase: Phase::Honest(0),
            attempts: 0,
            for_us: VecDeque::new(),
            for_others: VecDeque::new(),
        }
    }

    fn keep(buf: &mut VecDeque<Signed<Vote>>, v: &Signed<Vote>) {
        if !buf.contains(v) {
            buf.push_back(v.clone());
            if buf.len() > VOTES_KEPT {
                buf.pop_front();
            }
        }
    }

    fn harvest(&mut self, msg: &Message) {
        match msg {
            Message::Vote(v) if v.body.candidate == self.kit.id && v.body.voter != self.kit.id => {
                Self::keep(&mut self.for_us, v)
            }
            Message::AppendEntries(ae) => {
                for v in ae.body.proof.iter().flat_map(|p| &p.votes) {
                    if v.body.candidate != self.kit.id {
                        Self::keep(&mut self.for_others, v);
                    }
                }
            }
            _ => {}
        }
    }

    /// Campaigns and makes the inner core win with fake votes; moves to `Lead` if it did.
    fn forge(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        // A timeout may first grant a remembered vote instead of campaigning; a second one
        // then campaigns.
        for _ in 0..2 {
            out.extend(self.inner.step(Input::Timeout));
            let hard = self.inner.hard_state();
            if hard.voted == Some((hard.term, self.kit.id)) || self.inner.is_leader() {
                break;
            }
        }
        let term = self.inner.hard_state().term;
        self.phase = Phase::Honest(0);
        if self.inner.is_leader() || self.inner.hard_state().voted != Some((term, self.kit.id)) {
            return out; // led already, or could not campaign: try again next cycle
        }
        for voter in self.kit.others().into_iter().take(self.q.saturating_sub(1)) {
            let vote = self.kit.sign(Vote {
                term,
                voter,
                candidate: self.kit.id,
                lock: super::candidate_lock(&self.inner),
            });
            let msg = Message::Vote(vote);
            out.extend(self.inner.step(Input::Message {
                from: Principal::Node(voter),
                msg,
            }));
        }
        if self.inner.is_leader() {
            self.phase = Phase::Lead(term, ROTATION[self.attempts % ROTATION.len()]);
            self.attempts += 1;
        }
        out
    }

    /// The votes of a forged proof for `term`.
    fn forged_votes(&mut self, term: Term, how: Forgery) -> Vec<Signed<Vote>> {
        let me = self.kit.id;
        let own = self.kit.sign(Vote {
            term,
            voter: me,
            candidate: me,
            lock: super::candidate_lock(&self.inner),
        });
        let q = self.q;
        let mut votes = vec![own.clone()];
        match how {
            Forgery::Duplicated => votes.resize(q, own),
            Forgery::Refused => {
                votes.extend(self.for_others.iter().rev().take(q - 1).cloned());
                for c in self.kit.others() {
                    votes.push(self.kit.sign(Vote {
                        term,
                        voter: me,
                        candidate: c,
                        lock: super::candidate_lock(&self.inner),
                    }));
                }
            }
            Forgery::WrongTerm => {
                votes.extend(
                    self.for_us
                        .iter()
                        .rev()
                        .filter(|v| v.body.term < term)
                        .take(q - 1)
                        .cloned(),
                );
                for t in 1..q as Term {
                    votes.push(self.kit.sign(Vote {
                        term: term.saturating_sub(t),
                        voter: me,
                        candidate: me,
                        lock: super::candidate_lock(&self.inner),
                    }));
                }
            }
            Forgery::BadlySigned => {
                for voter in self.kit.others().into_iter().take(q - 1) {
                    let body = Vote {
                        term,
                        voter,
                        candidate: me,
                        lock: super::candidate_lock(&self.inner),
                    };
                    let sig = if voter % 2 == 0 {
                        self.kit.garbage_sig()
                    } else {
                        self.kit.sign(body.clone()).sig
                    };
                    votes.push(Signed { body, sig });
                }
            }
        }
        votes.truncate(2 * q); // a proof of plausible size
        votes
    }

    /// Puts a forged proof into every AppendEntries of the forged term that carries one.
    fn rewrite(&mut self, out: Vec<Output>, term: Term, how: Forgery) -> Vec<Output> {
        out.into_iter()
            .map(|o| match o {
                Output::Send {
                    to,
                    msg: Message::AppendEntries(ae),
                } if ae.body.term == term && ae.body.proof.is_some() => {
                    let mut body = ae.body;
                    let votes = self.forged_votes(term, how);
                    body.proof = Some(ElectionProof {
                        term,
                        leader: self.kit.id,
                        votes,
                    });
                    Output::Send {
                        to,
                        msg: Message::AppendEntries(self.kit.sign(body)),
                    }
                }
                other => other,
            })
            .collect()
    }

    /// One tick of the cycle.
    fn advance(&mut self) -> Vec<Output> {
        match self.phase {
            Phase::Honest(t) if t + 1 >= self.kit.election_ticks => {
                let (lo, hi) = (self.kit.heartbeat_ticks, 2 * self.kit.election_ticks);
                let len = self.kit.rng.gen_range(lo..=hi.max(lo));
                let hoard = (self.attempts / ROTATION.len()) % 2 == 1;
                let target =
                    hoard.then(|| (self.kit.random_other(), self.inner.log().last_index()));
                self.phase = Phase::Lag(0, len, target);
            }
            Phase::Honest(t) => self.phase = Phase::Honest(t + 1),
            Phase::Lag(t, len, hoard) if t + 1 >= len => {
                let mut out = hoard.map_or_else(Vec::new, |(_, from)| self.roll_back(from));
                out.extend(self.forge());
                return out;
            }
            Phase::Lag(t, len, hoard) => self.phase = Phase::Lag(t + 1, len, hoard),
            Phase::Lead(..) if !self.inner.is_leader() => self.phase = Phase::Honest(0),
            Phase::Lead(..) => {}
        }
        Vec::new()
    }

    /// Restarts the inner node from its own state cut back to `to` entries: a Byzantine
    /// node may forget what it said. The cut is persisted like any other change, so the
    /// disk stays the node's own.
    fn roll_back(&mut self, to: Index) -> Vec<Output> {
        let base = self.inner.log().base();
        // Not into what our stored snapshot holds: the disk keeps it (and the log below it
        // is gone), so even a liar's own records cannot go back that far.
        let kept = self.inner.latest_snapshot().map_or(0, |b| b.index);
        if self.inner.log().last_index() <= to
            || self.inner.is_leader()
            || to < kept.max(base.index)
        {
            return Vec::new();
        }
        let mut hard = self.inner.hard_state().clone();
        hard.commit = hard.commit.min(to);
        let lock_kept = hard
            .lock
            .as_ref()
            .is_some_and(|l| l.index <= to && self.inner.log().hash_at(l.index) == Some(l.hash));
        if !lock_kept {
            hard.lock = None;
        }
        hard.lock_chain.clear();
        let entries = self.inner.log().slice(base.index + 1, to).to_vec();
        // The core reads only the snapshot's base (the state machine is the driver's).
        let snapshot = (base.index > 0).then(|| crate::protocol::Snapshot {
            base,
            state: Vec::new(),
        });
        let durable = Durable {
            hard: hard.clone(),
            entries,
            evidence: self.inner.evidence().to_vec(),
            snapshot,
            stable: None,
        };
        self.inner = Node::new(
            self.cfg.clone(),
            self.kit.key.clone(),
            self.kit.rng.gen(),
            durable,
        );
        vec![
            Output::Persist(Persist::TruncateFrom(to + 1)),
            Output::Persist(Persist::Hard(hard)),
        ]
    }

    /// Hoarding: our own Commits (or, without a Commit round, Acks) reach one node only,
    /// even when a peer asks for them again.
    fn hoard(&self, out: Vec<Output>, target: NodeId) -> Vec<Output> {
        let commit_round = self.inner.rules().commit_round;
        let me = self.kit.id;
        let hoarded = |m: &Message| match m {
            Message::Commit(c) => c.body.from == me,
            Message::Ack(a) => a.body.from == me && a.body.success && !commit_round,
            _ => false,
        };
        out.into_iter()
            .filter_map(|o| match o {
                Output::Broadcast(m) if hoarded(&m) => Some(Output::Send { to: target, msg: m }),
                Output::Send { to, msg } if hoarded(&msg) && to != target => None,
                other => Some(other),
            })
            .collect()
    }
}

fn is_append(o: &Output) -> bool {
    matches!(
        o,
        Output::Send {
            msg: Message::AppendEntries(_),
            ..
        } | Output::Broadcast(Message::AppendEntries(_))
    )
}

impl Actor for ForgeProof {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let dropping = matches!(self.phase, Phase::Lag(_, _, None));
        let mut out = match input {
            Input::Message { from, msg } => {
                self.harvest(&msg);
                if dropping && matches!(msg, Message::AppendEntries(_)) {
                    return Vec::new(); // fall behind on purpose
                }
                self.inner.step(Input::Message { from, msg })
            }
            other => {
                let tick = matches!(other, Input::Tick);
                let mut out = self.inner.step(other);
                if tick {
                    out.extend(self.advance());
                }
                out
            }
        };
        match self.phase {
            Phase::Lead(term, how) => self.rewrite(out, term, how),
            Phase::Lag(..) if self.inner.is_leader() => {
                // Elected for real while lagging: abdicate by falling silent, so that
                // CheckQuorum retires the inner leader and we can forge again.
                out.retain(|o| !is_append(o));
                out
            }
            Phase::Lag(_, _, Some((target, _))) => self.hoard(out, target),
            _ => out,
        }
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversary::testkit;
    use crate::protocol::{authenticate, Variant};

    /// Ticks a forger until it sends its first AppendEntries with a proof.
    fn first_forged_append(f: &mut ForgeProof) -> Message {
        for _ in 0..500 {
            for o in f.step(Input::Tick) {
                if let Output::Send {
                    msg: msg @ Message::AppendEntries(_),
                    ..
                } = o
                {
                    if matches!(&msg, Message::AppendEntries(ae) if ae.body.proof.is_some()) {
                        return msg;
                    }
                }
            }
        }
        panic!("the forger never led");
    }

    #[test]
    fn leads_on_duplicated_votes_that_only_a_broken_rule_accepts() {
        let ctx = testkit::ctx(1, 4, Variant::Bft);
        let mut f = ForgeProof::new(&ctx);
        let msg = first_forged_append(&mut f);
        assert!(f.node().is_leader(), "the inner core believes it won");
        let Message::AppendEntries(ae) = &msg else {
            unreachable!()
        };
        let votes = &ae.body.proof.as_ref().expect("checked").votes;
        assert_eq!(votes.len(), 3);
        assert!(votes
            .iter()
            .all(|v| v.body.voter == 1 && v.body.candidate == 1));
        // Every signature is good: only the distinct-voters rule stands in the way.
        assert_eq!(authenticate(&ctx.ring, Principal::Node(1), &msg), Ok(()));
        let mut honest = testkit::ctx(0, 4, Variant::Bft).honest_node();
        honest.step(Input::Message {
            from: Principal::Node(1),
            msg: msg.clone(),
        });
        assert_eq!(honest.leader(), None, "bft refuses the proof");
        let mut broken = testkit::ctx(0, 4, Variant::Bft);
        broken.cfg.rules.distinct_voters = false;
        let mut fooled = broken.honest_node();
        fooled.step(Input::Message {
            from: Principal::Node(1),
            msg,
        });
        assert_eq!(
            fooled.leader().map(|(_, l)| l),
            Some(1),
            "without the rule it is believed"
        );
    }
}
