//! Ed25519 signing with domain separation, strict verification, and the SHA-256 hash chain.
//!
//! A signature covers `domain tag || SHA-256(encode(body))` (`codec`: postcard), where the
//! domain tag is `tangaroa/v<wire version>/<variant>/<cluster_id>/<kind>`. Signing the digest rather than the body keeps
//! large AppendEntries cheap to sign (Ed25519 would otherwise hash the body twice) while the
//! tag still binds protocol version, variant, cluster and message kind.
//!
//! Verification follows ZIP-215 (`ed25519-zebra`), one by one or in batches: every honest
//! node must accept exactly the same signatures however it checks them, and ZIP-215 is
//! defined so that batch and single verification agree (PROTOCOL.md, "Keys and identity").
//! ZIP-215 accepts small-order public keys, so those are refused wherever keys enter.

use crate::cost::{timed, timed_cpu, Work};
use crate::protocol::types::{ClientId, Index, NodeId, Term, Variant};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Digest(pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

pub fn sha256(bytes: &[u8]) -> Digest {
    timed(Work::Hash, || Digest(Sha256::digest(bytes).into()))
}

/// `hash(0) = SHA-256("tangaroa/genesis" || cluster_id)`.
pub fn genesis_hash(cluster_id: &str) -> Digest {
    timed(Work::Hash, || {
        let mut h = Sha256::new();
        h.update(b"tangaroa/genesis");
        h.update(cluster_id.as_bytes());
        Digest(h.finalize().into())
    })
}

/// `hash(i) = SHA-256(hash(i-1) || term_i || index_i || encode(request_i))`.
pub fn chain_hash(prev: &Digest, term: Term, index: Index, payload: &[u8]) -> Digest {
    timed(Work::Hash, || {
        let mut h = Sha256::new();
        h.update(prev.0);
        h.update(term.to_be_bytes());
        h.update(index.to_be_bytes());
        h.update(payload);
        Digest(h.finalize().into())
    })
}

/// Who signed something: a cluster member or a registered client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Principal {
    Node(NodeId),
    Client(ClientId),
}

/// A message body that can be signed. `KIND` goes into the domain tag so that a signature
/// on one kind of message can never be replayed as another kind.
pub trait Signable: Serialize + DeserializeOwned + Clone {
    const KIND: &'static str;
    fn signer(&self) -> Principal;
}

/// A body and its signature. In the `raft` variant nothing is signed and `sig` is `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    pub body: T,
    pub sig: Option<Signature>,
}

impl<T: Signable> Signed<T> {
    pub fn signer(&self) -> Principal {
        self.body.signer()
    }
}

/// The domain prefix shared by every signature of one cluster and variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    prefix: Vec<u8>,
    pub signed: bool,
}

impl Domain {
    pub fn new(variant: Variant, cluster_id: &str) -> Domain {
        let prefix = format!(
            "tangaroa/v{}/{}/{}/",
            crate::codec::WIRE_VERSION,
            variant.name(),
            cluster_id
        )
        .into_bytes();
        Domain {
            prefix,
            signed: variant != Variant::Raft,
        }
    }

    fn signing_bytes<T: Signable>(&self, body: &T) -> Vec<u8> {
        let encoded = crate::codec::encode(body);
        let mut out = Vec::with_capacity(self.prefix.len() + T::KIND.len() + 32);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(T::KIND.as_bytes());
        out.extend_from_slice(&sha256(&encoded).0);
        out
    }

    pub fn sign<T: Signable>(&self, key: &SigningKey, body: T) -> Signed<T> {
        if !self.signed {
            return Signed { body, sig: None };
        }
        let bytes = self.signing_bytes(&body);
        let sig = timed(Work::Sign, || key.sign(&bytes));
        Signed {
            body,
            sig: Some(sig),
        }
    }

    /// Strict verification against one key. Unsigned variants accept everything.
    pub fn verify<T: Signable>(&self, key: &VerifyingKey, msg: &Signed<T>) -> bool {
        self.verify_cached(key, msg, None)
    }

