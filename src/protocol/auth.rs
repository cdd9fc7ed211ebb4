//! Message authentication, kept out of the state machine.
//!
//! `authenticate` checks every signature a message carries, the outer one and the embedded
//! ones (client requests in entries, votes in proofs, Acks in certificates), and that a
//! directly sent message comes from the principal its link authenticated. It is a pure
//! function, so a runtime may run it on any thread; the core then trusts signatures and
//! checks only meaning (distinct voters, terms, hashes).

use super::message::{AppendEntries, Evidence, Message, PreparedCert, MAX_SNAPSHOT_CHUNK_BYTES};
use super::node::{MAX_BATCH, MAX_CATCHUP};
use crate::crypto::{Keyring, LinkCaches, Principal, SigBatch, SigCache, Signable, Signed, Slot};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("claims to be {claimed:?} but arrived from {link:?}")]
    WrongSender { claimed: Principal, link: Principal },
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// The sender's own signature is good but it vouches for content whose signatures are
    /// not: proof that the sender itself misbehaved (a leader tampering with requests).
    #[error("{0:?} signed a message carrying a forged signature inside ({1})")]
    SignedForgery(Principal, &'static str),
    #[error("unknown client {0}")]
    UnknownClient(u32),
    /// A collection inside the message is larger than any honest node sends: refused
    /// before a single signature is checked (PROTOCOL.md, "Resource bounds").
    #[error("oversized {0}")]
    Oversized(&'static str),
}

/// Refuses a message whose collections exceed what an honest sender ever puts in one: a
/// proof or certificate of more than n signatures (2n for a catch-up's proof of Commits,
/// `Node::commit_proof_for`), more entries than the leader's largest
/// AppendEntries or a peer's CatchUp. Checked before any verification, so a 16 MiB frame
/// of self-signed Acks costs a length comparison, not seconds of CPU.
pub fn check_bounds(nodes: usize, msg: &Message) -> Result<(), AuthError> {
    let cert_ok = |c: &Option<PreparedCert>| c.as_ref().is_none_or(|c| c.acks.len() <= nodes);
    let ae_ok = |ae: &AppendEntries| {
        ae.entries.len() <= MAX_CATCHUP.max(MAX_BATCH)
            && ae.proof.as_ref().is_none_or(|p| p.votes.len() <= nodes)
            && cert_ok(&ae.lock)
    };
    let ok = match msg {
        Message::RequestVote(m) => cert_ok(&m.body.lock),
        Message::AppendEntries(m) => ae_ok(&m.body),
        Message::CatchUp(c) => c.entries.len() <= MAX_BATCH && c.proof.len() <= 2 * nodes,
        Message::Snapshot(s) => {
            s.chunk.len() <= MAX_SNAPSHOT_CHUNK_BYTES && s.cert.checkpoints.len() <= nodes
        }
        Message::Evidence(Evidence::AppendEntries(a, b)) => ae_ok(&a.body) && ae_ok(&b.body),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::Oversized(msg.kind()))
    }
}

/// How `check` has a signature verified: at once ([`Checker`]), or gathered into a batch
/// first ([`Collect`]) and answered from the batch's verdicts afterwards ([`Replay`]).
trait Sigs {
    fn ring(&self) -> &Keyring;
    fn verify<T: Signable>(&mut self, m: &Signed<T>) -> bool;
    /// Several signatures of one kind: true only if every one is good.
    fn verify_all<'a, T: Signable + 'a>(
        &mut self,
        msgs: impl IntoIterator<Item = &'a Signed<T>>,
    ) -> bool;
}

/// Verification with an optional cache of signatures already found good.
struct Checker<'a> {
    ring: &'a Keyring,
    cache: Option<&'a mut SigCache>,
}

impl Sigs for Checker<'_> {
    fn ring(&self) -> &Keyring {
        self.ring
    }

    fn verify<T: Signable>(&mut self, m: &Signed<T>) -> bool {
        self.ring.verify_cached(m, self.cache.as_deref_mut())
    }

    /// Checked as one ZIP-215 batch.
    fn verify_all<'a, T: Signable + 'a>(
        &mut self,
        msgs: impl IntoIterator<Item = &'a Signed<T>>,
    ) -> bool {
        self.ring.verify_all(msgs, self.cache.as_deref_mut())
    }
}

