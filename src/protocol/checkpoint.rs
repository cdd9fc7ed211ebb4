//! Checkpoints, compaction and state transfer (PROTOCOL.md, "Checkpoints, compaction and
//! state transfer", rules K1–K5).
//!
//! The core never sees the state machine: it asks the host for a snapshot after applying
//! every `checkpoint_interval`-th entry (`Output::TakeSnapshot`), is told its digest
//! (`Input::Snapshotted`), signs and broadcasts the Checkpoint, and gathers everyone's.
//! q matching Checkpoints from distinct members make a stable checkpoint; once our own
//! snapshot is at that point the log below it goes (`Persist::Compact`). A peer that needs
//! entries we no longer hold is offered the snapshot (`Output::SendSnapshot`); the driver
//! streams it, and on the receiving side assembles the chunks of a snapshot this core
//! wants (`snapshot_wanted`), checks the digest, and hands it over
//! (`Input::SnapshotInstalled`).

use super::log::LogBase;
use super::message::{Checkpoint, CheckpointCert, Message};
use super::node::{Node, Output, Persist, CHECKPOINTS_KEPT};
use super::types::{Index, NodeId};
use crate::crypto::{Digest, Signed};
use std::collections::{BTreeMap, VecDeque};

/// Our own snapshots remembered (base and digest): the latest may run ahead of the
/// checkpoint that is still gathering for the one before it.
const OWN_KEPT: usize = 4;

pub(super) struct Checkpoints {
    /// Per node, its latest distinct Checkpoints (at most `CHECKPOINTS_KEPT`).
    kept: Vec<VecDeque<Signed<Checkpoint>>>,
    /// Our latest snapshots, oldest first.
    own: VecDeque<(LogBase, Digest)>,
    /// The latest stable checkpoint we hold a certificate for.
    stable: Option<CheckpointCert>,
}

/// What to do with a snapshot a peer streams to us.
#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotVerdict {
    /// Its certificate is valid and it is past our commit point: assemble it.
    Wanted,
    /// Valid but of no use (we are at or past it), or not from whom we take it (raft).
    Unneeded,
    /// The certificate is no certificate: the sender misbehaves.
    Forged,
}

impl Checkpoints {
    pub fn new(n: usize, stable: Option<CheckpointCert>) -> Checkpoints {
        Checkpoints {
            kept: vec![VecDeque::new(); n],
            own: VecDeque::new(),
            stable,
        }
    }

    pub fn stable(&self) -> Option<&CheckpointCert> {
        self.stable.as_ref()
    }

    fn keep(&mut self, c: Signed<Checkpoint>) {
        let kept = &mut self.kept[c.body.from as usize];
        if kept.iter().any(|k| k.body == c.body) {
            return;
        }
        kept.push_back(c);
        if kept.len() > CHECKPOINTS_KEPT {
            kept.pop_front();
        }
    }

    /// The highest point above `floor` that q distinct nodes' Checkpoints agree on, as a
    /// certificate (one Checkpoint per signer).
    fn best(&self, q: usize, floor: Index) -> Option<CheckpointCert> {
        type Point = (Index, super::types::Term, Digest, Digest);
        let mut support: BTreeMap<Point, BTreeMap<NodeId, &Signed<Checkpoint>>> = BTreeMap::new();
        for c in self.kept.iter().flatten() {
            if c.body.index > floor {
                support
                    .entry(c.body.point())
                    .or_default()
                    .insert(c.body.from, c);
            }
        }
        let (_, signers) = support.into_iter().rev().find(|(_, v)| v.len() >= q)?;
        Some(CheckpointCert {
            checkpoints: signers.into_values().cloned().collect(),
        })
    }

    fn own_at(&self, index: Index) -> Option<&(LogBase, Digest)> {
        self.own.iter().find(|(b, _)| b.index == index)
    }
}

impl Node {
    /// Our latest snapshot's base (durable with the host), if we took or installed one.
    pub fn latest_snapshot(&self) -> Option<LogBase> {
        self.checkpoints.own.back().map(|(b, _)| *b)
    }