    /// As `verify`, remembering successes in `cache`: the same signed body arrives many
    /// times (a client request in every AppendEntries that carries it, an Ack inside every
    /// certificate), and one strict check is enough.
    pub fn verify_cached<T: Signable>(
        &self,
        key: &VerifyingKey,
        msg: &Signed<T>,
        cache: Option<&mut SigCache>,
    ) -> bool {
        if !self.signed {
            return true;
        }
        match ed25519_zebra::VerificationKey::try_from(key.to_bytes()) {
            Ok(zip) => self.verify_zip215(&zip, msg, cache),
            Err(_) => false,
        }
    }

    /// ZIP-215 verification against a parsed key, remembering successes in `cache`.
    pub fn verify_zip215<T: Signable>(
        &self,
        key: &ed25519_zebra::VerificationKey,
        msg: &Signed<T>,
        cache: Option<&mut SigCache>,
    ) -> bool {
        if !self.signed {
            return true;
        }
        let Some(sig) = &msg.sig else { return false };
        let bytes = self.signing_bytes(&msg.body);
        let verify = || timed(Work::VerifySingle, || key.verify(sig, &bytes).is_ok());
        let Some(cache) = cache else {
            return verify();
        };
        let id = cache_id(key.as_ref(), sig, &bytes);
        if cache.ok.contains(&id) {
            return true;
        }
        let ok = verify();
        if ok {
            cache.insert(id);
        }
        ok
    }
}

/// What the cache remembers of one verified signature: a digest of key, signature and bytes.
fn cache_id(key: &[u8], sig: &Signature, bytes: &[u8]) -> [u8; 32] {
    timed(Work::Hash, || {
        let mut h = Sha256::new();
        h.update(key);
        h.update(sig.to_bytes());
        h.update(bytes);
        h.finalize().into()
    })
}

/// Signatures already verified: digests of (key, signature, signed bytes). Bounded: when
/// full it starts over, which only costs re-verification.
#[derive(Debug)]
pub struct SigCache {
    ok: std::collections::HashSet<[u8; 32]>,
    capacity: usize,
}

impl SigCache {
    pub fn new(capacity: usize) -> SigCache {
        SigCache {
            ok: std::collections::HashSet::new(),
            capacity,
        }
    }

    fn insert(&mut self, id: [u8; 32]) {
        if self.ok.len() >= self.capacity {
            self.ok.clear();
        }
        self.ok.insert(id);
    }
}

/// One signature cache per node link, for verifiers that serve several links at once:
/// each node keeps its own bounded share, so one peer's traffic never evicts what another
/// peer's messages taught. Client links get none (their requests are new each time).
#[derive(Debug)]
pub struct LinkCaches {
    capacity: usize,
    by_node: HashMap<NodeId, SigCache>,
}

impl LinkCaches {
    pub fn new(capacity: usize) -> LinkCaches {
        LinkCaches {
            capacity,
            by_node: HashMap::new(),
        }
    }

    /// The cache of `link`'s messages, if it has one yet (clients never do).
    pub fn get(&self, link: Principal) -> Option<&SigCache> {
        match link {
            Principal::Node(i) => self.by_node.get(&i),
            Principal::Client(_) => None,
        }
    }

    /// The cache of `link`'s messages, made on first use; `None` for clients.
    pub fn get_mut(&mut self, link: Principal) -> Option<&mut SigCache> {
        match link {
            Principal::Node(i) => Some(
                self.by_node
                    .entry(i)
                    .or_insert_with(|| SigCache::new(self.capacity)),
            ),
            Principal::Client(_) => None,
        }
    }
}

/// Where one signature pushed on a [`SigBatch`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Decided without the batch: a cache hit (good), a missing signature or an unknown
    /// signer (bad), an unsigned variant (good).
    Known(bool),
    /// The batch's verdict at this index decides it.
    Queued(usize),
}

/// Signatures of any kinds, gathered from many messages and checked together: one
/// ZIP-215 batch equation per [`MAX_BATCH_SIGNATURES`] when all are good, bisected when
/// not, so each signature gets exactly its single-verification verdict. A signature
/// pushed twice (the same vote in two queued election proofs) is checked once.
pub struct SigBatch<'r> {
    ring: &'r Keyring,
    queued: Vec<(usize, Queued)>,
    /// Each queued signature's cache digest, by queue index.
    ids: Vec<[u8; 32]>,
    index: HashMap<[u8; 32], usize>,
}

