//! `tangaroa node`: one node process.

use super::BadInput;
use crate::adversary::Behaviour;
use crate::runtime::node::{self, NodeOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
The node reads its keys from the files `tangaroa keygen` wrote next to the configuration
(node-I.key, node-I.tls.key), keeps its log, hard state and evidence under --data, and
recovers them on restart. Stop it with Ctrl-C or SIGTERM; kill -9 loses nothing it Acked.

Byzantine behaviours (the simulator's, by the same names; twins is simulator-only):
  equivocate, forge-proof, disrupt, stall, lie-ack, tamper, replay, impersonate,
  selective, crash, double-vote, lie-reply

Every flag but --byzantine may come from the environment instead (TANGAROA_CONFIG,
TANGAROA_ID, TANGAROA_DATA, TANGAROA_LISTEN, TANGAROA_METRICS, TANGAROA_LOG_FORMAT); a flag given on the
command line wins over its variable, and the variable over the default.

Logs go to stderr; the filter is TANGAROA_LOG, else RUST_LOG, else warn (e.g.
TANGAROA_LOG=info or tangaroa=debug); --log-format json gives one JSON object per line.")]
pub struct NodeArgs {
    /// Cluster configuration written by `tangaroa keygen`.
    #[arg(long, env = "TANGAROA_CONFIG")]
    pub config: PathBuf,
    /// This node's id in the configuration.
    #[arg(long, env = "TANGAROA_ID")]
    pub id: u32,
    /// Data directory (default: <config dir>/data/node-<id>).
    #[arg(long, env = "TANGAROA_DATA")]
    pub data: Option<PathBuf>,
    /// Address to bind, IP:PORT (default: this node's address in the configuration, which
    /// is what the other nodes dial). E.g. 0.0.0.0:7000 behind NAT or in a container.
    #[arg(long, env = "TANGAROA_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics on http://ADDR/metrics, and /healthz and /readyz (ready:
    /// the node knows its current term's leader), e.g. 127.0.0.1:9100.
    #[arg(long, env = "TANGAROA_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Run this node as a Byzantine adversary with the named behaviour.
    #[arg(long, value_parser = parse_behaviour)]
    pub byzantine: Option<Behaviour>,
}

pub fn parse_behaviour(s: &str) -> Result<Behaviour, String> {
    Behaviour::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Behaviour::ALL.iter().map(|b| b.name()).collect();
        format!(
            "unknown behaviour '{s}'; expected one of: {}",
            names.join(", ")
        )
    })
}

pub fn run(args: NodeArgs) -> Result<bool, BadInput> {
    node::run(NodeOptions {
        config: args.config,
        id: args.id,
        data: args.data,
        byzantine: args.byzantine,
        listen: args.listen,
        metrics: args.metrics,
    })
    .map(|()| false)
    .map_err(|e| BadInput(e.to_string()))
}
