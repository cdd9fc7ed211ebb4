//! Checks a node's recovered durable state before the core starts on it.
//!
//! Storage checksums catch damage, not nonsense: a re-checksummed but inconsistent log (a
//! lock neither on the log nor retained, a vote above the term, terms out of order) used to
//! trip an assertion in `Node::new`. The runtime calls [`Durable::validate`] first and
//! refuses to start with the reason; `Node::new` keeps its assertions for the simulator.

use super::log::Log;
use super::node::Durable;
use super::types::Index;
use crate::crypto::Principal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("log entry {position} has index {found}, expected {position}")]
    Gap { position: Index, found: Index },
    #[error("log entry {index} has term {term}, below the term {before} of the entry before it")]
    TermsOutOfOrder {
        index: Index,
        term: u64,
        before: u64,
    },
    #[error("commit index {commit} is beyond the log's last index {last}")]
    CommitBeyondLog { commit: Index, last: Index },
    #[error("the vote of term {voted} is above the node's term {term}")]
    VoteAboveTerm { voted: u64, term: u64 },
    #[error("the leader followed in term {leader} is above the node's term {term}")]
    LeaderAboveTerm { leader: u64, term: u64 },
    #[error("the last Ack, of term {acked}, is above the node's term {term}")]
    AckAboveTerm { acked: u64, term: u64 },
    #[error("the lock at index {index} is neither on the log nor among the retained entries")]
    LockLost { index: Index },
    #[error("evidence against {0:?}, which is not a member")]
    EvidenceAgainstStranger(Principal),
}

impl Durable {
    /// Whether this state is one an honest node could have written, for a cluster of `n`
    /// nodes named `cluster_id` (the hash chain is recomputed from the entries).
    pub fn validate(&self, n: usize, cluster_id: &str, hashing: bool) -> Result<(), RecoveryError> {
        let mut log = match &self.snapshot {
            Some(s) => Log::from_base(hashing, s.base),
            None => Log::new(cluster_id, hashing),
        };
        let mut before = log.base().term;
        for (k, e) in self.entries.iter().enumerate() {
            let position = log.base().index + k as Index + 1;
            if e.index != position {
                return Err(RecoveryError::Gap {
                    position,
                    found: e.index,
                });
            }
            if e.term < before {
                return Err(RecoveryError::TermsOutOfOrder {
                    index: e.index,
                    term: e.term,
                    before,
                });
            }
            before = e.term;
            log.append(e.clone());
        }
        let h = &self.hard;
        if h.commit > log.last_index() {
            return Err(RecoveryError::CommitBeyondLog {
                commit: h.commit,
                last: log.last_index(),
            });
        }
        if let Some((voted, _)) = h.voted.filter(|(t, _)| *t > h.term) {
            return Err(RecoveryError::VoteAboveTerm {
                voted,
                term: h.term,
            });
        }
        if let Some((leader, _)) = h.leader.filter(|(t, _)| *t > h.term) {
            return Err(RecoveryError::LeaderAboveTerm {
                leader,
                term: h.term,
            });
        }
        if let Some(a) = h.acked.filter(|a| a.term > h.term) {
            return Err(RecoveryError::AckAboveTerm {
                acked: a.term,
                term: h.term,
            });
        }
        if let Some(lock) = &h.lock {
            // A lock below the base stays a valid lock (PROTOCOL.md, "Checkpoints"): its
            // entries are committed and in the snapshot.
            let on_log =
                lock.index < log.base().index || log.hash_at(lock.index) == Some(lock.hash);
            let retained = h.lock_chain.last().is_some_and(|e| e.index == lock.index);
            if !on_log && !retained {
                return Err(RecoveryError::LockLost { index: lock.index });
            }
        }
        for e in &self.evidence {
            let culprit = e.culprit();
            if !matches!(culprit, Principal::Node(id) if (id as usize) < n) {
                return Err(RecoveryError::EvidenceAgainstStranger(culprit));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Digest;
    use crate::protocol::message::{Entry, Payload, PreparedCert};
    use crate::protocol::node::{AckedPosition, HardState};

    fn noop(term: u64, index: Index) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Noop,
        }
    }

    fn durable(entries: Vec<Entry>, hard: HardState) -> Durable {
        Durable {
            hard,
            entries,
            evidence: vec![],
            snapshot: None,
            stable: None,
        }
    }

    #[test]
    fn an_honest_state_passes_and_each_kind_of_nonsense_is_named() {
        let good = durable(
            vec![noop(1, 1), noop(2, 2)],
            HardState {
                term: 2,
                voted: Some((2, 1)),
                commit: 2,
                ..Default::default()
            },
        );
        assert_eq!(good.validate(4, "c", true), Ok(()));
        let bad = |d: Durable| d.validate(4, "c", true).unwrap_err();
        assert!(matches!(
            bad(durable(vec![noop(1, 1), noop(1, 3)], HardState::default())),
            RecoveryError::Gap {
                position: 2,
                found: 3
            }
        ));
        assert!(matches!(
            bad(durable(
                vec![noop(2, 1), noop(1, 2)],
                HardState {
                    term: 2,
                    ..Default::default()
                }
            )),
            RecoveryError::TermsOutOfOrder { .. }
        ));
        assert!(matches!(
            bad(durable(
                vec![noop(1, 1)],
                HardState {
                    term: 1,
                    commit: 2,
                    ..Default::default()
                }
            )),
            RecoveryError::CommitBeyondLog { .. }
        ));
        assert!(matches!(
            bad(durable(
                vec![],
                HardState {
                    term: 1,
                    voted: Some((3, 0)),
                    ..Default::default()
                }
            )),
            RecoveryError::VoteAboveTerm { .. }
        ));
        let acked = Some(AckedPosition {
            term: 5,
            index: 1,
            hash: Digest::default(),
        });
        assert!(matches!(
            bad(durable(
                vec![],
                HardState {
                    term: 1,
                    acked,
                    ..Default::default()
                }
            )),
            RecoveryError::AckAboveTerm { .. }
        ));
        let lock = Some(PreparedCert {
            term: 1,
            index: 1,
            hash: Digest([9; 32]),
            acks: vec![],
        });
        assert!(matches!(
            bad(durable(
                vec![noop(1, 1)],
                HardState {
                    term: 1,
                    lock,
                    ..Default::default()
                }
            )),
            RecoveryError::LockLost { index: 1 }
        ));
    }
}