impl<'r> SigBatch<'r> {
    pub fn new(ring: &'r Keyring) -> SigBatch<'r> {
        SigBatch {
            ring,
            queued: Vec::new(),
            ids: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn ring(&self) -> &'r Keyring {
        self.ring
    }

    /// Signatures queued for the batch equation (cache hits and duplicates not counted).
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Queues `m`'s signature against the key of the principal it names, unless `cache`
    /// already holds it as verified.
    pub fn push<T: Signable>(&mut self, m: &Signed<T>, cache: Option<&SigCache>) -> Slot {
        if !self.ring.domain.signed {
            return Slot::Known(true);
        }
        let (Some(key), Some(sig)) = (self.ring.zip_key_of(m.signer()), m.sig) else {
            return Slot::Known(false);
        };
        let bytes = self.ring.domain.signing_bytes(&m.body);
        let id = cache_id(key.as_ref(), &sig, &bytes);
        if cache.is_some_and(|c| c.ok.contains(&id)) {
            return Slot::Known(true);
        }
        if let Some(&q) = self.index.get(&id) {
            return Slot::Queued(q);
        }
        let q = self.queued.len();
        self.queued.push((
            q,
            Queued {
                key: (*key).into(),
                sig,
                bytes,
            },
        ));
        self.ids.push(id);
        self.index.insert(id, q);
        Slot::Queued(q)
    }

    /// Checks every queued signature: one verdict per queue index, each the one verifying
    /// it alone would give.
    pub fn verify(&self) -> Vec<bool> {
        let mut verdicts = vec![false; self.queued.len()];
        for chunk in self.queued.chunks(MAX_BATCH_SIGNATURES) {
            bisect(chunk, &mut verdicts);
        }
        verdicts
    }

    /// Whether the signature at `slot` is good, given `verdicts` from [`SigBatch::verify`].
    pub fn ok(slot: Slot, verdicts: &[bool]) -> bool {
        match slot {
            Slot::Known(ok) => ok,
            Slot::Queued(q) => verdicts[q],
        }
    }

    /// Remembers the signature at `slot` in `cache` if the batch found it good.
    pub fn remember(&self, slot: Slot, verdicts: &[bool], cache: &mut SigCache) {
        if let Slot::Queued(q) = slot {
            if verdicts[q] {
                cache.insert(self.ids[q]);
            }
        }
    }
}

/// Deterministic key from a 32-byte seed (the simulator derives seeds from its RNG; the
/// real `keygen` draws them from the OS).
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// Errors met while assembling a keyring from configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("public key of {0:?} is a weak (small-order) Ed25519 key")]
    Weak(Principal),
    #[error("public key of {0:?} is not a valid Ed25519 point")]
    Invalid(Principal),
}

/// The public keys of every cluster member and registered client, plus the domain.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub domain: Domain,
    nodes: Vec<VerifyingKey>,
    clients: HashMap<ClientId, VerifyingKey>,
    /// The same keys parsed once for ZIP-215 verification.
    zip_nodes: Vec<ed25519_zebra::VerificationKey>,
    zip_clients: HashMap<ClientId, ed25519_zebra::VerificationKey>,
}

/// Signatures checked together with one batch equation, at most: a larger set is split.
/// The equation's cost per signature falls slowly past a few hundred.
const MAX_BATCH_SIGNATURES: usize = 256;

impl Keyring {
    /// A keyring of these nodes' and clients' keys (client ids in order from 0), as the
    /// simulator and the in-process bench derive them.
    pub fn of_signing_keys(
        domain: Domain,
        nodes: &[SigningKey],
        clients: &[SigningKey],
    ) -> Result<Keyring, KeyError> {
        Keyring::new(
            domain,
            nodes.iter().map(|k| k.verifying_key()).collect(),
            clients
                .iter()
                .enumerate()
                .map(|(c, k)| (c as ClientId, k.verifying_key()))
                .collect(),
        )
    }

