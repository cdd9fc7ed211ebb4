//! `tangaroa keygen`: writes node and client keys, TLS certificates and the cluster config.

use super::BadInput;
use crate::keygen::{keygen, KeygenSpec};
use crate::protocol::Variant;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Number of nodes (ids 0..N, addresses 127.0.0.1:BASE_PORT+id).
    #[arg(long)]
    pub nodes: usize,
    /// Number of registered clients.
    #[arg(long, default_value_t = 2)]
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
    let spec = KeygenSpec {
        nodes: args.nodes,
        clients: args.clients,
        out: args.out,
        base_port: args.base_port,
        variant: args.variant,
        force: args.force,
    };
    // Existing keys, bad arguments and an unwritable directory are all the user's to fix.
    let path = keygen(&spec).map_err(|e| BadInput(e.to_string()))?;
    outln!(
        "wrote keys for {} nodes and {} clients; cluster config: {}",
        spec.nodes,
        spec.clients,
        path.display()
    );
    Ok(())
}
