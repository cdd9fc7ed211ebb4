//! The replicated log and its SHA-256 hash chain.
//!
//! Hashes are always recomputed from entries: a follower never trusts a hash a leader sends.
//! The `raft` variant does not hash (plain Raft has no use for it); its hashes are all zero.
//!
//! The log starts at a **base** `(index, term, hash)`: the genesis `(0, 0, genesis_hash)` of a
//! new cluster, or the last entry a snapshot replaced (PROTOCOL.md, "Checkpoints, compaction
//! and state transfer"). Entries at or below the base are gone; the base's term and hash stand
//! in for them, so the chain and the consistency checks go on from it unchanged.

use super::message::{Entry, Payload};
use super::types::{Index, Term};
use crate::crypto::{chain_hash, genesis_hash, Digest};
use serde::{Deserialize, Serialize};

/// Where a log starts: the index, term and chain hash of the last entry it no longer holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBase {
    pub index: Index,
    pub term: Term,
    pub hash: Digest,
}

/// A state-machine snapshot as stored and transferred: the log position it replaces and the
/// state's canonical bytes (`kv::Kv::snapshot_bytes`), opaque to the protocol core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub base: LogBase,
    pub state: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Log {
    hashing: bool,
    base: LogBase,
    entries: Vec<Entry>,
    /// `hashes[k]` is the chain hash of `entries[k]`, i.e. of index `base.index + k + 1`.
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
        Log::from_base(
            hashing,
            LogBase {
                index: 0,
                term: 0,
                hash: genesis,
            },
        )
    }

    /// An empty log starting at `base` (a restarted node's snapshot, or one just installed).
    pub fn from_base(hashing: bool, base: LogBase) -> Log {
        debug_assert!(
            hashing || base.hash == Digest::default(),
            "a log that does not hash has no hashes to start from"
        );
        Log {
            hashing,
            base,
            entries: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// Drops every entry and starts the log at `base`: a snapshot replaced all of it.
    pub fn install_base(&mut self, base: LogBase) {
        *self = Log::from_base(self.hashing, base);
    }

    /// Drops the entries at and below `index`, which becomes the base (with that entry's
    /// term and hash). Compacting at the base changes nothing.
    pub fn compact_to(&mut self, index: Index) {
        assert!(
            index >= self.base.index && index <= self.last_index(),
            "compaction to {index} outside the log ({}..={})",
            self.base.index,
            self.last_index()
        );
        let base = LogBase {
            index,
            term: self.term_at(index).expect("index is in the log"),
            hash: self.hash_at(index).expect("index is in the log"),
        };
        let dropped = self.offset(index);
        self.entries.drain(..dropped);
        self.hashes.drain(..dropped);
        self.base = base;
    }

    pub fn base(&self) -> LogBase {
        self.base
    }

    /// The base the log would have if compacted to `index`, if it holds that index.
    pub fn base_at(&self, index: Index) -> Option<LogBase> {
        Some(LogBase {
            index,
            term: self.term_at(index)?,
            hash: self.hash_at(index)?,
        })
    }

    /// How many entries lie between the base and `index` (inclusive): the position in
    /// `entries` just after `index`. `index` must be at or above the base.
    fn offset(&self, index: Index) -> usize {
        debug_assert!(index >= self.base.index);
        (index - self.base.index) as usize
    }

    pub fn last_index(&self) -> Index {
        self.base.index + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.base.term, |e| e.term)
    }

    pub fn last_hash(&self) -> Digest {
        self.hash_at(self.last_index())
            .expect("last index is in the log")
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.base.index {
            return None;
        }
        self.entries.get(self.offset(index) - 1)
    }

    /// The term of `index`: the base's at the base, `None` below it or past the end.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.base.index {
            Some(self.base.term)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    /// The chain hash of `index`: the base's at the base, `None` below it or past the end.
    pub fn hash_at(&self, index: Index) -> Option<Digest> {
        match index.cmp(&self.base.index) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => Some(self.base.hash),
            std::cmp::Ordering::Greater => self.hashes.get(self.offset(index) - 1).copied(),
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

    /// Removes every entry from `index` on. Entries at or below the base are settled (the
    /// genesis, or committed state a snapshot holds): truncating them is a bug.
    pub fn truncate_from(&mut self, index: Index) {
        assert!(
            index > self.base.index,
            "the log base ({}) cannot be truncated (from {index})",
            self.base.index
        );
        let keep = self.offset(index) - 1;
        self.entries.truncate(keep);
        self.hashes.truncate(keep);
    }

    /// The last index `e` in `from..=to` such that entries `from..=e` fit in `budget`
    /// bytes (by `Entry::size_bound`), but at least `from`: one entry always goes, and one
    /// entry is bounded by `MAX_OP_BYTES`.
    pub fn end_within(&self, from: Index, to: Index, budget: usize) -> Index {
        // Nothing at or below the base can be sent: count from the first entry held.
        let from = from.max(self.base.index + 1);
        let mut used = 0;
        for (k, e) in self.slice(from, to).iter().enumerate() {
            used += e.size_bound();
            if used > budget && k > 0 {
                return from + k as Index - 1;
            }
        }
        to
    }

    /// Entries `from..=to`, clamped to those held (above the base, up to the last).
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let from = from.max(self.base.index + 1);
        let to = to.min(self.last_index());
        if from > to {
            return &[];
        }
        &self.entries[self.offset(from) - 1..self.offset(to)]
    }

    /// The entries held, the first at index `base().index + 1`.
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

    /// A log of `n` entries of rising terms, for the base tests.
    fn log_of(n: Index) -> Log {
        let mut log = Log::new("c", true);
        for i in 1..=n {
            log.append(entry(i.div_ceil(3), i, i));
        }
        log
    }

    #[test]
    fn a_new_log_starts_at_the_genesis_base() {
        let log = Log::new("c", true);
        assert_eq!(
            log.base(),
            LogBase {
                index: 0,
                term: 0,
                hash: genesis_hash("c")
            }
        );
        assert_eq!(Log::new("c", false).base(), LogBase::default());
    }

    #[test]
    fn compaction_keeps_the_chain_and_the_base_stands_for_what_was_dropped() {
        let full = log_of(10);
        let mut log = log_of(10);
        log.compact_to(4);
        assert_eq!(
            log.base(),
            LogBase {
                index: 4,
                term: full.term_at(4).unwrap(),
                hash: full.hash_at(4).unwrap()
            }
        );
        assert_eq!(log.last_index(), 10);
        assert_eq!(log.last_hash(), full.last_hash());
        assert_eq!(log.entries().len(), 6);
        for i in 0..=3 {
            assert_eq!(log.entry(i), None, "{i}");
            assert_eq!(log.term_at(i), None, "{i}");
            assert_eq!(log.hash_at(i), None, "{i}");
        }
        assert_eq!(log.entry(4), None, "the base is not an entry");
        assert_eq!(log.term_at(4), full.term_at(4));
        assert_eq!(log.hash_at(4), full.hash_at(4));
        for i in 5..=10 {
            assert_eq!(log.entry(i), full.entry(i), "{i}");
            assert_eq!(log.hash_at(i), full.hash_at(i), "{i}");
        }
        assert_eq!(log.entry(11), None);
        // Compacting at the base is a no-op; compacting everything leaves an empty log.
        log.compact_to(4);
        assert_eq!(log.base().index, 4);
        log.compact_to(10);
        assert!(log.entries().is_empty());
        assert_eq!(log.last_index(), 10);
        assert_eq!(log.last_term(), full.last_term());
        assert_eq!(log.last_hash(), full.last_hash());
    }

    #[test]
    fn the_chain_continues_from_a_base_as_in_the_uncompacted_log() {
        let mut full = log_of(6);
        let mut compacted = log_of(6);
        compacted.compact_to(6);
        let mut started = Log::from_base(true, compacted.base());
        for i in 7..=9 {
            let h = full.append(entry(3, i, i));
            assert_eq!(compacted.append(entry(3, i, i)), h, "{i}");
            assert_eq!(started.append(entry(3, i, i)), h, "{i}");
        }
        assert_eq!(started.last_hash(), full.last_hash());
        // A base installed over a log drops all of it.
        let mut other = log_of(2);
        other.install_base(full.base());
        assert_eq!(other.last_index(), 0);
        other.install_base(compacted.base());
        assert_eq!(other.last_index(), 6);
        assert_eq!(other.append(entry(3, 7, 7)), full.hash_at(7).unwrap());
    }

    #[test]
    fn slices_batches_and_truncation_respect_the_base() {
        let full = log_of(10);
        let mut log = log_of(10);
        log.compact_to(5);
        assert_eq!(log.slice(1, 7), full.slice(6, 7));
        assert_eq!(log.slice(6, 20), full.slice(6, 10));
        assert!(log.slice(1, 5).is_empty());
        assert!(log.slice(11, 20).is_empty());
        // Budgets count from the first entry held.
        let one = full.entry(6).unwrap().size_bound();
        assert_eq!(log.end_within(2, 10, 2 * one), 7);
        assert_eq!(log.end_within(6, 10, 1), 6);
        log.truncate_from(8);
        assert_eq!(log.last_index(), 7);
        assert_eq!(log.last_hash(), full.hash_at(7).unwrap());
        log.truncate_from(6);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.last_term(), full.term_at(5).unwrap());
    }

    #[test]
    #[should_panic(expected = "cannot be truncated")]
    fn truncating_at_the_base_is_a_bug() {
        let mut log = log_of(4);
        log.compact_to(2);
        log.truncate_from(2);
    }

    #[test]
    #[should_panic(expected = "outside the log")]
    fn compacting_past_the_end_is_a_bug() {
        log_of(4).compact_to(5);
    }

    #[test]
    #[should_panic(expected = "contiguous")]
    fn appends_after_a_base_are_contiguous_with_it() {
        let mut log = Log::from_base(true, {
            let mut l = log_of(4);
            l.compact_to(4);
            l.base()
        });
        log.append(entry(2, 4, 4));
    }
}
