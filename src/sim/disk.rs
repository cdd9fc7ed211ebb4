//! A node's simulated disk: it keeps exactly what the node asked to persist and synced, so
//! a restart brings back only that. Persists of the step under way stay pending until the
//! driver syncs them, as the runtime's one-record-per-batch log does; a crash before the
//! sync loses them whole (a torn or unsynced tail), never half of them.

use crate::protocol::{Durable, Entry, Evidence, HardState, Persist};

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pending: Vec<Persist>,
    hard: HardState,
    entries: Vec<Entry>,
    evidence: Vec<Evidence>,
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

    fn write(&mut self, p: &Persist) {
        match p {
            Persist::Hard(h) => self.hard = h.clone(),
            Persist::Append(es) => {
                for e in es {
                    assert_eq!(
                        e.index,
                        self.entries.len() as u64 + 1,
                        "disk appends are contiguous"
                    );
                    self.entries.push(e.clone());
                }
            }
            Persist::TruncateFrom(i) => self.entries.truncate((*i - 1) as usize),
            Persist::Evidence(e) => self.evidence.push(e.clone()),
        }
    }

    pub fn durable(&self) -> Durable {
        debug_assert!(self.pending.is_empty(), "restart reads a synced disk");
        Durable {
            hard: self.hard.clone(),
            entries: self.entries.clone(),
            evidence: self.evidence.clone(),
            snapshot: None,
        }
    }
}
