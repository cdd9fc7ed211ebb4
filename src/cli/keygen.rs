//! `tangaroa keygen`: writes node and client keys, TLS certificates and the cluster config.

use super::BadInput;
use crate::keygen::{keygen_at, KeygenSpec};
use crate::protocol::Variant;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
Nodes on several hosts: give every node's address, in id order, as IP:PORT or
HOSTNAME:PORT (IPv6 as [ADDR]:PORT), e.g.
  tangaroa keygen --addresses db1.example.net:7000,db2.example.net:7000,db3.example.net:7000,db4.example.net:7000
Hostnames are kept in cluster.toml and resolved by every process that loads it (here too,
as a check); port 0 is refused. Without --addresses, node i gets 127.0.0.1:BASE_PORT+i.")]
pub struct KeygenArgs {
    /// Number of nodes (ids 0..N, addresses 127.0.0.1:BASE_PORT+id); with --addresses,
    /// their number (may be omitted).
    #[arg(long, required_unless_present = "addresses", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub nodes: Option<usize>,
    /// Every node's address, comma-separated in id order: IP:PORT or HOSTNAME:PORT.
    #[arg(long, value_delimiter = ',', conflicts_with = "base_port")]
    pub addresses: Option<Vec<String>>,
    /// Number of registered clients.
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1024))]
    pub clients: usize,
    /// Directory to write into (secret keys get mode 0600).
    #[arg(long, default_value = "keys")]
    pub out: PathBuf,
    /// Port of node 0; node i listens on BASE_PORT + i.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Protocol variant the cluster runs: raft, tangaroa or bft.
    #[arg(long, default_value = "bft", value_parser = super::sim::parse_variant_arg)]
    pub variant: Variant,
    /// Overwrite existing keys.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: KeygenArgs) -> Result<(), BadInput> {
    let nodes = match (&args.addresses, args.nodes) {
        (Some(a), Some(n)) if a.len() != n => {
            return Err(BadInput(format!(
                "--nodes {n} but --addresses lists {} addresses",
                a.len()
            )))
        }
        (Some(a), _) => a.len(),
        (None, Some(n)) => n,
        (None, None) => return Err(BadInput("give --nodes or --addresses".into())),
    };
    let spec = KeygenSpec {
        nodes,
        clients: args.clients,
        out: args.out,
        base_port: args.base_port,
        variant: args.variant,
        force: args.force,
    };
    // Existing keys, bad arguments and an unwritable directory are all the user's to fix.
    let path = keygen_at(&spec, args.addresses.as_deref()).map_err(|e| BadInput(e.to_string()))?;
    outln!(
        "wrote keys for {} nodes and {} clients; cluster config: {}",
        spec.nodes,
        spec.clients,
        path.display()
    );
    Ok(())
}
