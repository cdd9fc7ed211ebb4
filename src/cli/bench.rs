//! `tangaroa bench`: raft, tangaroa and bft side by side on real local clusters.

use super::BadInput;
use crate::bench::{self, BenchSpec, Progress, RunResult, StopAfter};
use crate::protocol::{NodeId, Variant};
use crate::transport::verify::ClientVerify;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "\
Every run starts a fresh cluster of `tangaroa node` processes on 127.0.0.1 (QUIC, mutual
TLS, durable storage with one fsync per batch for every variant), waits for a leader, then
drives closed-loop signed load: each client keeps one request outstanding. The first
--warmup seconds are not counted. CPU is the nodes' (user + system, from /proc); bytes and
messages are what the nodes sent, replies to clients included.

The crypto bound is measured in the same run: cores / (client sign + n x verify), the most
requests per second any implementation could commit given that every node must verify
every request's signature; the batched bound uses ZIP-215 batch verification's cost per
signature instead. Under each row, the nodes' CPU per request is broken down into signing,
verifying (single and batched), hashing, encoding, fsync and the rest. --client-verify
single,batched runs each cell both ways, to compare how nodes verify client requests.

With --in-process no process is started: the protocol cores run in this process over an
in-memory router (no network, no fsync), with the same signed clients and message
authentication, on one thread (or --threads N); the table shows where the time went.

Example: tangaroa bench --nodes 4,7,10 --clients 1,32 --duration 5 --json bench.json --plot bench.svg
         tangaroa bench --in-process --nodes 3,4 --variants raft,bft --clients 1,64,256")]
pub struct BenchArgs {
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub nodes: Vec<usize>,
    /// Variants, comma-separated: raft, tangaroa, bft.
    #[arg(long, value_delimiter = ',', default_value = "raft,bft", value_parser = super::sim::parse_variant_arg)]
    pub variants: Vec<Variant>,
    /// Closed-loop clients, comma-separated for several runs per size.
    #[arg(long, value_delimiter = ',', default_value = "32", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub clients: Vec<usize>,
    /// Seconds of measured load per run (after the warm-up).
    #[arg(long, conflicts_with = "requests")]
    pub duration: Option<f64>,
    /// Requests per run, across all clients (instead of --duration).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Bytes of value in every put.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Make node ID Byzantine with BEHAVIOUR (repeatable), e.g. 0=stall. Load starts as
    /// soon as a leader exists, and the time to recover is reported.
    #[arg(long = "byzantine", value_parser = super::cluster::parse_injection)]
    pub byzantine: Vec<(NodeId, crate::adversary::Behaviour)>,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Committed entries between checkpoints in every run's cluster (0: never; default:
    /// the configuration's, 1000). Each node's data directory size is printed after a run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=crate::config::MAX_CHECKPOINT_INTERVAL))]
    pub checkpoint_interval: Option<u64>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot comparing the variants here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Run nothing: print the table and draw --plot from a JSON file an earlier run wrote.
    #[arg(long, value_name = "FILE.json")]
    pub from_json: Option<PathBuf>,
    /// Where the clusters' keys, logs and data go (default: a temporary folder, removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Drive the protocol cores in this process over an in-memory router instead of
    /// starting node processes: no network, no fsync, one thread, the same signed
    /// closed-loop clients and message authentication. bft and tangaroa skip sizes below 4.
    #[arg(long, conflicts_with_all = ["byzantine", "dir", "plot"])]
    pub in_process: bool,
    /// With --in-process: threads sharing the nodes' work (authentication and stepping)
    /// each round; 1 runs everything on one thread.
    #[arg(long, default_value_t = 1, requires = "in_process", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub threads: usize,
    /// How nodes verify requests straight from clients, comma-separated for one run each
    /// side by side: batched (requests queued together checked as one ZIP-215 batch) or
    /// single (each alone, as before batching).
    #[arg(long, value_delimiter = ',', default_value = "batched", value_parser = parse_client_verify)]
    pub client_verify: Vec<ClientVerify>,
}

fn parse_client_verify(s: &str) -> Result<ClientVerify, String> {
    ClientVerify::parse(s).ok_or_else(|| format!("{s}: batched or single"))
}

struct Bar {
    bar: ProgressBar,
    expected: Duration,
}

impl Progress for Bar {
    fn run_started(&mut self, label: &str, expected: Duration) {
        self.expected = expected;
        self.bar.set_message(label.to_string());
        self.bar.set_position(0);
        self.bar.set_length(expected.as_millis() as u64);
        self.bar.reset_elapsed();
    }

    fn tick(&mut self, accepted: u64) {
        let ms = self.bar.elapsed().as_millis() as u64;
        self.bar
            .set_position(ms.min(self.expected.as_millis() as u64));
        self.bar.set_prefix(format!("{accepted} accepted"));
    }

