//! `stable`: the certificate of the latest stable checkpoint (PROTOCOL.md, "Checkpoints,
//! compaction and state transfer"): what proves the log base to peers a node serves its
//! snapshot to. Replaced atomically (temporary file, sync, rename, directory sync).

use super::records::{sync_dir, RecordError};
use super::StorageError;
use crate::protocol::CheckpointCert;
use std::io::Write;
use std::path::Path;

/// Largest `stable` file read: q signed Checkpoints of at most 1024 nodes fit well.
const MAX_STABLE_FILE: u64 = 1 << 20;

const NAME: &str = "stable";

/// The stored certificate, if any.
pub fn read(dir: &Path) -> Result<Option<CheckpointCert>, StorageError> {
    let path = dir.join(NAME);
    let bytes = match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_STABLE_FILE => {
            return Err(bad(&path, format!("{} bytes", m.len())));
        }
        Ok(_) => std::fs::read(&path).map_err(|source| RecordError::Io {
            path: path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RecordError::Io { path, source }.into()),
    };
    crate::codec::decode(&bytes)
        .map(Some)
        .map_err(|e| bad(&path, e.to_string()))
}

/// Replaces the stored certificate with `cert`, durably.
pub fn write(dir: &Path, cert: &CheckpointCert) -> Result<(), StorageError> {
    let tmp = dir.join("stable.tmp");
    let path = dir.join(NAME);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecordError::Io { path, source }
    };
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&crate::codec::encode(cert)).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(())
}

fn bad(path: &Path, reason: String) -> StorageError {
    StorageError::Decode {
        path: path.to_path_buf(),
        index: 0,
        reason,
    }
}
