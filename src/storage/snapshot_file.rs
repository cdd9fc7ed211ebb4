//! The latest state-machine snapshot, in one file `snapshot`:
//! `[magic: 8 bytes][state length: u64 LE][state crc32: u32 LE][state bytes]`
//! `[meta length: u32 LE][meta crc32: u32 LE][postcard(Meta)]`.
//!
//! The state comes first so that it can be streamed to disk chunk by chunk as it is
//! produced or received (`SnapshotWriter`), the fixed header filled in at the end.
//! Written whole to `snapshot.tmp`, synced, renamed over `snapshot`, and the directory
//! synced: a crash leaves the old snapshot or the new one, never a mix, and at most a
//! stray temp file, which opening ignores and removes. A `snapshot` that does not check
//! out was damaged after it was synced: refused, never skipped (its log prefix is gone).

use super::records::{sync_dir, RecordError};
use crate::protocol::{HardState, LogBase};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const SNAPSHOT_FILE: &str = "snapshot";
pub const SNAPSHOT_TMP: &str = "snapshot.tmp";
const MAGIC: &[u8; 8] = b"TGSNAP03";
/// Magic, state length, state CRC-32.
const FIXED_HEADER: u64 = 8 + 8 + 4;
/// Meta length and CRC-32.
const META_HEADER: u64 = 8;
/// Largest meta record: the hard state with its retained lock chain fits a log record.
const MAX_META: u32 = super::records::MAX_RECORD;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub base: LogBase,
    /// For a snapshot installed from a peer, which replaced the whole log: the first
    /// segment of the new log (older ones are dead) and the hard state when it was
    /// installed. `None` for a node's own checkpoint: the log goes on past it.
    pub replaced_log: Option<(u64, HardState)>,
}

pub struct Loaded {
    pub meta: Meta,
    pub state: Vec<u8>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, after: u64) -> RecordError {
    RecordError::Corrupt {
        path: path.to_path_buf(),
        offset,
        after,
    }
}

/// A snapshot being written to the temp file, chunk by chunk; nothing of it is the
/// snapshot until `finish` renames it into place. Dropping it abandons it (the next
/// `begin` or open replaces or removes the temp file).
pub struct SnapshotWriter {
    file: File,
    path: PathBuf,
    state_len: u64,
    state_crc: crc32fast::Hasher,
    max_state: u64,
}

impl SnapshotWriter {
    /// Starts a new temp file in `dir`, replacing any abandoned one.
    pub fn begin(dir: &Path, max_state: u64) -> Result<SnapshotWriter, RecordError> {
        let path = dir.join(SNAPSHOT_TMP);
        let mut file = File::create(&path).map_err(io(&path))?;
        // The fixed header is written for real by `finish`, once the state is known.
        file.write_all(&[0; FIXED_HEADER as usize])
            .map_err(io(&path))?;
        Ok(SnapshotWriter {
            file,
            path,
            state_len: 0,
            state_crc: crc32fast::Hasher::new(),
            max_state,
        })
    }

    /// Appends the next chunk of the state; refused (nothing written) past the bound.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), RecordError> {
        let len = self.state_len.saturating_add(chunk.len() as u64);
        if len > self.max_state {
            return Err(RecordError::TooLarge {
                path: self.path.clone(),
                len: usize::try_from(len).unwrap_or(usize::MAX),
            });
        }
        self.file.write_all(chunk).map_err(io(&self.path))?;
        self.state_crc.update(chunk);
        self.state_len = len;
        Ok(())
    }

    /// Bytes of state written so far.
    pub fn len(&self) -> u64 {
        self.state_len
    }

    pub fn is_empty(&self) -> bool {
        self.state_len == 0
    }

    /// Writes the meta and the header, syncs, and renames the file over the snapshot.
    pub fn finish(mut self, dir: &Path, meta: &Meta) -> Result<(), RecordError> {
        let body = crate::codec::encode(meta);
        if body.len() > MAX_META as usize {
            return Err(RecordError::TooLarge {
                path: self.path.clone(),
                len: body.len(),
            });
        }
        let crc = std::mem::take(&mut self.state_crc).finalize();
        let write = |f: &mut File| -> std::io::Result<()> {
            f.write_all(&(body.len() as u32).to_le_bytes())?;
            f.write_all(&crc32fast::hash(&body).to_le_bytes())?;
            f.write_all(&body)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(MAGIC)?;
            f.write_all(&self.state_len.to_le_bytes())?;
            f.write_all(&crc.to_le_bytes())?;
            f.sync_all()?;
            std::fs::rename(&self.path, dir.join(SNAPSHOT_FILE))
        };
        write(&mut self.file).map_err(io(&self.path))?;
        sync_dir(dir)
    }
}

/// Removes a temp file a crash left behind: it was never renamed, so never the snapshot.
pub fn remove_stray_tmp(dir: &Path) -> Result<(), RecordError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    match std::fs::remove_file(&tmp) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&tmp)(e)),
    }
}

/// The snapshot, if there is one; `max_state` bounds what is read into memory. Every
/// length is checked against the file's size before anything is allocated.
pub fn read(dir: &Path, max_state: u64) -> Result<Option<Loaded>, RecordError> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let size = file.metadata().map_err(io(&path))?.len();
    let mut header = [0u8; FIXED_HEADER as usize];
    file.read_exact(&mut header)
        .map_err(|_| corrupt(&path, 0, size))?;
    let state_len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let state_crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    let meta_at = FIXED_HEADER.saturating_add(state_len);
    if &header[..8] != MAGIC || state_len > max_state || meta_at.saturating_add(META_HEADER) > size
    {
        return Err(corrupt(&path, 0, size));
    }
    let mut state = vec![0u8; state_len as usize];
    file.read_exact(&mut state).map_err(io(&path))?;
    if crc32fast::hash(&state) != state_crc {
        return Err(corrupt(&path, FIXED_HEADER, state_len));
    }
    let meta = read_meta(&mut file, size - meta_at)
        .ok_or_else(|| corrupt(&path, meta_at, size - meta_at))?;
    Ok(Some(Loaded { meta, state }))
}

/// The meta record, which must fill exactly the `rest` bytes left in the file.
fn read_meta(file: &mut File, rest: u64) -> Option<Meta> {
    let mut header = [0u8; META_HEADER as usize];
    file.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_META || META_HEADER + u64::from(len) != rest {
        return None;
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact(&mut body).ok()?;
    if crc32fast::hash(&body) != crc {
        return None;
    }
    crate::codec::decode(&body).ok()
}
