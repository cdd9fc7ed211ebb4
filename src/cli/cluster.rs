//! `tangaroa cluster`: N node processes on 127.0.0.1 with a live status view.

use super::BadInput;
use crate::adversary::Behaviour;
use crate::protocol::{NodeId, Variant};
use crate::runtime::client::Session;
use crate::runtime::local::{LocalCluster, LocalSpec};
use clap::Args;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
#[command(after_help = "\
Keys and the configuration are generated in DIR the first time (and reused after), each node
logs to DIR/node-I.log and keeps its data in DIR/data/node-I. Ctrl-C stops every node; their
logs stay in DIR. Talk to the cluster with `tangaroa client --config DIR/cluster.toml ...`.

Example: tangaroa cluster --nodes 4 --byzantine 3=equivocate")]
pub struct ClusterArgs {
    /// Number of nodes (n = 3f+1 tolerates f Byzantine ones).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub nodes: usize,
    /// Protocol variant: raft, tangaroa or bft.
    #[arg(long, default_value = "bft", value_parser = super::sim::parse_variant_arg)]
    pub variant: Variant,
    /// Make node ID Byzantine with BEHAVIOUR (repeatable), e.g. 3=stall.
    #[arg(long = "byzantine", value_parser = parse_injection)]
    pub byzantine: Vec<(NodeId, Behaviour)>,
    /// Where keys, configuration, logs and data live.
    #[arg(long, default_value = "tangaroa-cluster")]
    pub dir: PathBuf,
    /// Registered clients to generate keys for (at least 1: status uses client 0).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub clients: usize,
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long = "for")]
    pub run_for: Option<f64>,
    /// Committed entries between checkpoints (0: never; default: the configuration's,
    /// 1000). Applied when DIR's configuration is first generated.
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=crate::config::MAX_CHECKPOINT_INTERVAL))]
    pub checkpoint_interval: Option<u64>,
}

pub fn parse_injection(s: &str) -> Result<(NodeId, Behaviour), String> {
    let (id, b) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=BEHAVIOUR, got '{s}'"))?;
    let id: NodeId = id.parse().map_err(|_| format!("'{id}' is not a node id"))?;
    Ok((id, super::node::parse_behaviour(b)?))
}

/// Checks injections against the cluster size: ids exist, one behaviour per node.
pub fn injections(
    nodes: usize,
    list: &[(NodeId, Behaviour)],
) -> Result<BTreeMap<NodeId, Behaviour>, BadInput> {
    let mut map = BTreeMap::new();
    for &(id, b) in list {
        if id as usize >= nodes {
            return Err(BadInput(format!(
                "--byzantine {id}=...: nodes are 0..{nodes}"
            )));
        }
        if b == Behaviour::Twins {
            return Err(BadInput(
                "twins runs only in the simulator (`tangaroa sim`): two processes cannot share one address".into(),
            ));
        }
        if map.insert(id, b).is_some() {
            return Err(BadInput(format!("node {id} is given two behaviours")));
        }
    }
    Ok(map)
}

pub fn run(args: ClusterArgs) -> Result<u8, BadInput> {
    let byzantine = injections(args.nodes, &args.byzantine)?;
    let binary = std::env::current_exe().map_err(|e| BadInput(e.to_string()))?;
    let (rt, mut signals) = super::runtime_with_signals()?;
    let mut cluster = LocalCluster::start(LocalSpec {
        nodes: args.nodes,
        clients: args.clients,
        variant: args.variant,
        byzantine,
        dir: args.dir.clone(),
        binary,
        tick_ms: None,
        checkpoint_interval: args.checkpoint_interval,
    })
    .map_err(|e| BadInput(e.to_string()))?;
    outln!(
        "started {} {} nodes in {} (config: {}); Ctrl-C stops them",
        args.nodes,
        args.variant.name(),
        args.dir.display(),
        cluster.config.display()
    );
    let started = Instant::now();
    let config = cluster.config.clone();
    let tty = std::io::stdout().is_terminal();
    let mut failed = false;
    let view = async {
        let mut session = match Session::connect(&config, None).await {
            Ok(s) => s,
            Err(e) => {
                errln!("error: {e}");
                failed = true;
                return;
            }
        };
        let mut last = String::new();
        while args
            .run_for
            .is_none_or(|s| started.elapsed().as_secs_f64() < s)
        {
            // A node that exited makes the table a lie about this cluster: say so, stop
            // the others, and exit 1.
            let exited = cluster.exited();
            for (id, status) in &exited {
                errln!(
                    "node {id} exited ({status}); see {}",
                    cluster.log_file(*id).display()
                );
            }
            if !exited.is_empty() {
                failed = true;
                break;
            }
            let reports = session.status(Duration::from_millis(800)).await;
            let table = super::status::table(&reports);
            if tty {
                out!("\x1b[H\x1b[2J{}\n{table}", banner(&cluster));
            } else if table != last {
                outln!("{table}");
            }
            last = table;
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        session.close_gracefully().await;
    };
    // A signal ends the view at once, wherever it is waiting.
    rt.block_on(async {
        tokio::select! {
            () = view => {}
            _ = signals.recv() => {}
        }
    });
    outln!("stopping; logs and data stay in {}", args.dir.display());
    cluster.stop(Duration::from_secs(3));
    Ok(u8::from(failed))
}

fn banner(c: &LocalCluster) -> String {
    let byz: Vec<String> = c
        .spec
        .byzantine
        .iter()
        .map(|(id, b)| format!("node {id} = {b}"))
        .collect();
    format!(
        "tangaroa cluster: {} {} nodes, Byzantine: {}   (Ctrl-C stops)",
        c.spec.nodes,
        c.spec.variant.name(),
        if byz.is_empty() {
            "none".into()
        } else {
            byz.join(", ")
        }
    )
}
