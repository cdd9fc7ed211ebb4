//! The replicated log and its SHA-256 hash chain.
//!
//! Hashes are always recomputed from entries: a follower never trusts a hash a leader sends.
//! The `raft` variant does not hash (plain Raft has no use for it); its hashes are all zero.

use super::message::{Entry, Payload};
use super::types::{Index, Term};
use crate::crypto::{chain_hash, genesis_hash, Digest};

#[derive(Clone, Debug)]
pub struct Log {
    hashing: bool,
    genesis: Digest,
    entries: Vec<Entry>,
    /// `hashes[k]` is the chain hash of `entries[k]`, i.e. of index `k + 1`.
    hashes: Vec<Digest>,
}

/// The bytes an entry contributes to the chain: `encode(request)`.
pub fn payload_bytes(p: &Payload) -> Vec<u8> {
    crate::codec::encode(p)
}

impl Log {
    pub fn new(cluster_id: &str, hashing: bool) -> Log {
        let genesis = if hashing {
            genesis_hash(cluster_id)
        } else {
            Digest::default()
        };
        Log {
            hashing,
            genesis,
            entries: Vec::new(),
            hashes: Vec::new(),
        }
    }

    pub fn last_index(&self) -> Index {
        self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(0, |e| e.term)
    }

    pub fn last_hash(&self) -> Digest {
        self.hash_at(self.last_index())
            .expect("last index is in the log")
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index == 0 {
            return None;
        }
        self.entries.get(index as usize - 1)
    }

    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == 0 {
            Some(0)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    pub fn hash_at(&self, index: Index) -> Option<Digest> {
        if index == 0 {
            Some(self.genesis)
        } else {
            self.hashes.get(index as usize - 1).copied()
        }
    }

    /// The hash `entry` would have if appended right after `index - 1`, on this chain.
    pub fn hash_after(&self, prev: &Digest, entry: &Entry) -> Digest {
        if self.hashing {
            chain_hash(
                prev,
                entry.term,
                entry.index,
                &payload_bytes(&entry.payload),
            )
        } else {
            Digest::default()
        }
    }

    /// Appends one entry; its index must be the next one.
    pub fn append(&mut self, entry: Entry) -> Digest {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log entries are contiguous"
        );
        assert!(
            entry.term >= self.last_term(),
            "entry terms never decrease along a log"
        );
        let h = self.hash_after(&self.last_hash(), &entry);
        self.entries.push(entry);
        self.hashes.push(h);
        h
    }

    /// Removes every entry from `index` on.
    pub fn truncate_from(&mut self, index: Index) {
        assert!(index >= 1, "the genesis cannot be truncated");
        let keep = (index - 1) as usize;
        self.entries.truncate(keep);
        self.hashes.truncate(keep);
    }

    /// Entries `from..=to` (clamped to the log).
    /// The last index `e` in `from..=to` such that entries `from..=e` fit in `budget`
    /// bytes (by `Entry::size_bound`), but at least `from`: one entry always goes, and one
    /// entry is bounded by `MAX_OP_BYTES`.
    pub fn end_within(&self, from: Index, to: Index, budget: usize) -> Index {
        let mut used = 0;
        for (k, e) in self.slice(from, to).iter().enumerate() {
            used += e.size_bound();
            if used > budget && k > 0 {
                return from + k as Index - 1;
            }
        }
        to
    }

    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let from = from.max(1);
        let to = to.min(self.last_index());
        if from > to {
            return &[];
        }
        &self.entries[from as usize - 1..to as usize]
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Signed;
    use crate::protocol::message::{Op, Request};

    fn req(seq: u64) -> Payload {
        Payload::Request(Signed {
            body: Request {
                client: 1,
                seq,
                op: Op::Get { key: "k".into() },
            },
            sig: None,
        })
    }

    fn entry(term: Term, index: Index, seq: u64) -> Entry {
        Entry {
            term,
            index,
            payload: req(seq),
        }
    }

    #[test]
    fn batches_are_cut_by_bytes_but_never_empty() {
        let big = |seq: u64| {
            Payload::Request(Signed {
                body: Request {
                    client: 1,
                    seq,
                    op: Op::Put {
                        key: "k".into(),
                        value: "v".repeat(1000).into(),
                    },
                },
                sig: None,
            })
        };
        let mut log = Log::new("c", true);
        for i in 1..=10 {
            log.append(Entry {
                term: 1,
                index: i,
                payload: big(i),
            });
        }
        let one = log.entry(1).unwrap().size_bound();
        assert!(one > 1000);
        assert_eq!(log.end_within(1, 10, 3 * one), 3);
        assert_eq!(log.end_within(4, 10, 100 * one), 10);
        // A budget smaller than one entry still moves one entry.
        assert_eq!(log.end_within(5, 10, 1), 5);
    }

    #[test]
    fn chain_is_recomputed_and_sensitive_to_history() {
        let mut a = Log::new("c", true);
        let mut b = Log::new("c", true);
        for i in 1..=5 {
            a.append(entry(1, i, i));
            b.append(entry(1, i, i));
        }
        assert_eq!(a.last_hash(), b.last_hash());
        // Change one entry deep in the history: every later hash changes.
        b.truncate_from(2);
        b.append(entry(1, 2, 99));
        for i in 3..=5 {
            b.append(entry(1, i, i));
        }
        assert_eq!(a.hash_at(1), b.hash_at(1));
        for i in 2..=5 {
            assert_ne!(a.hash_at(i), b.hash_at(i), "index {i}");
        }
        assert_eq!(a.hash_at(0), Some(genesis_hash("c")));
        assert_eq!(a.hash_at(6), None);
    }

    #[test]
    fn truncate_and_slice() {
        let mut a = Log::new("c", true);
        for i in 1..=4 {
            a.append(entry(i, i, i));
        }
        assert_eq!(a.slice(2, 3).len(), 2);
        assert_eq!(a.slice(3, 10).len(), 2);
        assert!(a.slice(5, 10).is_empty());
        a.truncate_from(3);
        assert_eq!(a.last_index(), 2);
        assert_eq!(a.last_term(), 2);
        assert_eq!(a.term_at(0), Some(0));
    }

    #[test]
    #[should_panic(expected = "contiguous")]
    fn gaps_are_refused() {
        let mut a = Log::new("c", true);
        a.append(entry(1, 2, 1));
    }

    #[test]
    fn raft_logs_do_not_hash() {
        let mut a = Log::new("c", false);
        a.append(entry(1, 1, 1));
        assert_eq!(a.last_hash(), Digest::default());
    }
}
