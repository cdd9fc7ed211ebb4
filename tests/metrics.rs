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

/// Keys for 4 nodes and `clients` clients in `dir`; the configuration's path.
fn keygen(dir: &Path, clients: usize) -> std::path::PathBuf {
    let base = tangaroa::runtime::local::free_base_port(4)
        .unwrap()
        .to_string();
    let out = Command::new(BIN)
        .args([
            "keygen",
            "--nodes",
            "4",
            "--clients",
            &clients.to_string(),
            "--base-port",
            &base,
        ])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    dir.join("cluster.toml")
}

/// Starts node `id` with metrics on `metrics` (and `byzantine`, if given).
fn start_node(config: &Path, id: usize, metrics: &str, byzantine: Option<&str>) -> Child {
    let dir = config.parent().unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("node-{id}.log")))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config", config.to_str().unwrap()])
        .args(["--id", &id.to_string(), "--metrics", metrics])
        .env("TANGAROA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(b) = byzantine {
        cmd.args(["--byzantine", b]);
    }
    cmd.spawn().unwrap()
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
fn sum(m: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name) && labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

/// Polls every address's /readyz until `done` says so; the addresses that answered 503
/// at least once meanwhile.
fn poll_readyz(addrs: &[String], secs: u64, mut done: impl FnMut() -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut unready = Vec::new();
    loop {
        for a in addrs {
            if let Some((503, why)) = get(a, "/readyz") {
                if !unready.contains(a) {
                    println!("{a}: {}", why.trim());
                    unready.push(a.clone());
                }
            }
        }
        if done() {
            return unready;
        }
        assert!(
            Instant::now() < deadline,
            "timed out polling /readyz:\n{}",
            states(addrs)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn metrics_and_readiness_follow_elections_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let config = keygen(dir.path(), 1);
    let addrs = free_tcp_addrs(4);
    let start = |id: usize| start_node(&config, id, &addrs[id], None);
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

    // Commits show up in commit_index and applied on every node, and the traffic, batch,
    // fsync, commit latency and verification series move with them.
    let idle: Vec<HashMap<String, f64>> = addrs.iter().map(|a| scrape(a).unwrap()).collect();
    const PUTS: usize = 6;
    for k in 0..PUTS {
        put(&config, &format!("k{k}"));
    }
    for a in &addrs {
        until("the commit index to move", 20, &addrs, || {
            let m = scrape(a)?;
            (m["tangaroa_commit_index"] > before["tangaroa_commit_index"]
                && m["tangaroa_applied"] >= PUTS as f64)
                .then_some(())
        });
    }
    let loaded: Vec<HashMap<String, f64>> = addrs.iter().map(|a| scrape(a).unwrap()).collect();
    let grew = |id: usize, name: &str, labels: &[&str]| {
        let (was, is) = (sum(&idle[id], name, labels), sum(&loaded[id], name, labels));
        println!("node {id}: {name}{labels:?} {was} -> {is}");
        is > was
    };
    let m = &loaded[leader];
    assert!(m["tangaroa_persist_seconds_count"] > 0.0, "{m:?}");
    assert!(m["tangaroa_transport_total{kind=\"sent\"}"] > 0.0, "{m:?}");
    let ae = ["kind=\"append-entries\""];
    assert!(grew(leader, "tangaroa_messages_sent_total", &ae));
    assert!(grew(
        leader,
        "tangaroa_messages_sent_total",
        &["kind=\"reply\""]
    ));
    assert!(grew(leader, "tangaroa_append_entries_entries_count", &[]));
    assert!(grew(leader, "tangaroa_batch_inputs_count", &[]));
    // Every request reached the leader (from the client or forwarded) and was applied
    // there: the commit latency of each is measured.
    assert!(
        m["tangaroa_commit_seconds_count"] >= PUTS as f64,
        "commit latency of {PUTS} puts: {m:?}"
    );
    for id in (0..4).filter(|&i| i != leader) {
        assert!(grew(id, "tangaroa_messages_received_total", &ae));
        assert!(grew(id, "tangaroa_verify_seconds_count", &ae));
        assert!(grew(id, "tangaroa_messages_sent_total", &["kind=\"ack\""]));
        assert!(grew(id, "tangaroa_persist_seconds_count", &[]));
    }
    // Nothing honest is rejected.
    for (id, m) in loaded.iter().enumerate() {
        assert_eq!(
            sum(m, "tangaroa_messages_rejected_total", &[]),
            0.0,
            "node {id}"
        );
    }

    // The leader dies: the survivors' /readyz goes to 503 while they elect (a candidate
    // knows no leader of its term; a voter has moved to a term whose leader it has not
    // heard from), and back to 200 under a new leader in a later term.
    let mut dead = nodes.0[leader].take().unwrap();
    dead.kill().unwrap();
    dead.wait().unwrap();
    let survivors: Vec<String> = (0..4)
        .filter(|&i| i != leader)
        .map(|i| addrs[i].clone())
        .collect();
    let mut elected = None;
    let unready = poll_readyz(&survivors, 40, || {
        let mut leaders = Vec::new();
        for a in &survivors {
            if get(a, "/readyz").map(|r| r.0) != Some(200) {
                return false;
            }
            let Some(m) = scrape(a) else { return false };
            if m["tangaroa_term"] <= term {
                return false;
            }
            leaders.push(m["tangaroa_leader"]);
        }
        let agreed = leaders.windows(2).all(|w| w[0] == w[1]);
        if agreed {
            elected = Some((
                leaders[0] as usize,
                scrape(&survivors[0]).unwrap()["tangaroa_term"],
            ));
        }
        agreed
    });
    let (leader2, term2) = elected.unwrap();
    assert_ne!(leader2, leader);
    assert!(
        !unready.is_empty(),
        "no survivor reported not ready during the election"
    );
    println!(
        "{} of 3 survivors were seen unready; node {leader2} leads term {term2}",
        unready.len()
    );

    // The new leader dies too: the two left cannot elect (q = 3) and go unready; one
    // comes back, and all three are ready under a new leader in a later term.
    let (leader, term, second) = (leader2, term2, leader);
    let mut dead = nodes.0[leader].take().unwrap();
    dead.kill().unwrap();
    dead.wait().unwrap();
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

/// A node that sends messages in others' names (`impersonate`): the honest nodes count
/// what they refuse by kind and by reason.
#[test]
fn rejections_are_counted_by_kind_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = keygen(dir.path(), 1);
    let addrs = free_tcp_addrs(4);
    let byzantine = |id: usize| (id == 3).then_some("impersonate");
    let _nodes = Nodes(
        (0..4)
            .map(|id| Some(start_node(&config, id, &addrs[id], byzantine(id))))
            .collect(),
    );
    let honest = &addrs[..3];
    let seen = until("rejections by reason", 30, honest, || {
        let mut total = HashMap::new();
        for a in honest {
            for (k, v) in scrape(a)? {
                if k.starts_with("tangaroa_messages_rejected_total{") {
                    *total.entry(k).or_insert(0.0) += v;
                }
            }
        }
        let wrong_sender = sum(
            &total,
            "tangaroa_messages_rejected_total",
            &["reason=\"wrong-sender\""],
        );
        (wrong_sender > 0.0 && total.len() >= 2).then_some(total)
    });
    println!("{seen:#?}");
    // The old total counts them too.
    let m = scrape(&addrs[0]).unwrap();
    assert!(
        m["tangaroa_transport_total{kind=\"rejected\"}"] > 0.0 || {
            let others: f64 = honest[1..]
                .iter()
                .map(|a| scrape(a).unwrap()["tangaroa_transport_total{kind=\"rejected\"}"])
                .sum();
            others > 0.0
        }
    );
}

/// A node that joins far behind (fresh, while the others committed more than
/// `CAUGHT_UP_LAG` entries) is never ready while it is more than that behind, and is
/// ready once it has caught up.
///
/// It failed while links kept the frames queued for a peer that was down: node 3 then
/// first heard stale commit points and said ready at commit 0 with node 0 at 412. Links
/// now drop what they queued for an unreachable peer (`transport::peer::discard_queued`).
#[test]
fn a_node_far_behind_is_not_ready_until_it_caught_up() {
    use tangaroa::protocol::Op;
    use tangaroa::runtime::client::Session;
    use tangaroa::runtime::CAUGHT_UP_LAG;
    const CLIENTS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let config = keygen(dir.path(), CLIENTS);
    let addrs = free_tcp_addrs(4);
    let mut nodes = Nodes(
        (0..3)
            .map(|id| Some(start_node(&config, id, &addrs[id], None)))
            .collect(),
    );
    let three = &addrs[..3];
    until("three nodes ready", 30, three, || {
        three
            .iter()
            .all(|a| matches!(get(a, "/readyz"), Some((200, _))))
            .then_some(())
    });
    // More than the bound committed without node 3, from a few clients at once.
    let target = CAUGHT_UP_LAG as usize + 100;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (config, key) = (config.clone(), dir.path().join(format!("client-{c}.key")));
            tasks.push(tokio::spawn(async move {
                let mut s = Session::connect(&config, Some(&key)).await.unwrap();
                for i in 0..target.div_ceil(CLIENTS) {
                    let op = Op::Put {
                        key: format!("c{c}-{i}"),
                        value: "v".into(),
                    };
                    s.execute(op, Duration::from_secs(20)).await.unwrap();
                }
                s.close_gracefully().await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let cluster = until("the three to agree on a commit index", 20, three, || {
        let c: Vec<f64> = three
            .iter()
            .map(|a| scrape(a).map(|m| m["tangaroa_commit_index"]))
            .collect::<Option<_>>()?;
        (c.windows(2).all(|w| w[0] == w[1]) && c[0] >= target as f64).then(|| c[0])
    });
    println!("the cluster committed {cluster} entries without node 3");

    // Node 3 joins with an empty log, while a client keeps putting (what a node catching
    // up in a quiet cluster hears is about the entries it is fetching, not the head: see
    // `metrics::Tracker`). Every scrape that says ready must find it within the bound of
    // the commit index node 0 had just before.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, config) = (stop.clone(), config.clone());
        let key = dir.path().join("client-0.key");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let mut s = Session::connect(&config, Some(&key)).await.unwrap();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let op = Op::Put {
                        key: format!("late-{i}"),
                        value: "v".into(),
                    };
                    let _ = s.execute(op, Duration::from_secs(5)).await;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                s.close_gracefully().await;
            });
        })
    };
    nodes.0.push(Some(start_node(&config, 3, &addrs[3], None)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut unready, mut reasons) = (0, Vec::new());
    loop {
        let Some(head) = scrape(&addrs[0]).map(|m| m["tangaroa_commit_index"]) else {
            continue;
        };
        if let Some((code, body)) = get(&addrs[3], "/readyz") {
            if code == 503 {
                unready += 1;
                let why = body
                    .trim()
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if !reasons
                    .iter()
                    .any(|r: &String| r.get(..12) == why.get(..12))
                {
                    reasons.push(why);
                }
            }
        }
        if let Some(m) = scrape(&addrs[3]) {
            let (ready, commit) = (m["tangaroa_ready"], m["tangaroa_commit_index"]);
            if ready == 1.0 {
                assert!(
                    commit + CAUGHT_UP_LAG as f64 >= head,
                    "node 3 ready at commit {commit}, node 0 at {head}; it heard of {}",
                    m["tangaroa_heard_commit_index"]
                );
                if commit >= cluster {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never caught up: {}",
            states(&addrs)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    println!("node 3 caught up; unready {unready} times before, for: {reasons:#?}");
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
