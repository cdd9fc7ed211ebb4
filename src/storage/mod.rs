//! Durable storage under a node's data directory: the protocol decides what to persist
//! (`Persist` outputs); this only makes it durable and brings it back.
//!
//! - `log.<id>`: the log, in segments (`segments`): one checksummed record per batch of
//!   `Persist` outputs: its appends and truncations in order, and the hard state (term,
//!   vote, lock, commit) after it if it changed. Replayed on start; the last hard state
//!   read is the current one. One record per batch makes each batch atomic (a torn record
//!   is cut whole) and costs one fsync; a separate hard-state file replaced by rename cost
//!   three syncs per batch and could leave a truncation durable without the hard state
//!   that retained what it cut. A torn tail of the last segment is cut; damage anywhere
//!   else refuses to start. A new segment begins every `SEGMENT_RECORDS` records or
//!   `SEGMENT_BYTES` bytes (its first record, the segment start, costs one more sync and
//!   a directory sync, once per segment).
//! - `snapshot`: the latest state-machine snapshot and the log base it replaces
//!   (`snapshot_file`), replaced atomically. Restart loads it, then the log after it;
//!   `compact_below` deletes the segments wholly below it, so restart work and disk use
//!   are bounded by the state plus the entries since the snapshot plus one segment.
//! - `stable`: the latest stable checkpoint's certificate (`stable_file`), replaced
//!   atomically when a stable checkpoint compacts the log.
//! - `evidence`: append-only records of Evidence.
//! - `format`: the version of the record format (`codec::DISK_VERSION`), written when the
//!   directory is first used. A directory of another version is refused, naming both
//!   versions; one with a log but no `format` file was written by a build before
//!   versioning (bincode, version 1). Records are never converted in place.
//! - `identity`: whose data this is (`Owner`).
//!
//! `apply` takes every `Persist` of a batch and syncs once per touched file before
//! returning: the caller releases the batch's messages only after that.

mod records;
mod segments;
mod snapshot_file;
mod stable_file;

pub use records::RecordError;
pub use segments::{segment_path, SegmentLimits, SEGMENT_BYTES, SEGMENT_RECORDS};
pub use snapshot_file::SnapshotWriter;

use crate::protocol::{Durable, Entry, Evidence, HardState, LogBase, Persist, Snapshot};
use records::{sync_dir, RecordFile};
use segments::{Batch, LogOp, Record, Replay, StoredRecord};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{path}: undecodable record {index}: {reason}")]
    Decode {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{path}: record {index} does not fit the log ({reason})")]
    Inconsistent {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{path} is in use by another running node (its lock is held); refusing to share it")]
    Locked { path: PathBuf },
    #[error("{path} belongs to {found}, not to {expected}; refusing to start on another node's data (use this node's own data directory)")]
    WrongNode {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: data format version {found}, but this build reads version {expected}; refusing to start (run the tangaroa build that wrote it: records are not converted, and a node must not start afresh in place of its own votes)")]
    Format {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    #[error("{path}: unreadable identity file: {reason}")]
    BadIdentity { path: PathBuf, reason: String },
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a segment's records borrow when written: the batch's own entries and hard state.
type BatchRef<'a> = Batch<&'a [Entry], &'a HardState>;

pub struct Storage {
    /// Held (`File::try_lock`) for as long as this storage is open: one node per data directory.
    _lock: std::fs::File,
    dir: PathBuf,
    /// The segment being written, and what it holds.
    segment: RecordFile,
    segment_id: u64,
    segment_records: u64,
    segment_bytes: u64,
    /// Live segments, ascending: `(id, index of the last entry when it began)`.
    segments: Vec<(u64, u64)>,
    limits: SegmentLimits,
    evidence: RecordFile,
    /// Entries currently in the log, for validating appends (kept in step with the node).
    last_index: u64,
    /// The hard state on disk: copied into the start of each new segment, so that older
    /// segments can be deleted.
    hard: HardState,
    /// The latest snapshot's base: nothing at or below it is ever truncated or rewritten.
    snapshot: Option<LogBase>,
    /// Log records read when this storage was opened (restart work).
    replayed_records: u64,
}

/// Whose data a directory holds: one node of one cluster (PROTOCOL.md, Durability). A
/// node that started on another node's data would forget its own votes and sign what
/// that node signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub cluster_id: String,
    pub node_id: u32,
    /// The node's Ed25519 public key, hex.
    pub public_key: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.public_key.get(..16).unwrap_or(&self.public_key);
        write!(
            f,
            "node {} of cluster '{}' (key {key}…)",
            self.node_id, self.cluster_id
        )
    }
}

/// What the `format` file holds: this line and a newline.
fn format_line(version: u32) -> String {
    format!("tangaroa data format {version}")
}

/// Checks the data directory's format version, recording it the first time. Called with
/// the directory's lock held, before its files are read.
fn check_format(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join("format");
    let refuse = |found: String| StorageError::Format {
        path: path.clone(),
        found,
        expected: crate::codec::DISK_VERSION,
    };
    match crate::config::read_bounded_string(&path, 4096) {
        Ok(text) => {
            let text = text.trim();
            if text == format_line(crate::codec::DISK_VERSION) {
                return Ok(());
            }
            let found = text
                .strip_prefix("tangaroa data format ")
                .filter(|v| !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
                .map_or_else(|| format!("unknown ({text:.40?})"), str::to_string);
            Err(refuse(found))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let segmented = segments::list(dir).is_ok_and(|ids| !ids.is_empty())
                || dir.join(snapshot_file::SNAPSHOT_FILE).exists();
            if segmented {
                // Written by this layout, whose format file was lost: not ours to guess.
                return Err(refuse(
                    "unknown (a segmented log without a format file)".into(),
                ));
            }
            let written = ["log", "evidence"]
                .iter()
                .any(|f| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.len() > 0));
            if written {
                return Err(refuse("1 (bincode, before format versions)".into()));
            }
            let tmp = dir.join("format.tmp");
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "{}", format_line(crate::codec::DISK_VERSION))?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| refuse(format!("unwritable: {e}")))?;
            sync_dir(dir)?;
            Ok(())
        }
        Err(e) => Err(refuse(format!("unreadable: {e}"))),
    }
}

/// Largest identity file read: it holds three short fields.
const MAX_OWNER_FILE: u64 = 64 << 10;