    /// After applying `index`: every `checkpoint_interval` entries, ask the host for a
    /// snapshot (it comes back as `Input::Snapshotted`).
    ///
    /// (PROTOCOL.md rule K1)
    pub(super) fn maybe_take_snapshot(&mut self, index: Index) {
        let every = self.cfg.checkpoint_interval;
        if every == 0 || !index.is_multiple_of(every) {
            return;
        }
        let base = LogBase {
            index,
            term: self.log.term_at(index).expect("applied entries are held"),
            hash: self.log.hash_at(index).expect("applied entries are held"),
        };
        self.out.push(Output::TakeSnapshot(base));
    }

    /// The host holds our snapshot at `base`, durably: claim it. Signed variants sign and
    /// broadcast a Checkpoint and wait for q; `raft` trusts itself, as Raft compacts on
    /// its own snapshot.
    ///
    /// (PROTOCOL.md rule K1, K3)
    pub(super) fn snapshotted(&mut self, base: LogBase, state_digest: Digest) {
        let ours = self.log.hash_at(base.index) == Some(base.hash) || base == self.log.base();
        if !ours || base.index > self.applied {
            tracing::error!(
                node = self.cfg.id,
                index = base.index,
                "snapshot of another log"
            );
            return;
        }
        let cp = self.sign(Checkpoint {
            epoch: 0,
            from: self.cfg.id,
            index: base.index,
            term: base.term,
            chain_hash: base.hash,
            state_digest,
        });
        let cps = &mut self.checkpoints;
        cps.own.retain(|(b, _)| b.index != base.index);
        cps.own.push_back((base, state_digest));
        if cps.own.len() > OWN_KEPT {
            cps.own.pop_front();
        }
        if self.rules.signed {
            cps.keep(cp.clone());
            self.broadcast(Message::Checkpoint(cp));
            self.try_stabilize();
        } else if cps.stable.as_ref().is_none_or(|s| s.index() < base.index) {
            cps.stable = Some(CheckpointCert {
                checkpoints: vec![cp],
            });
            self.maybe_compact();
        }
    }

    /// (PROTOCOL.md rule K2)
    pub(super) fn on_checkpoint(&mut self, c: Signed<Checkpoint>) {
        let from = c.body.from;
        if !self.rules.signed || !self.is_peer(from) || c.body.epoch != 0 {
            return;
        }
        self.checkpoints.keep(c);
        self.try_stabilize();
    }

    /// q matching Checkpoints above our stable one make the new stable checkpoint.
    ///
    /// (PROTOCOL.md rule K2)
    fn try_stabilize(&mut self) {
        let floor = self.checkpoints.stable().map_or(0, |s| s.index());
        if let Some(cert) = self.checkpoints.best(self.quorum.q, floor) {
            tracing::debug!(
                node = self.cfg.id,
                index = cert.index(),
                "stable checkpoint"
            );
            self.checkpoints.stable = Some(cert);
            self.maybe_compact();
        }
    }

    /// Once the stable checkpoint is at one of our own snapshots, drop the log below it.
    /// Our snapshot must be the certified state: q signers include f+1 honest nodes that
    /// applied the same committed entries, so an honest node that disagrees has a broken
    /// state machine and stops rather than serve it.
    ///
    /// (PROTOCOL.md rule K3)
    fn maybe_compact(&mut self) {
        let Some(cert) = self.checkpoints.stable.clone() else {
            return;
        };
        let point = cert.first().expect("a certificate is never empty").point();
        let index = point.0;
        let Some((base, digest)) = self.checkpoints.own_at(index).copied() else {
            return; // we have not applied that far yet, or our snapshot moved on
        };
        assert_eq!(
            (base.index, base.term, base.hash, digest),
            point,
            "node {}: our snapshot at {index} differs from the stable checkpoint",
            self.cfg.id
        );
        if index <= self.log.base().index {
            return;
        }
        self.log.compact_to(index);
        self.out.push(Output::Persist(Persist::Compact(cert)));
    }

