//! tangaroa: a Byzantine-fault-tolerant Raft.
//!
//! # Using it as a library
//!
//! A program that talks to a running cluster needs [`runtime::client::Session`] (connect
//! with the cluster's `cluster.toml` and a client key, then [`execute`] operations) and the
//! operation types [`protocol::Op`] and [`protocol::OpResult`]; `examples/client.rs` is a
//! complete program. [`runtime::local::LocalCluster`] starts a cluster of node processes
//! on 127.0.0.1 (tests, demos), [`keygen`] writes keys and a configuration, and
//! [`config`] loads one.
//!
//! # What is public, and why
//!
//! Public, as the API above or because the integration tests, benchmarks and fuzzers in
//! `tests/` and `benches/` drive them from outside the crate:
//!
//! - [`runtime`]: the client session ([`runtime::client`]), local clusters
//!   ([`runtime::local`]) and configuration-plus-keys loading ([`runtime::Loaded`]).
//! - [`protocol`]: the sans-IO consensus core (all three variants) and its messages.
//! - [`crypto`]: Ed25519 signing with domain separation, the SHA-256 hash chain.
//! - [`codec`]: the one binary encoding (postcard) of the wire, the disk and signatures,
//!   with its format versions.
//! - [`config`], [`keygen`]: the cluster configuration (TOML) and key generation.
//! - [`kv`]: the replicated key-value state machine.
//! - [`client`]: the client's side of the protocol, sans-IO (f+1 matching replies).
//! - [`actor`], [`adversary`]: what fills a node slot: the honest node or a Byzantine
//!   behaviour wrapping it.
//! - [`sim`]: the deterministic simulator and its safety/liveness checker.
//! - [`storage`]: durable log, hard state and evidence under a data directory.
//! - [`transport`]: QUIC with mutual TLS (pinned certificates), frames, authentication.
//!
//! Crate-private: the command line (`cli`, one file per command; the binary calls
//! [`cli_main`] and nothing else), the `bench` command's load generator and reports, and
//! the node process and its metrics endpoint (`runtime::node`, `runtime::metrics`), which
//! are reached through `tangaroa node`, not as functions. Their shapes follow the command
//! line and may change with it.
//!
//! Stability: this is a 0.x crate. The public modules are public so that they can be
//! tested from outside; the client session, `Op`/`OpResult`, `ClusterConfig` and the
//! format versions in [`codec`] are the parts meant for programs to depend on.
//!
//! [`execute`]: runtime::client::Session::execute

pub mod actor;
pub mod adversary;
pub(crate) mod bench;
pub(crate) mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod cost;
pub mod crypto;
pub mod driver;
pub mod keygen;
pub mod kv;
pub mod protocol;
pub mod runtime;
pub mod sim;
pub mod storage;
pub mod transport;

/// The `tangaroa` binary's entry point: parses the command line, runs the command, and
/// returns its exit code. Public only so that `src/main.rs` can call it.
#[doc(hidden)]
pub fn cli_main() -> std::process::ExitCode {
    cli::main()
}
