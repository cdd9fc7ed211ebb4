//! Durable storage under a node's data directory: the protocol decides what to persist
//! (`Persist` outputs); this only makes it durable and brings it back.
//!
//! - `log`: one checksummed record per batch of `Persist` outputs: its appends and
//!   truncations in order, and the hard state (term, vote, lock, commit) after it if it
//!   changed. Replayed on start; the last hard state in the file is the current one. One
//!   record per batch makes each batch atomic (a torn record is cut whole) and costs one
//!   fsync; a separate hard-state file replaced by rename cost three syncs per batch and
//!   could leave a truncation durable without the hard state that retained what it cut.
//!   A torn tail is cut; a damaged middle refuses to start.
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

pub use records::RecordError;

use crate::protocol::{Durable, Entry, Evidence, HardState, Persist};
use records::{sync_dir, RecordFile};
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

/// One batch of `Persist` outputs, written as a single checksummed record so that a crash
/// keeps all of it or none of it. That matters: a truncation and the hard state that
/// retains the truncated lock chain (`replication::retain_lock_chain`), or an Ack floor
/// raised with a truncation (`catchup`), must never be half durable.
///
/// Generic so that writing borrows the batch's entries (`&[Entry]`, `&HardState`: the
/// same encoding) instead of copying them on every persist; reading owns them.
#[derive(Serialize, Deserialize)]
struct Batch<E, H> {
    ops: Vec<LogOp<E>>,
    /// The whole hard state after the batch, if it changed; the last one in the file is
    /// the current one.
    hard: Option<H>,
}

#[derive(Serialize, Deserialize)]
enum LogOp<E> {
    Append(E),
    TruncateFrom(u64),
}

type StoredBatch = Batch<Vec<Entry>, HardState>;

pub struct Storage {
    /// Held (`File::try_lock`) for as long as this storage is open: one node per data directory.
    _lock: std::fs::File,
    log: RecordFile,
    log_path: PathBuf,
    evidence: RecordFile,
    /// Entries currently in the log, for validating appends (kept in step with the node).
    last_index: u64,
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
        let log_path = dir.join("log");
        let (log, records, _) = RecordFile::open(&log_path)?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut hard = HardState::default();
        for (index, bytes) in records.iter().enumerate() {
            let batch: StoredBatch =
                crate::codec::decode(bytes).map_err(|e| StorageError::Decode {
                    path: log_path.clone(),
                    index,
                    reason: e.to_string(),
                })?;
            let bad = |reason: String| StorageError::Inconsistent {
                path: log_path.clone(),
                index,
                reason,
            };
            for op in batch.ops {
                match op {
                    LogOp::Append(es) => {
                        for e in es {
                            if e.index != entries.len() as u64 + 1 {
                                return Err(bad(format!(
                                    "entry {} after {}",
                                    e.index,
                                    entries.len()
                                )));
                            }
                            entries.push(e);
                        }
                    }
                    LogOp::TruncateFrom(i) => {
                        if i == 0 || i > entries.len() as u64 + 1 {
                            return Err(bad(format!(
                                "truncate from {i} with {} entries",
                                entries.len()
                            )));
                        }
                        entries.truncate(i as usize - 1);
                    }
                }
            }
            if let Some(h) = batch.hard {
                hard = h;
            }
        }
        let ev_path = dir.join("evidence");
        let (evidence, ev_records, _) = RecordFile::open(&ev_path)?;
        let mut ev = Vec::new();
        for (index, bytes) in ev_records.iter().enumerate() {
            let e: Evidence = crate::codec::decode(bytes).map_err(|e| StorageError::Decode {
                path: ev_path.clone(),
                index,
                reason: e.to_string(),
            })?;
            ev.push(e);
        }
        if hard.commit > entries.len() as u64 {
            return Err(StorageError::Inconsistent {
                path: log_path.clone(),
                index: records.len(),
                reason: format!(
                    "commit index {} beyond the {} entries of the log",
                    hard.commit,
                    entries.len()
                ),
            });
        }
        let last_index = entries.len() as u64;
        // The files may have just been created: make their directory entries durable.
        sync_dir(dir)?;
        let storage = Storage {
            _lock: lock,
            log,
            log_path,
            evidence,
            last_index,
        };
        Ok((
            storage,
            Durable {
                hard,
                entries,
                evidence: ev,
            },
        ))
    }

    /// Makes a step's `Persist` outputs durable, in order, with one sync per file.
    ///
    /// A batch is one record, so a crash keeps all of it or none. A batch too large for
    /// one record (its size is decided by what peers and clients sent) is split: its
    /// leading appends, up to the first truncation, go first in records of their own
    /// (entries held but never Acked are what a node that received them and crashed has),
    /// and the truncations and the hard state stay together in the last record. If even
    /// that is too large, nothing is written and the error says so.
    pub fn apply(&mut self, ops: &[&Persist]) -> Result<(), StorageError> {
        let mut batch: Batch<&[Entry], &HardState> = Batch {
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
                    last_index = i - 1;
                    batch.ops.push(LogOp::TruncateFrom(*i));
                }
                Persist::Evidence(e) => evidence.push(e),
            }
        }
        let records: Vec<Vec<u8>> = if batch.ops.is_empty() && batch.hard.is_none() {
            Vec::new()
        } else {
            split(batch).iter().map(encode).collect()
        };
        // Checked before anything is written, so a refused batch leaves no part behind.
        if let Some(r) = records
            .iter()
            .find(|r| r.len() > records::MAX_RECORD as usize)
        {
            return Err(RecordError::TooLarge {
                path: self.log_path.clone(),
                len: r.len(),
            }
            .into());
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
            self.log.append(r)?;
            if records.len() > 1 {
                self.log.sync()?;
            }
        }
        self.last_index = last_index;
        self.log.sync()?;
        self.evidence.sync()?;
        Ok(())
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
    if size <= records::MAX_RECORD as u64 {
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
        let path = dir.path().join("log");
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
        let path = dir.path().join("log");
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
        tear(&dir.path().join("log"), 3);
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
        tear(&dir.path().join("log"), 2);
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
            .open(dir.path().join("log"))
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
        let second = std::fs::metadata(dir.path().join("log")).unwrap().len() as usize;
        append(&mut s, 3, 4);
        s.apply(&[&Persist::Hard(HardState {
            term: 5,
            ..Default::default()
        })])
        .unwrap();
        drop(s);
        let path = dir.path().join("log");
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
        let last = std::fs::metadata(dir.path().join("log")).unwrap().len() as usize;
        append(&mut s, 3, 4);
        drop(s);
        let path = dir.path().join("log");
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
        std::fs::write(&format, "tangaroa data format 3\n").unwrap();
        assert!(refused("a later version").contains("data format version 3,"));
        std::fs::write(&format, "something else").unwrap();
        assert!(refused("garbage").contains("unknown"));
        // A log without a format file is a bincode-era directory (version 1).
        std::fs::remove_file(&format).unwrap();
        assert!(refused("bincode era").contains("data format version 1 (bincode"));
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
}