    fn run_done(&mut self, r: &RunResult) {
        self.bar.println(format!(
            "{} n={} clients={}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            r.variant, r.nodes, r.clients, r.throughput_rps, r.p50_ms, r.p99_ms
        ));
        if !r.disk_bytes.is_empty() {
            let each: Vec<String> = r
                .disk_bytes
                .iter()
                .zip(&r.log_base)
                .enumerate()
                .map(|(id, (d, b))| format!("node {id} {:.1} MB (log base {b})", *d as f64 / 1e6))
                .collect();
            self.bar
                .println(format!("  data at the end: {}", each.join(", ")));
        }
    }
}

pub fn run(args: BenchArgs) -> Result<u8, BadInput> {
    if let Some(path) = &args.from_json {
        let text = crate::config::read_bounded_string(path, 64 << 20)
            .map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        let report: bench::BenchReport = serde_json::from_str(&text)
            .map_err(|e| BadInput(format!("{}: not a bench report: {e}", path.display())))?;
        return output(&report, None, args.plot.as_deref());
    }
    if args.nodes.is_empty() || args.clients.is_empty() {
        return Err(BadInput(
            "--nodes and --clients need at least one value".into(),
        ));
    }
    // Room for the key next to the value.
    let most = crate::protocol::MAX_OP_BYTES - 64;
    if args.payload > most {
        return Err(BadInput(format!("--payload: at most {most} bytes")));
    }
    if !(0.0..=60.0).contains(&args.warmup) {
        return Err(BadInput("--warmup: between 0 and 60 seconds".into()));
    }
    let stop = match (args.duration, args.requests) {
        (Some(d), _) if !(d > 0.0 && d <= 3600.0) => {
            return Err(BadInput("--duration: between 0 and 3600 seconds".into()))
        }
        (Some(d), _) => StopAfter::Duration(Duration::from_secs_f64(d)),
        (None, Some(r)) => StopAfter::Requests(r),
        (None, None) => StopAfter::Duration(Duration::from_secs(5)),
    };
    if args.in_process {
        return in_process(&args, stop);
    }
    let smallest = *args.nodes.iter().min().expect("non-empty");
    let byzantine = super::cluster::injections(smallest, &args.byzantine)?;
    let (workdir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tangaroa-bench-{}", std::process::id())),
            true,
        ),
    };
    let spec = BenchSpec {
        nodes: args.nodes,
        variants: args.variants,
        clients: args.clients,
        stop,
        payload: args.payload,
        byzantine,
        warmup: Duration::from_secs_f64(args.warmup),
        binary: std::env::current_exe().map_err(|e| BadInput(e.to_string()))?,
        workdir: workdir.clone(),
        client_verify: args.client_verify,
        checkpoint_interval: args.checkpoint_interval,
    };
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:30}] {prefix}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut progress = Bar {
        bar,
        expected: Duration::ZERO,
    };
    let outcome = bench::run(&spec, &mut progress);
    progress.bar.finish_and_clear();
    if temporary {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    let report = outcome.map_err(|e| BadInput(format!("benchmark failed: {e}")))?;
    output(&report, args.json.as_deref(), args.plot.as_deref())
}

/// `--in-process`: every (nodes, variant, clients) cell on fresh in-memory cores.
fn in_process(args: &BenchArgs, stop: StopAfter) -> Result<u8, BadInput> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cost = bench::crypto_bound::measure(args.payload, Duration::from_millis(300));
    let mut progress = Bar {
        bar: bar(),
        expected: Duration::ZERO,
    };
    let mut results = Vec::new();
    for &n in &args.nodes {
        for &variant in &args.variants {
            if variant != Variant::Raft && n < 4 {
                progress.bar.println(format!(
                    "{} n={n}: skipped (tolerates no fault below 4 nodes)",
                    variant.name()
                ));
                continue;
            }
            for &clients in &args.clients {
                for &verify in &args.client_verify {
                    let cell = bench::inproc::Cell {
                        variant,
                        nodes: n,
                        clients,
                        payload: args.payload,
                        warmup: Duration::from_secs_f64(args.warmup),
                        stop,
                        threads: args.threads,
                        verify,
                    };
                    let r = bench::inproc::run_one(cell, &cost, &mut progress)
                        .map_err(|e| BadInput(format!("benchmark failed: {e}")))?;
                    progress.run_done(&r);
                    results.push(r);
                }
            }
        }
    }
    progress.bar.finish_and_clear();
    let report = bench::BenchReport {
        machine: bench::Machine {
            cores,
            sign_us: cost.sign_us,
            verify_us: cost.verify_us,
            verify_batch_us: cost.verify_batch_us,
        },
        results,
    };
    outln!("{}", bench::inproc::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        std::fs::write(path, text).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        outln!("JSON: {}", path.display());
    }
    Ok(0)
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {prefix}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn output(
    report: &bench::BenchReport,
    json: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
) -> Result<u8, BadInput> {
    if !report.results.is_empty() && report.results.iter().all(|r| r.in_process.is_some()) {
        outln!("{}", bench::inproc::table(report));
    } else {
        outln!("{}", bench::report::table(report));
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).expect("report serializes");
        std::fs::write(path, text).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        outln!("JSON: {}", path.display());
    }
    if let Some(path) = plot {
        bench::report::plot(report, path).map_err(BadInput)?;
        outln!("plot: {}", path.display());
    }
    Ok(0)
}
