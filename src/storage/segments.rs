//! The log on disk as numbered segment files `log.<20-digit id>`, and its replay.
//!
//! Every segment's first record is a `Start`: where the log ended when the segment began,
//! and the whole hard state then. So a segment never depends on the ones before it for
//! its hard state, and whole segments below a snapshot can be deleted: replaying from any
//! segment knows nothing below its `Start` (the "floor"), and the snapshot covers that.
//!
//! Deleting old segments in ascending order is crash-safe without a marker: if a segment
//! `k` began with the log at or below the snapshot, then replaying from any earlier segment
//! `j` reaches `k` with its floor at or below `k`'s start too (entries above it were
//! truncated on the way, and a truncation below the floor lowers the floor).

use crate::protocol::{Entry, HardState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A new segment is begun once the current one holds this many records...
pub const SEGMENT_RECORDS: u64 = 4096;
/// ...or this many bytes. Compaction frees space a segment at a time, so a segment is
/// also the most the log keeps beyond the last checkpoint's entries.
pub const SEGMENT_BYTES: u64 = 64 << 20;

const PREFIX: &str = "log.";
const ID_DIGITS: usize = 20;

/// When a segment is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLimits {
    pub records: u64,
    pub bytes: u64,
    /// ...or once the log has grown this many entries since the segment began (0: no
    /// such limit). The runtime sets it to `checkpoint_interval`: a batch is one record
    /// however many entries it appends, so under load a segment of `records` records can
    /// hold many intervals' worth of entries, and compaction, which frees whole segments,
    /// would keep all of them.
    pub entries: u64,
}

impl Default for SegmentLimits {
    fn default() -> Self {
        SegmentLimits {
            records: SEGMENT_RECORDS,
            bytes: SEGMENT_BYTES,
            entries: 0,
        }
    }
}

impl SegmentLimits {
    /// The default limits, plus a new segment every `interval` entries (0: none), so that
    /// compaction at every stable checkpoint can free the log below it.
    pub fn for_checkpoint_interval(interval: u64) -> SegmentLimits {
        SegmentLimits {
            entries: interval,
            ..SegmentLimits::default()
        }
    }
}

/// One record of a segment. Generic so that writing borrows (`&[Entry]`, `&HardState`:
/// the same encoding) and reading owns.
#[derive(Serialize, Deserialize)]
pub enum Record<E, H> {
    /// The first record of every segment, and only there.
    Start {
        last_index: u64,
        hard: H,
    },
    Batch(Batch<E, H>),
}

/// One batch of `Persist` outputs, written as a single checksummed record so that a crash
/// keeps all of it or none of it. That matters: a truncation and the hard state that
/// retains the truncated lock chain (`replication::retain_lock_chain`), or an Ack floor
/// raised with a truncation (`catchup`), must never be half durable.
#[derive(Serialize, Deserialize)]
pub struct Batch<E, H> {
    pub ops: Vec<LogOp<E>>,
    /// The whole hard state after the batch, if it changed; the last one read is the
    /// current one.
    pub hard: Option<H>,
}

#[derive(Serialize, Deserialize)]
pub enum LogOp<E> {
    Append(E),
    TruncateFrom(u64),
}

pub type StoredRecord = Record<Vec<Entry>, HardState>;

/// The file of segment `id` in `dir` (a new directory's log begins with segment 1).
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{id:0ID_DIGITS$}"))
}

/// The segment ids in `dir`, ascending. Other files are not ours to judge.
pub fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let name = item?.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if digits.len() == ID_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = digits.parse() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The log as replayed so far: entries above `floor` (those at or below it are in
/// deleted segments, and must be covered by the snapshot).
#[derive(Default)]
pub struct Replay {
    pub floor: u64,
    pub entries: Vec<Entry>,
    pub hard: HardState,
    started: bool,
}

impl Replay {
    /// Starts from a snapshot that replaced the whole log (one installed from a peer), with
    /// the hard state it recorded.
    pub fn after_install(hard: HardState) -> Replay {
        Replay {
            hard,
            ..Replay::default()
        }
    }

    pub fn last_index(&self) -> u64 {
        self.floor.saturating_add(self.entries.len() as u64)
    }

    /// Applies one record; `first_in_segment` says whether it must be a `Start`.
    pub fn apply(&mut self, record: StoredRecord, first_in_segment: bool) -> Result<(), String> {
        match (record, first_in_segment) {
            (Record::Start { last_index, hard }, true) => self.start(last_index, hard),
            (Record::Batch(batch), false) => {
                for op in batch.ops {
                    match op {
                        LogOp::Append(es) => self.append(es)?,
                        LogOp::TruncateFrom(i) => self.truncate_from(i)?,
                    }
                }
                if let Some(h) = batch.hard {
                    self.hard = h;
                }
                Ok(())
            }
            (_, true) => Err("a segment that does not begin with its start".into()),
            (_, false) => Err("a segment start inside a segment".into()),
        }
    }

    fn start(&mut self, last_index: u64, hard: HardState) -> Result<(), String> {
        if !self.started {
            self.started = true;
            self.floor = last_index;
        } else if last_index != self.last_index() {
            return Err(format!(
                "a segment starting after entry {last_index}, but the log ends at {}",
                self.last_index()
            ));
        }
        self.hard = hard;
        Ok(())
    }

    fn append(&mut self, es: Vec<Entry>) -> Result<(), String> {
        for e in es {
            if e.index != self.last_index().saturating_add(1) {
                return Err(format!("entry {} after {}", e.index, self.last_index()));
            }
            self.entries.push(e);
        }
        Ok(())
    }

    fn truncate_from(&mut self, i: u64) -> Result<(), String> {
        if i == 0 || i > self.last_index().saturating_add(1) {
            return Err(format!(
                "truncate from {i} with the log ending at {}",
                self.last_index()
            ));
        }
        if i <= self.floor {
            // Below what this replay knows: the log now ends at i - 1, all unknown.
            self.floor = i - 1;
            self.entries.clear();
        } else {
            self.entries.truncate((i - 1 - self.floor) as usize);
        }
        Ok(())
    }

    /// Drops the entries at and below `base`, which a snapshot holds. Refuses if entries
    /// above it are missing (the floor is above it).
    pub fn rebase(&mut self, base: u64) -> Result<(), String> {
        if self.floor > base {
            return Err(format!(
                "entries {}..={} are neither in the log nor in the snapshot at {base}",
                base + 1,
                self.floor
            ));
        }
        let drop = (base - self.floor).min(self.entries.len() as u64) as usize;
        self.entries.drain(..drop);
        // What is left starts right after the base; if nothing is, the log ends there.
        self.floor = base;
        Ok(())
    }
}