/// The first pass of a batch: every signature `check` would look at goes into the batch
/// (its slot recorded in visiting order) and is taken as good, so the pass visits every
/// signature a message carries.
struct Collect<'a, 'r> {
    batch: &'a mut SigBatch<'r>,
    cache: Option<&'a SigCache>,
    slots: &'a mut Vec<Slot>,
}

impl Sigs for Collect<'_, '_> {
    fn ring(&self) -> &Keyring {
        self.batch.ring()
    }

    fn verify<T: Signable>(&mut self, m: &Signed<T>) -> bool {
        self.slots.push(self.batch.push(m, self.cache));
        true
    }

    fn verify_all<'a, T: Signable + 'a>(
        &mut self,
        msgs: impl IntoIterator<Item = &'a Signed<T>>,
    ) -> bool {
        for m in msgs {
            self.verify(m);
        }
        true
    }
}

/// The second pass: `check` again, each signature answered by the batch. It visits the
/// signatures in the order the first pass recorded them and stops at the first bad one,
/// so it reads a prefix of the slots and reaches the verdict `check` reaches alone.
struct Replay<'a> {
    ring: &'a Keyring,
    slots: std::slice::Iter<'a, Slot>,
    verdicts: &'a [bool],
}

impl Sigs for Replay<'_> {
    fn ring(&self) -> &Keyring {
        self.ring
    }

    fn verify<T: Signable>(&mut self, _: &Signed<T>) -> bool {
        match self.slots.next() {
            Some(&slot) => SigBatch::ok(slot, self.verdicts),
            None => {
                debug_assert!(false, "the replay visits only what the collection did");
                false
            }
        }
    }

    fn verify_all<'a, T: Signable + 'a>(
        &mut self,
        msgs: impl IntoIterator<Item = &'a Signed<T>>,
    ) -> bool {
        // Every member's slot is taken, even after a bad one, so that what follows
        // reads its own.
        let mut ok = true;
        for m in msgs {
            ok &= self.verify(m);
        }
        ok
    }
}

fn check_cert(ring: &mut impl Sigs, cert: &PreparedCert) -> bool {
    ring.verify_all(&cert.acks)
}

fn outer<T: Signable>(ring: &mut impl Sigs, m: &Signed<T>) -> Result<(), AuthError> {
    if ring.verify(m) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(T::KIND))
    }
}

/// Checks every signature in `msg`, and that direct messages come from `link`.
pub fn authenticate(ring: &Keyring, link: Principal, msg: &Message) -> Result<(), AuthError> {
    check(&mut Checker { ring, cache: None }, link, msg)
}

/// As `authenticate`, skipping signatures `cache` has already seen verified.
pub fn authenticate_cached(
    ring: &Keyring,
    cache: &mut SigCache,
    link: Principal,
    msg: &Message,
) -> Result<(), AuthError> {
    check(
        &mut Checker {
            ring,
            cache: Some(cache),
        },
        link,
        msg,
    )
}

/// Authenticates messages that arrived together (on one read, or queued together for
/// verification), giving each exactly the verdict `authenticate` gives it alone; but every
/// signature of every message (client requests, Acks, Commits, the votes of election
/// proofs, the Acks of locks, a catch-up's Commits) is checked in one ZIP-215 batch,
/// bisected on failure, so a bad signature is found and only its message refused (or its
/// signer blamed, for a forgery inside a signed message) while the good ones beside it
/// pass.
pub fn authenticate_batch(
    ring: &Keyring,
    msgs: &[(Principal, &Message)],
) -> Vec<Result<(), AuthError>> {
    authenticate_batch_cached(ring, msgs, None)
}

/// As `authenticate_batch`, skipping signatures already verified on the message's link
/// (its cache in `caches`) and remembering the good ones found there.
pub fn authenticate_batch_cached(
    ring: &Keyring,
    msgs: &[(Principal, &Message)],
    mut caches: Option<&mut LinkCaches>,
) -> Vec<Result<(), AuthError>> {
    let mut batch = SigBatch::new(ring);
    let slots: Vec<Vec<Slot>> = msgs
        .iter()
        .map(|&(link, msg)| {
            let mut slots = Vec::new();
            let cache = caches.as_deref().and_then(|c| c.get(link));
            // Its verdict waits for the batch's: only the slots matter here.
            let _ = check(
                &mut Collect {
                    batch: &mut batch,
                    cache,
                    slots: &mut slots,
                },
                link,
                msg,
            );
            slots
        })
        .collect();
    let verdicts = batch.verify();
    msgs.iter()
        .zip(&slots)
        .map(|(&(link, msg), slots)| {
            if let Some(cache) = caches.as_deref_mut().and_then(|c| c.get_mut(link)) {
                for &slot in slots {
                    batch.remember(slot, &verdicts, cache);
                }
            }
            check(
                &mut Replay {
                    ring,
                    slots: slots.iter(),
                    verdicts: &verdicts,
                },
                link,
                msg,
            )
        })
        .collect()
}

