//! Checkpoints, compaction and state transfer on real processes (issue 11, at a scale CI
//! runs in well under a minute per test): `tangaroa node` processes on 127.0.0.1 with a
//! small `checkpoint_interval`, driven by signed closed-loop clients.
//!
//! - the data directories stay under a bound computed from the state, the interval and a
//!   batch, while the history grows well past it;
//! - a node kept down while the others compact installs a snapshot from a peer and then
//!   commits new requests, also with a Byzantine peer among the nodes;
//! - every node restarted after compaction loads its snapshot and the log after it, and
//!   the cluster goes on.
//!
//! The tests run one at a time (a lock below): each starts four processes, and this
//! machine has two cores.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tangaroa::adversary::Behaviour;
use tangaroa::protocol::{NodeId, Op, OpResult, Variant};
use tangaroa::runtime::client::Session;
use tangaroa::runtime::local::{compare_committed, LocalCluster, LocalSpec};
use tangaroa::runtime::Loaded;
use tangaroa::transport::NodeReport;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

const INTERVAL: u64 = 50;
const CLIENTS: usize = 8;
const PAYLOAD: usize = 16;
/// Any single wait of these tests.
const LIMIT: Duration = Duration::from_secs(30);

fn start(dir: &Path, byzantine: &[(NodeId, Behaviour)]) -> LocalCluster {
    LocalCluster::start(LocalSpec {
        nodes: 4,
        // The load's clients, and one more for reads (a session of a client the load
        // also uses would have its requests refused as stale).
        clients: CLIENTS + 1,
        variant: Variant::Bft,
        byzantine: byzantine.iter().copied().collect::<BTreeMap<_, _>>(),
        dir: dir.to_path_buf(),
        binary: env!("CARGO_BIN_EXE_tangaroa").into(),
        tick_ms: Some(10),
        checkpoint_interval: Some(INTERVAL),
    })
    .expect("cluster starts")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `puts` signed puts from `CLIENTS` closed-loop clients (keys `c<client>-<i>`, each new
/// within a call), bounded in time; returns how many were accepted.
async fn load(loaded: &Arc<Loaded>, puts: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut s = Session::connect_as(loaded, c as u32, None)
            .await
            .expect("client connects");
        let share = puts / CLIENTS as u64 + u64::from((c as u64) < puts % CLIENTS as u64);
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for i in 0..share {
                if Instant::now() >= deadline {
                    break;
                }
                let op = Op::Put {
                    key: format!("c{c}-{i}"),
                    value: vec![b'v'; PAYLOAD],
                };
                if let Ok(OpResult::Ok) = s.execute(op, Duration::from_secs(10)).await {
                    ok += 1;
                }
            }
            s.close();
            ok
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("client task");
    }
    accepted
}

/// Polls status until `done` holds for the reports, or panics after `LIMIT` with `what`.
async fn wait_for(
    s: &mut Session,
    what: &str,
    mut done: impl FnMut(&[Option<NodeReport>]) -> bool,
) -> Vec<Option<NodeReport>> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = s.status(Duration::from_secs(1)).await;
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {LIMIT:?}; status: {}",
            summary(&r)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn summary(r: &[Option<NodeReport>]) -> String {
    r.iter()
        .enumerate()
        .map(|(i, r)| match r {
            None => format!("[{i}: no answer]"),
            Some(r) => format!(
                "[{i}: commit {} applied {} base {} snapshot {:?} disk {}]",
                r.commit, r.applied, r.log_base, r.snapshot_index, r.disk_bytes
            ),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn commit_of(r: &[Option<NodeReport>], id: NodeId) -> u64 {
    r[id as usize].as_ref().map_or(0, |r| r.commit)
}

/// Highest commit among `nodes`.
fn top_commit(r: &[Option<NodeReport>], nodes: &[NodeId]) -> u64 {
    nodes.iter().map(|&i| commit_of(r, i)).max().unwrap_or(0)
}

/// Stops the cluster and compares the honest nodes' logs on disk where they overlap.
fn stop_and_compare(mut c: LocalCluster, nodes: &[NodeId]) {
    c.stop(Duration::from_secs(3));
    let logs: Vec<_> = nodes
        .iter()
        .map(|&id| {
            let (entries, commit) = c.read_log(id).expect("log readable");
            (id, entries, commit)
        })
        .collect();
    compare_committed(&logs).expect("honest nodes agree");
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes one committed put costs in a log record at most: the signed request (64-byte
/// signature, client, seq, key, value), the entry's term and index, the record framing,
/// its share of the batch's hard state. Measured entries are about 150 bytes.
const ENTRY_BYTES: u64 = 400;
/// The data directory's files other than the log and the snapshot: format, identity,
/// hard state, evidence, the stable certificate (q signed Checkpoints), with room.
const BOOKKEEPING: u64 = 64 << 10;

/// (a) The data directory stays under state + a few intervals of entries while the
/// history grows well past that, and `status` shows the log compacted.
#[test]
fn data_directories_stay_bounded_by_the_state_and_the_interval() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), &[]);
    let loaded = Arc::new(Loaded::load(&c.config).unwrap());
    let all: Vec<NodeId> = (0..4).collect();
    const PUTS: u64 = 6000;
    let (accepted, most, last) = rt().block_on(async {
        let mut s = Session::connect(&c.config, None).await.unwrap();
        assert!(s.leader_named_by(&all, LIMIT).await.is_some(), "no leader");
        // The load, and a status poll beside it recording every node's largest disk use.
        let work = load(&loaded, PUTS);
        tokio::pin!(work);
        let mut most = [0u64; 4];
        let accepted = loop {
            tokio::select! {
                n = &mut work => break n,
                _ = tokio::time::sleep(Duration::from_millis(150)) => {
                    for (i, r) in s.status(Duration::from_millis(500)).await.iter().enumerate() {
                        if let Some(r) = r {
                            most[i] = most[i].max(r.disk_bytes);
                        }
                    }
                }
            }
        };
        // Everyone applies the last puts and takes the checkpoint after them.
        let target = top_commit(&s.status(Duration::from_secs(1)).await, &all);
        let last = wait_for(&mut s, "every node reaches the top commit", |r| {
            all.iter().all(|&i| commit_of(r, i) >= target)
        })
        .await;
        for (i, r) in last.iter().enumerate() {
            if let Some(r) = r {
                most[i] = most[i].max(r.disk_bytes);
            }
        }
        s.close_gracefully().await;
        (accepted, most, last)
    });
    assert!(
        accepted >= PUTS * 9 / 10,
        "{accepted} of {PUTS} puts accepted"
    );
    // The state: the largest snapshot file at the end (the state only grew: every key new).
    let state = all
        .iter()
        .map(|&i| {
            std::fs::metadata(c.data_dir(i).join("snapshot"))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .max()
        .unwrap();
    assert!(state > 0, "a snapshot file");
    // Two copies of the state (a new snapshot is written beside the old and renamed
    // over it); the log: the segment holding the stable base (segments end every
    // interval of entries: < interval + a batch), the entries since (checkpoints lag
    // their index by the Checkpoint exchange: < two intervals), batches of at most one
    // request per client, and the segments' starts.
    let bound = 2 * state + (3 * INTERVAL + 4 * CLIENTS as u64) * ENTRY_BYTES + BOOKKEEPING;
    let commit = top_commit(&last, &all);
    // The history the bound is not allowed to follow: every committed entry, at the
    // smallest size an entry has on disk (a 64-byte signature and a 16-byte value).
    let history = commit * 100;
    eprintln!(
        "state {state} B, bound {bound} B, history > {history} B, largest disk use {most:?}; {}",
        summary(&last)
    );
    assert!(
        bound < history,
        "the run is too short to show anything: bound {bound} >= history {history}"
    );
    for (i, m) in most.iter().enumerate() {
        assert!(*m > 0, "node {i} reported its disk use");
        assert!(
            *m <= bound,
            "node {i} used {m} bytes, over the bound {bound}"
        );
        let now = dir_bytes(&c.data_dir(i as NodeId));
        assert!(now <= bound, "node {i}'s directory holds {now} bytes");
    }
    for (i, r) in last.iter().enumerate() {
        let r = r.as_ref().expect("every node answers");
        assert!(
            r.log_base > 0 && r.log_base + 3 * INTERVAL >= r.commit,
            "node {i}: log base {} for commit {}",
            r.log_base,
            r.commit
        );
        assert!(
            r.snapshot_index.is_some_and(|s| s >= r.log_base),
            "node {i}"
        );
    }
    stop_and_compare(c, &all);
}

/// Starts the cluster with `late` down from the start, runs load until the others have
/// compacted well past the start, then starts `late`: it must install a snapshot from a
/// peer (its log base jumps from 0 past what the others dropped), then commit new requests.
fn late_node_installs_a_snapshot(byzantine: &[(NodeId, Behaviour)], late: NodeId) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), byzantine);
    c.kill(late);
    let loaded = Arc::new(Loaded::load(&c.config).unwrap());
    let up: Vec<NodeId> = (0..4).filter(|&i| i != late).collect();
    let honest_up: Vec<NodeId> = c.honest().into_iter().filter(|&i| i != late).collect();
    let config = c.config.clone();
    let runtime = rt();
    let dropped = runtime.block_on(async {
        let mut s = Session::connect(&config, None).await.unwrap();
        assert!(
            s.leader_named_by_at_least(&honest_up, honest_up.len(), LIMIT)
                .await
                .is_some(),
            "no leader"
        );
        let accepted = load(&loaded, 1500).await;
        assert!(
            accepted >= 1000,
            "{accepted} puts accepted with {late} down"
        );
        // What the running honest nodes have compacted away: the late node cannot get
        // it as entries.
        let r = wait_for(&mut s, "the running nodes compact", |r| {
            honest_up.iter().all(|&i| {
                r[i as usize]
                    .as_ref()
                    .is_some_and(|r| r.log_base >= 10 * INTERVAL)
            })
        })
        .await;
        s.close_gracefully().await;
        honest_up
            .iter()
            .map(|&i| r[i as usize].as_ref().unwrap().log_base)
            .min()
            .unwrap()
    });
    assert!(commit_of_nothing(&c, late), "node {late} has nothing yet");
    c.start_node(late).unwrap();
    runtime.block_on(async {
        let mut s = Session::connect(&config, None).await.unwrap();
        let r = wait_for(&mut s, "the late node installs a snapshot", |r| {
            r[late as usize]
                .as_ref()
                .is_some_and(|r| r.log_base >= dropped && r.snapshot_index >= Some(dropped))
        })
        .await;
        eprintln!("after the install: {}", summary(&r));
        // New requests: the late node commits them too, and serves reads of old keys
        // from the installed state.
        let accepted = load(&loaded, 300).await;
        assert!(accepted >= 250, "{accepted} puts after the install");
        let target = top_commit(&s.status(Duration::from_secs(1)).await, &up);
        let r = wait_for(&mut s, "the late node commits new requests", |r| {
            commit_of(r, late) >= target
        })
        .await;
        let mine = r[late as usize].as_ref().unwrap();
        assert!(mine.applied > 0, "it applied entries after the install");
        let mut reader = Session::connect_as(&loaded, CLIENTS as u32, None)
            .await
            .unwrap();
        let read = reader
            .execute(Op::Get { key: "c0-0".into() }, LIMIT)
            .await
            .unwrap();
        assert!(matches!(read, OpResult::Value(Some(_))), "{read:?}");
        reader.close();
        s.close_gracefully().await;
    });
    let log = std::fs::read_to_string(c.log_file(late)).unwrap_or_default();
    assert!(
        log.contains("installed a snapshot"),
        "node {late}'s log:\n{log}"
    );
    stop_and_compare(c, &{
        let mut h = honest_up.clone();
        h.push(late);
        h
    });
}

/// Whether node `id`'s data directory holds no committed entry (it never ran, or ran
/// for a moment).
fn commit_of_nothing(c: &LocalCluster, id: NodeId) -> bool {
    match c.read_log(id) {
        Ok((_, commit)) => commit < INTERVAL,
        Err(_) => true,
    }
}

/// (b) A node down for the first part of the load installs a snapshot, then commits.
#[test]
fn a_node_down_while_the_others_compact_installs_a_snapshot_and_commits() {
    let _one = serial();
    late_node_installs_a_snapshot(&[], 3);
}

/// (c, honest path) The same with a Byzantine node among the peers that can serve the
/// snapshot: the late node still gets one whose digest is the certified one.
#[test]
fn a_late_node_catches_up_by_snapshot_beside_a_byzantine_peer() {
    let _one = serial();
    late_node_installs_a_snapshot(&[(0, Behaviour::Replay)], 3);
}

/// (c) A Byzantine peer (`bad-snapshot`) serves the late node bad snapshots, unasked and
/// in rotation (wrong bytes under a real certificate, stale and forged certificates,
/// endless streams); the late node refuses every one and still installs the certified
/// state from an honest peer, then commits and serves old keys.
#[test]
fn a_late_node_refuses_a_bad_snapshot_and_catches_up_from_an_honest_one() {
    let _one = serial();
    late_node_installs_a_snapshot(&[(0, Behaviour::BadSnapshot)], 3);
}

/// A whole cluster stopped after compaction restarts from snapshot + tail: every node
/// comes back with its log base where it was, and the cluster commits new requests.
/// Then one node killed with -9 and restarted rejoins the same way.
#[test]
fn nodes_restarted_after_compaction_load_snapshot_and_tail_and_rejoin() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), &[]);
    let loaded = Arc::new(Loaded::load(&c.config).unwrap());
    let all: Vec<NodeId> = (0..4).collect();
    let config = c.config.clone();
    let runtime = rt();
    let before = runtime.block_on(async {
        let mut s = Session::connect(&config, None).await.unwrap();
        assert!(s.leader_named_by(&all, LIMIT).await.is_some(), "no leader");
        assert!(load(&loaded, 1000).await >= 900);
        let target = top_commit(&s.status(Duration::from_secs(1)).await, &all);
        let r = wait_for(&mut s, "all compact and converge", |r| {
            all.iter().all(|&i| {
                r[i as usize]
                    .as_ref()
                    .is_some_and(|r| r.commit >= target && r.log_base >= 10 * INTERVAL)
            })
        })
        .await;
        s.close_gracefully().await;
        r
    });
    c.stop(Duration::from_secs(3));
    for &i in &all {
        let (entries, commit) = c.read_log(i).unwrap();
        let first = entries.first().map_or(commit, |e| e.index);
        assert!(first > INTERVAL, "node {i}'s log on disk starts at {first}");
    }
    for &i in &all {
        c.start_node(i).unwrap();
    }
    runtime.block_on(async {
        let mut s = Session::connect(&config, None).await.unwrap();
        let r = wait_for(&mut s, "every node restarts from its snapshot", |r| {
            all.iter().all(|&i| {
                let (Some(now), Some(was)) = (&r[i as usize], &before[i as usize]) else {
                    return false;
                };
                now.snapshot_index.is_some() && now.log_base >= was.log_base
            })
        })
        .await;
        eprintln!("restarted: {}", summary(&r));
        assert!(load(&loaded, 300).await >= 250, "puts after the restart");
        let mut reader = Session::connect_as(&loaded, CLIENTS as u32, None)
            .await
            .unwrap();
        let old = reader
            .execute(Op::Get { key: "c1-0".into() }, LIMIT)
            .await
            .unwrap();
        assert!(matches!(old, OpResult::Value(Some(_))), "{old:?}");
        reader.close();
        s.close_gracefully().await;
    });
    // kill -9 one node under no load, restart it, and it follows new commits.
    c.kill(1);
    c.start_node(1).unwrap();
    runtime.block_on(async {
        let mut s = Session::connect(&config, None).await.unwrap();
        assert!(load(&loaded, 200).await >= 150, "puts after the kill");
        let target = top_commit(&s.status(Duration::from_secs(1)).await, &all);
        wait_for(&mut s, "the killed node rejoins", |r| {
            commit_of(r, 1) >= target
        })
        .await;
        s.close_gracefully().await;
    });
    stop_and_compare(c, &all);
}
