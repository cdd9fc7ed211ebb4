//! Per-message costs of the consensus traffic: postcard encoding and decoding (`tangaroa::codec`) of a signed
//! `Message::AppendEntries` (1 and 64 entries, each a signed client put), plain and as the
//! transport frames it (`tangaroa::transport::frame`), full authentication of such a batch,
//! and verification of the two transferable proofs the bft variant ships: an
//! `ElectionProof` of q votes and a `PreparedCert` of q Acks, for n = 4 (q = 3) and
//! n = 7 (q = 5). Together with `benches/crypto.rs` these are the per-operation costs behind
//! the `bench` command's crypto bound.
//!
//! The library has no public function that verifies an `ElectionProof` or a `PreparedCert`
//! on its own: signatures are checked by `tangaroa::protocol::authenticate` on the message
//! that carries them. So `proof/verify` authenticates an empty AppendEntries (a heartbeat)
//! carrying the proof, and `cert/verify` a RequestVote carrying the certificate as its lock;
//! both include the carrier's own signature (one more strict verification), which
//! `append_entries/authenticate/0` measures alone.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;
use std::hint::black_box;
use tangaroa::codec;
use tangaroa::crypto::{genesis_hash, signing_key_from_seed, Domain, Keyring, Principal, SigCache};
use tangaroa::protocol::log::Log;
use tangaroa::protocol::{
    authenticate, authenticate_cached, Ack, AppendEntries, AuthError, ElectionProof, Entry,
    Message, Op, Payload, PreparedCert, Quorum, Request, RequestVote, Term, Variant, Vote,
};
use tangaroa::transport::{frame, Wire};

const CLUSTER: &str = "bench";
const CLIENTS: u32 = 4;
const LEADER: u32 = 0;

/// Node keys, client keys and the keyring of an `n`-node bft cluster.
struct Cluster {
    ring: Keyring,
    nodes: Vec<SigningKey>,
    clients: Vec<SigningKey>,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let nodes: Vec<SigningKey> = (0..n as u8)
            .map(|i| signing_key_from_seed([i + 1; 32]))
            .collect();
        let clients: Vec<SigningKey> = (0..CLIENTS as u8)
            .map(|i| signing_key_from_seed([200 + i; 32]))
            .collect();
        let ring = Keyring::new(
            Domain::new(Variant::Bft, CLUSTER),
            nodes.iter().map(|k| k.verifying_key()).collect(),
            clients
                .iter()
                .enumerate()
                .map(|(c, k)| (c as u32, k.verifying_key()))
                .collect::<HashMap<_, _>>(),
        )
        .expect("seeded keys are not weak");
        Cluster {
            ring,
            nodes,
            clients,
        }
    }

    fn q(&self) -> usize {
        Quorum::new(Variant::Bft, self.nodes.len()).q
    }

    /// A log of `len` entries of `term`, each a signed small put from one of the clients.
    fn log(&self, term: Term, len: u64) -> Log {
        let mut log = Log::new(CLUSTER, true);
        for index in 1..=len {
            let client = (index % CLIENTS as u64) as u32;
            let request = Request {
                client,
                seq: index,
                op: Op::Put {
                    key: format!("key-{index:06}"),
                    value: format!("value-{index:010}").into(),
                },
            };
            let signed = self
                .ring
                .domain
                .sign(&self.clients[client as usize], request);
            log.append(Entry {
                term,
                index,
                payload: Payload::Request(signed),
            });
        }
        log
    }

    /// The leader's signed AppendEntries shipping its whole log from the start.
    fn append_entries(
        &self,
        log: &Log,
        term: Term,
        proof: Option<ElectionProof>,
        lock: Option<PreparedCert>,
    ) -> Message {
        let body = AppendEntries {
            term,
            leader: LEADER,
            prev_index: 0,
            prev_term: 0,
            prev_hash: genesis_hash(CLUSTER),
            entries: log.entries().to_vec(),
            commit: 0,
            proof,
            lock,
        };
        Message::AppendEntries(self.ring.domain.sign(&self.nodes[LEADER as usize], body))
    }

    /// q granted votes for the leader in `term`, the leader's own included.
    fn proof(&self, term: Term) -> ElectionProof {
        let votes = (0..self.q() as u32)
            .map(|voter| {
                let vote = Vote {
                    term,
                    voter,
                    candidate: LEADER,
                    lock: None,
                };
                self.ring.domain.sign(&self.nodes[voter as usize], vote)
            })
            .collect();
        ElectionProof {
            term,
            leader: LEADER,
            votes,
        }
    }

    /// `PC(term, index, hash)` for the last entry of `log`, from q distinct nodes.
    fn cert(&self, log: &Log, term: Term) -> PreparedCert {
        let index = log.last_index();
        let hash = log.last_hash();
        let acks = (0..self.q() as u32)
            .map(|from| {
                let ack = Ack {
                    term,
                    from,
                    index,
                    hash,
                    success: true,
                };
                self.ring.domain.sign(&self.nodes[from as usize], ack)
            })
            .collect();
        PreparedCert {
            term,
            index,
            hash,
            acks,
        }
    }

    /// The candidate's signed RequestVote carrying `lock`.
    fn request_vote(&self, log: &Log, term: Term, lock: PreparedCert) -> Message {
        let body = RequestVote {
            term,
            candidate: LEADER,
            last_index: log.last_index(),
            last_term: log.last_term(),
            last_hash: log.last_hash(),
            lock: Some(lock),
        };
        Message::RequestVote(self.ring.domain.sign(&self.nodes[LEADER as usize], body))
    }
}

const LEADER_LINK: Principal = Principal::Node(LEADER);

