//! Per-operation cost of the cryptography every message pays: Ed25519 signing and ZIP-215
//! verification through `tangaroa::crypto` (on a client `Request` and on an `Ack`),
//! the `SigCache` fast path of `Keyring::verify_cached`, and one step of the SHA-256 hash
//! chain. These are the unit costs behind the `bench` command's crypto bound: a node's
//! throughput cannot exceed what its cores can sign, verify and hash per committed entry.
//!
//! Batch verification: `Keyring::verify_all` checks a set of signatures (the client requests
//! of an AppendEntries, a proof's votes, a certificate's Acks) as one ZIP-215 batch, whose
//! acceptance set equals single verification's; `verify_batch_64_requests` measures it.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;
use std::hint::black_box;
use tangaroa::crypto::{
    chain_hash, genesis_hash, signing_key_from_seed, Domain, Keyring, SigCache,
};
use tangaroa::protocol::log::payload_bytes;
use tangaroa::protocol::{Ack, Op, Payload, Request, Variant};

const CLUSTER: &str = "bench";
const NODES: u8 = 4;
const CLIENT: u32 = 0;

struct Fixture {
    ring: Keyring,
    nodes: Vec<SigningKey>,
    client: SigningKey,
}

fn fixture() -> Fixture {
    let nodes: Vec<SigningKey> = (0..NODES)
        .map(|i| signing_key_from_seed([i + 1; 32]))
        .collect();
    let client = signing_key_from_seed([99; 32]);
    let ring = Keyring::new(
        Domain::new(Variant::Bft, CLUSTER),
        nodes.iter().map(|k| k.verifying_key()).collect(),
        HashMap::from([(CLIENT, client.verifying_key())]),
    )
    .expect("seeded keys are not weak");
    Fixture {
        ring,
        nodes,
        client,
    }
}

/// A typical client request: a small put.
fn request() -> Request {
    Request {
        client: CLIENT,
        seq: 42,
        op: Op::Put {
            key: "key-000042".into(),
            value: "value-0000000042".into(),
        },
    }
}

/// A typical positive Ack from node 1 for the first entry.
fn ack() -> Ack {
    Ack {
        term: 3,
        from: 1,
        index: 1,
        hash: chain_hash(&genesis_hash(CLUSTER), 3, 1, b"entry"),
        success: true,
    }
}

fn sign_and_verify(c: &mut Criterion) {
    let fx = fixture();
    let domain = &fx.ring.domain;
    let client_vk = fx.client.verifying_key();
    let node_vk = fx.nodes[1].verifying_key();

    let signed_req = domain.sign(&fx.client, request());
    assert!(signed_req.sig.is_some(), "the bft variant signs");
    assert!(domain.verify(&client_vk, &signed_req));
    assert!(!domain.verify(&node_vk, &signed_req), "wrong key must fail");

    let signed_ack = domain.sign(&fx.nodes[1], ack());
    assert!(domain.verify(&node_vk, &signed_ack));

    let mut warm = SigCache::new(1024);
    assert!(fx.ring.verify_cached(&signed_req, Some(&mut warm)));
    assert!(fx.ring.verify_cached(&signed_ack, Some(&mut warm)));

    let mut g = c.benchmark_group("crypto");
    g.throughput(Throughput::Elements(1));

    g.bench_function("sign_request", |b| {
        b.iter_batched(
            request,
            |r| domain.sign(black_box(&fx.client), black_box(r)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("verify_zip215_request", |b| {
        b.iter(|| fx.ring.verify(black_box(&signed_req)))
    });
    g.bench_function("sign_ack", |b| {
        b.iter_batched(
            ack,
            |a| domain.sign(black_box(&fx.nodes[1]), black_box(a)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("verify_zip215_ack", |b| {
        b.iter(|| fx.ring.verify(black_box(&signed_ack)))
    });
    let batch: Vec<_> = (0..64u64)
        .map(|i| {
            let mut r = request();
            r.seq = i;
            domain.sign(&fx.client, r)
        })
        .collect();
    assert!(fx.ring.verify_all(&batch, None));
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64_requests", |b| {
        b.iter(|| fx.ring.verify_all(black_box(&batch), None))
    });
    g.throughput(Throughput::Elements(1));

    // The cache path: the signature was verified once already, so this is the key lookup,
    // re-encoding the body and one SHA-256 of (key, signature, signed bytes).
    g.bench_function("verify_cached_warm_request", |b| {
        b.iter(|| {
            fx.ring
                .verify_cached(black_box(&signed_req), Some(&mut warm))
        })
    });
    g.bench_function("verify_cached_warm_ack", |b| {
        b.iter(|| {
            fx.ring
                .verify_cached(black_box(&signed_ack), Some(&mut warm))
        })
    });
    // A miss: the strict check plus computing and inserting the cache id.
    g.bench_function("verify_cached_cold_request", |b| {
        b.iter_batched_ref(
            || SigCache::new(1024),
            |cache| fx.ring.verify_cached(black_box(&signed_req), Some(cache)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn hash_chain(c: &mut Criterion) {
    let prev = genesis_hash(CLUSTER);
    let small = vec![0xabu8; 100];
    let large = vec![0xcdu8; 1024];
    assert_ne!(
        chain_hash(&prev, 1, 1, &small),
        chain_hash(&prev, 1, 1, &large)
    );
    assert_eq!(
        chain_hash(&prev, 1, 1, &small),
        chain_hash(&prev, 1, 1, &small)
    );

    // What the log really hashes per entry: postcard(payload) of a signed request.
    let fx = fixture();
    let payload = Payload::Request(fx.ring.domain.sign(&fx.client, request()));
    let typical = chain_hash(&prev, 1, 1, &payload_bytes(&payload));
    assert_ne!(typical, prev);

    let mut g = c.benchmark_group("chain_hash");
    for (name, payload) in [("100B", &small), ("1KiB", &large)] {
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                chain_hash(
                    black_box(&prev),
                    black_box(7),
                    black_box(12345),
                    black_box(payload),
                )
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("request_entry_with_encode", |b| {
        b.iter(|| {
            chain_hash(
                black_box(&prev),
                black_box(1),
                black_box(1),
                &payload_bytes(black_box(&payload)),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, sign_and_verify, hash_chain);
criterion_main!(benches);
