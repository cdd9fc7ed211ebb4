//! The honest-equivocation audit: an honest node must never sign two messages that together
//! would be Evidence against it, before or after a crash (PROTOCOL.md, "Durability": a
//! restarted node never signs what would be Evidence against it together with something it
//! signed before). The simulator feeds every signed message an honest slot sends through
//! [`SignatureAudit::on_signed`]; a conflict is a safety violation whether or not it ever
//! becomes a fork, because the honest node has handed the others a proof against itself.
//!
//! The conflicts are the ones `Evidence` names, plus two Commits of one term at one index
//! with different hashes (an honest node locks one chain per term, so it never sends both).

use crate::crypto::Digest;
use crate::protocol::{Index, Message, NodeId, Term};
use std::collections::HashMap;

/// Most signed positions remembered per kind and node: runs are short, but a bound keeps a
/// pathological run from growing without limit (the oldest terms are forgotten first).
const POSITIONS_KEPT: usize = 1 << 16;

#[derive(Default)]
pub struct SignatureAudit {
    /// (node, term) → the candidate it voted for.
    votes: HashMap<(NodeId, Term), NodeId>,
    /// (node, term, index) → the hash it Acked (positive Acks only).
    acks: HashMap<(NodeId, Term, Index), Digest>,
    /// (node, term, index) → the hash it sent a Commit for.
    commits: HashMap<(NodeId, Term, Index), Digest>,
    /// (leader, term, index) → the entry it sent in an AppendEntries, by hash of its encoding.
    entries: HashMap<(NodeId, Term, Index), Digest>,
}

impl SignatureAudit {
    /// Records what `node` just signed; returns a description of the conflict if this
    /// message contradicts one it signed before.
    pub fn on_signed(&mut self, node: NodeId, msg: &Message) -> Option<String> {
        match msg {
            Message::Vote(v) if v.body.voter == node => {
                let b = &v.body;
                remember(&mut self.votes, (node, b.term), b.candidate).map(|old| {
                    format!(
                        "honest node {node} voted for {old} and for {} in term {}",
                        b.candidate, b.term
                    )
                })
            }
            Message::Ack(a) if a.body.from == node && a.body.success => {
                let b = &a.body;
                remember(&mut self.acks, (node, b.term, b.index), b.hash).map(|_| {
                    format!(
                        "honest node {node} Acked two hashes at index {} in term {}",
                        b.index, b.term
                    )
                })
            }
            Message::Commit(c) if c.body.from == node => {
                let b = &c.body;
                remember(&mut self.commits, (node, b.term, b.index), b.hash).map(|_| {
                    format!(
                        "honest node {node} sent Commits for two hashes at index {} in term {}",
                        b.index, b.term
                    )
                })
            }
            Message::AppendEntries(ae) if ae.body.leader == node => {
                let b = &ae.body;
                b.entries.iter().find_map(|e| {
                    let digest = crate::crypto::sha256(&crate::codec::encode(e));
                    remember(&mut self.entries, (node, b.term, e.index), digest).map(|_| {
                        format!(
                            "honest leader {node} sent two different entries at index {} in term {}",
                            e.index, b.term
                        )
                    })
                })
            }
            _ => None,
        }
    }
}

/// Stores `value` at `key`; returns the old value if it differs.
fn remember<K: std::hash::Hash + Eq, V: PartialEq + Copy>(
    map: &mut HashMap<K, V>,
    key: K,
    value: V,
) -> Option<V> {
    match map.get(&key) {
        Some(old) if *old != value => Some(*old),
        Some(_) => None,
        None => {
            if map.len() < POSITIONS_KEPT {
                map.insert(key, value);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Domain};
    use crate::protocol::{Ack, Commit, Variant, Vote};

    fn domain() -> (Domain, ed25519_dalek::SigningKey) {
        (
            Domain::new(Variant::Bft, "t"),
            signing_key_from_seed([3; 32]),
        )
    }

    #[test]
    fn two_votes_in_one_term_for_different_candidates_are_caught() {
        let (d, k) = domain();
        let mut audit = SignatureAudit::default();
        let vote = |candidate| {
            Message::Vote(d.sign(
                &k,
                Vote {
                    term: 4,
                    voter: 1,
                    candidate,
                    lock: None,
                },
            ))
        };
        assert_eq!(audit.on_signed(1, &vote(2)), None);
        assert_eq!(
            audit.on_signed(1, &vote(2)),
            None,
            "a resend is no conflict"
        );
        assert!(audit.on_signed(1, &vote(3)).is_some());
    }

    #[test]
    fn acks_and_commits_of_two_hashes_at_one_position_are_caught() {
        let (d, k) = domain();
        let mut audit = SignatureAudit::default();
        let ack = |hash: u8, success| {
            Message::Ack(d.sign(
                &k,
                Ack {
                    term: 2,
                    from: 0,
                    index: 5,
                    hash: Digest([hash; 32]),
                    success,
                },
            ))
        };
        assert_eq!(audit.on_signed(0, &ack(1, true)), None);
        assert_eq!(
            audit.on_signed(0, &ack(2, false)),
            None,
            "a refusal vouches for nothing"
        );
        assert!(audit.on_signed(0, &ack(2, true)).is_some());
        let commit = |hash: u8| {
            Message::Commit(d.sign(
                &k,
                Commit {
                    term: 2,
                    from: 0,
                    index: 5,
                    hash: Digest([hash; 32]),
                },
            ))
        };
        assert_eq!(audit.on_signed(0, &commit(1)), None);
        assert!(audit.on_signed(0, &commit(9)).is_some());
    }
}
