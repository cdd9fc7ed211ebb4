//! A cluster of node processes on 127.0.0.1, for `tangaroa cluster`, the demo, the
//! benchmark and the integration tests: keys, configuration, processes, status, and the
//! logs each node left on disk.

use crate::adversary::Behaviour;
use crate::config::ClusterConfig;
use crate::keygen::{keygen, KeygenSpec};
use crate::protocol::{Entry, NodeId, Variant};
use crate::storage::Storage;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LocalSpec {
    pub nodes: usize,
    pub clients: usize,
    pub variant: Variant,
    pub byzantine: BTreeMap<NodeId, Behaviour>,
    pub dir: PathBuf,
    /// The `tangaroa` binary to run nodes with.
    pub binary: PathBuf,
    /// Wall-clock tick; `None` keeps keygen's default.
    pub tick_ms: Option<u64>,
    /// Committed entries between checkpoints (0: never); `None` keeps keygen's default.
    pub checkpoint_interval: Option<u64>,
}

pub struct LocalCluster {
    pub spec: LocalSpec,
    pub config: PathBuf,
    children: Vec<Option<Child>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot start node {id}: {source}")]
    Spawn { id: NodeId, source: std::io::Error },
}

/// A run of `n` consecutive free UDP ports on 127.0.0.1, starting at a random place.
pub fn free_base_port(n: usize) -> Option<u16> {
    for _ in 0..200 {
        let base = 20_000 + (rand::random::<u16>() % 40_000);
        let free = (0..n as u16).all(|k| UdpSocket::bind(("127.0.0.1", base + k)).is_ok());
        if free {
            return Some(base);
        }
    }
    None
}

impl LocalCluster {
    /// Writes keys and configuration into `spec.dir` unless a configuration for the same
    /// size and variant is already there, then starts every node.
    pub fn start(spec: LocalSpec) -> Result<LocalCluster, LocalError> {
        LocalCluster::start_with_head_start(spec, None)
    }

    /// Like [`LocalCluster::start`], but with `Some((first, delay))` node `first` starts
    /// `delay` before the others, so that it campaigns first and (the others, knowing no
    /// leader, vote at once) most likely leads the first term: the demo uses it to let a
    /// malicious leader act.
    pub fn start_with_head_start(
        spec: LocalSpec,
        head_start: Option<(NodeId, std::time::Duration)>,
    ) -> Result<LocalCluster, LocalError> {
        let config = spec.dir.join("cluster.toml");
        if config.exists() {
            let cfg = ClusterConfig::load(&config).map_err(|e| LocalError::Setup(e.to_string()))?;
            if cfg.nodes.len() != spec.nodes || cfg.variant != spec.variant {
                return Err(LocalError::Setup(format!(
                    "{} holds a {}-node {} cluster, not {} {}; use another --dir",
                    spec.dir.display(),
                    cfg.nodes.len(),
                    cfg.variant.name(),
                    spec.nodes,
                    spec.variant.name()
                )));
            }
        } else {
            let base_port = free_base_port(spec.nodes)
                .ok_or_else(|| LocalError::Setup("no free UDP ports on 127.0.0.1".into()))?;
            keygen(&KeygenSpec {
                nodes: spec.nodes,
                clients: spec.clients,
                out: spec.dir.clone(),
                base_port,
                variant: spec.variant,
                force: false,
            })
            .map_err(|e| LocalError::Setup(e.to_string()))?;
            if spec.tick_ms.is_some() || spec.checkpoint_interval.is_some() {
                let mut cfg =
                    ClusterConfig::load(&config).map_err(|e| LocalError::Setup(e.to_string()))?;
                if let Some(tick) = spec.tick_ms {
                    cfg.tick_ms = tick;
                }
                if let Some(every) = spec.checkpoint_interval {
                    cfg.checkpoint_interval = every;
                }
                let text = toml::to_string_pretty(&cfg).expect("config serializes");
                std::fs::write(&config, text).map_err(|e| LocalError::Setup(e.to_string()))?;
            }
        }
        // Every node's address must be free: otherwise our nodes exit at once and a view
        // of the cluster would show whoever holds the ports (e.g. a cluster already
        // running from this folder).
        let cfg = ClusterConfig::load(&config).map_err(|e| LocalError::Setup(e.to_string()))?;
        for n in &cfg.nodes {
            if let Err(e) = UdpSocket::bind(n.address) {
                return Err(LocalError::Setup(format!(
                    "node {}'s address {} is taken ({e}): is a cluster from {} already running?",
                    n.id,
                    n.address,
                    spec.dir.display()
                )));
            }
        }
        let mut cluster = LocalCluster {
            children: (0..spec.nodes).map(|_| None).collect(),
            spec,
            config,
        };
        if let Some((first, delay)) = head_start {
            cluster.start_node(first)?;
            std::thread::sleep(delay);
        }
        for id in 0..cluster.spec.nodes as NodeId {
            if head_start.is_none_or(|(first, _)| first != id) {
                cluster.start_node(id)?;
            }
        }
        Ok(cluster)
    }

    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.spec.dir.join("data").join(format!("node-{id}"))
    }

    pub fn log_file(&self, id: NodeId) -> PathBuf {
        self.spec.dir.join(format!("node-{id}.log"))
    }

    pub fn is_byzantine(&self, id: NodeId) -> bool {
        self.spec.byzantine.contains_key(&id)
    }

    pub fn honest(&self) -> Vec<NodeId> {
        (0..self.spec.nodes as NodeId)
            .filter(|id| !self.is_byzantine(*id))
            .collect()
    }

    /// Starts (or restarts) node `id`; its stderr is appended to `node-<id>.log`.
    pub fn start_node(&mut self, id: NodeId) -> Result<(), LocalError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(id))
            .map_err(|source| LocalError::Spawn { id, source })?;
        let mut cmd = Command::new(&self.spec.binary);
        // Variables meant for a single `tangaroa node` must not reach all of them.
        for var in [
            "TANGAROA_CONFIG",
            "TANGAROA_ID",
            "TANGAROA_DATA",
            "TANGAROA_LISTEN",
            "TANGAROA_METRICS",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("node")
            .arg("--config")
            .arg(&self.config)
            .arg("--id")
            .arg(id.to_string())
            .arg("--data")
            .arg(self.data_dir(id))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if std::env::var_os("TANGAROA_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
            cmd.env("TANGAROA_LOG", "info");
        }
        if let Some(b) = self.spec.byzantine.get(&id) {
            cmd.arg("--byzantine").arg(b.name());
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // If we die without stopping our nodes (kill -9), they get SIGTERM and stop
            // cleanly instead of running on unowned.
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .map_err(|source| LocalError::Spawn { id, source })?;
        self.children[id as usize] = Some(child);
        Ok(())
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    /// kill -9: the node gets no chance to flush anything.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut c) = self.children[id as usize].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Nodes that exited on their own, with how.
    pub fn exited(&mut self) -> Vec<(NodeId, ExitStatus)> {
        let mut out = Vec::new();
        for (id, c) in self.children.iter_mut().enumerate() {
            if let Some(child) = c {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((id as NodeId, status));
                    *c = None;
                }
            }
        }
        out
    }

    /// SIGTERM to every node, then SIGKILL to any still running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for c in self.children.iter().flatten() {
            terminate(c);
        }
        let deadline = Instant::now() + grace;
        for c in self.children.iter_mut() {
            if let Some(child) = c {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            *c = None;
        }
    }

    /// The log node `id` left on disk. Only while it is stopped: opening storage repairs
    /// a torn tail, which must never race a live writer.
    pub fn read_log(&self, id: NodeId) -> Result<(Vec<Entry>, u64), String> {
        read_log(&self.data_dir(id))
    }
}

