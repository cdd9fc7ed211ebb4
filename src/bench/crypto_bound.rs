//! This machine's crypto bound, measured in the same run as the cluster figures: every
//! committed request costs at least one client signature and one verification at each of
//! the n nodes, so no implementation can commit more than
//! `cores / (sign + n × verify)` requests per second.

use crate::crypto::{signing_key_from_seed, Domain};
use crate::protocol::{Op, Request, Variant};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CryptoCost {
    pub sign_us: f64,
    pub verify_us: f64,
}

impl CryptoCost {
    /// Requests per second the crypto alone allows on `cores` cores with `n` nodes.
    pub fn bound_rps(&self, cores: usize, n: usize) -> f64 {
        cores as f64 * 1e6 / (self.sign_us + n as f64 * self.verify_us)
    }
}

/// Times signing and strict verification of a client request carrying `payload` bytes,
/// through the same `Domain` code the nodes use, for about `budget` each.
pub fn measure(payload: usize, budget: Duration) -> CryptoCost {
    let domain = Domain::new(Variant::Bft, "bench");
    let key = signing_key_from_seed([7; 32]);
    let public = key.verifying_key();
    let request = |seq: u64| Request {
        client: 0,
        seq,
        op: Op::Put {
            key: format!("k{seq}"),
            value: "x".repeat(payload),
        },
    };
    let mut signed = Vec::new();
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < budget || seq < 64 {
        signed.push(domain.sign(&key, request(seq)));
        seq += 1;
    }
    // Building the request is part of the client's cost too; it is tiny next to signing.
    let sign_us = start.elapsed().as_secs_f64() * 1e6 / seq as f64;
    let start = Instant::now();
    let mut verified = 0u64;
    while start.elapsed() < budget || verified < 64 {
        let m = &signed[(verified as usize) % signed.len()];
        assert!(
            black_box(domain.verify(&public, m)),
            "own signature verifies"
        );
        verified += 1;
    }
    let verify_us = start.elapsed().as_secs_f64() * 1e6 / verified as f64;
    CryptoCost { sign_us, verify_us }
}
