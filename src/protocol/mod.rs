//! The sans-IO consensus core. No clock, no sockets, no OS randomness: `Node::step` maps
//! inputs to outputs, and every rule of `docs/PROTOCOL.md` lives here.

pub mod auth;
mod ballot;
mod catchup;
mod checkpoint;
mod client_watch;
mod clients;
mod commit;
mod election;
pub mod evidence;
pub mod log;
pub mod message;
pub mod node;
mod progress;
mod raft;
pub mod recovery;
mod replication;
#[cfg(test)]
mod rule_tests;
mod rulebook;
mod tally;
mod term_reach;
pub mod types;

pub use auth::{authenticate, authenticate_cached, AuthError};
pub use checkpoint::SnapshotVerdict;
pub use log::{LogBase, Snapshot};
pub use message::*;
pub use node::{Durable, HardState, Input, Node, NodeConfig, Output, Persist, Status};
pub use types::*;
