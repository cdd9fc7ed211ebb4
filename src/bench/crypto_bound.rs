//! This machine's crypto bound, measured in the same run as the cluster figures: every
//! committed request costs at least one client signature and one verification at each of
//! the n nodes, so no implementation can commit more than
//! `cores / (sign + n × verify)` requests per second. With ZIP-215 batch verification
//! (PROTOCOL.md allows it) the bound uses the per-signature cost in batches of 64 instead.

use crate::crypto::{signing_key_from_seed, Domain, Keyring};
use crate::protocol::{Op, Request, Variant};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CryptoCost {
    pub sign_us: f64,
    pub verify_us: f64,
    /// Per signature, verified in ZIP-215 batches of `BATCH`, each signature by another key.
    pub verify_batch_us: f64,
}

/// The batch size the batched bound assumes: a full AppendEntries under load.
pub const BATCH: usize = 64;

impl CryptoCost {
    /// Requests per second the crypto alone allows on `cores` cores with `n` nodes.
    pub fn bound_rps(&self, cores: usize, n: usize) -> f64 {
        cores as f64 * 1e6 / (self.sign_us + n as f64 * self.verify_us)
    }

    /// The same bound with every verification done in batches. (Not reported yet: no
    /// command shows it; its test keeps it right.)
    #[allow(dead_code)]
    pub fn batched_bound_rps(&self, cores: usize, n: usize) -> f64 {
        cores as f64 * 1e6 / (self.sign_us + n as f64 * self.verify_batch_us)
    }
}

/// Times signing and strict verification of a client request carrying `payload` bytes,
/// through the same `Domain` code the nodes use, for about `budget` each.
pub fn measure(payload: usize, budget: Duration) -> CryptoCost {
    let domain = Domain::new(Variant::Bft, "bench");
    // As many clients as a batch holds: a batch of one key's signatures shares its key
    // term and would understate the per-signature cost of a leader's mixed batches.
    let keys: Vec<_> = (0..BATCH as u8)
        .map(|i| signing_key_from_seed([i.wrapping_add(7); 32]))
        .collect();
    let ring =
        Keyring::of_signing_keys(domain.clone(), &[], &keys).expect("generated keys are valid");
    let client_of = |seq: u64| (seq % BATCH as u64) as u32;
    let request = |seq: u64| Request {
        client: client_of(seq),
        seq,
        op: Op::Put {
            key: format!("k{seq}"),
            value: "x".repeat(payload).into(),
        },
    };
    let mut signed = Vec::new();
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < budget || seq < 64 {
        signed.push(domain.sign(&keys[client_of(seq) as usize], request(seq)));
        seq += 1;
    }
    // Building the request is part of the client's cost too; it is tiny next to signing.
    let sign_us = start.elapsed().as_secs_f64() * 1e6 / seq as f64;
    let start = Instant::now();
    let mut verified = 0u64;
    while start.elapsed() < budget || verified < 64 {
        let m = &signed[(verified as usize) % signed.len()];
        assert!(black_box(ring.verify(m)), "own signature verifies");
        verified += 1;
    }
    let verify_us = start.elapsed().as_secs_f64() * 1e6 / verified as f64;
    let start = Instant::now();
    let mut batched = 0usize;
    while start.elapsed() < budget || batched < BATCH {
        let from = batched % (signed.len() - BATCH + 1).max(1);
        let batch = &signed[from..(from + BATCH).min(signed.len())];
        assert!(
            black_box(ring.verify_all(batch, None)),
            "own signatures verify"
        );
        batched += batch.len();
    }
    let verify_batch_us = start.elapsed().as_secs_f64() * 1e6 / batched as f64;
    CryptoCost {
        sign_us,
        verify_us,
        verify_batch_us,
    }
}