fn append_entries(c: &mut Criterion) {
    let cluster = Cluster::new(4);
    let mut g = c.benchmark_group("append_entries");
    for len in [1u64, 64] {
        let log = cluster.log(1, len);
        let msg = cluster.append_entries(&log, 1, None, None);
        let bytes = codec::encode(&msg);
        let decoded: Message = codec::decode(&bytes).expect("decodes");
        assert_eq!(decoded, msg);
        assert_eq!(authenticate(&cluster.ring, LEADER_LINK, &msg), Ok(()));

        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("encode", len), &msg, |b, msg| {
            b.iter(|| codec::encode(black_box(msg)))
        });
        g.bench_with_input(BenchmarkId::new("decode", len), &bytes, |b, bytes| {
            b.iter(|| codec::decode::<Message>(black_box(bytes)).expect("decodes"))
        });

        // The transport's framing of the same message: a size pass, the length prefix,
        // and bounded decoding that rejects trailing bytes.
        let wire = Wire::Protocol(msg.clone());
        let framed = frame::encode(&wire).expect("within MAX_FRAME");
        assert_eq!(frame::decode(&framed[4..]).expect("decodes"), wire);
        g.bench_with_input(BenchmarkId::new("frame_encode", len), &wire, |b, wire| {
            b.iter(|| frame::encode(black_box(wire)).expect("within MAX_FRAME"))
        });
        g.bench_with_input(
            BenchmarkId::new("frame_decode", len),
            &framed[4..],
            |b, body| b.iter(|| frame::decode(black_box(body)).expect("decodes")),
        );
    }

    // Authentication: the leader's signature plus one per carried client request.
    g.throughput(Throughput::Elements(1));
    for len in [0u64, 1, 64] {
        let log = cluster.log(1, len);
        let msg = cluster.append_entries(&log, 1, None, None);
        assert_eq!(authenticate(&cluster.ring, LEADER_LINK, &msg), Ok(()));
        g.bench_with_input(BenchmarkId::new("authenticate", len), &msg, |b, msg| {
            b.iter(|| authenticate(&cluster.ring, black_box(LEADER_LINK), black_box(msg)))
        });
    }
    // The same with every signature already in a warm cache (a retransmission).
    let log = cluster.log(1, 64);
    let msg = cluster.append_entries(&log, 1, None, None);
    let mut cache = SigCache::new(4096);
    assert_eq!(
        authenticate_cached(&cluster.ring, &mut cache, LEADER_LINK, &msg),
        Ok(())
    );
    g.bench_with_input(BenchmarkId::new("authenticate_warm", 64), &msg, |b, msg| {
        b.iter(|| {
            authenticate_cached(
                &cluster.ring,
                &mut cache,
                black_box(LEADER_LINK),
                black_box(msg),
            )
        })
    });
    g.finish();
}

fn election_proof(c: &mut Criterion) {
    let mut g = c.benchmark_group("proof");
    for (n, q) in [(4usize, 3usize), (7, 5)] {
        let cluster = Cluster::new(n);
        assert_eq!(cluster.q(), q);
        let term = 2;
        let proof = cluster.proof(term);
        assert_eq!(proof.votes.len(), q);
        let heartbeat = cluster.log(term, 0);
        let msg = cluster.append_entries(&heartbeat, term, Some(proof.clone()), None);
        assert_eq!(authenticate(&cluster.ring, LEADER_LINK, &msg), Ok(()));

        // A forged vote must be caught, or this would not be measuring vote checks.
        let mut forged = proof;
        forged.votes[q - 1].body.candidate = 1;
        let bad = cluster.append_entries(&heartbeat, term, Some(forged), None);
        bench_verify(&mut g, &cluster.ring, n, &msg, &bad, "proof");
    }
    g.finish();
}

/// Checks that `msg` authenticates and that `bad` is caught as a forged `what` (or this
/// would not be measuring those checks), then times authenticating `msg`.
fn bench_verify(
    g: &mut BenchmarkGroup<'_, WallTime>,
    ring: &Keyring,
    n: usize,
    msg: &Message,
    bad: &Message,
    what: &'static str,
) {
    assert_eq!(authenticate(ring, LEADER_LINK, msg), Ok(()));
    assert_eq!(
        authenticate(ring, LEADER_LINK, bad),
        Err(AuthError::SignedForgery(LEADER_LINK, what))
    );
    g.throughput(Throughput::Elements(1));
    g.bench_with_input(
        BenchmarkId::new("verify", format!("n={n}")),
        msg,
        |b, msg| b.iter(|| authenticate(ring, black_box(LEADER_LINK), black_box(msg))),
    );
}

fn prepared_cert(c: &mut Criterion) {
    let mut g = c.benchmark_group("cert");
    for (n, q) in [(4usize, 3usize), (7, 5)] {
        let cluster = Cluster::new(n);
        assert_eq!(cluster.q(), q);
        let log = cluster.log(1, 8);
        let cert = cluster.cert(&log, 1);
        assert_eq!(cert.acks.len(), q);
        let msg = cluster.request_vote(&log, 2, cert.clone());
        assert_eq!(authenticate(&cluster.ring, LEADER_LINK, &msg), Ok(()));

        // A forged Ack must be caught, or this would not be measuring Ack checks.
        let mut forged = cert;
        forged.acks[q - 1].body.index -= 1;
        let bad = cluster.request_vote(&log, 2, forged);
        bench_verify(&mut g, &cluster.ring, n, &msg, &bad, "lock");
    }
    g.finish();
}

criterion_group!(benches, append_entries, election_proof, prepared_cert);
criterion_main!(benches);