    /// Whether a certificate proves a stable checkpoint: q Checkpoints from distinct
    /// members that agree on one point (each signature checked by `auth`). In `raft`, one
    /// unsigned Checkpoint from the leader we follow now, which Raft trusts.
    ///
    /// (PROTOCOL.md rule K4)
    pub(super) fn valid_checkpoint_cert(&self, sender: NodeId, cert: &CheckpointCert) -> bool {
        let Some(first) = cert.first() else {
            return false;
        };
        if !self.rules.signed {
            let leader = self.follow.as_ref().map(|f| f.leader);
            return cert.checkpoints.len() == 1 && first.from == sender && leader == Some(sender);
        }
        let mut signers = std::collections::BTreeSet::new();
        // Distinct signers; with the rule off (planted bug) every Checkpoint counts.
        let distinct = self.rules.checkpoint_quorum;
        cert.checkpoints.iter().all(|c| {
            c.body.point() == first.point()
                && c.body.epoch == 0
                && self.is_node(c.body.from)
                && (signers.insert(c.body.from) || !distinct)
        }) && (if distinct {
            signers.len()
        } else {
            cert.checkpoints.len()
        }) >= self.quorum.q
    }

    /// Asked by the driver for each chunk a peer streams: assemble it or not.
    ///
    /// (PROTOCOL.md rule K4)
    pub fn snapshot_wanted(&self, sender: NodeId, cert: &CheckpointCert) -> SnapshotVerdict {
        if !self.valid_checkpoint_cert(sender, cert) {
            return if self.rules.signed {
                SnapshotVerdict::Forged
            } else {
                SnapshotVerdict::Unneeded
            };
        }
        if cert.index() <= self.hard.commit {
            SnapshotVerdict::Unneeded
        } else {
            SnapshotVerdict::Wanted
        }
    }

    /// The host installed a snapshot it asked us about: the log now starts at its base
    /// (keeping the entries past it if they continue its chain), and everything up to it
    /// is committed and applied.
    ///
    /// (PROTOCOL.md rule K4)
    pub(super) fn snapshot_installed(&mut self, cert: CheckpointCert) {
        let first = cert
            .first()
            .expect("a wanted certificate is not empty")
            .clone();
        assert!(
            first.index > self.hard.commit,
            "node {}: installed a snapshot at {} at or below our commit {}",
            self.cfg.id,
            first.index,
            self.hard.commit
        );
        let base = LogBase {
            index: first.index,
            term: first.term,
            hash: first.chain_hash,
        };
        let suffix = if self.log.hash_at(base.index) == Some(base.hash) {
            self.log
                .slice(base.index + 1, self.log.last_index())
                .to_vec()
        } else {
            Vec::new()
        };
        self.log.install_base(base);
        for e in &suffix {
            self.log.append(e.clone());
        }
        tracing::info!(
            node = self.cfg.id,
            index = base.index,
            kept = suffix.len(),
            "installed a snapshot"
        );
        self.hard.commit = base.index;
        self.applied = base.index;
        self.save_hard();
        let cps = &mut self.checkpoints;
        cps.own.clear();
        cps.own.push_back((base, first.state_digest));
        if cps.stable.as_ref().is_none_or(|s| s.index() < cert.index()) {
            cps.stable = Some(cert.clone());
        }
        // The suffix we kept is on disk already: the host writes the snapshot beside the
        // log (no gap in which a crash loses entries we may have Acked) and the Compact
        // frees what lies below. Without a suffix the snapshot replaces the whole log.
        self.out.push(Output::Persist(Persist::Compact(cert)));
    }

    /// Offers `j` our snapshot (it needs entries we no longer hold), at most once per
    /// election timeout: the transfer itself is the driver's.
    ///
    /// (PROTOCOL.md rule K4)
    pub(super) fn offer_snapshot(&mut self, j: NodeId) {
        let Some(cert) = self.checkpoints.stable().cloned() else {
            return;
        };
        let window = self.cfg.timing.election_ticks as u64;
        let ju = j as usize;
        if self.snapshot_sent[ju].is_some_and(|t| self.now - t < window) {
            return;
        }
        self.snapshot_sent[ju] = Some(self.now);
        tracing::debug!(
            node = self.cfg.id,
            to = j,
            index = cert.index(),
            "offering snapshot"
        );
        self.out.push(Output::SendSnapshot { to: j, cert });
    }
}