/// A node's committed log as its storage recovers it: (entries, commit index).
pub fn read_log(dir: &Path) -> Result<(Vec<Entry>, u64), String> {
    let (_, durable) = Storage::open(dir).map_err(|e| e.to_string())?;
    Ok((durable.entries, durable.hard.commit))
}

/// What the committed prefixes of several nodes' logs have in common.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// Every node's commit index.
    pub commits: Vec<(NodeId, u64)>,
    /// Entries committed at every node (the lowest commit index).
    pub common: u64,
}

/// Checks that no two nodes committed different entries at one index: for every pair,
/// their logs are identical up to the lower of their two commit indexes, where both still
/// hold the entries (a compacted log starts after its snapshot's base: the entries below
/// it are compared by the snapshot's certificate, not here).
pub fn compare_committed(logs: &[(NodeId, Vec<Entry>, u64)]) -> Result<Agreement, String> {
    // Index of a log's first entry (1 for a log never compacted), and the entry at `i`.
    fn first(l: &[Entry]) -> u64 {
        l.first().map_or(1, |e| e.index)
    }
    fn at(l: &[Entry], i: u64) -> &Entry {
        &l[(i - first(l)) as usize]
    }
    for (a, la, ca) in logs {
        let end = first(la) + la.len() as u64 - 1;
        // An empty log may be all compacted (commit at its snapshot's base).
        if *ca > end && !la.is_empty() {
            return Err(format!(
                "node {a} claims commit {ca} beyond its last entry {end}"
            ));
        }
        if la
            .iter()
            .enumerate()
            .any(|(k, e)| e.index != first(la) + k as u64)
        {
            return Err(format!("node {a}'s log is not contiguous"));
        }
        for (b, lb, cb) in logs {
            let from = first(la).max(first(lb));
            // Both committed, and both still hold (an empty log is all compacted).
            let held = |l: &[Entry]| first(l) + l.len() as u64 - 1;
            let upto = (*ca).min(*cb).min(held(la)).min(held(lb));
            if let Some(i) = (from..=upto).find(|&i| at(la, i) != at(lb, i)) {
                return Err(format!(
                    "nodes {a} and {b} committed different entries at index {i}"
                ));
            }
        }
    }
    Ok(Agreement {
        commits: logs.iter().map(|(id, _, c)| (*id, *c)).collect(),
        common: logs.iter().map(|(_, _, c)| *c).min().unwrap_or(0),
    })
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

fn terminate(child: &Child) {
    #[cfg(unix)]
    {
        // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{HardState, Payload, Persist};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Noop,
        }
    }

    #[test]
    fn agreement_catches_a_fork_inside_the_common_commit() {
        let a = vec![entry(1, 1), entry(1, 2), entry(2, 3)];
        let mut b = a.clone();
        b[2] = entry(3, 3);
        // Different entries at 3, but only one node committed it: no violation.
        let ok = compare_committed(&[(0, a.clone(), 3), (1, b.clone(), 2)]).unwrap();
        assert_eq!(ok.common, 2);
        // Both committed index 3: caught.
        let err = compare_committed(&[(0, a.clone(), 3), (1, b, 3)]).unwrap_err();
        assert!(err.contains("index 3"), "{err}");
        assert!(compare_committed(&[(0, a, 4)]).is_err());
    }

    /// Compacted logs start after their snapshots' bases, at different indexes: they are
    /// compared where both hold entries (a fork there is still caught), and an empty,
    /// wholly compacted log with its commit at the base is no error.
    #[test]
    fn compacted_logs_are_compared_where_they_overlap() {
        let full: Vec<Entry> = (1..=10).map(|i| entry(1, i)).collect();
        let from_4 = full[3..].to_vec();
        let from_8 = full[7..].to_vec();
        let ok = compare_committed(&[
            (0, full.clone(), 10),
            (1, from_4.clone(), 9),
            (2, from_8, 10),
        ])
        .unwrap();
        assert_eq!(ok.common, 9);
        assert!(compare_committed(&[(0, vec![], 10), (1, from_4.clone(), 10)]).is_ok());
        let mut forked = from_4.clone();
        forked[2] = entry(2, 6);
        let err = compare_committed(&[(0, full, 10), (1, forked, 10)]).unwrap_err();
        assert!(err.contains("index 6"), "{err}");
        let mut gap = from_4;
        gap.remove(1);
        assert!(compare_committed(&[(0, gap, 3)]).is_err());
    }

    /// Writes `entries` and `commit` to a fresh data directory through the node's storage,
    /// the way the runtime does: truncations first if asked, then one batch.
    fn write_log(dir: &Path, batches: &[(Option<u64>, Vec<Entry>, u64)]) {
        let (mut storage, _) = Storage::open(dir).unwrap();
        for (truncate, entries, commit) in batches {
            let mut ops = Vec::new();
            if let Some(i) = truncate {
                ops.push(Persist::TruncateFrom(*i));
            }
            ops.push(Persist::Append(entries.clone()));
            ops.push(Persist::Hard(HardState {
                term: entries.last().map_or(0, |e| e.term),
                commit: *commit,
                ..HardState::default()
            }));
            storage.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
        }
    }

    /// The check of the check tests/netns.rs relies on, through the same path it uses:
    /// logs written to disk by the node's storage, read back with `read_log`, compared
    /// with `compare_committed`. A fork planted on disk inside the common committed prefix
    /// is reported (also one made by truncating and re-appending, as a lying leader
    /// would make a follower do), and the same logs without the fork, or with it only
    /// beyond one node's commit index, pass.
    #[test]
    fn a_fork_planted_on_disk_is_reported_by_the_netns_comparison() {
        let root = tempfile::tempdir().unwrap();
        let log: Vec<Entry> = (1..=5).map(|i| entry(1 + i / 3, i)).collect();
        let mut forked = log.clone();
        forked[3] = entry(7, 4); // index 4, another term
        let compare = |dirs: &[&str]| {
            let logs: Vec<(NodeId, Vec<Entry>, u64)> = dirs
                .iter()
                .enumerate()
                .map(|(id, d)| {
                    let (entries, commit) = read_log(&root.path().join(d)).unwrap();
                    (id as NodeId, entries, commit)
                })
                .collect();
            compare_committed(&logs)
        };
        write_log(&root.path().join("honest-a"), &[(None, log.clone(), 5)]);
        write_log(
            &root.path().join("honest-b"),
            &[(None, log[..2].to_vec(), 2), (None, log[2..].to_vec(), 5)],
        );
        write_log(&root.path().join("forked"), &[(None, forked.clone(), 5)]);
        // The fork made by a truncation: index 4 and 5 rewritten after the fact.
        write_log(
            &root.path().join("rewritten"),
            &[(None, log.clone(), 3), (Some(4), forked[3..].to_vec(), 5)],
        );
        write_log(&root.path().join("short"), &[(None, forked.clone(), 3)]);

        let ok = compare(&["honest-a", "honest-b"]).unwrap();
        assert_eq!(ok.common, 5);
        for bad in ["forked", "rewritten"] {
            let err = compare(&["honest-a", "honest-b", bad]).unwrap_err();
            assert!(err.contains("different entries at index 4"), "{bad}: {err}");
        }
        // The same fork only past one node's commit index is no violation.
        assert_eq!(compare(&["honest-a", "short"]).unwrap().common, 3);
    }
}
