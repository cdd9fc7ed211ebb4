//! `tangaroa bench`: the cost of Byzantine tolerance against plain Raft, measured on real
//! clusters (processes, QUIC with mutual TLS, durable storage with the same fsync policy
//! for every variant) under closed-loop signed client load.
//!
//! For every (variant, nodes, clients) it reports committed requests per second, latency
//! percentiles, node CPU seconds per request, and bytes and messages sent per request; and
//! this machine's crypto bound measured in the same run.

pub mod crypto_bound;
pub mod inproc;
pub mod load;
pub mod report;

use crate::adversary::Behaviour;
use crate::cost::{CostPerRequest, Costs};
use crate::protocol::{NodeId, Variant};
use crate::runtime::client::Session;
use crate::runtime::local::{LocalCluster, LocalSpec};
use crate::runtime::Loaded;
use crate::transport::verify::{ClientVerify, CLIENT_VERIFY_ENV};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub nodes: Vec<usize>,
    pub variants: Vec<Variant>,
    pub clients: Vec<usize>,
    pub stop: StopAfter,
    pub payload: usize,
    pub byzantine: BTreeMap<NodeId, Behaviour>,
    /// Not counted: lets connections, leaders and caches settle.
    pub warmup: Duration,
    pub binary: PathBuf,
    pub workdir: PathBuf,
    /// How the nodes verify client requests: one run per choice, side by side.
    pub client_verify: Vec<ClientVerify>,
    /// Committed entries between checkpoints; `None` keeps the configuration's default.
    pub checkpoint_interval: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub enum StopAfter {
    Duration(Duration),
    Requests(u64),
}

/// One row of the results, in the JSON schema the issue fixes (plus a few extras).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub variant: String,
    pub nodes: usize,
    pub clients: usize,
    pub byzantine: Vec<String>,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub cpu_us_per_req: f64,
    /// CPU of the load generator itself (this process: signing, QUIC), per request. It
    /// shares the machine with the nodes, so it bounds what they can be given.
    #[serde(default)]
    pub client_cpu_us_per_req: f64,
    pub bytes_per_req: f64,
    pub msgs_per_req: f64,
    pub crypto_bound_rps: f64,
    /// Requests accepted in the measured window, and requests that got no agreed answer.
    pub requests: u64,
    pub failed: u64,
    /// With Byzantine nodes: from load start until the rate first reached half its
    /// steady value (the last half of the run), in milliseconds.
    pub recovery_ms: Option<f64>,
    /// Accepted requests per 250 ms from load start (warm-up included).
    pub timeline: Vec<u64>,
    /// In-process runs only: where the loop's time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_process: Option<inproc::Breakdown>,
    /// Where the nodes' CPU went per request (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostPerRequest>,
    /// How the nodes verified requests straight from clients (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_verify: Option<ClientVerify>,
    /// Every node's data directory size at the end of the run, by node id, as its status
    /// reported it (0: no answer). Absent in older and in-process reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_bytes: Vec<u64>,
    /// Every node's log base (the index its log was compacted up to) at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_base: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub sign_us: f64,
    pub verify_us: f64,
    /// ZIP-215 verification per signature in batches of 64 (0 in older reports).
    #[serde(default)]
    pub verify_batch_us: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub results: Vec<RunResult>,
}

/// What a caller sees while a run goes on.
pub trait Progress {
    fn run_started(&mut self, label: &str, expected: Duration);
    fn tick(&mut self, accepted: u64);
    fn run_done(&mut self, r: &RunResult);
}

pub const TIMELINE_BUCKET: Duration = Duration::from_millis(250);

pub fn run(spec: &BenchSpec, progress: &mut dyn Progress) -> Result<BenchReport, String> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cost = crypto_bound::measure(spec.payload, Duration::from_millis(300));
    let machine = Machine {
        cores,
        sign_us: cost.sign_us,
        verify_us: cost.verify_us,
        verify_batch_us: cost.verify_batch_us,
    };
    let mut results = Vec::new();
    for &n in &spec.nodes {
        for &variant in &spec.variants {
            for &clients in &spec.clients {
                for &verify in &spec.client_verify {
                    let cell = Cell {
                        variant,
                        n,
                        clients,
                        verify,
                    };
                    let r = run_one(spec, cell, cost.bound_rps(cores, n), progress)?;
                    progress.run_done(&r);
                    results.push(r);
                }
            }
        }
    }
    Ok(BenchReport { machine, results })
}

