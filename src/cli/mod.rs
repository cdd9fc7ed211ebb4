//! The `tangaroa` command line.

/// `println!` for the CLI's stdout, except that a closed stdout (`tangaroa demo | head`)
/// is not an error: output stops, the command goes on and cleans up after itself.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` with [`outln!`]'s handling of a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!($($arg)*)) };
}

/// `eprintln!` that ignores a closed stderr instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod bench;
pub mod client;
pub mod cluster;
pub mod completions;
pub mod demo;
pub mod keygen;
pub mod logging;
pub mod node;
pub mod sim;
pub mod status;

use clap::{Parser, Subcommand};
use logging::LogFormat;
use std::process::ExitCode;

/// tangaroa: a Byzantine-fault-tolerant Raft (Tangaroa, done properly).
///
/// Nodes sign every message, chain their logs with SHA-256, prove leadership with a quorum
/// of signed votes and commit only on a second round of signed Commits, so the cluster
/// stays consistent while up to f of n = 3f+1 nodes lie.
#[derive(Debug, Parser)]
#[command(name = "tangaroa", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr: text (coloured only on a terminal) or json (one object per
    /// line). Node processes started by `cluster`, `demo` and `bench` inherit it. The filter
    /// is TANGAROA_LOG if set, else RUST_LOG, else warn.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TANGAROA_LOG_FORMAT",
        default_value_t = logging::LogFormat::Text
    )]
    pub log_format: logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the deterministic simulator: many seeded runs with faults and Byzantine nodes,
    /// each checked for safety and liveness violations.
    Sim(sim::SimArgs),
    /// Generate Ed25519 keys and TLS certificates for nodes and clients, and the cluster
    /// configuration (TOML) that lists them.
    Keygen(keygen::KeygenArgs),
    /// Run one node: QUIC with mutual TLS, durable log, optionally as a Byzantine node.
    Node(node::NodeArgs),
    /// Send a signed request (put, get, delete, cas) or a Revolution to a cluster.
    Client(client::ClientArgs),
    /// Start N node processes on 127.0.0.1 (with injected Byzantine nodes) and show their
    /// live status until Ctrl-C.
    Cluster(cluster::ClusterArgs),
    /// A one-minute tour: a 4-node bft cluster with a malicious leader, signed requests,
    /// a Revolution that deposes it, and a check that honest logs agree.
    Demo(demo::DemoArgs),
    /// Benchmark raft against tangaroa and bft on real local clusters: throughput,
    /// latency, CPU, bytes and messages per request, and this machine's crypto bound.
    Bench(bench::BenchArgs),
    /// Show every node's role, term, log, commit index, leader and evidence.
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(completions::CompletionsArgs),
}

/// An error that is the user's input, not ours: reported plainly, exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Writes to stdout; once it fails (a reader that went away), everything after is dropped.
/// A single-threaded runtime and the stop signals, installed before any node starts, so
/// that SIGTERM as well as Ctrl-C stops the nodes first (`cluster`, `demo`).
fn runtime_with_signals() -> Result<(tokio::runtime::Runtime, crate::runtime::StopSignals), BadInput>
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BadInput(e.to_string()))?;
    let signals = {
        let _guard = rt.enter();
        crate::runtime::StopSignals::install()
            .map_err(|e| BadInput(format!("cannot handle signals: {e}")))?
    };
    Ok((rt, signals))
}

pub fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static CLOSED: AtomicBool = AtomicBool::new(false);
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// The `tangaroa` binary: parses the command line, runs the command, and maps its outcome
/// to the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::cli::logging::init(cli.log_format);
    // Node processes this one starts (cluster, demo, bench) log in the same format.
    std::env::set_var("TANGAROA_LOG_FORMAT", cli.log_format.name());
    let failed = |violations: bool| u8::from(violations);
    let format = cli.log_format;
    let outcome = match cli.command {
        Command::Sim(args) => crate::cli::sim::run(args).map(failed),
        Command::Keygen(args) => crate::cli::keygen::run(args).map(|()| 0),
        Command::Node(args) => crate::cli::node::run(args).map(failed),
        Command::Client(args) => crate::cli::client::run(args),
        Command::Status(args) => crate::cli::status::run(args),
        Command::Cluster(args) => crate::cli::cluster::run(args),
        Command::Demo(args) => crate::cli::demo::run(args),
        Command::Bench(args) => crate::cli::bench::run(args),
        Command::Completions(args) => crate::cli::completions::run(args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match format {
                // Scripts reading JSON logs get the reason as one more JSON line.
                LogFormat::Json => tracing::error!("{e}"),
                // Not eprintln!: a closed stderr must not turn an error into a panic.
                LogFormat::Text => {
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "error: {e}");
                }
            }
            ExitCode::from(2)
        }
    }
}
