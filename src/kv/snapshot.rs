//! Snapshots of the key-value state machine: one canonical encoding of the data *and* the
//! per-client table (last seq and its reply), its SHA-256 `state_digest`, bounded chunks to
//! send it in, and a streaming builder that checks everything on the way in.
//!
//! Encoding: a sequence of items, each `[len: u32 LE][postcard(Item)]`: a `Header`, every
//! key in ascending order, every client in ascending id order, and an `End` that counts
//! them. The builder accepts only that order (keys and ids strictly ascending, nothing after
//! `End`), so the bytes it accepts are exactly the encoding of the state it builds: two
//! states have the same digest only if they are the same state.
//!
//! The builder decodes item by item as chunks arrive, so it holds the state being built
//! plus at most one item (`MAX_ITEM_BYTES`), never the whole encoding; it refuses a total
//! over `MAX_SNAPSHOT_BYTES` or more than `MAX_SNAPSHOT_CHUNKS` chunks before storing them.

use super::Kv;
use crate::crypto::Digest;
use crate::protocol::{ClientId, OpResult, MAX_OP_BYTES};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The chunk size a snapshot is sent and stored in.
pub const SNAPSHOT_CHUNK_BYTES: usize = crate::protocol::MAX_SNAPSHOT_CHUNK_BYTES;
/// Largest chunk a builder accepts.
pub const MAX_CHUNK_BYTES: usize = SNAPSHOT_CHUNK_BYTES;
/// Largest snapshot encoding accepted: the state a node is prepared to hold in memory.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Most chunks one snapshot may come in: full chunks, with room for senders that cut
/// smaller ones (down to a quarter of the standard size) at the largest state.
pub const MAX_SNAPSHOT_CHUNKS: u64 = 4 * MAX_SNAPSHOT_BYTES / SNAPSHOT_CHUNK_BYTES as u64;
/// Largest item: a key and value (bounded by the operation size) or a client's cached
/// reply (one value), with generous room for the encoding.
pub const MAX_ITEM_BYTES: usize = 4 * MAX_OP_BYTES;
/// The version of this encoding, in its header: a later encoding gets a new digest.
const SNAPSHOT_VERSION: u32 = 1;
const LEN_BYTES: usize = 4;

#[derive(Clone, Copy, Serialize, Deserialize)]
enum Item<S, B, R> {
    Header { version: u32 },
    Key { key: S, value: B },
    Client { id: ClientId, seq: u64, reply: R },
    End { keys: u64, clients: u64 },
}

/// Items as written: borrowed from the state.
type ItemRef<'a> = Item<&'a str, &'a [u8], &'a OpResult>;
/// Items as read.
type ItemOwned = Item<String, Vec<u8>, OpResult>;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("an empty snapshot chunk")]
    EmptyChunk,
    #[error("a snapshot chunk of {len} bytes, over the {max}-byte limit")]
    ChunkTooLarge { len: usize, max: usize },
    #[error("snapshot over {max} chunks")]
    TooManyChunks { max: u64 },
    #[error("snapshot over {max} bytes")]
    TooLarge { max: u64 },
    #[error("malformed snapshot at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("the snapshot ended before its last item")]
    Truncated,
    #[error("snapshot digest {found} is not the certified {expected}")]
    DigestMismatch { expected: Digest, found: Digest },
}

