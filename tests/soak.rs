//! A kill -9 / restart soak under client load on real processes (127.0.0.1), with one
//! Byzantine node: nothing acknowledged is lost and the honest logs end identical.
//!
//! Not part of the regular suite (it runs for minutes). Run it with
//!
//! ```sh
//! TANGAROA_SOAK_SECS=1800 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! `TANGAROA_SOAK_SECS` (default 1800) is the time under faults; `TANGAROA_SOAK_BYZANTINE`
//! (default `equivocate`) the behaviour of node 3. Every wait is bounded, and the cluster's
//! processes are stopped (by their own pids) however the test ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tangaroa::adversary::Behaviour;
use tangaroa::protocol::{NodeId, Op, OpResult, Variant};
use tangaroa::runtime::client::Session;
use tangaroa::runtime::local::{compare_committed, LocalCluster, LocalSpec};

const BYZANTINE: NodeId = 3;

#[test]
#[ignore = "minutes long: run with --ignored (see the file's comment)"]
fn kill_9_and_restart_under_load_loses_nothing_acknowledged() {
    let secs: u64 = std::env::var("TANGAROA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let behaviour = std::env::var("TANGAROA_SOAK_BYZANTINE")
        .ok()
        .and_then(|s| Behaviour::parse(&s))
        .unwrap_or(Behaviour::Equivocate);
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(LocalSpec {
        nodes: 4,
        clients: 1,
        variant: Variant::Bft,
        byzantine: BTreeMap::from([(BYZANTINE, behaviour)]),
        dir: dir.path().to_path_buf(),
        binary: env!("CARGO_BIN_EXE_tangaroa").into(),
        tick_ms: Some(10),
        checkpoint_interval: None,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let honest: Vec<NodeId> = c.honest();
    let op_limit = Duration::from_secs(30);
    let mut acked: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut unknown = 0usize;
    let mut kills = 0usize;
    let mut seed: u64 = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let config = c.config.clone();
    let mut session = rt.block_on(Session::connect(&config, None)).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0u64;
    while Instant::now() < end {
        // A burst of load, 0.5 to 3 s.
        let burst = Instant::now() + Duration::from_millis(500 + rand(2500));
        while Instant::now() < burst {
            i += 1;
            let (k, v) = (format!("soak-{i}"), format!("v{i}").into_bytes());
            let op = Op::Put {
                key: k.clone(),
                value: v.clone(),
            };
            match rt.block_on(session.execute(op, op_limit)) {
                Ok(OpResult::Ok) => {
                    acked.insert(k, v);
                }
                Ok(other) => panic!("put {k} gave {other:?}"),
                Err(_) => unknown += 1,
            }
        }
        // kill -9 an honest node, restart it 0.1 to 1 s later.
        let victim = honest[rand(honest.len() as u64) as usize];
        c.kill(victim);
        kills += 1;
        std::thread::sleep(Duration::from_millis(100 + rand(900)));
        c.start_node(victim).unwrap();
        if let Some((id, status)) = c.exited().first() {
            panic!("node {id} exited on its own: {status}");
        }
    }
    eprintln!(
        "{kills} kill -9/restart cycles, {} puts acknowledged, {unknown} without a result",
        acked.len()
    );
    // The last acknowledged puts read back through the cluster (all of them are checked
    // against the committed logs on disk below; reading back hours of puts one by one
    // would take longer than the soak).
    rt.block_on(async {
        for (k, v) in acked.iter().rev().take(200) {
            let got = session
                .execute(Op::Get { key: k.clone() }, op_limit)
                .await
                .unwrap_or_else(|e| panic!("get {k}: {e}"));
            assert_eq!(got, OpResult::Value(Some(v.clone())), "{k}");
        }
        // Let every honest node reach the same commit index before stopping.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = session.status(Duration::from_secs(1)).await;
            let commits: Vec<u64> = honest
                .iter()
                .map(|&id| r[id as usize].as_ref().map_or(0, |r| r.commit))
                .collect();
            if commits.iter().all(|&x| x == commits[0] && x > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "honest commits differ: {commits:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        session.close_gracefully().await;
    });
    c.stop(Duration::from_secs(3));
    let logs: Vec<_> = honest
        .iter()
        .map(|&id| {
            let (entries, commit) = c.read_log(id).expect("log readable");
            (id, entries, commit)
        })
        .collect();
    let agreement = compare_committed(&logs).expect("honest nodes agree");
    let commits: Vec<u64> = logs.iter().map(|(_, _, c)| *c).collect();
    assert!(
        commits.iter().all(|&x| x == commits[0]),
        "honest commit indexes differ on disk: {commits:?}"
    );
    // Every acknowledged put is a committed entry of the honest logs.
    let (_, entries, commit) = &logs[0];
    let mut committed: std::collections::HashMap<&str, &[u8]> = Default::default();
    for e in entries.iter().take(*commit as usize) {
        if let Some(r) = e.payload.request() {
            if let Op::Put { key, value } = &r.body.op {
                committed.insert(key, value);
            }
        }
    }
    for (k, v) in &acked {
        assert_eq!(
            committed.get(k.as_str()),
            Some(&v.as_slice()),
            "acknowledged {k} lost"
        );
    }
    eprintln!(
        "honest logs identical up to {} committed entries; all {} acknowledged puts in them",
        agreement.common,
        acked.len()
    );
}
