//! A node's simulated disk: it keeps exactly what the node asked to persist and synced, so
//! a restart brings back only that. Persists of the step under way stay pending until the
//! driver syncs them, as the runtime's one-record-per-batch log does; a crash before the
//! sync loses them whole (a torn or unsynced tail), never half of them.
//!
//! Snapshots follow `storage::Storage`: written, installed and compacted durably at once
//! (the runtime's snapshot writes are synced before they return), and a restart gets the
//! latest snapshot and the log after its base.

use crate::protocol::{
    CheckpointCert, Durable, Entry, Evidence, HardState, LogBase, Persist, Snapshot,
};

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pending: Vec<Persist>,
    hard: HardState,
    /// Entries after `floor`: those at or below it were compacted away.
    entries: Vec<Entry>,
    floor: u64,
    evidence: Vec<Evidence>,
    snapshot: Option<Snapshot>,
    stable: Option<CheckpointCert>,
}

impl Disk {
    /// Queues `p` for the next sync.
    pub fn apply(&mut self, p: &Persist) {
        self.pending.push(p.clone());
    }

    /// The step's record is durable.
    pub fn sync(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            self.write(&p);
        }
    }

    /// A crash before the sync: the pending record never reaches the platter.
    pub fn lose_unsynced(&mut self) {
        self.pending.clear();
    }

    fn last_index(&self) -> u64 {
        self.floor + self.entries.len() as u64
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.base.index)
    }

    fn write(&mut self, p: &Persist) {
        match p {
            Persist::Hard(h) => self.hard = h.clone(),
            Persist::Append(es) => {
                for e in es {
                    assert_eq!(
                        e.index,
                        self.last_index() + 1,
                        "disk appends are contiguous"
                    );
                    self.entries.push(e.clone());
                }
            }
            Persist::TruncateFrom(i) => {
                assert!(
                    *i > self.snapshot_index(),
                    "truncation at or below the snapshot"
                );
                self.entries.truncate((*i - 1 - self.floor) as usize)
            }
            Persist::Evidence(e) => self.evidence.push(e.clone()),
            Persist::Snapshot(s) => self.write_snapshot(s.base, s.state.clone()),
            Persist::InstallSnapshot(s) => self.install_snapshot(s.base, s.state.clone()),
            Persist::Compact(cert) => {
                self.stable = Some(cert.clone());
                self.compact_below(cert.index());
            }
        }
    }

    pub fn durable(&self) -> Durable {
        debug_assert!(self.pending.is_empty(), "restart reads a synced disk");
        // A restart starts the log at the snapshot, as `Storage::open` does.
        let after = self.snapshot_index().saturating_sub(self.floor) as usize;
        Durable {
            hard: self.hard.clone(),
            entries: self.entries.get(after..).unwrap_or_default().to_vec(),
            evidence: self.evidence.clone(),
            snapshot: self.snapshot.clone(),
            stable: self.stable.clone(),
        }
    }
}

impl Disk {
    /// The node's own snapshot at `base` (in its log), as `Storage::write_snapshot`.
    pub fn write_snapshot(&mut self, base: LogBase, state: Vec<u8>) {
        assert!(
            base.index <= self.last_index() && base.index >= self.snapshot_index(),
            "a snapshot in the log, not below the previous one"
        );
        self.snapshot = Some(Snapshot { base, state });
    }

    /// A peer's snapshot in place of the whole log, as `Storage::install_snapshot`.
    pub fn install_snapshot(&mut self, base: LogBase, state: Vec<u8>) {
        assert!(
            base.index >= self.snapshot_index(),
            "snapshots never go back: installing {} over {}",
            base.index,
            self.snapshot_index()
        );
        self.entries.clear();
        self.floor = base.index;
        self.snapshot = Some(Snapshot { base, state });
    }

    /// Drops the entries at and below `index`, which the snapshot covers, as
    /// `Storage::compact_below` (which drops whole segments: a restart sees the same).
    pub fn compact_below(&mut self, index: u64) {
        assert!(
            index <= self.snapshot_index(),
            "compaction past the snapshot"
        );
        let dropped = index
            .saturating_sub(self.floor)
            .min(self.entries.len() as u64);
        self.entries.drain(..dropped as usize);
        self.floor += dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Signed;
    use crate::protocol::{Op, Payload, Request};

    fn entry(index: u64) -> Entry {
        Entry {
            term: 1,
            index,
            payload: Payload::Request(Signed {
                body: Request {
                    client: 1,
                    seq: index,
                    op: Op::Get { key: "k".into() },
                },
                sig: None,
            }),
        }
    }

    fn base(index: u64) -> LogBase {
        LogBase {
            index,
            ..LogBase::default()
        }
    }

    fn disk_with(n: u64) -> Disk {
        let mut d = Disk::default();
        d.apply(&Persist::Append((1..=n).map(entry).collect()));
        d.sync();
        d
    }

    #[test]
    fn a_restart_gets_the_snapshot_and_the_log_after_it() {
        let mut d = disk_with(10);
        d.write_snapshot(base(4), b"four".to_vec());
        assert_eq!(d.durable().entries, (5..=10).map(entry).collect::<Vec<_>>());
        d.compact_below(4);
        assert_eq!(d.durable().entries, (5..=10).map(entry).collect::<Vec<_>>());
        d.apply(&Persist::TruncateFrom(8));
        d.apply(&Persist::Append(vec![entry(8)]));
        d.sync();
        let durable = d.durable();
        assert_eq!(durable.entries, (5..=8).map(entry).collect::<Vec<_>>());
        assert_eq!(durable.snapshot.unwrap().state, b"four");
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let mut d = disk_with(3);
        d.install_snapshot(base(20), b"twenty".to_vec());
        assert!(d.durable().entries.is_empty());
        d.apply(&Persist::Append(vec![entry(21)]));
        d.sync();
        assert_eq!(d.durable().entries, vec![entry(21)]);
    }
}