/// What every message must pass before any of its signatures is looked at: collections
/// within their bounds, and a directly sent message claimed by the link's own principal.
fn check_envelope(ring: &Keyring, link: Principal, msg: &Message) -> Result<(), AuthError> {
    check_bounds(ring.nodes(), msg)?;
    if let Some(claimed) = msg.direct_sender() {
        if claimed != link {
            return Err(AuthError::WrongSender { claimed, link });
        }
    }
    Ok(())
}

fn check_client_known(ring: &Keyring, client: super::types::ClientId) -> Result<(), AuthError> {
    if ring.has_client(client) {
        Ok(())
    } else {
        Err(AuthError::UnknownClient(client))
    }
}

fn check(ring: &mut impl Sigs, link: Principal, msg: &Message) -> Result<(), AuthError> {
    check_envelope(ring.ring(), link, msg)?;
    match msg {
        Message::RequestVote(m) => {
            outer(ring, m)?;
            if let Some(lock) = &m.body.lock {
                if !check_cert(ring, lock) {
                    return Err(AuthError::SignedForgery(m.signer(), "lock"));
                }
            }
        }
        Message::Vote(m) => outer(ring, m)?,
        Message::AppendEntries(m) => {
            outer(ring, m)?;
            let ae = &m.body;
            let requests = ae.entries.iter().filter_map(|e| e.payload.request());
            if !ring.verify_all(requests) {
                return Err(AuthError::SignedForgery(m.signer(), "request"));
            }
            if let Some(p) = &ae.proof {
                if !ring.verify_all(&p.votes) {
                    return Err(AuthError::SignedForgery(m.signer(), "proof"));
                }
            }
            if let Some(lock) = &ae.lock {
                if !check_cert(ring, lock) {
                    return Err(AuthError::SignedForgery(m.signer(), "lock"));
                }
            }
        }
        Message::Ack(m) => outer(ring, m)?,
        Message::Commit(m) => outer(ring, m)?,
        Message::Evidence(e) => {
            let ok = match e {
                Evidence::AppendEntries(a, b) => ring.verify(a) && ring.verify(b),
                Evidence::Votes(a, b) => ring.verify(a) && ring.verify(b),
                Evidence::Acks(a, b) => ring.verify(a) && ring.verify(b),
            };
            if !ok {
                return Err(AuthError::BadSignature("evidence"));
            }
        }
        Message::Request(r) => {
            check_client_known(ring.ring(), r.body.client)?;
            outer(ring, r)?;
        }
        Message::Revolution(m) => {
            if !ring.ring().has_client(m.body.client) {
                return Err(AuthError::UnknownClient(m.body.client));
            }
            outer(ring, m)?;
            if !ring.verify(&m.body.request) || m.body.request.body.client != m.body.client {
                return Err(AuthError::BadSignature("revolution request"));
            }
        }
        // Replies are authenticated by the link alone (checked above).
        Message::Reply(_) => {}
        Message::CatchUp(c) => {
            let requests = c.entries.iter().filter_map(|e| e.payload.request());
            if !ring.verify_all(requests) {
                return Err(AuthError::BadSignature("request in catch-up"));
            }
            if !ring.verify_all(&c.proof) {
                return Err(AuthError::BadSignature("commit in catch-up"));
            }
        }
        Message::Checkpoint(m) => outer(ring, m)?,
        Message::Snapshot(s) => {
            if !ring.verify_all(&s.cert.checkpoints) {
                return Err(AuthError::BadSignature("checkpoint in snapshot"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Digest, Domain};
    use crate::protocol::{Ack, CatchUp, Entry, Payload, RequestVote, Variant};

    #[test]
    fn a_bad_client_signature_inside_a_batch_is_found_and_blamed_on_the_leader() {
        use crate::protocol::{AppendEntries, Op, Request};
        let d = Domain::new(Variant::Bft, "t");
        let keys: Vec<_> = (0..4u8)
            .map(|i| signing_key_from_seed([i + 1; 32]))
            .collect();
        let client = signing_key_from_seed([77; 32]);
        let ring = Keyring::new(
            d.clone(),
            keys.iter().map(|k| k.verifying_key()).collect(),
            [(0, client.verifying_key())].into(),
        )
        .unwrap();
        let entries = |bad: Option<usize>| -> Vec<Entry> {
            (0..40u64)
                .map(|i| {
                    let op = Op::Put {
                        key: format!("k{i}"),
                        value: "v".into(),
                    };
                    let mut r = d.sign(
                        &client,
                        Request {
                            client: 0,
                            seq: i,
                            op,
                        },
                    );
                    if bad == Some(i as usize) {
                        // A valid signature, but of another request: only a full check finds it.
                        r.sig = d
                            .sign(
                                &client,
                                Request {
                                    client: 0,
                                    seq: 999,
                                    op: Op::Get { key: "x".into() },
                                },
                            )
                            .sig;
                    }
                    Entry {
                        term: 1,
                        index: i + 1,
                        payload: Payload::Request(r),
                    }
                })
                .collect()
        };
        let ae = |entries| {
            Message::AppendEntries(d.sign(
                &keys[0],
                AppendEntries {
                    term: 1,
                    leader: 0,
                    prev_index: 0,
                    prev_term: 0,
                    prev_hash: Digest::default(),
                    entries,
                    commit: 0,
                    proof: None,
                    lock: None,
                },
            ))
        };
        assert_eq!(
            authenticate(&ring, Principal::Node(0), &ae(entries(None))),
            Ok(())
        );
        for bad in [0, 17, 39] {
            assert_eq!(
                authenticate(&ring, Principal::Node(0), &ae(entries(Some(bad)))),
                Err(AuthError::SignedForgery(Principal::Node(0), "request")),
                "bad signature at {bad}"
            );
        }
        // Warm: with the good ones cached, the bad one alone is still found.
        let mut cache = SigCache::new(1024);
        let _ = authenticate_cached(&ring, &mut cache, Principal::Node(0), &ae(entries(None)));
        assert!(
            authenticate_cached(&ring, &mut cache, Principal::Node(0), &ae(entries(Some(5))))
                .is_err()
        );
    }

    /// Requests from many clients verified together: one forged signature among them is
    /// found and refused as a bad signature (as alone), and every good one beside it passes;
    /// a relayed request and an unknown client get the verdicts they get alone.
    #[test]
    fn a_bad_request_signature_in_a_leader_batch_is_found_and_only_it_refused() {
        use crate::protocol::{Op, Request};
        let d = Domain::new(Variant::Bft, "t");
        let clients: Vec<_> = (0..40u8)
            .map(|i| signing_key_from_seed([i + 100; 32]))
            .collect();
        let ring = Keyring::of_signing_keys(d.clone(), &[signing_key_from_seed([1; 32])], &clients)
            .unwrap();
        let request = |c: usize, seq: u64| {
            let op = Op::Put {
                key: format!("k{seq}"),
                value: "v".into(),
            };
            d.sign(
                &clients[c],
                Request {
                    client: c as u32,
                    seq,
                    op,
                },
            )
        };
        const FORGED: usize = 23;
        let msgs: Vec<(Principal, Message)> = (0..clients.len())
            .map(|c| {
                let mut r = request(c, 1);
                if c == FORGED {
                    r.sig = request(c, 2).sig;
                }
                (Principal::Client(c as u32), Message::Request(r))
            })
            .chain([
                // Client 1's request relayed by node 0: requests may be relayed.
                (Principal::Node(0), Message::Request(request(1, 3))),
                // Signed by client 0's key, for a client the ring does not know.
                (Principal::Client(99), {
                    let mut r = request(0, 4);
                    r.body.client = 99;
                    Message::Request(r)
                }),
            ])
            .collect();
        let refs: Vec<(Principal, &Message)> = msgs.iter().map(|(l, m)| (*l, m)).collect();
        let verdicts = authenticate_batch(&ring, &refs);
        assert_eq!(verdicts.len(), msgs.len());
        for (i, ((link, msg), verdict)) in msgs.iter().zip(&verdicts).enumerate() {
            assert_eq!(
                verdict,
                &authenticate(&ring, *link, msg),
                "message {i}: the batch verdict is the single one"
            );
        }
        assert_eq!(
            verdicts[FORGED],
            Err(AuthError::BadSignature("request")),
            "the forged one is blamed"
        );
        let passed = verdicts.iter().filter(|v| v.is_ok()).count();
        assert_eq!(
            passed,
            clients.len(),
            "every other request passes, the relayed one too"
        );
        assert_eq!(verdicts[41], Err(AuthError::UnknownClient(99)));
    }

    /// A bft domain, four node keys and their keyring (no clients).
    fn four_nodes() -> (Domain, Vec<ed25519_dalek::SigningKey>, Keyring) {
        let d = Domain::new(Variant::Bft, "t");
        let keys: Vec<_> = (0..4u8)
            .map(|i| signing_key_from_seed([i + 1; 32]))
            .collect();
        let ring = Keyring::new(
            d.clone(),
            keys.iter().map(|k| k.verifying_key()).collect(),
            Default::default(),
        )
        .unwrap();
        (d, keys, ring)
    }

    /// Node messages of several links checked as one batch, twice on the links' caches: a
    /// bad Ack, a forged Ack inside a leader's lock, a forged Commit inside a catch-up and
    /// an Evidence whose second half is forged are each found, with the verdict and blame
    /// single verification gives them (the forged lock convicts the leader that signed
    /// it), and every good message beside them passes, the second time from the caches.
    #[test]
    fn a_bad_signature_in_a_batch_of_node_messages_is_found_and_blamed() {
        use crate::protocol::{AppendEntries, Commit, ElectionProof, Evidence, Vote};
        let (d, keys, ring) = four_nodes();
        let ack = |from: u32, index: u64| {
            let body = Ack {
                term: 2,
                from,
                index,
                hash: Digest::default(),
                success: true,
            };
            d.sign(&keys[from as usize], body)
        };
        let commit = |from: u32, index: u64| {
            let body = Commit {
                term: 2,
                from,
                index,
                hash: Digest::default(),
            };
            d.sign(&keys[from as usize], body)
        };
        let vote = |voter: u32| {
            let body = Vote {
                term: 2,
                voter,
                candidate: 0,
                lock: None,
            };
            d.sign(&keys[voter as usize], body)
        };
        // A valid signature, but by the signer over other content.
        let forge_ack = |mut a: Signed<Ack>| {
            a.sig = ack(a.body.from, 999).sig;
            a
        };
        let append = |lock_acks: Vec<Signed<Ack>>| {
            let body = AppendEntries {
                term: 2,
                leader: 0,
                prev_index: 0,
                prev_term: 0,
                prev_hash: Digest::default(),
                entries: vec![],
                commit: 0,
                proof: Some(ElectionProof {
                    term: 2,
                    leader: 0,
                    votes: (0..3).map(vote).collect(),
                }),
                lock: Some(PreparedCert {
                    term: 1,
                    index: 1,
                    hash: Digest::default(),
                    acks: lock_acks,
                }),
            };
            Message::AppendEntries(d.sign(&keys[0], body))
        };
        let good_lock: Vec<_> = (1..4).map(|j| ack(j, 1)).collect();
        let mut bad_lock = good_lock.clone();
        bad_lock[1] = forge_ack(bad_lock[1].clone());
        let mut bad_proof = vec![commit(1, 1), commit(2, 1), commit(3, 1)];
        bad_proof[2].sig = commit(3, 998).sig;
        let n = |i: u32| Principal::Node(i);
        let msgs: Vec<(Principal, Message)> = vec![
            (n(0), append(good_lock.clone())),
            (n(1), Message::Ack(ack(1, 5))),
            (n(2), Message::Ack(forge_ack(ack(2, 5)))),
            (n(3), Message::Ack(ack(3, 5))),
            (n(1), Message::Commit(commit(1, 5))),
            (n(0), append(bad_lock)),
            (n(2), Message::Commit(commit(2, 5))),
            (
                n(3),
                Message::CatchUp(CatchUp {
                    from: 3,
                    prev_index: 0,
                    prev_hash: Digest::default(),
                    entries: vec![],
                    proof: bad_proof,
                }),
            ),
            (n(1), Message::Vote(vote(1))),
            (
                n(2),
                Message::Evidence(Evidence::Acks(ack(3, 7), forge_ack(ack(3, 8)))),
            ),
            (n(3), Message::Commit(commit(3, 5))),
        ];
        let refs: Vec<(Principal, &Message)> = msgs.iter().map(|(l, m)| (*l, m)).collect();
        let expected = [
            Ok(()),
            Ok(()),
            Err(AuthError::BadSignature("ack")),
            Ok(()),
            Ok(()),
            Err(AuthError::SignedForgery(n(0), "lock")),
            Ok(()),
            Err(AuthError::BadSignature("commit in catch-up")),
            Ok(()),
            Err(AuthError::BadSignature("evidence")),
            Ok(()),
        ];
        let mut caches = LinkCaches::new(64);
        for round in 0..2 {
            let verdicts = authenticate_batch_cached(&ring, &refs, Some(&mut caches));
            assert_eq!(verdicts, expected, "round {round}");
            for ((link, msg), verdict) in msgs.iter().zip(&verdicts) {
                assert_eq!(verdict, &authenticate(&ring, *link, msg), "round {round}");
            }
        }
        // The good signatures were remembered on their links, the bad ones were not.
        let cached = |link, m: &Signed<Ack>| {
            let mut batch = SigBatch::new(&ring);
            batch.push(m, caches.get(link)) == Slot::Known(true)
        };
        assert!(cached(n(1), &ack(1, 5)));
        assert!(!cached(n(2), &forge_ack(ack(2, 5))));
        assert!(!cached(n(3), &ack(1, 5)), "each link has its own cache");
    }

    #[test]
    fn oversized_collections_are_refused_before_any_signature_is_checked() {
        let (d, keys, ring) = four_nodes();
        // A lock of n+1 Acks, all by the sender: more than any certificate needs.
        let ack = d.sign(
            &keys[1],
            Ack {
                term: 1,
                from: 1,
                index: 1,
                hash: Digest::default(),
                success: true,
            },
        );
        let rv = |acks: usize| {
            Message::RequestVote(d.sign(
                &keys[1],
                RequestVote {
                    term: 2,
                    candidate: 1,
                    last_index: 1,
                    last_term: 1,
                    last_hash: Digest::default(),
                    lock: Some(PreparedCert {
                        term: 1,
                        index: 1,
                        hash: Digest::default(),
                        acks: vec![ack.clone(); acks],
                    }),
                },
            ))
        };
        assert_eq!(
            authenticate(&ring, Principal::Node(1), &rv(5)),
            Err(AuthError::Oversized("request-vote"))
        );
        // At n it is only a certificate of one voter: refused by meaning later, not here.
        assert_eq!(authenticate(&ring, Principal::Node(1), &rv(4)), Ok(()));
        let noop = |index| Entry {
            term: 1,
            index,
            payload: Payload::Noop,
        };
        let catch_up = |n: u64| {
            Message::CatchUp(CatchUp {
                from: 2,
                prev_index: 0,
                prev_hash: Digest::default(),
                entries: (1..=n).map(noop).collect(),
                proof: vec![],
            })
        };
        assert_eq!(
            authenticate(&ring, Principal::Node(2), &catch_up(MAX_BATCH as u64 + 1)),
            Err(AuthError::Oversized("catch-up"))
        );
        assert_eq!(
            authenticate(&ring, Principal::Node(2), &catch_up(MAX_BATCH as u64)),
            Ok(())
        );
    }

    /// The Commits a catch-up relays as proof: at most 2n (one or two per node,
    /// `Node::commit_proof_for`), each signed by the node it names.
    #[test]
    fn a_catch_up_proof_is_bounded_and_every_commit_in_it_is_checked() {
        let (d, keys, ring) = four_nodes();
        let commit = |by: usize, from: u32| {
            let body = crate::protocol::Commit {
                term: 1,
                from,
                index: 1,
                hash: Digest::default(),
            };
            d.sign(&keys[by], body)
        };
        let with_proof = |proof| {
            Message::CatchUp(CatchUp {
                from: 2,
                prev_index: 0,
                prev_hash: Digest::default(),
                entries: vec![],
                proof,
            })
        };
        let good: Vec<_> = (0..4).map(|j| commit(j, j as u32)).collect();
        let from = Principal::Node(2);
        assert_eq!(authenticate(&ring, from, &with_proof(good.clone())), Ok(()));
        let twice = [good.clone(), good.clone()].concat();
        assert_eq!(
            authenticate(&ring, from, &with_proof(twice.clone())),
            Ok(())
        );
        let mut nine = twice;
        nine.push(commit(0, 0));
        assert_eq!(
            authenticate(&ring, from, &with_proof(nine)),
            Err(AuthError::Oversized("catch-up"))
        );
        let forged = vec![commit(2, 3)]; // node 2 signs a Commit claiming to be node 3's
        assert_eq!(
            authenticate(&ring, from, &with_proof(forged)),
            Err(AuthError::BadSignature("commit in catch-up"))
        );
    }
}