    /// Builds a keyring, refusing weak keys (PROTOCOL.md, "Keys and identity").
    pub fn new(
        domain: Domain,
        nodes: Vec<VerifyingKey>,
        clients: HashMap<ClientId, VerifyingKey>,
    ) -> Result<Keyring, KeyError> {
        for (i, k) in nodes.iter().enumerate() {
            if k.is_weak() {
                return Err(KeyError::Weak(Principal::Node(i as NodeId)));
            }
        }
        for (c, k) in &clients {
            if k.is_weak() {
                return Err(KeyError::Weak(Principal::Client(*c)));
            }
        }
        let zip = |p: Principal, k: &VerifyingKey| {
            ed25519_zebra::VerificationKey::try_from(k.to_bytes()).map_err(|_| KeyError::Invalid(p))
        };
        let zip_nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, k)| zip(Principal::Node(i as NodeId), k))
            .collect::<Result<_, _>>()?;
        let zip_clients = clients
            .iter()
            .map(|(c, k)| Ok((*c, zip(Principal::Client(*c), k)?)))
            .collect::<Result<_, _>>()?;
        Ok(Keyring {
            domain,
            nodes,
            clients,
            zip_nodes,
            zip_clients,
        })
    }

    fn zip_key_of(&self, p: Principal) -> Option<&ed25519_zebra::VerificationKey> {
        match p {
            Principal::Node(i) => self.zip_nodes.get(i as usize),
            Principal::Client(c) => self.zip_clients.get(&c),
        }
    }

    /// Verifies several signed bodies of one kind, as one ZIP-215 batch where that pays;
    /// true only if every one is valid. A failed batch is re-checked one by one, so the
    /// answer is exactly the single-verification answer (ZIP-215 makes the two agree);
    /// the caller blames whoever vouched for the set. Batch verification draws its
    /// coefficients from the thread's RNG: they must be unpredictable to whoever made the
    /// signatures, and they never change the verdict, so runs stay deterministic.
    pub fn verify_all<'a, T: Signable + 'a>(
        &self,
        msgs: impl IntoIterator<Item = &'a Signed<T>>,
        mut cache: Option<&mut SigCache>,
    ) -> bool {
        if !self.domain.signed {
            return true;
        }
        let mut pending: Vec<(
            [u8; 32],
            ed25519_zebra::VerificationKeyBytes,
            Signature,
            Vec<u8>,
        )> = Vec::new();
        for m in msgs {
            let (Some(key), Some(sig)) = (self.zip_key_of(m.signer()), m.sig) else {
                return false;
            };
            let bytes = self.domain.signing_bytes(&m.body);
            // The cache's digest costs a hash per signature: only with a cache.
            let id = match cache.as_ref() {
                Some(c) => {
                    let id = cache_id(key.as_ref(), &sig, &bytes);
                    if c.ok.contains(&id) {
                        continue;
                    }
                    id
                }
                None => [0; 32],
            };
            pending.push((id, (*key).into(), sig, bytes));
        }
        for chunk in pending.chunks(MAX_BATCH_SIGNATURES) {
            if !verify_chunk(chunk) {
                return false;
            }
            if let Some(c) = cache.as_deref_mut() {
                for (id, ..) in chunk {
                    c.insert(*id);
                }
            }
        }
        true
    }

    /// Verifies several signed bodies of one kind and says which are valid, one verdict per
    /// body in order: the same verdicts as verifying each alone (ZIP-215 makes batch and
    /// single verification agree), at the cost of one batch equation when all are good. A
    /// failed batch is bisected, so one bad signature among k costs about 2·log2(k) small
    /// batches rather than k single checks. Unsigned variants accept everything.
    pub fn verify_each<'a, T: Signable + 'a>(
        &self,
        msgs: impl IntoIterator<Item = &'a Signed<T>>,
    ) -> Vec<bool> {
        let msgs: Vec<&Signed<T>> = msgs.into_iter().collect();
        if !self.domain.signed {
            return vec![true; msgs.len()];
        }
        let mut verdicts = vec![false; msgs.len()];
        let queued: Vec<(usize, Queued)> = msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let key = self.zip_key_of(m.signer())?;
                let sig = m.sig?;
                let bytes = self.domain.signing_bytes(&m.body);
                Some((
                    i,
                    Queued {
                        key: (*key).into(),
                        sig,
                        bytes,
                    },
                ))
            })
            .collect();
        for chunk in queued.chunks(MAX_BATCH_SIGNATURES) {
            bisect(chunk, &mut verdicts);
        }
        verdicts
    }

    /// Parses raw 32-byte public keys, refusing invalid and weak ones.
    pub fn parse_key(p: Principal, bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
        let k = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::Invalid(p))?;
        if k.is_weak() {
            return Err(KeyError::Weak(p));
        }
        Ok(k)
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn has_client(&self, c: ClientId) -> bool {
        self.clients.contains_key(&c)
    }

    pub fn key_of(&self, p: Principal) -> Option<&VerifyingKey> {
        match p {
            Principal::Node(i) => self.nodes.get(i as usize),
            Principal::Client(c) => self.clients.get(&c),
        }
    }

    /// Verifies a signed body against the key of the principal it names.
    pub fn verify<T: Signable>(&self, msg: &Signed<T>) -> bool {
        self.verify_cached(msg, None)
    }

    pub fn verify_cached<T: Signable>(
        &self,
        msg: &Signed<T>,
        cache: Option<&mut SigCache>,
    ) -> bool {
        match self.zip_key_of(msg.signer()) {
            Some(k) => self.domain.verify_zip215(k, msg, cache),
            None => false,
        }
    }
}

