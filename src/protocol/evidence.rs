//! Equivocation Evidence: detected, checked, kept, gossiped (PROTOCOL.md, "Evidence").

use super::message::{AppendEntries, Evidence, Message, Vote};
use super::node::{Node, Output, Persist, Suspicion};
use super::types::Index;
use crate::crypto::{Principal, Signed};

/// Votes remembered per (term, voter) to catch double voting.
const VOTES_KEPT: usize = 256;

/// True when the two messages really conflict: no honest node would send both.
pub fn conflicts(e: &Evidence) -> bool {
    match e {
        Evidence::Votes(a, b) => {
            a.body.voter == b.body.voter
                && a.body.term == b.body.term
                && a.body.candidate != b.body.candidate
        }
        Evidence::Acks(a, b) => {
            let (a, b) = (&a.body, &b.body);
            a.from == b.from
                && a.term == b.term
                && a.index == b.index
                && a.hash != b.hash
                && a.success
                && b.success
        }
        Evidence::AppendEntries(a, b) => {
            let (a, b) = (&a.body, &b.body);
            a.leader == b.leader
                && a.term == b.term
                && a.entries
                    .iter()
                    .any(|x| b.entries.iter().any(|y| x.index == y.index && x != y))
        }
    }
}

impl Node {
    pub(super) fn on_evidence(&mut self, e: Evidence) {
        if self.rules.evidence && conflicts(&e) {
            self.record_evidence(e);
        }
    }

    /// Keeps one piece of Evidence per culprit, persists it, tells the peers, and stops
    /// trusting the culprit (no votes; if it leads, it is judged faulty).
    pub(super) fn record_evidence(&mut self, e: Evidence) {
        if !self.rules.evidence {
            return;
        }
        let Principal::Node(culprit) = e.culprit() else {
            return;
        };
        if culprit == self.cfg.id || !self.is_node(culprit) || !self.convicted.insert(culprit) {
            return;
        }
        tracing::info!(node = self.cfg.id, culprit, "evidence of equivocation");
        self.evidence.push(e.clone());
        self.out.push(Output::Persist(Persist::Evidence(e.clone())));
        self.broadcast(Message::Evidence(e));
        if self.follow.as_ref().is_some_and(|f| f.leader == culprit) {
            self.judge_leader_faulty(Suspicion::Evidence);
        }
    }

    /// Remembers a vote; a second one by the same voter in the same term for another
    /// candidate is Evidence.
    pub(super) fn note_vote(&mut self, v: &Signed<Vote>) {
        let key = (v.body.term, v.body.voter);
        match self.seen_votes.get(&key) {
            Some(old) if old.body.candidate != v.body.candidate => {
                let old = old.clone();
                self.record_evidence(Evidence::Votes(old, v.clone()));
            }
            Some(_) => {}
            None => {
                self.seen_votes.insert(key, v.clone());
                if self.seen_votes.len() > VOTES_KEPT {
                    self.seen_votes.pop_first();
                }
            }
        }
    }

    /// The leader sent, in one term, an entry at `index` that differs from one we Acked.
    pub(super) fn leader_equivocated(&mut self, ae: &Signed<AppendEntries>, index: Index) {
        let earlier = self
            .accepted_aes
            .iter()
            .find(|old| {
                old.body.term == ae.body.term && old.body.entries.iter().any(|e| e.index == index)
            })
            .cloned();
        match earlier {
            Some(old) => {
                self.record_evidence(Evidence::AppendEntries(Box::new(old), Box::new(ae.clone())))
            }
            None => self.judge_leader_faulty(Suspicion::Misbehaviour),
        }
    }
}
