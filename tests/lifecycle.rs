//! Process life on real processes (127.0.0.1 only): clean stops, broken pipes, clean-up,
//! data directories bound to their node, restarts. Every process a test starts is
//! killed by the test (by its own pid) if it outlives the test's bound.
//!
//! One test at a time (a lock below): each starts several processes on a small machine.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

const BIN: &str = env!("CARGO_BIN_EXE_tangaroa");

/// A child process killed (by pid) when dropped, so a failing test leaves nothing behind.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        Proc(Some(cmd.spawn().expect("the binary runs")))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("not yet reaped")
    }

    fn signal(&mut self, sig: libc::c_int) {
        let pid = self.child().id() as libc::pid_t;
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Waits up to `within`; `None` if it is still running then.
    fn wait_for(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child().try_wait() {
                self.0 = None;
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Keys and configuration for `nodes` nodes on free ports of 127.0.0.1.
fn keys(dir: &Path, nodes: usize) -> PathBuf {
    let port = tangaroa::runtime::local::free_base_port(nodes).expect("free ports");
    let out = Command::new(BIN)
        .args(["keygen", "--nodes", &nodes.to_string(), "--clients", "2"])
        .arg("--out")
        .arg(dir)
        .args(["--base-port", &port.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // A fast clock, as the other real-process tests use.
    let config = dir.join("cluster.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("tick_ms") {
                "tick_ms = 10".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    config
}

fn node(config: &Path, id: u32, stderr: Stdio) -> Proc {
    Proc::spawn(
        Command::new(BIN)
            .args(["node", "--id", &id.to_string()])
            .arg("--config")
            .arg(config)
            .env("TANGAROA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr),
    )
}

fn ports(config: &Path) -> Vec<u16> {
    let cfg = tangaroa::config::ClusterConfig::load(config).unwrap();
    cfg.nodes.iter().map(|n| n.address.port()).collect()
}

/// Waits until nothing holds any of `ports` (every node process is gone).
fn ports_free_within(ports: &[u16], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ports
            .iter()
            .all(|&p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Reads a child's stderr to the end on a thread (so it never blocks on a full pipe).
fn collect(stderr: Option<std::process::ChildStderr>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
            }
        }
        s
    })
}

/// SIGTERM and SIGINT stop a running node with exit 0, within the stop bound, without a
/// panic; also when its stderr goes to a reader that has gone away.
#[test]
fn signals_stop_nodes_with_exit_zero_within_a_bound() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = keys(dir.path(), 4);
    for round in 0..3 {
        let mut nodes: Vec<Proc> = (0..4).map(|i| node(&config, i, Stdio::piped())).collect();
        // Round 0 and 1 read stderr; round 2 closes its read end at once (a reader that
        // exited): log writes then fail with a broken pipe.
        let readers: Vec<_> = nodes
            .iter_mut()
            .map(|n| {
                let e = n.child().stderr.take();
                if round == 2 {
                    drop(e);
                    None
                } else {
                    Some(collect(e))
                }
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let sig = if round == 1 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let t0 = Instant::now();
        for n in &mut nodes {
            n.signal(sig);
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            let status = n.wait_for(Duration::from_secs(5));
            assert!(
                status.is_some(),
                "round {round}: node {i} still running 5 s after the signal"
            );
            assert_eq!(
                status.unwrap().code(),
                Some(0),
                "round {round}: node {i}: {status:?}"
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        for r in readers.into_iter().flatten() {
            let err = r.join().unwrap();
            assert!(!err.contains("panicked"), "round {round}:\n{err}");
        }
    }
}

/// `tangaroa cluster` stops its nodes when it gets SIGTERM, and exits 0.
#[test]
fn the_cluster_command_stops_its_nodes_on_sigterm() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Proc::spawn(
        Command::new(BIN)
            .args(["cluster", "--nodes", "4", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let config = dir.path().join("cluster.toml");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(config.exists() && dir.path().join("node-3.log").exists()) {
        assert!(Instant::now() < deadline, "the cluster did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let ports = ports(&config);
    assert!(!ports_free_within(&ports, Duration::from_millis(100)));
    cluster.signal(libc::SIGTERM);
    let status = cluster.wait_for(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(
        ports_free_within(&ports, Duration::from_secs(5)),
        "nodes still running after the cluster command exited"
    );
}

/// `tangaroa demo | head -1` and `tangaroa status | head -1`: no panic on the broken
/// pipe, honest exit codes, and the demo removes its temporary keys.
#[test]
fn a_closed_stdout_is_no_panic_and_the_demo_cleans_up() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Proc::spawn(
        Command::new(BIN)
            .args(["demo", "--requests", "2"])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let err = collect(demo.child().stderr.take());
    let mut first = String::new();
    BufReader::new(demo.child().stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("starting"), "{first}");
    // The reader has gone: the rest of the demo writes into a broken pipe.
    let status = demo.wait_for(Duration::from_secs(60));
    let err = err.join().unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");

    // status | head: a running cluster, and a reader that has already gone.
    let dir = tempfile::tempdir().unwrap();
    let config = keys(dir.path(), 4);
    let _nodes: Vec<Proc> = (0..4).map(|i| node(&config, i, Stdio::null())).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut status = Proc::spawn(
        Command::new(BIN)
            .args(["status", "--config"])
            .arg(&config)
            .stdout(writer)
            .stderr(Stdio::piped()),
    );
    let err = collect(status.child().stderr.take());
    let code = status.wait_for(Duration::from_secs(10));
    let err = err.join().unwrap();
    assert_eq!(code.and_then(|s| s.code()), Some(0), "{code:?}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A node refuses another node's data directory, and another cluster's, with exit 2 and
/// a message naming the owner; its own directory still works after.
#[test]
fn a_node_refuses_a_data_directory_that_is_not_its_own() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = keys(dir.path(), 4);
    let other = tempfile::tempdir().unwrap();
    let other_config = keys(other.path(), 4);
    let data0 = dir.path().join("data").join("node-0");
    let mut n0 = node(&config, 0, Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data0.join("identity").exists() {
        assert!(Instant::now() < deadline, "node 0 did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    n0.signal(libc::SIGTERM);
    assert_eq!(
        n0.wait_for(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    for (cfg, id, what) in [
        (&config, 3, "node 3"),
        (&other_config, 0, "another cluster"),
    ] {
        let mut p = Proc::spawn(
            Command::new(BIN)
                .args(["node", "--id", &id.to_string()])
                .arg("--config")
                .arg(cfg)
                .arg("--data")
                .arg(&data0)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let err = collect(p.child().stderr.take());
        let status = p.wait_for(Duration::from_secs(5));
        let err = err.join().unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{what}: {err}");
        assert!(
            err.contains("belongs to node 0 of cluster") && !err.contains("panicked"),
            "{what}: {err}"
        );
    }
    let mut n0 = node(&config, 0, Stdio::null());
    assert!(
        n0.wait_for(Duration::from_millis(800)).is_none(),
        "its own data works"
    );
}

/// A node restarted 0.3 s after kill -9 commits again within about one election timeout
/// (200-400 ms here, plus process start), not after the old links' 5 s idle timeout:
/// peers' connections to the dead process are reset by the new one at their first packet.
#[test]
fn a_node_restarted_after_kill_9_commits_again_within_an_election_timeout() {
    use tangaroa::protocol::{Op, OpResult};
    use tangaroa::runtime::client::Session;
    let _one = serial();
    let (_dir, mut c) = honest_bft_cluster();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limit = Duration::from_secs(20);
    let put = |k: String| Op::Put {
        key: k,
        value: "v".into(),
    };
    let mut times = Vec::new();
    for round in 0..3 {
        let victim = rt.block_on(async {
            let mut s = Session::connect(&c.config, None).await.unwrap();
            let r = s.execute(put(format!("warm-{round}")), limit).await;
            assert_eq!(r.unwrap(), OpResult::Ok);
            let (_, leader) = s
                .leader_named_by(&[0, 1, 2, 3], limit)
                .await
                .expect("a leader");
            s.close();
            (leader + 1) % 4
        });
        c.kill(victim);
        std::thread::sleep(Duration::from_millis(300));
        c.start_node(victim).unwrap();
        let t0 = Instant::now();
        let took = rt.block_on(async {
            let mut s = Session::connect(&c.config, None).await.unwrap();
            let mut k = 0;
            let mut target = None;
            loop {
                k += 1;
                let r = s.execute(put(format!("after-{round}-{k}")), limit).await;
                assert_eq!(r.unwrap(), OpResult::Ok);
                // A fresh session each time: the old one's link to the victim is stale.
                let mut q = Session::connect(&c.config, None).await.unwrap();
                let reports = q.status(Duration::from_millis(300)).await;
                q.close();
                let others = reports
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != victim as usize)
                    .filter_map(|(_, r)| r.as_ref().map(|r| r.commit))
                    .min()
                    .unwrap_or(0);
                let mine = reports[victim as usize].as_ref().map_or(0, |r| r.commit);
                // Back when it has committed the first put made after its restart.
                let target = *target.get_or_insert(others);
                if mine >= target {
                    break t0.elapsed();
                }
                assert!(t0.elapsed() < limit, "node {victim} never caught up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        eprintln!("round {round}: node {victim} restarted 0.3 s after kill -9 committed again after {took:?}");
        times.push(took);
    }
    c.stop(Duration::from_secs(3));
    times.sort();
    let median = times[1];
    assert!(
        median < Duration::from_millis(1500),
        "median time to commit again {median:?} (all: {times:?})"
    );
}

/// CLI calls on a healthy bft cluster: every node knows the client's stream from the
/// start, so f+1 replies come within one commit round (not the 0.5 s client timeout);
/// many sequential calls with one key are not refused by the per-key connection limit;
/// parallel calls with one key all succeed and are all applied.
#[test]
fn cli_calls_are_fast_sequential_and_parallel_with_one_key() {
    use tangaroa::protocol::{Op, OpResult};
    use tangaroa::runtime::client::Session;
    let _one = serial();
    let (_dir, mut c) = honest_bft_cluster();
    let config = c.config.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = Session::connect(&config, None).await.unwrap();
        let warm = Op::Put {
            key: "warm".into(),
            value: "up".into(),
        };
        let r = s.execute(warm, Duration::from_secs(20)).await.unwrap();
        assert_eq!(r, OpResult::Ok);
        s.close_gracefully().await;
    });
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .arg("client")
            .arg("--config")
            .arg(&config)
            .args(["--timeout", "10"])
            .args(args)
            .output()
            .unwrap()
    };
    let mut times = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let out = cli(&["put", &format!("seq-{i}"), "v"]);
        times.push(t.elapsed());
        assert!(out.status.success(), "call {i}: {out:?}");
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "20 sequential CLI puts: median {median:?}, max {:?}",
        times[19]
    );
    let parallel: Vec<_> = (0..8)
        .map(|i| {
            Command::new(BIN)
                .arg("client")
                .arg("--config")
                .arg(&config)
                .args(["--timeout", "20", "put", &format!("par-{i}"), "p"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, p) in parallel.into_iter().enumerate() {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "parallel call {i}: {out:?}");
    }
    for i in 0..8 {
        let out = cli(&["get", &format!("par-{i}")]);
        assert!(out.status.success(), "par-{i} applied: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "p");
    }
    c.stop(Duration::from_secs(3));
    assert!(
        median < Duration::from_millis(300),
        "median CLI put {median:?}"
    );
}

/// `tangaroa cluster` on a folder whose cluster is already running: its ports are taken,
/// so it refuses at once (exit 2, saying why) instead of showing the other cluster's
/// table and exiting 0; the running one is untouched.
#[test]
fn the_cluster_command_refuses_taken_ports() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut first = Proc::spawn(
        Command::new(BIN)
            .args(["cluster", "--nodes", "4", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.path().join("node-3.log").exists() {
        assert!(Instant::now() < deadline, "the cluster did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let second = Command::new(BIN)
        .args(["cluster", "--nodes", "4", "--for", "3", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains("is taken"), "{err}");
    assert!(
        first.wait_for(Duration::from_millis(100)).is_none(),
        "the first still runs"
    );
    first.signal(libc::SIGTERM);
    let status = first.wait_for(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

/// A healthy 4-node bft cluster of real processes in a fresh folder.
fn honest_bft_cluster() -> (tempfile::TempDir, tangaroa::runtime::local::LocalCluster) {
    use tangaroa::runtime::local::{LocalCluster, LocalSpec};
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(LocalSpec {
        nodes: 4,
        clients: 2,
        variant: tangaroa::protocol::Variant::Bft,
        byzantine: Default::default(),
        dir: dir.path().to_path_buf(),
        binary: BIN.into(),
        tick_ms: Some(10),
        checkpoint_interval: None,
    })
    .unwrap();
    (dir, c)
}
