//! tangaroa: a Byzantine-fault-tolerant Raft.
//!
//! - [`protocol`]: the sans-IO consensus core (all three variants).
//! - [`crypto`]: Ed25519 signing with domain separation, the SHA-256 hash chain.
//! - [`kv`]: the replicated key-value state machine.
//! - [`client`]: the client's side of the protocol (f+1 matching replies).
//! - [`actor`]: what fills a node slot: the honest node or an adversary.
//! - [`adversary`]: Byzantine behaviours that wrap or replace an honest node.
//! - [`sim`]: the deterministic simulator and its safety/liveness checker.
//! - [`storage`]: durable log, hard state and evidence under a data directory.
//! - [`transport`]: QUIC with mutual TLS (pinned certificates), frames, authentication.
//! - [`runtime`]: the node process and the client session around the core.

pub mod actor;
pub mod adversary;
pub mod bench;
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod keygen;
pub mod kv;
pub mod protocol;
pub mod runtime;
pub mod sim;
pub mod storage;
pub mod transport;