/// Records `owner` in `dir` the first time; after that, refuses a directory that names
/// another owner. Called with the directory's lock held, before its files are read.
fn bind_owner(dir: &Path, owner: &Owner) -> Result<(), StorageError> {
    let path = dir.join("identity");
    let bad = |reason: String| StorageError::BadIdentity {
        path: path.clone(),
        reason,
    };
    match std::fs::metadata(&path) {
        Ok(m) => {
            if m.len() > MAX_OWNER_FILE {
                return Err(bad(format!("{} bytes", m.len())));
            }
            let text = crate::config::read_bounded_string(&path, MAX_OWNER_FILE)
                .map_err(|e| bad(e.to_string()))?;
            let found: Owner = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if found != *owner {
                return Err(StorageError::WrongNode {
                    path: dir.to_path_buf(),
                    found: found.to_string(),
                    expected: owner.to_string(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = toml::to_string(owner).map_err(|e| bad(e.to_string()))?;
            let tmp = dir.join("identity.tmp");
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| bad(e.to_string()))?;
            sync_dir(dir)?;
            Ok(())
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

impl Storage {
    /// Opens a node's data directory: binds it to `owner` the first time, refuses it if
    /// it belongs to another node or cluster, and returns what the node gets back.
    pub fn open_as(dir: &Path, owner: &Owner) -> Result<(Storage, Durable), StorageError> {
        Storage::open_inner(dir, Some(owner))
    }

    /// Opens (creating) the data directory and returns what a restarting node gets back,
    /// whoever it belongs to (for reading a stopped node's log).
    pub fn open(dir: &Path) -> Result<(Storage, Durable), StorageError> {
        Storage::open_inner(dir, None)
    }

    fn open_inner(dir: &Path, owner: Option<&Owner>) -> Result<(Storage, Durable), StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The directory itself may be new: make its entry durable too.
            sync_dir(parent)?;
        }
        let lock = lock_dir(dir)?;
        check_format(dir)?;
        if let Some(owner) = owner {
            bind_owner(dir, owner)?;
        }
        snapshot_file::remove_stray_tmp(dir)?;
        let snapshot = snapshot_file::read(dir, crate::kv::MAX_SNAPSHOT_BYTES)?;
        let (evidence, ev) = open_evidence(dir)?;
        let base = snapshot.as_ref().map(|s| s.meta.base);
        let (opened, replay) = load_log(dir, snapshot.as_ref().map(|s| &s.meta))?;
        // The files may have just been created: make their directory entries durable.
        sync_dir(dir)?;
        let mut storage = Storage {
            _lock: lock,
            dir: dir.to_path_buf(),
            segment: opened.file,
            segment_id: opened.id,
            segment_records: opened.segment_records,
            segment_bytes: opened.segment_bytes,
            segments: opened.segments,
            limits: SegmentLimits::default(),
            evidence,
            last_index: replay.last_index(),
            hard: replay.hard.clone(),
            snapshot: base,
            replayed_records: opened.records,
        };
        if storage.segment_records == 0 {
            // A new segment, or one whose start a crash tore off: (re)write its start.
            storage.write_segment_start()?;
        }
        let durable = Durable {
            hard: replay.hard,
            entries: replay.entries,
            evidence: ev,
            snapshot: snapshot.map(|s| Snapshot {
                base: s.meta.base,
                state: s.state,
            }),
            stable: stable_file::read(dir)?,
        };
        Ok((storage, durable))
    }

    /// Makes a step's `Persist` outputs durable, in order, with one sync per file.
    ///
    /// A batch is one record, so a crash keeps all of it or none. A batch too large for
    /// one record (its size is decided by what peers and clients sent) is split: its
    /// leading appends, up to the first truncation, go first in records of their own
    /// (entries held but never Acked are what a node that received them and crashed has),
    /// and the truncations and the hard state stay together in the last record. If even
    /// that is too large, nothing is written and the error says so.
    ///
    /// Snapshot operations (`Snapshot`, `InstallSnapshot`, `Compact`) are carried out in
    /// their place: the log records before one are written and synced first, then it, then
    /// the rest (a batch without one costs one sync, as before).
    pub fn apply(&mut self, ops: &[&Persist]) -> Result<(), StorageError> {
        let mut run: Vec<&Persist> = Vec::new();
        for op in ops {
            match op {
                Persist::Snapshot(_) | Persist::InstallSnapshot(_) | Persist::Compact(_) => {
                    self.apply_records(&run)?;
                    run.clear();
                    self.apply_snapshot_op(op)?;
                }
                _ => run.push(op),
            }
        }
        self.apply_records(&run)
    }

    fn apply_snapshot_op(&mut self, op: &Persist) -> Result<(), StorageError> {
        match op {
            Persist::Snapshot(s) => self.write_snapshot(s.base, &s.state),
            Persist::InstallSnapshot(s) => self.install_snapshot(s.base, &s.state),
            Persist::Compact(cert) => {
                stable_file::write(&self.dir, cert)?;
                self.compact_below(cert.index()).map(|_| ())
            }
            _ => unreachable!("only snapshot operations come here"),
        }
    }

    /// The log records of a run of `Persist`s without snapshot operations.
    fn apply_records(&mut self, ops: &[&Persist]) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut batch: BatchRef<'_> = Batch {
            ops: Vec::new(),
            hard: None,
        };
        let mut last_index = self.last_index;
        let mut evidence = Vec::new();
        for op in ops {
            match op {
                Persist::Hard(h) => batch.hard = Some(h),
                Persist::Append(es) => {
                    if es.is_empty() {
                        continue;
                    }
                    if es.first().map(|e| e.index) != Some(last_index + 1) {
                        return Err(self.bug(format!(
                            "append from {:?} after {last_index}",
                            es.first().map(|e| e.index)
                        )));
                    }
                    last_index += es.len() as u64;
                    batch.ops.push(LogOp::Append(es));
                }
                Persist::TruncateFrom(i) => {
                    if *i == 0 || *i > last_index + 1 {
                        return Err(self.bug(format!("truncate from {i} after {last_index}")));
                    }
                    if let Some(base) = self.snapshot.filter(|b| *i <= b.index) {
                        return Err(self.bug(format!(
                            "truncate from {i}, at or below the snapshot at {}",
                            base.index
                        )));
                    }
                    last_index = i - 1;
                    batch.ops.push(LogOp::TruncateFrom(*i));
                }
                Persist::Evidence(e) => evidence.push(e),
                Persist::Snapshot(_) | Persist::InstallSnapshot(_) | Persist::Compact(_) => {
                    return Err(self.bug("a snapshot operation among log records".into()))
                }
            }
        }
        let new_hard = batch.hard;
        let records: Vec<Vec<u8>> = if batch.ops.is_empty() && batch.hard.is_none() {
            Vec::new()
        } else {
            split(batch)
                .into_iter()
                .map(|b| encode(&Record::Batch(b)))
                .collect()
        };
        // Checked before anything is written, so a refused batch leaves no part behind.
        if let Some(r) = records
            .iter()
            .find(|r| r.len() > records::MAX_RECORD as usize)
        {
            return Err(RecordError::TooLarge {
                path: segment_path(&self.dir, self.segment_id),
                len: r.len(),
            }
            .into());
        }
        if !records.is_empty() && self.segment_is_full() {
            self.begin_segment(self.segment_id.saturating_add(1))?;
        }
        // Between records of one write, a sync: a crash can then tear only the last one,
        // so an intact record after a damaged one always means damage, never a torn tail
        // (`records`). One record, the usual case, costs one sync as before.
        let many_ev = evidence.len() > 1;
        for e in evidence {
            self.evidence.append(&encode(e))?;
            if many_ev {
                self.evidence.sync()?;
            }
        }
        for r in &records {
            self.segment_bytes = self.segment_bytes.saturating_add(self.segment.append(r)?);
            self.segment_records += 1;
            if records.len() > 1 {
                self.segment.sync()?;
            }
        }
        self.last_index = last_index;
        self.segment.sync()?;
        self.evidence.sync()?;
        if let Some(h) = new_hard {
            self.hard = h.clone();
        }
        Ok(())
    }

    fn segment_is_full(&self) -> bool {
        let began_at = self.segments.last().map_or(0, |(_, start)| *start);
        self.segment_records >= self.limits.records
            || self.segment_bytes >= self.limits.bytes
            || (self.limits.entries > 0
                && self.last_index.saturating_sub(began_at) >= self.limits.entries)
    }

    /// Makes `id` the segment being written, beginning it with its start. The previous
    /// segment is synced first, so only the newest segment can ever have a torn tail.
    fn begin_segment(&mut self, id: u64) -> Result<(), StorageError> {
        debug_assert!(id > self.segment_id, "segment ids only grow");
        self.segment.sync()?;
        let path = segment_path(&self.dir, id);
        let (file, records, _) = RecordFile::open(&path)?;
        if !records.is_empty() {
            return Err(self.bug(format!("{} already holds records", path.display())));
        }
        self.segment = file;
        self.segment_id = id;
        self.segment_records = 0;
        self.segment_bytes = 0;
        self.write_segment_start()
    }

    /// Writes the current segment's first record: where the log ends and the hard state.
    /// Synced with the directory, so the new file's name is durable before records follow.
    fn write_segment_start(&mut self) -> Result<(), StorageError> {
        debug_assert_eq!(self.segment_records, 0, "a start begins its segment");
        let start: Record<&[Entry], &HardState> = Record::Start {
            last_index: self.last_index,
            hard: &self.hard,
        };
        self.segment_bytes = self.segment.append(&encode(&start))?;
        self.segment_records = 1;
        self.segment.sync()?;
        sync_dir(&self.dir)?;
        self.segments.retain(|(id, _)| *id != self.segment_id);
        self.segments.push((self.segment_id, self.last_index));
        Ok(())
    }

    /// Starts writing a snapshot's state to disk, chunk by chunk as it is produced or
    /// received (`SnapshotWriter::push`), so that neither side holds the encoding whole.
    /// Nothing of it is the snapshot until `commit_snapshot` or
    /// `commit_installed_snapshot`; a writer dropped unfinished leaves a temp file that
    /// the next one replaces and opening removes.
    pub fn begin_snapshot(&self) -> Result<SnapshotWriter, StorageError> {
        Ok(SnapshotWriter::begin(
            &self.dir,
            crate::kv::MAX_SNAPSHOT_BYTES,
        )?)
    }

    /// Durably records `state` as the state-machine snapshot at `base`, replacing the
    /// previous snapshot (atomically). The log is unchanged: `compact_below` frees it.
    /// `base` must be in the log (a node snapshots what it applied) and not below the
    /// previous snapshot.
    pub fn write_snapshot(&mut self, base: LogBase, state: &[u8]) -> Result<(), StorageError> {
        let mut w = self.begin_snapshot()?;
        w.push(state)?;
        self.commit_snapshot(w, base)
    }

    /// `write_snapshot` for a state streamed through `writer`.
    pub fn commit_snapshot(
        &mut self,
        writer: SnapshotWriter,
        base: LogBase,
    ) -> Result<(), StorageError> {
        if base.index > self.last_index {
            return Err(self.bug(format!(
                "snapshot at {} beyond the log's last entry {} (a peer's snapshot is installed, not written)",
                base.index, self.last_index
            )));
        }
        self.check_snapshot_order(base)?;
        let meta = snapshot_file::Meta {
            base,
            replaced_log: None,
        };
        writer.finish(&self.dir, &meta)?;
        self.snapshot = Some(base);
        Ok(())
    }

    /// Installs a peer's snapshot at `base` in place of the whole log: after it, the log
    /// is empty at `base`, even if a crash comes before anything else is written. The
    /// snapshot names the new first segment and carries the hard state, so the old
    /// segments are dead the moment it is renamed into place; they are deleted before
    /// this returns (or on the next open, after a crash).
    pub fn install_snapshot(&mut self, base: LogBase, state: &[u8]) -> Result<(), StorageError> {
        let mut w = self.begin_snapshot()?;
        w.push(state)?;
        self.commit_installed_snapshot(w, base)
    }

    /// `install_snapshot` for a state streamed through `writer` (as chunks arrived and
    /// passed `kv::SnapshotBuilder`, whose digest matched the certified one).
    pub fn commit_installed_snapshot(
        &mut self,
        writer: SnapshotWriter,
        base: LogBase,
    ) -> Result<(), StorageError> {
        self.check_snapshot_order(base)?;
        if base.index < self.hard.commit {
            return Err(self.bug(format!(
                "installing a snapshot at {} below the commit index {}",
                base.index, self.hard.commit
            )));
        }
        self.segment.sync()?;
        let first = self.segment_id.saturating_add(1);
        let meta = snapshot_file::Meta {
            base,
            replaced_log: Some((first, self.hard.clone())),
        };
        writer.finish(&self.dir, &meta)?;
        self.snapshot = Some(base);
        self.last_index = base.index;
        self.begin_segment(first)?;
        self.delete_segments_before(first)?;
        Ok(())
    }

    fn check_snapshot_order(&self, base: LogBase) -> Result<(), StorageError> {
        match self.snapshot {
            Some(old) if base.index < old.index => Err(self.bug(format!(
                "snapshot at {} below the stored one at {}",
                base.index, old.index
            ))),
            _ => Ok(()),
        }
    }

    /// Frees the log at and below `index`, which the snapshot must cover: deletes every
    /// segment before the newest one that began with the log at or below `index`.
    /// The snapshot is the durable base: a restart loads it and replays only what
    /// follows it. Returns how many segments were deleted.
    pub fn compact_below(&mut self, index: u64) -> Result<usize, StorageError> {
        match self.snapshot {
            Some(base) if index <= base.index => {}
            other => {
                return Err(self.bug(format!(
                    "compaction to {index} without a snapshot covering it (snapshot: {:?})",
                    other.map(|b| b.index)
                )))
            }
        }
        let keep_from = self
            .segments
            .iter()
            .rev()
            .find(|(_, start)| *start <= index)
            .map(|(id, _)| *id);
        match keep_from {
            Some(id) => self.delete_segments_before(id),
            None => Ok(0),
        }
    }

    /// Deletes live segments below `id`, oldest first (`segments` explains why a crash
    /// part way is safe), then syncs the directory once.
    fn delete_segments_before(&mut self, id: u64) -> Result<usize, StorageError> {
        debug_assert!(id <= self.segment_id, "the segment being written stays");
        let dead: Vec<u64> = self
            .segments
            .iter()
            .map(|(s, _)| *s)
            .take_while(|s| *s < id)
            .collect();
        for s in &dead {
            let path = segment_path(&self.dir, *s);
            std::fs::remove_file(&path).map_err(|source| RecordError::Io { path, source })?;
        }
        self.segments.retain(|(s, _)| *s >= id);
        if !dead.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(dead.len())
    }

    /// The latest snapshot's base, if any.
    pub fn snapshot_base(&self) -> Option<LogBase> {
        self.snapshot
    }

    /// Log records read when this storage was opened: the work of a restart.
    pub fn replayed_records(&self) -> u64 {
        self.replayed_records
    }

    /// How many log segments are on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// When to begin a new segment (tests and small-scale runs use smaller segments).
    pub fn set_segment_limits(&mut self, limits: SegmentLimits) {
        assert!(
            limits.records >= 2,
            "a segment holds its start and at least one batch"
        );
        self.limits = limits;
    }

    /// Bytes of the files in the data directory (log segments, snapshot, evidence and
    /// the small bookkeeping files).
    pub fn disk_use(&self) -> Result<u64, StorageError> {
        let io = |source| RecordError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut total = 0u64;
        for item in std::fs::read_dir(&self.dir).map_err(io)? {
            let meta = item.map_err(io)?.metadata().map_err(io)?;
            if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
        Ok(total)
    }

    fn bug(&self, reason: String) -> StorageError {
        StorageError::Inconsistent {
            path: PathBuf::from("(persist batch)"),
            index: 0,
            reason,
        }
    }
}

/// Most bytes of entries in one record of a split batch: well under `MAX_RECORD`, with
/// room for one more entry (an entry is bounded by the frame it arrived in).
const SPLIT_BYTES: u64 = (records::MAX_RECORD / 4) as u64;

/// The records a batch is written as: itself if it fits in one, else its leading appends
/// in chunks and the rest (from the first truncation on, and the hard state) last.
fn split<'a>(batch: Batch<&'a [Entry], &'a HardState>) -> Vec<Batch<&'a [Entry], &'a HardState>> {
    let size = crate::codec::encoded_size(&batch) as u64;
    // Room for the record's own tag around the batch.
    if size + 16 <= records::MAX_RECORD as u64 {
        return vec![batch];
    }
    let first_truncation = batch
        .ops
        .iter()
        .position(|op| matches!(op, LogOp::TruncateFrom(_)))
        .unwrap_or(batch.ops.len());
    let mut ops = batch.ops;
    let rest = ops.split_off(first_truncation);
    let mut out = Vec::new();
    let mut chunk: Vec<LogOp<&[Entry]>> = Vec::new();
    let mut used = 0u64;
    for op in ops {
        let LogOp::Append(es) = op else {
            continue; // only appends come before the first truncation
        };
        let mut start = 0;
        for (k, e) in es.iter().enumerate() {
            let n = crate::codec::encoded_size(e) as u64;
            if used > 0 && used.saturating_add(n) > SPLIT_BYTES {
                if k > start {
                    chunk.push(LogOp::Append(&es[start..k]));
                }
                start = k;
                out.push(Batch {
                    ops: std::mem::take(&mut chunk),
                    hard: None,
                });
                used = 0;
            }
            used = used.saturating_add(n);
        }
        if start < es.len() {
            chunk.push(LogOp::Append(&es[start..]));
        }
    }
    if !chunk.is_empty() {
        out.push(Batch {
            ops: chunk,
            hard: None,
        });
    }
    if !rest.is_empty() || batch.hard.is_some() {
        out.push(Batch {
            ops: rest,
            hard: batch.hard,
        });
    }
    out
}

/// Takes the data directory's lock, so a second node (or a reader) on the same directory
/// fails at once instead of cutting what looks to it like a torn tail of a live log.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StorageError::Dir {
            path: path.clone(),
            source,
        })?;
    // An exclusive advisory lock (flock on Unix), released when the file is closed.
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(std::fs::TryLockError::Error(source)) => Err(StorageError::Dir { path, source }),
    }
}