/// One run's coordinates.
#[derive(Clone, Copy)]
struct Cell {
    variant: Variant,
    n: usize,
    clients: usize,
    verify: ClientVerify,
}

fn run_one(
    spec: &BenchSpec,
    cell: Cell,
    crypto_bound_rps: f64,
    progress: &mut dyn Progress,
) -> Result<RunResult, String> {
    let Cell {
        variant,
        n,
        clients,
        verify,
    } = cell;
    let dir = spec.workdir.join(format!(
        "{}-n{n}-c{clients}-{}",
        variant.name(),
        verify.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    // The node processes inherit it. Set while no other thread of ours reads the
    // environment: the previous run's runtime is gone, the next one not yet built.
    std::env::set_var(CLIENT_VERIFY_ENV, verify.name());
    let cluster = LocalCluster::start(LocalSpec {
        nodes: n,
        clients,
        variant,
        byzantine: spec.byzantine.clone(),
        dir: dir.clone(),
        binary: spec.binary.clone(),
        tick_ms: Some(10),
        checkpoint_interval: spec.checkpoint_interval,
    })
    .map_err(|e| e.to_string())?;
    let loaded = Arc::new(Loaded::load(&cluster.config).map_err(|e| e.to_string())?);
    let pids = cluster.pids();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let label = format!(
        "{} n={n} clients={clients} {}",
        variant.name(),
        verify.name()
    );
    let expected = match spec.stop {
        StopAfter::Duration(d) => d + spec.warmup,
        StopAfter::Requests(_) => spec.warmup + Duration::from_secs(5),
    };
    progress.run_started(&label, expected);
    let honest: Vec<NodeId> = (0..n as NodeId)
        .filter(|id| !spec.byzantine.contains_key(id))
        .collect();
    let outcome = rt.block_on(async {
        let mut probe = Session::connect_as(&loaded, 0, None)
            .await
            .map_err(|e| e.to_string())?;
        // With Byzantine nodes the load starts as soon as the cluster is up: the recovery
        // time is what is measured. Otherwise, wait for a leader the honest nodes share.
        let within = Duration::from_secs(20);
        if probe.leader_named_by(&honest, within).await.is_none() {
            return Err(format!("no leader within {within:?}"));
        }
        let issued = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let stop = match spec.stop {
            StopAfter::Duration(d) => load::Stop::At(start + spec.warmup + d),
            StopAfter::Requests(r) => load::Stop::After(r),
        };
        let hard_limit = start + spec.warmup + Duration::from_secs(600);
        let handle = tokio::spawn(load::run(
            loaded.clone(),
            clients,
            spec.payload,
            stop,
            hard_limit,
            issued.clone(),
        ));
        // Counters and CPU at the end of the warm-up; then progress until the load ends.
        let mut before = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        while !handle.is_finished() {
            ticker.tick().await;
            progress.tick(issued.load(std::sync::atomic::Ordering::Relaxed));
            if before.is_none() && start.elapsed() >= spec.warmup {
                before = Some(snapshot(&mut probe, &pids).await);
            }
        }
        let samples = handle.await.map_err(|e| e.to_string())??;
        let end = start.elapsed();
        let before = match before {
            Some(b) => b,
            None => {
                return Err(
                    "the run ended inside its warm-up; raise --duration or --requests".to_string(),
                )
            }
        };
        let after = snapshot(&mut probe, &pids).await;
        probe.close();
        Ok((samples, before, after, end))
    });
    drop(cluster);
    let (samples, before, after, end) = outcome?;
    let window = end
        .saturating_sub(spec.warmup)
        .max(Duration::from_millis(1));
    let measured: Vec<Duration> = samples
        .done
        .iter()
        .filter(|(at, _)| *at >= spec.warmup)
        .map(|(_, lat)| *lat)
        .collect();
    let requests = measured.len() as u64;
    let per_req = |x: f64| {
        if requests == 0 {
            0.0
        } else {
            x / requests as f64
        }
    };
    let mut lat = measured;
    lat.sort();
    let pct = |p: f64| percentile_ms(&lat, p);
    let timeline = timeline(&samples.done, end);
    let cpu_us_per_req = per_req((after.cpu - before.cpu) * 1e6);
    let cost = after
        .cost
        .since(&before.cost)
        .per_request(requests, cpu_us_per_req);
    Ok(RunResult {
        variant: variant.name().into(),
        nodes: n,
        clients,
        byzantine: spec
            .byzantine
            .iter()
            .map(|(id, b)| format!("{id}={b}"))
            .collect(),
        throughput_rps: requests as f64 / window.as_secs_f64(),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        cpu_us_per_req,
        client_cpu_us_per_req: per_req((after.client_cpu - before.client_cpu) * 1e6),
        bytes_per_req: per_req(after.bytes.saturating_sub(before.bytes) as f64),
        msgs_per_req: per_req(after.msgs.saturating_sub(before.msgs) as f64),
        crypto_bound_rps,
        requests,
        failed: samples.failed,
        recovery_ms: (!spec.byzantine.is_empty())
            .then(|| recovery_ms(&timeline))
            .flatten(),
        timeline,
        in_process: None,
        cost: Some(cost),
        client_verify: Some(verify),
        disk_bytes: after.disk_bytes,
        log_base: after.log_base,
    })
}

struct Snapshot {
    cpu: f64,
    client_cpu: f64,
    bytes: u64,
    msgs: u64,
    /// The nodes' cost counters, summed.
    cost: Costs,
    /// By node id (0 for a node that did not answer).
    disk_bytes: Vec<u64>,
    log_base: Vec<u64>,
}

/// Node CPU seconds (from /proc) and traffic counters (from the nodes' status), summed
/// over all nodes.
async fn snapshot(s: &mut Session, pids: &[u32]) -> Snapshot {
    let reports = s.status(Duration::from_secs(2)).await;
    let (mut bytes, mut msgs, mut cost) = (0, 0, Costs::default());
    for r in reports.iter().flatten() {
        bytes += r.counters.bytes_sent;
        msgs += r.counters.msgs_sent;
        cost = cost.plus(&r.counters.cost);
    }
    let each = |f: fn(&crate::transport::NodeReport) -> u64| {
        reports.iter().map(|r| r.as_ref().map_or(0, f)).collect()
    };
    Snapshot {
        disk_bytes: each(|r| r.disk_bytes),
        log_base: each(|r| r.log_base),
        cpu: pids.iter().map(|&p| cpu_seconds(p)).sum(),
        client_cpu: cpu_seconds(std::process::id()),
        bytes,
        msgs,
        cost,
    }
}

/// User + system CPU seconds of a process so far (Linux, from `/proc/PID/stat` by the
/// `procfs` crate; 0 elsewhere or if the process is gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    #[cfg(target_os = "linux")]
    {
        let Ok(stat) = i32::try_from(pid)
            .map_err(|_| ())
            .and_then(|p| procfs::process::Process::new(p).map_err(|_| ()))
            .and_then(|p| p.stat().map_err(|_| ()))
        else {
            return 0.0;
        };
        (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        0.0
    }
}

fn timeline(done: &[(Duration, Duration)], end: Duration) -> Vec<u64> {
    let buckets = (end.as_millis() / TIMELINE_BUCKET.as_millis()) as usize + 1;
    let mut t = vec![0u64; buckets];
    for (at, _) in done {
        let b = (at.as_millis() / TIMELINE_BUCKET.as_millis()) as usize;
        if b < buckets {
            t[b] += 1;
        }
    }
    t
}

/// Time until the rate first reached half of its steady value (the mean of the last half
/// of the buckets).
pub fn recovery_ms(timeline: &[u64]) -> Option<f64> {
    let tail = &timeline[timeline.len() / 2..];
    if tail.is_empty() {
        return None;
    }
    let steady = tail.iter().sum::<u64>() as f64 / tail.len() as f64;
    if steady == 0.0 {
        return None;
    }
    timeline
        .iter()
        .position(|&c| c as f64 >= steady / 2.0)
        .map(|b| (b as u128 * TIMELINE_BUCKET.as_millis()) as f64)
}

/// The `p`-th quantile (0..=1, nearest rank) of sorted latencies, in milliseconds; 0 if
/// there are none.
pub(crate) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_when_the_rate_first_reaches_half_its_steady_value() {
        assert_eq!(recovery_ms(&[0, 0, 0, 1, 10, 10, 10, 10]), Some(1000.0));
        assert_eq!(recovery_ms(&[10, 10, 10, 10]), Some(0.0));
        assert_eq!(recovery_ms(&[0, 0, 0, 0]), None);
    }

    #[test]
    fn crypto_bound_is_cores_over_sign_plus_n_verifies() {
        let c = crypto_bound::CryptoCost {
            sign_us: 20.0,
            verify_us: 40.0,
            verify_batch_us: 20.0,
        };
        assert!((c.bound_rps(2, 4) - 2e6 / 180.0).abs() < 1e-6);
        assert!((c.batched_bound_rps(2, 4) - 2e6 / 100.0).abs() < 1e-6);
    }
}