/// One signature waiting for a batch: the key, the signature and the bytes it covers.
struct Queued {
    key: ed25519_zebra::VerificationKeyBytes,
    sig: Signature,
    bytes: Vec<u8>,
}

impl Queued {
    fn verify_alone(&self) -> bool {
        timed(Work::VerifySingle, || {
            ed25519_zebra::VerificationKey::try_from(self.key)
                .is_ok_and(|k| k.verify(&self.sig, &self.bytes).is_ok())
        })
    }
}

/// Sets `verdicts[i]` for every queued `(i, signature)`: true for all if their batch
/// equation holds, otherwise each half is checked the same way, down to single signatures.
fn bisect(queued: &[(usize, Queued)], verdicts: &mut [bool]) {
    debug_assert!(
        queued.len() <= MAX_BATCH_SIGNATURES,
        "callers split into chunks"
    );
    match queued {
        [] => {}
        [(i, one)] => verdicts[*i] = one.verify_alone(),
        _ => {
            let mut batch = ed25519_zebra::batch::Verifier::new();
            for (_, q) in queued {
                batch.queue((q.key, q.sig, &q.bytes));
            }
            let ok = timed_cpu(Work::VerifyBatched, queued.len() as u64, || {
                batch.verify(rand::thread_rng()).is_ok()
            });
            if ok {
                for (i, _) in queued {
                    verdicts[*i] = true;
                }
                return;
            }
            let (left, right) = queued.split_at(queued.len() / 2);
            bisect(left, verdicts);
            bisect(right, verdicts);
        }
    }
}

