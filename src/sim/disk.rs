//! A node's simulated disk: it keeps exactly what the node asked to persist, so a restart
//! brings back only that.

use crate::protocol::{Durable, Entry, Evidence, HardState, Persist};

#[derive(Clone, Debug, Default)]
pub struct Disk {
    hard: HardState,
    entries: Vec<Entry>,
    evidence: Vec<Evidence>,
}

impl Disk {
    pub fn apply(&mut self, p: &Persist) {
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
        Durable {
            hard: self.hard.clone(),
            entries: self.entries.clone(),
            evidence: self.evidence.clone(),
        }
    }
}