impl Kv {
    /// The canonical encoding, in chunks of at most `chunk_bytes` (all full but the last).
    pub fn snapshot_chunks(&self, chunk_bytes: usize) -> SnapshotChunks<'_> {
        assert!(chunk_bytes > 0, "chunks hold at least one byte");
        SnapshotChunks {
            items: Box::new(self.items()),
            chunk_bytes,
            carry: Vec::new(),
        }
    }

    /// The whole canonical encoding (as a node stores it).
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        self.snapshot_chunks(SNAPSHOT_CHUNK_BYTES)
            .flatten()
            .collect()
    }

    /// SHA-256 of the canonical encoding, computed without holding it.
    pub fn state_digest(&self) -> Digest {
        let mut h = Sha256::new();
        for chunk in self.snapshot_chunks(SNAPSHOT_CHUNK_BYTES) {
            h.update(&chunk);
        }
        Digest(h.finalize().into())
    }

    /// Decodes a whole stored snapshot, returning the state and its digest.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<(Kv, Digest), SnapshotError> {
        let mut b = SnapshotBuilder::new();
        for chunk in bytes.chunks(SNAPSHOT_CHUNK_BYTES) {
            b.push(chunk)?;
        }
        b.finish_unchecked()
    }

    /// Every item's encoding (length-prefixed), in canonical order.
    fn items(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let header = std::iter::once(Item::Header {
            version: SNAPSHOT_VERSION,
        });
        let keys = self.data.iter().map(|(k, v)| Item::Key {
            key: k.as_str(),
            value: v.as_slice(),
        });
        let clients = self.sessions.iter().map(|(id, (seq, reply))| Item::Client {
            id: *id,
            seq: *seq,
            reply,
        });
        let end = std::iter::once(Item::End {
            keys: self.data.len() as u64,
            clients: self.sessions.len() as u64,
        });
        header
            .chain(keys)
            .chain(clients)
            .chain(end)
            .map(|item: ItemRef<'_>| framed(&item))
    }
}

fn framed(item: &ItemRef<'_>) -> Vec<u8> {
    let body = crate::codec::encode(item);
    // Keys, values and replies are bounded by the operation size, so this always holds.
    assert!(
        body.len() <= MAX_ITEM_BYTES,
        "a snapshot item over the item bound"
    );
    let mut out = Vec::with_capacity(LEN_BYTES + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The canonical encoding, chunk by chunk; holds one chunk and one item at a time.
pub struct SnapshotChunks<'a> {
    items: Box<dyn Iterator<Item = Vec<u8>> + 'a>,
    chunk_bytes: usize,
    /// Encoded bytes not yet handed out.
    carry: Vec<u8>,
}

impl Iterator for SnapshotChunks<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        while self.carry.len() < self.chunk_bytes {
            match self.items.next() {
                Some(item) => self.carry.extend_from_slice(&item),
                None => break,
            }
        }
        if self.carry.is_empty() {
            return None;
        }
        let rest = self.carry.split_off(self.carry.len().min(self.chunk_bytes));
        Some(std::mem::replace(&mut self.carry, rest))
    }
}

/// Where the builder is in the canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Header,
    Keys,
    Clients,
    Ended,
}

/// Rebuilds a state from its chunks, in order, checking bounds and order as they come and
/// the digest at the end.
pub struct SnapshotBuilder {
    kv: Kv,
    hasher: Sha256,
    phase: Phase,
    /// The item being read: its length prefix and as much of its body as has arrived.
    partial: Vec<u8>,
    bytes: u64,
    chunks: u64,
    max_bytes: u64,
    max_chunks: u64,
    last_key: Option<String>,
    last_client: Option<ClientId>,
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        SnapshotBuilder::new()
    }
}

impl SnapshotBuilder {
    pub fn new() -> SnapshotBuilder {
        SnapshotBuilder::with_limits(MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_CHUNKS)
    }

    /// A builder with tighter bounds than the defaults (tests, or a receiver that knows
    /// the certified size).
    pub fn with_limits(max_bytes: u64, max_chunks: u64) -> SnapshotBuilder {
        SnapshotBuilder {
            kv: Kv::new(),
            hasher: Sha256::new(),
            phase: Phase::Header,
            partial: Vec::new(),
            bytes: 0,
            chunks: 0,
            max_bytes: max_bytes.min(MAX_SNAPSHOT_BYTES),
            max_chunks: max_chunks.min(MAX_SNAPSHOT_CHUNKS),
            last_key: None,
            last_client: None,
        }
    }

