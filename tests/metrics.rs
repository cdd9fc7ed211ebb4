//! `tangaroa node --metrics`: Prometheus text, /healthz and /readyz on real node processes
//! (127.0.0.1 only, bounded in time; every process started here is killed on the way out).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tangaroa");

/// The children this test started, killed when it ends however it ends.
struct Nodes(Vec<Option<Child>>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// (status code, body) of GET http://addr/path, or None if nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// The unlabelled and labelled samples of a Prometheus text page.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn scrape(addr: &str) -> Option<HashMap<String, f64>> {
    match get(addr, "/metrics")? {
        (200, body) => Some(samples(&body)),
        _ => None,
    }
}

/// `n` distinct free TCP addresses on 127.0.0.1 (held together while chosen).
fn free_tcp_addrs(n: usize) -> Vec<String> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// What every node answers, for failure messages.
fn states(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|a| {
            let ready = get(a, "/readyz").map(|(c, b)| format!("{c} {}", b.trim()));
            let m = scrape(a).unwrap_or_default();
            format!(
                "{a}: readyz {ready:?}, term {:?}, leader {:?}\n",
                m.get("tangaroa_term"),
                m.get("tangaroa_leader")
            )
        })
        .collect()
}

fn until<T>(what: &str, secs: u64, addrs: &[String], mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            states(addrs)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn put(config: &Path, key: &str) {
    let out = Command::new(BIN)
        .args(["client", "--config", config.to_str().unwrap()])
        .args(["--timeout", "20", "put", key, "v"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_and_readiness_follow_elections_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let base = tangaroa::runtime::local::free_base_port(4)
        .unwrap()
        .to_string();
    let out = Command::new(BIN)
        .args([
            "keygen",
            "--nodes",
            "4",
            "--clients",
            "1",
            "--base-port",
            &base,
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = dir.path().join("cluster.toml");
    let addrs = free_tcp_addrs(4);
    let start = |id: usize| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join(format!("node-{id}.log")))
            .unwrap();
        Command::new(BIN)
            .args(["node", "--config", config.to_str().unwrap()])
            .args(["--id", &id.to_string(), "--metrics", &addrs[id]])
            .env("TANGAROA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut nodes = Nodes((0..4).map(|id| Some(start(id))).collect());
    // Every node ready, all following one leader.
    let leader = until("a leader all four follow", 30, &addrs, || {
        let mut leaders = Vec::new();
        for a in &addrs {
            if get(a, "/readyz")?.0 != 200 {
                return None;
            }
            leaders.push(scrape(a)?["tangaroa_leader"]);
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then(|| leaders[0])
    }) as usize;
    assert_eq!(get(&addrs[0], "/healthz").unwrap().0, 200);
    assert_eq!(get(&addrs[0], "/nothing").unwrap().0, 404);
    let before = scrape(&addrs[leader]).unwrap();
    assert_eq!(before["tangaroa_role{role=\"leader\"}"], 1.0);
    let other = (leader + 1) % 4;
    assert_eq!(
        scrape(&addrs[other]).unwrap()["tangaroa_role{role=\"leader\"}"],
        0.0
    );
    let term = before["tangaroa_term"];
    assert!(term >= 1.0);

    // Commits show up in commit_index and applied on every node.
    put(&config, "a");
    put(&config, "b");
    for a in &addrs {
        until("the commit index to move", 20, &addrs, || {
            let m = scrape(a)?;
            (m["tangaroa_commit_index"] > before["tangaroa_commit_index"]
                && m["tangaroa_applied"] >= 2.0)
                .then_some(())
        });
    }
    let m = scrape(&addrs[leader]).unwrap();
    assert!(m["tangaroa_persist_seconds_count"] > 0.0, "{m:?}");
    assert!(m["tangaroa_transport_total{kind=\"sent\"}"] > 0.0, "{m:?}");

    // The leader and one more die: the two left cannot elect (q = 3) and go unready; one
    // comes back, and all three are ready under a new leader in a later term.
    let second = (leader + 1) % 4;
    for id in [leader, second] {
        let mut dead = nodes.0[id].take().unwrap();
        dead.kill().unwrap();
        dead.wait().unwrap();
    }
    let left: Vec<String> = (0..4)
        .filter(|&i| i != leader && i != second)
        .map(|i| addrs[i].clone())
        .collect();
    until("the survivors to go unready", 30, &left, || {
        left.iter()
            .all(|a| matches!(get(a, "/readyz"), Some((503, _))))
            .then_some(())
    });
    for a in &left {
        assert_eq!(scrape(a).unwrap()["tangaroa_ready"], 0.0);
        assert_eq!(get(a, "/healthz").unwrap().0, 200, "alive though unready");
    }
    nodes.0[second] = Some(start(second));
    let rest: Vec<String> = (0..4)
        .filter(|&i| i != leader)
        .map(|i| addrs[i].clone())
        .collect();
    let new_leader = until("a new leader", 40, &rest, || {
        let mut leaders = Vec::new();
        for a in &rest {
            if get(a, "/readyz")?.0 != 200 {
                return None;
            }
            let m = scrape(a)?;
            if m["tangaroa_term"] <= term {
                return None;
            }
            leaders.push(m["tangaroa_leader"]);
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then(|| leaders[0])
    }) as usize;
    assert_ne!(new_leader, leader);
    assert_eq!(
        scrape(&addrs[new_leader]).unwrap()["tangaroa_role{role=\"leader\"}"],
        1.0
    );
}

#[test]
fn a_metrics_address_in_use_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let base = tangaroa::runtime::local::free_base_port(1)
        .unwrap()
        .to_string();
    let out = Command::new(BIN)
        .args(["keygen", "--nodes", "1", "--base-port", &base])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut child = Command::new(BIN)
        .arg("node")
        .arg("--config")
        .arg(dir.path().join("cluster.toml"))
        .args(["--id", "0", "--metrics", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node started on a taken metrics address");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--metrics") && err.contains("cannot bind"),
        "{err}"
    );
}
