//! The latest state-machine snapshot, in one file `snapshot`:
//! `[len: u32 LE][crc32: u32 LE][postcard(Meta)][state bytes]`, the meta carrying the
//! state's length and CRC-32.
//!
//! Written whole to `snapshot.tmp`, synced, renamed over `snapshot`, and the directory
//! synced: a crash leaves the old snapshot or the new one, never a mix, and at most a
//! stray temp file, which opening ignores and removes. A `snapshot` that does not check
//! out was damaged after it was synced: refused, never skipped (its log prefix is gone).

use super::records::{sync_dir, RecordError};
use crate::protocol::{HardState, LogBase};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;

pub const SNAPSHOT_FILE: &str = "snapshot";
pub const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// Largest meta record: the hard state with its retained lock chain fits a log record.
const MAX_META: u32 = super::records::MAX_RECORD;
const HEADER: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub base: LogBase,
    pub state_len: u64,
    pub state_crc: u32,
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

/// Writes `state` as the snapshot, atomically replacing the previous one.
pub fn write(
    dir: &Path,
    base: LogBase,
    state: &[u8],
    replaced_log: Option<(u64, HardState)>,
) -> Result<(), RecordError> {
    let meta = Meta {
        base,
        state_len: state.len() as u64,
        state_crc: crc32fast::hash(state),
        replaced_log,
    };
    let body = crate::codec::encode(&meta);
    if body.len() > MAX_META as usize {
        return Err(RecordError::TooLarge {
            path: dir.join(SNAPSHOT_TMP),
            len: body.len(),
        });
    }
    let tmp = dir.join(SNAPSHOT_TMP);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&(body.len() as u32).to_le_bytes())?;
        f.write_all(&crc32fast::hash(&body).to_le_bytes())?;
        f.write_all(&body)?;
        f.write_all(state)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
    };
    write().map_err(io(&tmp))?;
    sync_dir(dir)
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

/// The snapshot, if there is one; `max_state` bounds what is read into memory.
pub fn read(dir: &Path, max_state: u64) -> Result<Option<Loaded>, RecordError> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let size = file.metadata().map_err(io(&path))?.len();
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header)
        .map_err(|_| corrupt(&path, 0, size))?;
    let meta_len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let meta_crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if meta_len == 0 || meta_len > MAX_META || u64::from(meta_len) + HEADER as u64 > size {
        return Err(corrupt(&path, 0, size));
    }
    let mut body = vec![0u8; meta_len as usize];
    file.read_exact(&mut body).map_err(io(&path))?;
    let meta: Meta = (crc32fast::hash(&body) == meta_crc)
        .then(|| crate::codec::decode(&body).ok())
        .flatten()
        .ok_or_else(|| corrupt(&path, 0, size))?;
    let state_at = HEADER as u64 + u64::from(meta_len);
    if meta.state_len > max_state || state_at.saturating_add(meta.state_len) != size {
        return Err(corrupt(&path, state_at, size - state_at));
    }
    let mut state = vec![0u8; meta.state_len as usize];
    file.read_exact(&mut state).map_err(io(&path))?;
    if crc32fast::hash(&state) != meta.state_crc {
        return Err(corrupt(&path, state_at, meta.state_len));
    }
    Ok(Some(Loaded { meta, state }))
}