/// The live segments opened: the newest is the one to write to.
struct OpenedSegments {
    file: RecordFile,
    id: u64,
    segment_records: u64,
    segment_bytes: u64,
    segments: Vec<(u64, u64)>,
    /// Records read across all of them.
    records: u64,
    /// Segments found that are not part of the log.
    dead: Vec<u64>,
}

/// The segments to replay: those from `first_live` on, in the unbroken run of ids that
/// ends with the newest. Anything before a gap was being deleted by a compaction that a
/// crash interrupted (directory operations may become durable out of order); whether
/// the run is enough is checked after replay, against the snapshot.
fn live_run(ids: &[u64], first_live: u64) -> Vec<u64> {
    let mut run: Vec<u64> = Vec::new();
    for &id in ids.iter().rev() {
        if id < first_live || run.last().is_some_and(|next| *next != id + 1) {
            break;
        }
        run.push(id);
    }
    run.reverse();
    run
}

/// Replays the log after the snapshot described by `meta` (if any), checks that with the
/// snapshot it is whole, and only then deletes the segments found dead (so a directory
/// refused here keeps every file for whoever repairs it).
fn load_log(
    dir: &Path,
    meta: Option<&snapshot_file::Meta>,
) -> Result<(OpenedSegments, Replay), StorageError> {
    let (first_live, mut replay) = match meta.and_then(|m| m.replaced_log.clone()) {
        Some((first, hard)) => (first, Replay::after_install(hard)),
        None => (0, Replay::default()),
    };
    let opened = open_segments(dir, first_live, &mut replay)?;
    let base = meta.map_or(0, |m| m.base.index);
    replay
        .rebase(base)
        .map_err(|reason| StorageError::Inconsistent {
            path: dir.join(snapshot_file::SNAPSHOT_FILE),
            index: 0,
            reason,
        })?;
    if replay.hard.commit > replay.last_index() {
        return Err(StorageError::Inconsistent {
            path: segment_path(dir, opened.id),
            index: opened.segment_records as usize,
            reason: format!(
                "commit index {} beyond the log's last entry {}",
                replay.hard.commit,
                replay.last_index()
            ),
        });
    }
    delete_dead_segments(dir, &opened.dead)?;
    Ok((opened, replay))
}