    /// Bytes accepted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes the next chunk. After an error the builder is spent: drop it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.admit(chunk)?;
        self.hasher.update(chunk);
        let mut rest = chunk;
        while !rest.is_empty() {
            rest = self.take(rest)?;
        }
        Ok(())
    }

    /// Checks a chunk against the bounds before anything of it is kept.
    fn admit(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        if chunk.is_empty() {
            return Err(SnapshotError::EmptyChunk);
        }
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(SnapshotError::ChunkTooLarge {
                len: chunk.len(),
                max: MAX_CHUNK_BYTES,
            });
        }
        if self.chunks >= self.max_chunks {
            return Err(SnapshotError::TooManyChunks {
                max: self.max_chunks,
            });
        }
        let bytes = self.bytes.saturating_add(chunk.len() as u64);
        if bytes > self.max_bytes {
            return Err(SnapshotError::TooLarge {
                max: self.max_bytes,
            });
        }
        self.chunks += 1;
        self.bytes = bytes;
        Ok(())
    }

    /// Moves bytes of `rest` into the item being read, applying it once whole; returns
    /// what is left of `rest`.
    fn take<'c>(&mut self, rest: &'c [u8]) -> Result<&'c [u8], SnapshotError> {
        if self.phase == Phase::Ended {
            return Err(self.malformed("bytes after the end".into()));
        }
        let want = if self.partial.len() < LEN_BYTES {
            LEN_BYTES
        } else {
            let len = u32::from_le_bytes(self.partial[..LEN_BYTES].try_into().expect("4 bytes"));
            let len = len as usize;
            if len == 0 || len > MAX_ITEM_BYTES {
                return Err(self.malformed(format!("an item of {len} bytes")));
            }
            LEN_BYTES + len
        };
        let n = (want - self.partial.len()).min(rest.len());
        self.partial.extend_from_slice(&rest[..n]);
        if self.partial.len() == want && want > LEN_BYTES {
            let item: ItemOwned = crate::codec::decode(&self.partial[LEN_BYTES..])
                .map_err(|e| self.malformed(e.to_string()))?;
            self.partial.clear();
            self.apply(item)?;
        }
        Ok(&rest[n..])
    }

    /// Applies one item, enforcing the canonical order.
    fn apply(&mut self, item: ItemOwned) -> Result<(), SnapshotError> {
        match (self.phase, item) {
            (Phase::Header, Item::Header { version }) if version == SNAPSHOT_VERSION => {
                self.phase = Phase::Keys;
            }
            (Phase::Header, Item::Header { version }) => {
                return Err(self.malformed(format!("version {version}")));
            }
            (Phase::Keys, Item::Key { key, value }) => {
                if self.last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(self.malformed(format!("key {key:.40?} out of order")));
                }
                self.last_key = Some(key.clone());
                self.kv.data.insert(key, value);
            }
            (Phase::Keys | Phase::Clients, Item::Client { id, seq, reply }) => {
                if self.last_client.is_some_and(|last| last >= id) {
                    return Err(self.malformed(format!("client {id} out of order")));
                }
                self.phase = Phase::Clients;
                self.last_client = Some(id);
                self.kv.sessions.insert(id, (seq, reply));
            }
            (Phase::Keys | Phase::Clients, Item::End { keys, clients }) => {
                if keys != self.kv.data.len() as u64 || clients != self.kv.sessions.len() as u64 {
                    return Err(self.malformed(format!(
                        "end counts {keys} keys and {clients} clients, found {} and {}",
                        self.kv.data.len(),
                        self.kv.sessions.len()
                    )));
                }
                self.phase = Phase::Ended;
            }
            (phase, _) => return Err(self.malformed(format!("unexpected item in {phase:?}"))),
        }
        Ok(())
    }

    fn malformed(&self, reason: String) -> SnapshotError {
        SnapshotError::Malformed {
            offset: self.bytes,
            reason,
        }
    }

    /// The state, if the snapshot was whole and its digest is `expected` (the certified
    /// one); else why not.
    pub fn finish(self, expected: &Digest) -> Result<Kv, SnapshotError> {
        let (kv, found) = self.finish_unchecked()?;
        if found != *expected {
            return Err(SnapshotError::DigestMismatch {
                expected: *expected,
                found,
            });
        }
        Ok(kv)
    }

    /// The state and its digest, if the snapshot was whole (a node's own stored snapshot,
    /// which nobody certified to it).
    pub fn finish_unchecked(self) -> Result<(Kv, Digest), SnapshotError> {
        if self.phase != Phase::Ended {
            return Err(SnapshotError::Truncated);
        }
        debug_assert!(self.partial.is_empty(), "an item after the end was refused");
        Ok((self.kv, Digest(self.hasher.finalize().into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::parse_op;
    use crate::protocol::Request;
    use rand::{Rng, SeedableRng};

    fn apply(kv: &mut Kv, client: ClientId, seq: u64, op: &str) {
        let words: Vec<&str> = op.split_whitespace().collect();
        kv.apply(&Request {
            client,
            seq,
            op: parse_op(&words).unwrap(),
        });
    }

    fn sample() -> Kv {
        let mut kv = Kv::new();
        for i in 0..200u64 {
            apply(&mut kv, (i % 7) as ClientId, i, &format!("put k{i} v{i}"));
        }
        apply(&mut kv, 3, 1000, "get k5");
        apply(&mut kv, 9, 1, "cas k1 nope x");
        kv
    }

    fn rebuild(chunks: impl Iterator<Item = Vec<u8>>) -> Result<(Kv, Digest), SnapshotError> {
        let mut b = SnapshotBuilder::new();
        for c in chunks {
            b.push(&c)?;
        }
        b.finish_unchecked()
    }

    #[test]
    fn a_snapshot_round_trips_in_any_chunk_size() {
        let kv = sample();
        let digest = kv.state_digest();
        for size in [1, 3, 64, 1000, SNAPSHOT_CHUNK_BYTES] {
            let chunks: Vec<Vec<u8>> = kv.snapshot_chunks(size).collect();
            assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= size));
            assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == size));
            let mut b = SnapshotBuilder::new();
            for c in &chunks {
                b.push(c).unwrap();
            }
            assert_eq!(b.finish(&digest).unwrap(), kv, "chunks of {size}");
        }
        let (back, d) = Kv::from_snapshot_bytes(&kv.snapshot_bytes()).unwrap();
        assert_eq!((back, d), (kv, digest));
        // The empty state has a snapshot too.
        let empty = Kv::new();
        assert_eq!(
            Kv::from_snapshot_bytes(&empty.snapshot_bytes()).unwrap(),
            (Kv::new(), empty.state_digest())
        );
    }

    #[test]
    fn the_digest_covers_every_key_value_and_client_entry() {
        let base = sample();
        let d = base.state_digest();
        assert_eq!(d, sample().state_digest(), "deterministic");
        let changed = |f: &dyn Fn(&mut Kv)| {
            let mut kv = base.clone();
            f(&mut kv);
            kv.state_digest()
        };
        // Each part changed alone, through the fields, so no other part moves with it.
        assert_ne!(
            d,
            changed(&|kv| drop(kv.data.insert("k1".into(), b"x".to_vec()))),
            "a value"
        );
        assert_ne!(
            d,
            changed(&|kv| drop(kv.data.insert("new".into(), b"v1".to_vec()))),
            "a key"
        );
        assert_ne!(
            d,
            changed(&|kv| drop(kv.data.remove("k7"))),
            "a deleted key"
        );
        let renamed = |kv: &mut Kv| {
            let v = kv.data.remove("k7").unwrap();
            kv.data.insert("k7x".into(), v);
        };
        assert_ne!(d, changed(&renamed), "a renamed key");
        assert_ne!(
            d,
            changed(&|kv| drop(kv.sessions.insert(100, (1, OpResult::Ok)))),
            "a client"
        );
        assert_ne!(
            d,
            changed(&|kv| kv.sessions.get_mut(&3).unwrap().0 += 1),
            "a seq"
        );
        assert_ne!(
            d,
            changed(&|kv| kv.sessions.get_mut(&3).unwrap().1 = OpResult::Stale),
            "a reply"
        );
        let moved = |kv: &mut Kv| {
            let s = kv.sessions.remove(&3).unwrap();
            kv.sessions.insert(30, s);
        };
        assert_ne!(d, changed(&moved), "a reply moved to another client");
    }

    #[test]
    fn a_digest_mismatch_is_refused() {
        let kv = sample();
        let mut b = SnapshotBuilder::new();
        b.push(&kv.snapshot_bytes()).unwrap();
        let wrong = Kv::new().state_digest();
        assert!(matches!(
            b.finish(&wrong),
            Err(SnapshotError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn chunks_out_of_order_or_missing_are_refused() {
        let kv = sample();
        let chunks: Vec<Vec<u8>> = kv.snapshot_chunks(100).collect();
        // Swapped chunks break the item framing or the order, or at least the digest.
        let mut swapped = chunks.clone();
        swapped.swap(2, 5);
        assert!(rebuild(swapped.into_iter())
            .map(|(_, d)| d != kv.state_digest())
            .unwrap_or(true));
        // A missing last chunk: the end item never came.
        let short = chunks[..chunks.len() - 1].to_vec();
        assert_eq!(rebuild(short.into_iter()), Err(SnapshotError::Truncated));
        // Anything after the end is refused.
        let mut longer = chunks.clone();
        longer.push(chunks[1].clone());
        assert!(matches!(
            rebuild(longer.into_iter()),
            Err(SnapshotError::Malformed { .. })
        ));
    }

    #[test]
    fn chunk_count_and_size_bounds_are_enforced_before_storing() {
        let kv = sample();
        let bytes = kv.snapshot_bytes();
        let mut b = SnapshotBuilder::new();
        assert_eq!(b.push(&[]), Err(SnapshotError::EmptyChunk));
        let big = vec![0u8; MAX_CHUNK_BYTES + 1];
        assert!(matches!(
            b.push(&big),
            Err(SnapshotError::ChunkTooLarge { .. })
        ));
        let mut b = SnapshotBuilder::with_limits(u64::MAX, 3);
        let mut chunks = kv.snapshot_chunks(16);
        for _ in 0..3 {
            b.push(&chunks.next().unwrap()).unwrap();
        }
        assert_eq!(
            b.push(&chunks.next().unwrap()),
            Err(SnapshotError::TooManyChunks { max: 3 })
        );
        let mut b = SnapshotBuilder::with_limits(bytes.len() as u64 - 1, u64::MAX);
        let (head, tail) = bytes.split_at(bytes.len() - 1);
        b.push(head).unwrap();
        assert_eq!(
            b.push(tail),
            Err(SnapshotError::TooLarge {
                max: bytes.len() as u64 - 1
            })
        );
        assert_eq!(b.bytes(), bytes.len() as u64 - 1);
    }

    #[test]
    fn unordered_or_duplicated_items_are_refused_so_the_encoding_is_canonical() {
        let enc = |items: &[ItemRef<'_>]| -> Vec<u8> { items.iter().flat_map(framed).collect() };
        let ok = OpResult::Ok;
        let header = Item::Header {
            version: SNAPSHOT_VERSION,
        };
        let key = |k| Item::Key {
            key: k,
            value: &b"v"[..],
        };
        let client = |id| Item::Client {
            id,
            seq: 1,
            reply: &ok,
        };
        let end = |keys, clients| Item::End { keys, clients };
        let good = enc(&[header, key("a"), key("b"), client(1), client(2), end(2, 2)]);
        assert!(Kv::from_snapshot_bytes(&good).is_ok());
        for bad in [
            enc(&[key("a"), end(1, 0)]),
            enc(&[header, key("b"), key("a"), end(2, 0)]),
            enc(&[header, key("a"), key("a"), end(2, 0)]),
            enc(&[header, client(2), client(1), end(0, 2)]),
            enc(&[header, client(1), key("a"), end(1, 1)]),
            enc(&[header, key("a"), end(2, 0)]),
            enc(&[header, Item::Header { version: 9 }, end(0, 0)]),
        ] {
            assert!(matches!(
                Kv::from_snapshot_bytes(&bad),
                Err(SnapshotError::Malformed { .. })
            ));
        }
    }

    /// Hostile bytes: random, truncated at every length, and single bytes flipped. Decoding
    /// returns an error or a state whose re-encoding is the input (canonical), never panics.
    #[test]
    fn hostile_bytes_never_panic_and_accepted_bytes_are_canonical() {
        let good = sample().snapshot_bytes();
        let check = |bytes: &[u8]| {
            if let Ok((kv, _)) = Kv::from_snapshot_bytes(bytes) {
                assert_eq!(kv.snapshot_bytes(), bytes);
            }
        };
        for len in 0..good.len() {
            check(&good[..len]);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
            check(&bytes);
            let len = rng.gen_range(0..64);
            let noise: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            check(&noise);
        }
        // A length prefix claiming a huge item is refused before any allocation.
        let mut huge = good[..4 + 2].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        check(&huge);
    }
}