/// One batch: a single signature is checked alone; a failed batch one by one.
fn verify_chunk(
    chunk: &[(
        [u8; 32],
        ed25519_zebra::VerificationKeyBytes,
        Signature,
        Vec<u8>,
    )],
) -> bool {
    let single = |(_, key, sig, bytes): &(
        [u8; 32],
        ed25519_zebra::VerificationKeyBytes,
        Signature,
        Vec<u8>,
    )| {
        timed(Work::VerifySingle, || {
            ed25519_zebra::VerificationKey::try_from(*key)
                .is_ok_and(|k| k.verify(sig, bytes).is_ok())
        })
    };
    if chunk.len() == 1 {
        return single(&chunk[0]);
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for (_, key, sig, bytes) in chunk {
        batch.queue((*key, *sig, bytes));
    }
    timed_cpu(Work::VerifyBatched, chunk.len() as u64, || {
        batch.verify(rand::thread_rng()).is_ok()
    }) || chunk.iter().all(single)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Hello {
        from: NodeId,
        text: String,
    }
    impl Signable for Hello {
        const KIND: &'static str = "hello";
        fn signer(&self) -> Principal {
            Principal::Node(self.from)
        }
    }
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Other {
        from: NodeId,
        text: String,
    }
    impl Signable for Other {
        const KIND: &'static str = "other";
        fn signer(&self) -> Principal {
            Principal::Node(self.from)
        }
    }

    fn ring(variant: Variant, cluster: &str) -> (Vec<SigningKey>, Keyring) {
        let keys: Vec<_> = (0..3u8)
            .map(|i| signing_key_from_seed([i + 1; 32]))
            .collect();
        let ring = Keyring::new(
            Domain::new(variant, cluster),
            keys.iter().map(|k| k.verifying_key()).collect(),
            HashMap::new(),
        )
        .unwrap();
        (keys, ring)
    }

    #[test]
    fn signatures_bind_signer_body_kind_variant_and_cluster() {
        let (keys, ring) = ring(Variant::Bft, "c1");
        let msg = ring.domain.sign(
            &keys[1],
            Hello {
                from: 1,
                text: "hi".into(),
            },
        );
        assert!(ring.verify(&msg));
        // Another body under the same signature.
        let mut altered = msg.clone();
        altered.body.text = "ho".into();
        assert!(!ring.verify(&altered));
        // Claimed by another node.
        let mut stolen = msg.clone();
        stolen.body.from = 2;
        assert!(!ring.verify(&stolen));
        // Unknown node.
        stolen.body.from = 9;
        assert!(!ring.verify(&stolen));
        // Same bytes, other kind.
        let other = Signed {
            body: Other {
                from: 1,
                text: "hi".into(),
            },
            sig: msg.sig,
        };
        assert!(!ring.verify(&other));
        // Other cluster, other variant.
        let (_, ring2) = ring_with(&keys, Variant::Bft, "c2");
        assert!(!ring2.verify(&msg));
        let (_, ring3) = ring_with(&keys, Variant::Tangaroa, "c1");
        assert!(!ring3.verify(&msg));
        // Missing signature.
        assert!(!ring.verify(&Signed {
            body: msg.body.clone(),
            sig: None
        }));
    }

    fn ring_with(keys: &[SigningKey], v: Variant, c: &str) -> ((), Keyring) {
        let ring = Keyring::new(
            Domain::new(v, c),
            keys.iter().map(|k| k.verifying_key()).collect(),
            HashMap::new(),
        )
        .unwrap();
        ((), ring)
    }

    /// Bisection finds exactly the bad signatures, wherever they sit, and a set larger
    /// than one batch is split without losing a verdict.
    #[test]
    fn verify_each_gives_every_signature_its_single_verdict() {
        let (keys, ring) = ring(Variant::Bft, "c1");
        let hello = |i: usize| {
            ring.domain.sign(
                &keys[i % 3],
                Hello {
                    from: (i % 3) as NodeId,
                    text: format!("hi {i}"),
                },
            )
        };
        let count = MAX_BATCH_SIGNATURES + 44;
        let bad = [0, 7, 8, 200, count - 1];
        let msgs: Vec<_> = (0..count)
            .map(|i| {
                let mut m = hello(i);
                if bad.contains(&i) {
                    m.sig = hello(i + count).sig;
                }
                m
            })
            .collect();
        let verdicts = ring.verify_each(&msgs);
        assert_eq!(verdicts.len(), count);
        for (i, (m, ok)) in msgs.iter().zip(&verdicts).enumerate() {
            assert_eq!(*ok, ring.verify(m), "signature {i}");
            assert_eq!(*ok, !bad.contains(&i), "signature {i}");
        }
    }

    #[test]
    fn raft_variant_signs_nothing() {
        let (keys, ring) = ring(Variant::Raft, "c1");
        let msg = ring.domain.sign(
            &keys[0],
            Hello {
                from: 0,
                text: "x".into(),
            },
        );
        assert!(msg.sig.is_none());
        assert!(ring.verify(&msg));
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (0x01 followed by zeros) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            Keyring::parse_key(Principal::Client(7), &identity),
            Err(KeyError::Weak(Principal::Client(7)))
        );
        let good = signing_key_from_seed([5; 32]).verifying_key().to_bytes();
        assert!(Keyring::parse_key(Principal::Node(0), &good).is_ok());
    }

    #[test]
    fn hash_chain_depends_on_every_field() {
        let g = genesis_hash("c");
        assert_ne!(g, genesis_hash("d"));
        let h = chain_hash(&g, 1, 1, b"req");
        assert_ne!(h, chain_hash(&g, 2, 1, b"req"));
        assert_ne!(h, chain_hash(&g, 1, 2, b"req"));
        assert_ne!(h, chain_hash(&g, 1, 1, b"reQ"));
        assert_ne!(h, chain_hash(&genesis_hash("d"), 1, 1, b"req"));
        assert_eq!(h, chain_hash(&g, 1, 1, b"req"));
    }
}
