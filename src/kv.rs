//! The replicated key-value state machine: put, get, delete, compare-and-swap, applied at
//! most once per `(client, seq)`.

use crate::protocol::{ClientId, Op, OpResult, Request};
use std::collections::BTreeMap;

mod snapshot;

pub use snapshot::{
    SnapshotBuilder, SnapshotChunks, SnapshotError, MAX_CHUNK_BYTES, MAX_ITEM_BYTES,
    MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_CHUNKS, SNAPSHOT_CHUNK_BYTES,
};

/// What applying one committed request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Executed now, for the first and only time.
    Executed(OpResult),
    /// Seen before (the client's latest request): not executed again; cached result.
    Duplicate(OpResult),
    /// Older than the client's latest applied request: not executed.
    Stale,
}

impl Applied {
    pub fn result(&self) -> OpResult {
        match self {
            Applied::Executed(r) | Applied::Duplicate(r) => r.clone(),
            Applied::Stale => OpResult::Stale,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    data: BTreeMap<String, Vec<u8>>,
    /// Per client: the latest applied sequence number and its result. Ordered, so that
    /// snapshots encode it canonically.
    sessions: BTreeMap<ClientId, (u64, OpResult)>,
}

impl Kv {
    pub fn new() -> Kv {
        Kv::default()
    }

    pub fn apply(&mut self, req: &Request) -> Applied {
        match self.sessions.get(&req.client) {
            Some((seq, r)) if *seq == req.seq => return Applied::Duplicate(r.clone()),
            Some((seq, _)) if *seq > req.seq => return Applied::Stale,
            _ => {}
        }
        let result = self.execute(&req.op);
        self.sessions.insert(req.client, (req.seq, result.clone()));
        Applied::Executed(result)
    }

    /// The answer to a retried request, if it was already applied.
    pub fn cached(&self, client: ClientId, seq: u64) -> Option<OpResult> {
        match self.sessions.get(&client) {
            Some((s, r)) if *s == seq => Some(r.clone()),
            Some((s, _)) if *s > seq => Some(OpResult::Stale),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn execute(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpResult::Ok
            }
            Op::Get { key } => OpResult::Value(self.data.get(key).cloned()),
            Op::Delete { key } => {
                self.data.remove(key);
                OpResult::Ok
            }
            Op::Cas { key, expected, new } => {
                let current = self.data.get(key).cloned();
                if &current == expected {
                    self.data.insert(key.clone(), new.clone());
                    OpResult::Ok
                } else {
                    OpResult::CasFailed(current)
                }
            }
        }
    }
}

/// Parses the CLI/scenario form of an operation: `put K V`, `get K`, `delete K`,
/// `cas K OLD NEW` (OLD `-` meaning absent; scenarios never expect the value `-`).
pub fn parse_op(words: &[&str]) -> Result<Op, String> {
    let s = |w: &&str| w.to_string();
    match words {
        ["put", k, v] => Ok(Op::Put {
            key: s(k),
            value: v.as_bytes().to_vec(),
        }),
        ["get", k] => Ok(Op::Get { key: s(k) }),
        ["delete", k] => Ok(Op::Delete { key: s(k) }),
        ["cas", k, old, new] => Ok(Op::Cas {
            key: s(k),
            expected: (*old != "-").then(|| old.as_bytes().to_vec()),
            new: new.as_bytes().to_vec(),
        }),
        _ => Err(format!(
            "cannot parse operation {:?}: expected `put K V`, `get K`, `delete K` or `cas K OLD NEW`",
            words.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: ClientId, seq: u64, op: &str) -> Request {
        let words: Vec<&str> = op.split_whitespace().collect();
        Request {
            client,
            seq,
            op: parse_op(&words).unwrap(),
        }
    }

    #[test]
    fn operations() {
        let mut kv = Kv::new();
        assert_eq!(
            kv.apply(&req(1, 1, "put a 1")),
            Applied::Executed(OpResult::Ok)
        );
        assert_eq!(
            kv.apply(&req(1, 2, "get a")).result(),
            OpResult::Value(Some("1".into()))
        );
        assert_eq!(
            kv.apply(&req(1, 3, "cas a 2 3")).result(),
            OpResult::CasFailed(Some("1".into()))
        );
        assert_eq!(kv.apply(&req(1, 4, "cas a 1 3")).result(), OpResult::Ok);
        assert_eq!(kv.get("a"), Some(&b"3"[..]));
        assert_eq!(kv.apply(&req(1, 5, "delete a")).result(), OpResult::Ok);
        assert_eq!(kv.apply(&req(1, 6, "cas a - 7")).result(), OpResult::Ok);
        assert_eq!(kv.get("a"), Some(&b"7"[..]));
    }

    #[test]
    fn each_client_sequence_number_executes_at_most_once() {
        let mut kv = Kv::new();
        assert_eq!(
            kv.apply(&req(1, 5, "put a x")),
            Applied::Executed(OpResult::Ok)
        );
        // The same request again (a retry committed twice): cached, not executed.
        kv.apply(&req(2, 1, "put a y"));
        assert_eq!(
            kv.apply(&req(1, 5, "put a x")),
            Applied::Duplicate(OpResult::Ok)
        );
        assert_eq!(kv.get("a"), Some(&b"y"[..]));
        // Older sequence numbers never execute.
        assert_eq!(kv.apply(&req(1, 4, "put a z")), Applied::Stale);
        assert_eq!(kv.get("a"), Some(&b"y"[..]));
        assert_eq!(kv.cached(1, 5), Some(OpResult::Ok));
        assert_eq!(kv.cached(1, 6), None);
    }

    #[test]
    fn bad_operations_are_explained() {
        assert!(parse_op(&["put", "k"]).unwrap_err().contains("expected"));
        assert!(parse_op(&[]).is_err());
    }
}
