//! Checksummed record files: `[len: u32 LE][crc32 of body: u32 LE][body]`, appended only.
//!
//! Reading stops at the first record that does not check out. If it is the last thing in
//! the file (a write cut short by a crash), the tail is cut off; anything after it means
//! the middle of the file is damaged, and we refuse rather than drop data silently.
//!
//! "Anything after it" includes an intact record further on: a damaged length field can
//! make a record in the middle look as if it ran past the end of the file, like a torn
//! one. So before cutting, the rest of the file is scanned for a later record that checks
//! out (a length in range and a matching CRC-32 at some later offset); if there is one,
//! the damage is in the middle. Only the last write since a sync can be torn, and every
//! write of more than one record syncs between them (`Storage::apply`), so an intact
//! record never follows a genuinely torn one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest record accepted; anything larger is damage, not data.
pub const MAX_RECORD: u32 = 64 << 20;
const HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: a record of {len} bytes exceeds the {MAX_RECORD}-byte limit; not written")]
    TooLarge { path: PathBuf, len: usize },
    #[error("{path}: corrupt record at byte {offset} with {after} bytes after it; refusing to start rather than drop data (restore the file or move it away)")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        after: u64,
    },
}

pub struct RecordFile {
    path: PathBuf,
    file: File,
    /// Bytes written since the last sync.
    dirty: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RecordFile {
    /// Opens (creating) the file and returns every intact record. A torn tail is cut off
    /// and reported in the returned count of bytes dropped.
    pub fn open(path: &Path) -> Result<(RecordFile, Vec<Vec<u8>>, u64), RecordError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let (records, at) = scan(&bytes);
        let dropped = (bytes.len() - at) as u64;
        if dropped > 0 {
            if !is_torn_tail(&bytes[at..]) || !no_record_after(&bytes, at) {
                return Err(RecordError::Corrupt {
                    path: path.to_path_buf(),
                    offset: at as u64,
                    after: dropped,
                });
            }
            tracing::warn!(path = %path.display(), offset = at, dropped, "cutting a torn record off the end");
            file.set_len(at as u64).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(path))?;
        Ok((
            RecordFile {
                path: path.to_path_buf(),
                file,
                dirty: false,
            },
            records,
            dropped,
        ))
    }

    /// Appends one record and returns the bytes it took; one over [`MAX_RECORD`] is
    /// refused (nothing is written), since reading would take it for damage.
    pub fn append(&mut self, body: &[u8]) -> Result<u64, RecordError> {
        if body.len() > MAX_RECORD as usize || body.is_empty() {
            return Err(RecordError::TooLarge {
                path: self.path.clone(),
                len: body.len(),
            });
        }
        let mut buf = Vec::with_capacity(HEADER + body.len());
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        buf.extend_from_slice(body);
        self.file.write_all(&buf).map_err(io(&self.path))?;
        self.dirty = true;
        Ok(buf.len() as u64)
    }

    /// Makes every appended record durable (one fsync for a whole batch).
    pub fn sync(&mut self) -> Result<(), RecordError> {
        if self.dirty {
            crate::cost::timed_wait(|| self.file.sync_data()).map_err(io(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Every intact record of a file that was synced whole before anything was written after
/// it (a log segment other than the last): anything that does not check out is damage.
pub fn read_sealed(path: &Path) -> Result<Vec<Vec<u8>>, RecordError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let (records, at) = scan(&bytes);
    if at < bytes.len() {
        return Err(RecordError::Corrupt {
            path: path.to_path_buf(),
            offset: at as u64,
            after: (bytes.len() - at) as u64,
        });
    }
    Ok(records)
}

/// The intact records from the start of `bytes`, and where the first that is not begins.
fn scan(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some((body, used)) = parse(&bytes[at..]) {
        records.push(body.to_vec());
        at += used;
    }
    (records, at)
}

/// One record at the start of `bytes`: its body and the bytes it spans.
fn parse(bytes: &[u8]) -> Option<(&[u8], usize)> {
    if bytes.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    // We never write empty records: a zero length is a zero-filled (never written) page.
    if len == 0 || len > MAX_RECORD || bytes.len() < HEADER + len as usize {
        return None;
    }
    let body = &bytes[HEADER..HEADER + len as usize];
    (crc32fast::hash(body) == crc).then_some((body, HEADER + len as usize))
}

/// A crash mid-append leaves one short or unchecked record at the very end: a header cut
/// short, a body running past the end, or a body whose checksum fails and that ends
/// exactly at the end of the file.
///
/// After a power loss the file may also end in zeros (the file grew but its pages were
/// never written): nothing in them was ever synced, so they are a torn tail too.
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    if rest.len() < HEADER {
        return true;
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    len <= MAX_RECORD && rest.len() <= HEADER + len as usize
}

/// Whether no intact record starts anywhere after `at` (and the scan could tell: a file
/// whose scan would cost too much is treated as having one, so it is refused, not cut).
fn no_record_after(bytes: &[u8], at: usize) -> bool {
    // CRC work allowed: a few passes over the file. Real torn tails have few plausible
    // headers; only pathological contents could exhaust this.
    let mut budget = bytes.len().saturating_mul(4).saturating_add(64 << 20);
    for pos in at + 1..bytes.len().saturating_sub(HEADER) {
        let rest = &bytes[pos..];
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > MAX_RECORD as usize || rest.len() < HEADER + len {
            continue;
        }
        if budget < len {
            return false;
        }
        budget -= len;
        if parse(rest).is_some() {
            return false;
        }
    }
    true
}

/// Makes the directory entries of files just created in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), RecordError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