/// Deletes segments that are not live: replaced by an installed snapshot, or left
/// behind by an interrupted compaction.
fn delete_dead_segments(dir: &Path, dead: &[u64]) -> Result<(), StorageError> {
    for id in dead {
        let path = segment_path(dir, *id);
        tracing::warn!(path = %path.display(), "deleting a segment no longer part of the log");
        std::fs::remove_file(&path).map_err(|source| RecordError::Io { path, source })?;
    }
    Ok(())
}

/// Replays the live segments into `replay` and opens the newest for writing (creating
/// the first one in a new directory, or after an installed snapshot).
fn open_segments(
    dir: &Path,
    first_live: u64,
    replay: &mut Replay,
) -> Result<OpenedSegments, StorageError> {
    let ids = segments::list(dir).map_err(|source| RecordError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let live = live_run(&ids, first_live);
    // The live run is a suffix of the ids: everything before it is dead.
    let dead = ids[..ids.len() - live.len()].to_vec();
    let newest = live
        .last()
        .copied()
        .unwrap_or_else(|| ids.last().map_or(1, |l| l + 1).max(first_live).max(1));
    let mut opened_segments = Vec::new();
    let mut records = 0u64;
    for &id in &live {
        let path = segment_path(dir, id);
        let bodies = if id == newest {
            Vec::new() // read below, where a torn tail is cut
        } else {
            records::read_sealed(&path)?
        };
        records += replay_segment(&path, bodies, replay, &mut opened_segments, id)?;
    }
    let path = segment_path(dir, newest);
    let (file, bodies, _) = RecordFile::open(&path)?;
    let segment_records = bodies.len() as u64;
    let segment_bytes = std::fs::metadata(&path)
        .map_err(|source| RecordError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    if live.contains(&newest) {
        records += replay_segment(&path, bodies, replay, &mut opened_segments, newest)?;
    }
    Ok(OpenedSegments {
        file,
        id: newest,
        segment_records,
        segment_bytes,
        segments: opened_segments,
        records,
        dead,
    })
}

/// Replays one segment's records; returns how many.
fn replay_segment(
    path: &Path,
    bodies: Vec<Vec<u8>>,
    replay: &mut Replay,
    segments: &mut Vec<(u64, u64)>,
    id: u64,
) -> Result<u64, StorageError> {
    let count = bodies.len() as u64;
    for (index, bytes) in bodies.iter().enumerate() {
        let record: StoredRecord =
            crate::codec::decode(bytes).map_err(|e| StorageError::Decode {
                path: path.to_path_buf(),
                index,
                reason: e.to_string(),
            })?;
        replay
            .apply(record, index == 0)
            .map_err(|reason| StorageError::Inconsistent {
                path: path.to_path_buf(),
                index,
                reason,
            })?;
        if index == 0 {
            segments.push((id, replay.last_index()));
        }
    }
    Ok(count)
}

/// Opens the evidence file and reads what it holds.
fn open_evidence(dir: &Path) -> Result<(RecordFile, Vec<Evidence>), StorageError> {
    let path = dir.join("evidence");
    let (file, records, _) = RecordFile::open(&path)?;
    let mut ev = Vec::new();
    for (index, bytes) in records.iter().enumerate() {
        let e: Evidence = crate::codec::decode(bytes).map_err(|e| StorageError::Decode {
            path: path.clone(),
            index,
            reason: e.to_string(),
        })?;
        ev.push(e);
    }
    Ok((file, ev))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Signed;
    use crate::protocol::{Op, Payload, Request};
    // (`big_entry` builds entries at the operation size limit.)
    use std::io::Write;

    fn entry(index: u64) -> Entry {
        let op = Op::Put {
            key: "k".into(),
            value: index.to_string().into(),
        };
        Entry {
            term: 1,
            index,
            payload: Payload::Request(Signed {
                body: Request {
                    client: 1,
                    seq: index,
                    op,
                },
                sig: None,
            }),
        }
    }

    /// Cuts the last `bytes` bytes off a file, as a crash in mid-write leaves it.
    fn tear(path: &Path, bytes: u64) {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len - bytes)
            .unwrap();
    }

    fn append(s: &mut Storage, from: u64, to: u64) {
        let op = Persist::Append((from..=to).map(entry).collect());
        s.apply(&[&op]).unwrap();
    }

    #[test]
    fn what_was_applied_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert!(d.entries.is_empty() && d.hard == HardState::default());
        append(&mut s, 1, 5);
        let hard = HardState {
            term: 3,
            commit: 2,
            ..Default::default()
        };
        s.apply(&[
            &Persist::TruncateFrom(4),
            &Persist::Append(vec![entry(4)]),
            &Persist::Hard(hard.clone()),
        ])
        .unwrap();
        drop(s);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries, (1..=4).map(entry).collect::<Vec<_>>());
        assert_eq!(d.hard, hard);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 3);
        append(&mut s, 4, 4);
        drop(s);
        let path = segment_path(dir.path(), 1);
        // A crash in the middle of the last append.
        tear(&path, 5);
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries.len(), 3);
        // And appending goes on from there.
        append(&mut s, 4, 4);
        drop(s);
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 4);
        // A header cut short is a torn tail too.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[7, 0])
            .unwrap();
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 4);
    }

    #[test]
    fn a_damaged_middle_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 2);
        append(&mut s, 3, 4);
        drop(s);
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0xff; // inside the first record's body
        std::fs::write(&path, &bytes).unwrap();
        let err = Storage::open(dir.path()).err().expect("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("corrupt record at byte 0") && msg.contains("refusing"),
            "{msg}"
        );
        // Nothing was cut.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn hard_state_is_replaced_whole_and_a_torn_one_leaves_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        let hard = |term| HardState {
            term,
            commit: 1,
            ..Default::default()
        };
        // Listed before the entries it commits: still written after them.
        s.apply(&[&Persist::Hard(hard(1)), &Persist::Append(vec![entry(1)])])
            .unwrap();
        s.apply(&[&Persist::Hard(hard(2))]).unwrap();
        drop(s);
        assert_eq!(Storage::open(dir.path()).unwrap().1.hard, hard(2));
        // A crash while writing the newer one: the older one stands, whole.
        tear(&segment_path(dir.path(), 1), 3);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!((d.hard, d.entries.len()), (hard(1), 1));
    }

    #[test]
    fn a_batch_is_durable_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 3);
        // A truncation and the hard state that goes with it, torn mid-write.
        let hard = HardState {
            term: 2,
            ..Default::default()
        };
        s.apply(&[&Persist::TruncateFrom(2), &Persist::Hard(hard)])
            .unwrap();
        drop(s);
        tear(&segment_path(dir.path(), 1), 2);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(
            (d.entries.len(), d.hard.term),
            (3, 0),
            "neither half survives"
        );
    }

    #[test]
    fn a_zero_filled_tail_is_cut_and_a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 2);
        let err = Storage::open(dir.path()).err().expect("locked");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(s);
        // Power loss after the file grew but before its pages were written.
        std::fs::OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 1))
            .unwrap()
            .write_all(&[0; 4096])
            .unwrap();
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 2);
    }

    fn big_entry(index: u64) -> Entry {
        let mut e = entry(index);
        if let Payload::Request(r) = &mut e.payload {
            r.body.op = Op::Put {
                key: "k".into(),
                value: "v".repeat(crate::protocol::MAX_OP_BYTES - 1).into(),
            };
        }
        e
    }

    /// 1100 requests at the 64 KiB limit in one batch (70 MB, over the 64 MiB record
    /// limit) were an `assert!` that killed the node; now they are written in several
    /// records and all come back, with the hard state.
    #[test]
    fn a_batch_over_the_record_limit_is_split_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 2);
        let entries: Vec<Entry> = (3..=1102).map(big_entry).collect();
        let hard = HardState {
            term: 4,
            commit: 2,
            ..Default::default()
        };
        let op = Persist::Append(entries);
        s.apply(&[&op, &Persist::Hard(hard.clone())]).unwrap();
        drop(s);
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries.len(), 1102);
        assert_eq!(d.hard, hard);
        // A truncation with too much after it cannot be split: an error, nothing written.
        let huge = Persist::Append((2..=1101).map(big_entry).collect());
        let err = s
            .apply(&[&Persist::TruncateFrom(2), &huge])
            .expect_err("refused");
        assert!(err.to_string().contains("exceeds"), "{err}");
        drop(s);
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 1102);
    }

    /// A length field damaged to point past the end of the file looked like a torn tail:
    /// the record and the intact ones after it were cut (synced entries and a vote lost).
    /// Now the intact record after it shows the damage is in the middle: refused, naming
    /// the file and the offset, and nothing is cut.
    #[test]
    fn a_damaged_length_followed_by_intact_records_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 2);
        let second = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len() as usize;
        append(&mut s, 3, 4);
        s.apply(&[&Persist::Hard(HardState {
            term: 5,
            ..Default::default()
        })])
        .unwrap();
        drop(s);
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[second + 2] ^= 0x10; // the second record's length: +1 MiB, past the end
        std::fs::write(&path, &bytes).unwrap();
        let msg = Storage::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains(&format!("corrupt record at byte {second}"))
                && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
        // The same damage in the last record is a torn tail: cut, the rest kept.
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 2);
        let last = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len() as usize;
        append(&mut s, 3, 4);
        drop(s);
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[last + 2] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 2);
    }

    /// A directory records its owner on first use and refuses another node or cluster
    /// with a message naming both.
    #[test]
    fn a_directory_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        append(&mut s, 1, 3);
        drop(s);
        let format = dir.path().join("format");
        let text = std::fs::read_to_string(&format).unwrap();
        assert_eq!(
            text.trim(),
            format!("tangaroa data format {}", crate::codec::DISK_VERSION)
        );
        let refused = |what: &str| {
            let msg = Storage::open(dir.path()).err().expect(what).to_string();
            assert!(
                msg.contains(&format!(
                    "this build reads version {}",
                    crate::codec::DISK_VERSION
                )) && msg.contains("refusing to start"),
                "{what}: {msg}"
            );
            msg
        };
        // Written by a later (or earlier) build.
        std::fs::write(&format, "tangaroa data format 4\n").unwrap();
        assert!(refused("a later version").contains("data format version 4,"));
        // Version 2 kept the log in one file, without segments or snapshots.
        std::fs::write(&format, "tangaroa data format 2\n").unwrap();
        assert!(refused("the unsegmented log").contains("data format version 2,"));
        std::fs::write(&format, "something else").unwrap();
        assert!(refused("garbage").contains("unknown"));
        // Segments without a format file: the file was lost, the version is unknown.
        std::fs::remove_file(&format).unwrap();
        assert!(refused("format file lost").contains("without a format file"));
        // A log file without a format file is a bincode-era directory (version 1).
        let old = tempfile::tempdir().unwrap();
        std::fs::write(old.path().join("log"), b"bincode records").unwrap();
        let msg = Storage::open(old.path()).err().expect("v1").to_string();
        assert!(msg.contains("data format version 1 (bincode"), "{msg}");
        // The refusals changed nothing: with the file back, the log is whole.
        std::fs::write(&format, text).unwrap();
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 3);
    }

    #[test]
    fn a_data_directory_belongs_to_one_node_of_one_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let owner = |cluster: &str, node, key: &str| Owner {
            cluster_id: cluster.into(),
            node_id: node,
            public_key: key.into(),
        };
        let me = owner("c1", 0, "aa00");
        let (mut s, _) = Storage::open_as(dir.path(), &me).unwrap();
        append(&mut s, 1, 2);
        drop(s);
        assert_eq!(
            Storage::open_as(dir.path(), &me).unwrap().1.entries.len(),
            2
        );
        for other in [
            owner("c1", 3, "bb33"),
            owner("c2", 0, "aa00"),
            owner("c1", 0, "cc00"),
        ] {
            let msg = Storage::open_as(dir.path(), &other)
                .err()
                .expect("refused")
                .to_string();
            assert!(
                msg.contains("belongs to node 0 of cluster 'c1'") && msg.contains("refusing"),
                "{msg}"
            );
        }
        // Reading a stopped node's log needs no owner.
        assert_eq!(Storage::open(dir.path()).unwrap().1.entries.len(), 2);
        // A damaged identity file is an error, not a panic or an adoption.
        std::fs::write(dir.path().join("identity"), b"\xff garbage").unwrap();
        assert!(Storage::open_as(dir.path(), &me).is_err());
    }

    #[test]
    fn a_commit_index_beyond_the_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        s.apply(&[&Persist::Hard(HardState {
            commit: 3,
            ..Default::default()
        })])
        .unwrap();
        drop(s);
        let msg = Storage::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(msg.contains("beyond"), "{msg}");
    }

    fn base_at(index: u64) -> LogBase {
        LogBase {
            index,
            term: 1,
            hash: crate::crypto::sha256(&index.to_le_bytes()),
        }
    }

    /// One batch: entry `index` and a hard state committing it, as a node writes them.
    fn append_committed(s: &mut Storage, index: u64) {
        let hard = HardState {
            term: 1,
            commit: index,
            ..Default::default()
        };
        s.apply(&[&Persist::Append(vec![entry(index)]), &Persist::Hard(hard)])
            .unwrap();
    }

    fn small_segments(s: &mut Storage, records: u64) {
        s.set_segment_limits(SegmentLimits {
            records,
            bytes: SEGMENT_BYTES,
            entries: 0,
        });
    }

    /// Batches of many entries (a loaded leader's) are one record each, so the record
    /// limit alone let one segment hold 4096 batches, many checkpoint intervals, and
    /// compaction freed nothing. With the entries limit a segment spans about one
    /// interval, and the log on disk stays within a few intervals of entries.
    #[test]
    fn segments_end_after_an_interval_of_entries_so_batched_logs_compact_too() {
        const K: u64 = 50;
        const BATCH: u64 = 10;
        const ENTRIES: u64 = 3000;
        let run = |limits: SegmentLimits| {
            let dir = tempfile::tempdir().unwrap();
            let (mut s, _) = Storage::open(dir.path()).unwrap();
            s.set_segment_limits(limits);
            let mut kv = crate::kv::Kv::new();
            let mut most_log = 0u64;
            for first in (1..=ENTRIES).step_by(BATCH as usize) {
                let batch: Vec<Entry> = (first..first + BATCH).map(entry).collect();
                for e in &batch {
                    let Payload::Request(r) = &e.payload else {
                        unreachable!()
                    };
                    kv.apply(&r.body);
                }
                let last = first + BATCH - 1;
                let hard = HardState {
                    term: 1,
                    commit: last,
                    ..Default::default()
                };
                s.apply(&[&Persist::Append(batch), &Persist::Hard(hard)])
                    .unwrap();
                if last.is_multiple_of(K) {
                    s.write_snapshot(base_at(last), &kv.snapshot_bytes())
                        .unwrap();
                    s.compact_below(last).unwrap();
                }
                let log: u64 = segments::list(dir.path())
                    .unwrap()
                    .iter()
                    .map(|id| {
                        std::fs::metadata(segment_path(dir.path(), *id))
                            .unwrap()
                            .len()
                    })
                    .sum();
                most_log = most_log.max(log);
            }
            most_log
        };
        let entry_bound = crate::codec::encoded_size(&entry(ENTRIES)) as u64 + 16;
        let limited = run(SegmentLimits::for_checkpoint_interval(K));
        // The segment holding the base (< K + BATCH entries before it), the entries up
        // to the next checkpoint (< K + BATCH), and every segment's start record.
        let bound = (2 * (K + BATCH) + BATCH) * entry_bound + 4096;
        assert!(limited <= bound, "{limited} bytes of log, bound {bound}");
        let unlimited = run(SegmentLimits::default());
        assert!(
            unlimited >= ENTRIES * entry_bound / 2,
            "without the entries limit the whole history stays: {unlimited} bytes"
        );
    }

    #[test]
    fn restart_loads_the_snapshot_and_the_log_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        small_segments(&mut s, 4);
        for i in 1..=30 {
            append_committed(&mut s, i);
        }
        s.write_snapshot(base_at(20), b"state at 20").unwrap();
        let deleted = s.compact_below(20).unwrap();
        assert!(deleted > 0, "whole segments below the snapshot are deleted");
        drop(s);
        let (s, d) = Storage::open(dir.path()).unwrap();
        let snap = d.snapshot.expect("a snapshot");
        assert_eq!(snap.base, base_at(20));
        assert_eq!(snap.state, b"state at 20");
        assert_eq!(d.entries, (21..=30).map(entry).collect::<Vec<_>>());
        assert_eq!(d.hard.commit, 30);
        assert_eq!(s.snapshot_base(), Some(base_at(20)));
        // Without compaction the log keeps everything, but restart still starts at the base.
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        for i in 1..=5 {
            append_committed(&mut s, i);
        }
        s.write_snapshot(base_at(3), b"three").unwrap();
        drop(s);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries, vec![entry(4), entry(5)]);
    }

    /// The hard state is written only when it changes; a segment start copies it, so
    /// deleting the segment that held the last change loses nothing.
    #[test]
    fn compaction_never_loses_the_hard_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        small_segments(&mut s, 3);
        let hard = HardState {
            term: 7,
            voted: Some((7, 2)),
            commit: 1,
            ..Default::default()
        };
        s.apply(&[
            &Persist::Append(vec![entry(1)]),
            &Persist::Hard(hard.clone()),
        ])
        .unwrap();
        append(&mut s, 2, 2);
        for i in 3..=20 {
            append(&mut s, i, i);
        }
        s.write_snapshot(base_at(1), b"one").unwrap();
        // Nothing began at or below 1 except the first segment, which holds the hard state.
        assert_eq!(s.compact_below(1).unwrap(), 0);
        drop(s);
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.hard, hard);
        small_segments(&mut s, 3);
        s.write_snapshot(base_at(15), b"fifteen").unwrap();
        assert!(s.compact_below(15).unwrap() > 0);
        drop(s);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(
            d.hard, hard,
            "the hard state came back from a segment start"
        );
        assert_eq!(d.entries, (16..=20).map(entry).collect::<Vec<_>>());
    }

    /// Issue 11's bound at small scale: with a snapshot and compaction every K entries, the
    /// data directory stays under (state + K entries + one segment + bookkeeping), and a
    /// restart reads at most K + one segment of records (plus segment starts), however
    /// long the history.
    #[test]
    fn disk_use_and_restart_work_stay_bounded_by_the_state_and_the_interval() {
        const K: u64 = 50;
        const SEGMENT: u64 = 20;
        const ENTRIES: u64 = 3000;
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        small_segments(&mut s, SEGMENT);
        let mut kv = crate::kv::Kv::new();
        // A record: an entry and a hard state, with its header; at most this many bytes.
        let record_bound = crate::codec::encoded_size(&entry(ENTRIES)) as u64 + 64;
        let bookkeeping = 4096; // format, identity, lock, empty evidence
        let mut most = 0;
        for i in 1..=ENTRIES {
            append_committed(&mut s, i);
            let Payload::Request(r) = &entry(i).payload else {
                unreachable!()
            };
            kv.apply(&r.body);
            if i % K == 0 {
                s.write_snapshot(base_at(i), &kv.snapshot_bytes()).unwrap();
                s.compact_below(i).unwrap();
            }
            let state = kv.snapshot_bytes().len() as u64 + 4096; // and the snapshot's meta
            let bound = state + (K + SEGMENT + 2) * record_bound + bookkeeping;
            let used = s.disk_use().unwrap();
            assert!(
                used <= bound,
                "entry {i}: {used} bytes on disk, bound {bound}"
            );
            most = most.max(used);
        }
        assert!(s.segment_count() as u64 <= (K + SEGMENT) / SEGMENT + 2);
        drop(s);
        let (s, d) = Storage::open(dir.path()).unwrap();
        let starts = (K + SEGMENT) / SEGMENT + 2;
        assert!(
            s.replayed_records() <= K + SEGMENT + starts,
            "{} records replayed",
            s.replayed_records()
        );
        assert_eq!(d.snapshot.unwrap().base.index, ENTRIES);
        assert!(d.entries.is_empty());
        assert!(
            most < 64 << 10,
            "{most} bytes at most: far below the history"
        );
    }

    #[test]
    fn a_half_written_snapshot_is_ignored_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        for i in 1..=4 {
            append_committed(&mut s, i);
        }
        s.write_snapshot(base_at(2), b"two").unwrap();
        drop(s);
        // A crash while writing the next snapshot: its temp file was never renamed.
        let tmp = dir.path().join("snapshot.tmp");
        std::fs::write(&tmp, b"\x05\0\0\0 half of a snaps").unwrap();
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot.unwrap().state, b"two");
        assert_eq!(d.entries.len(), 2);
        assert!(!tmp.exists(), "the stray temp file is removed");
        // The snapshot itself damaged after it was synced: refused, never skipped.
        let path = dir.path().join("snapshot");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let msg = Storage::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(msg.contains("corrupt") && msg.contains("snapshot"), "{msg}");
        std::fs::write(&path, &bytes[..last]).unwrap();
        assert!(Storage::open(dir.path()).is_err(), "a short snapshot too");
    }

    #[test]
    fn an_installed_snapshot_replaces_the_whole_log_even_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        small_segments(&mut s, 3);
        append_committed(&mut s, 1);
        append(&mut s, 2, 9); // not committed: a divergent tail the snapshot replaces
        s.install_snapshot(base_at(40), b"forty").unwrap();
        assert_eq!(s.segment_count(), 1, "old segments are gone");
        append(&mut s, 41, 42);
        drop(s);
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot.unwrap().base, base_at(40));
        assert_eq!(d.entries, vec![entry(41), entry(42)]);
        assert_eq!(d.hard.commit, 1, "the hard state is kept");
        // A crash right after the snapshot was renamed into place, before the new segment
        // existed and the old ones were deleted: the old segments are dead all the same.
        append(&mut s, 43, 50);
        let old: Vec<(u64, Vec<u8>)> = segments::list(dir.path())
            .unwrap()
            .into_iter()
            .map(|id| (id, std::fs::read(segment_path(dir.path(), id)).unwrap()))
            .collect();
        s.install_snapshot(base_at(60), b"sixty").unwrap();
        drop(s);
        let newest = segments::list(dir.path()).unwrap().pop().unwrap();
        std::fs::remove_file(segment_path(dir.path(), newest)).unwrap();
        for (id, bytes) in &old {
            std::fs::write(segment_path(dir.path(), *id), bytes).unwrap();
        }
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot.unwrap().base, base_at(60));
        assert!(d.entries.is_empty());
        assert_eq!(d.hard.commit, 1);
    }

    #[test]
    fn truncating_or_compacting_past_the_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        for i in 1..=4 {
            append_committed(&mut s, i);
        }
        append(&mut s, 5, 6);
        assert!(s.compact_below(2).is_err(), "no snapshot yet");
        s.write_snapshot(base_at(4), b"four").unwrap();
        assert!(s.compact_below(5).is_err(), "beyond the snapshot");
        assert!(s.apply(&[&Persist::TruncateFrom(4)]).is_err());
        s.apply(&[&Persist::TruncateFrom(5)]).unwrap();
        assert!(s.write_snapshot(base_at(3), b"older").is_err());
        assert!(s.write_snapshot(base_at(9), b"beyond the log").is_err());
        drop(s);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert!(d.entries.is_empty());
        assert_eq!(d.snapshot.unwrap().base, base_at(4));
    }

    /// Directory operations may become durable out of order: a compaction cut short can
    /// leave a gap among the old segments. The run after the gap is replayed.
    #[test]
    fn an_interrupted_compaction_leaves_a_log_that_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        small_segments(&mut s, 3);
        for i in 1..=30 {
            append_committed(&mut s, i);
        }
        s.write_snapshot(base_at(25), b"25").unwrap();
        drop(s);
        let ids = segments::list(dir.path()).unwrap();
        assert!(ids.len() > 6);
        std::fs::remove_file(segment_path(dir.path(), ids[3])).unwrap();
        let (s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries, (26..=30).map(entry).collect::<Vec<_>>());
        assert_eq!(d.hard.commit, 30);
        assert_eq!(segments::list(dir.path()).unwrap(), ids[4..].to_vec());
        drop(s);
        // A gap above the snapshot is missing entries: refused.
        let ids = segments::list(dir.path()).unwrap();
        std::fs::remove_file(segment_path(dir.path(), ids[ids.len() - 2])).unwrap();
        let msg = Storage::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("neither in the log nor in the snapshot"),
            "{msg}"
        );
    }

    /// A crash just after a new segment was created, before its start was synced: the
    /// empty (or torn) segment gets its start on open, and the log goes on.
    #[test]
    fn a_new_segment_torn_before_its_start_is_begun_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        small_segments(&mut s, 3);
        for i in 1..=4 {
            append_committed(&mut s, i);
        }
        drop(s);
        let newest = segments::list(dir.path()).unwrap().pop().unwrap();
        std::fs::write(segment_path(dir.path(), newest + 1), b"\x09\0").unwrap();
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries.len(), 4);
        append_committed(&mut s, 5);
        drop(s);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.entries.len(), 5);
        assert_eq!(d.hard.commit, 5);
    }

    /// A state streamed chunk by chunk is the same snapshot; one over the bound is
    /// refused; an abandoned writer leaves nothing that counts.
    #[test]
    fn snapshots_stream_to_disk_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Storage::open(dir.path()).unwrap();
        for i in 1..=3 {
            append_committed(&mut s, i);
        }
        let mut kv = crate::kv::Kv::new();
        for i in 0..100u64 {
            let Payload::Request(r) = &entry(i + 1).payload else {
                unreachable!()
            };
            let mut req = r.body.clone();
            req.client = i as u32;
            kv.apply(&req);
        }
        let mut w = s.begin_snapshot().unwrap();
        for chunk in kv.snapshot_chunks(100) {
            w.push(&chunk).unwrap();
        }
        assert_eq!(w.len(), kv.snapshot_bytes().len() as u64);
        s.commit_snapshot(w, base_at(3)).unwrap();
        // Abandoned half way: the committed snapshot stands.
        let mut w = s.begin_snapshot().unwrap();
        w.push(b"half of another state").unwrap();
        drop(w);
        drop(s);
        let (mut s, d) = Storage::open(dir.path()).unwrap();
        let state = d.snapshot.unwrap().state;
        let (back, digest) = crate::kv::Kv::from_snapshot_bytes(&state).unwrap();
        assert_eq!((back, digest), (kv.clone(), kv.state_digest()));
        // A peer's snapshot, streamed and installed.
        let mut w = s.begin_snapshot().unwrap();
        for chunk in kv.snapshot_chunks(7) {
            w.push(&chunk).unwrap();
        }
        s.commit_installed_snapshot(w, base_at(50)).unwrap();
        drop(s);
        let (_, d) = Storage::open(dir.path()).unwrap();
        assert_eq!(d.snapshot.unwrap().state, kv.snapshot_bytes());
        assert!(d.entries.is_empty());
        // The bound is checked before writing.
        let mut w = SnapshotWriter::begin(dir.path(), 10).unwrap();
        w.push(b"0123456789").unwrap();
        assert!(w.push(b"x").is_err());
        assert_eq!(w.len(), 10);
    }
}
