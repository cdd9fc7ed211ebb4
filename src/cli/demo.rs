//! `tangaroa demo`: the README's first command. A local 4-node bft cluster with one
//! malicious node, signed client requests, a Revolution that deposes a stalling leader,
//! and a check, from the logs on disk, that every honest node holds the same log.

use super::BadInput;
use crate::adversary::Behaviour;
use crate::protocol::log::Log;
use crate::protocol::{NodeId, Op, OpResult, Term, Variant};
use crate::runtime::client::Session;
use crate::runtime::local::{compare_committed, LocalCluster, LocalSpec};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NODES: usize = 4;
const MALICIOUS: NodeId = 3;
/// Clients that write at once while the malicious node leads: an attack on the order of
/// a term's entries (equivocate swaps pairs, selective withholds some) needs several.
const BURST: usize = 6;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Behaviour of the malicious node 3. One that attacks as leader (stall, equivocate,
    /// selective, lockless) gets a head start so that it leads first.
    #[arg(long, default_value = "stall", value_parser = super::node::parse_behaviour)]
    pub byzantine: Behaviour,
    /// Client requests to run after the leader change.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10_000))]
    pub requests: usize,
    /// Keep keys, logs and data here (default: a temporary folder, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> Result<u8, BadInput> {
    if args.byzantine == Behaviour::Twins {
        return Err(BadInput("twins runs only in the simulator".into()));
    }
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tangaroa-demo-{}", std::process::id())),
            true,
        ),
    };
    // Removes a temporary folder however the demo ends (an error, a panic, a signal);
    // declared before the cluster, so the nodes are stopped first.
    let _cleanup = RemoveOnDrop(temporary.then(|| dir.clone()));
    let binary = std::env::current_exe().map_err(|e| BadInput(e.to_string()))?;
    let (rt, mut signals) = super::runtime_with_signals()?;
    say(&format!(
        "starting 4 bft nodes on 127.0.0.1 (n = 3f+1, f = 1); node {MALICIOUS} is malicious: {} ({})",
        args.byzantine,
        args.byzantine.describe()
    ));
    // An attack made as leader shows only if the malicious node leads: it starts first.
    let head_start = args
        .byzantine
        .attacks_as_leader()
        .then_some((MALICIOUS, Duration::from_millis(600)));
    if head_start.is_some() {
        say(&format!(
            "node {MALICIOUS} attacks as leader, so it starts 0.6 s before the others and campaigns first"
        ));
    }
    let mut cluster = LocalCluster::start_with_head_start(
        LocalSpec {
            nodes: NODES,
            clients: 1 + BURST,
            variant: Variant::Bft,
            byzantine: BTreeMap::from([(MALICIOUS, args.byzantine)]),
            dir: dir.clone(),
            binary,
            tick_ms: Some(10),
            checkpoint_interval: None,
        },
        head_start,
    )
    .map_err(|e| BadInput(e.to_string()))?;
    let config = cluster.config.clone();
    let story = rt.block_on(async {
        tokio::select! {
            r = tell(&config, args.requests, args.byzantine) => r,
            s = signals.recv() => Err(format!("interrupted by {s}")),
        }
    });
    cluster.stop(Duration::from_secs(3));
    let mut ok = match story {
        Ok(()) => true,
        Err(e) => {
            say(&format!("FAILED: {e}"));
            false
        }
    };
    ok &= check_logs(&cluster);
    if !temporary {
        say(&format!("keys, logs and data are in {}", dir.display()));
    }
    say(if ok {
        "demo finished: all checks passed"
    } else {
        "demo finished with failures"
    });
    Ok(u8::from(!ok))
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove {}: {e}", dir.display());
                }
            }
        }
    }
}

fn say(s: &str) {
    outln!("• {s}");
}

/// Honest nodes that must name a leader for the demo to call it the leader: q - f = 2 of
/// the 3. Not all three: a malicious leader may starve one follower, which then names
/// none, and the cluster is still live with the other two.
const NAMED_BY: usize = 2;

/// The leader at least `NAMED_BY` honest nodes name.
async fn leader(session: &mut Session, within: Duration) -> Option<(Term, NodeId)> {
    let honest: Vec<NodeId> = (0..NODES as NodeId).filter(|&i| i != MALICIOUS).collect();
    session
        .leader_named_by_at_least(&honest, NAMED_BY, within)
        .await
}

async fn tell(
    config: &std::path::Path,
    requests: usize,
    behaviour: Behaviour,
) -> Result<(), String> {
    let mut session = Session::connect(config, None)
        .await
        .map_err(|e| e.to_string())?;
    let (term, first) = leader(&mut session, Duration::from_secs(15))
        .await
        .ok_or("no leader elected within 15 s")?;
    let who = if first == MALICIOUS {
        " (the malicious node)"
    } else {
        ""
    };
    say(&format!("node {first}{who} leads term {term}"));
    session.hint_leader(term, first);
    let (term, first) = if first == MALICIOUS && behaviour.attacks_entries() {
        burst(config, (term, first)).await?;
        watch(&mut session, (term, first)).await?
    } else {
        (term, first)
    };

    let op = Op::Put {
        key: "greeting".into(),
        value: "hello".into(),
    };
    let probe = session
        .execute(op.clone(), Duration::from_millis(300))
        .await;
    match probe {
        Err(_) => say(&format!(
            "client 0 sent a signed put to node {first}: no reply within 300 ms"
        )),
        Ok(_) => say(&format!(
            "node {first} committed the first put within 300 ms"
        )),
    }
    say(&format!(
        "client 0 signs a Revolution against node {first} (term {term}), carrying the put, and sends it to every node"
    ));
    let t0 = Instant::now();
    let result = session
        .revolt(op, term, first, Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let (term2, second) = leader(&mut session, Duration::from_secs(10))
        .await
        .ok_or("no leader agreed on after the Revolution")?;
    if (term2, second) != (term, first) {
        say(&format!(
            "honest nodes found the request still uncommitted after their request timeout and deposed node {first}; node {second} leads term {term2} ({} ms)",
            t0.elapsed().as_millis()
        ));
    } else {
        say(&format!(
            "node {first} committed the carried request in time, so it stays leader: a client cannot depose a healthy leader"
        ));
    }
    if result != OpResult::Ok {
        return Err(format!("the put returned {result:?}"));
    }
    say("put greeting=hello accepted: f+1 = 2 nodes replied the same");

    let mut latencies = Vec::with_capacity(requests * 2);
    for i in 0..requests {
        let (key, value) = (format!("key-{i}"), format!("value-{i}").into_bytes());
        let t = Instant::now();
        let put = session
            .execute(
                Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
        let t = Instant::now();
        let got = session
            .execute(Op::Get { key: key.clone() }, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
        if put != OpResult::Ok || got != OpResult::Value(Some(value)) {
            return Err(format!("{key}: put gave {put:?}, get gave {got:?}"));
        }
    }
    let cas = session
        .execute(
            Op::Cas {
                key: "greeting".into(),
                expected: Some("hello".into()),
                new: "kia ora".into(),
            },
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
    if cas != OpResult::Ok {
        return Err(format!("cas gave {cas:?}"));
    }
    latencies.sort();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    say(&format!(
        "{requests} puts and {requests} gets read back correctly, and a cas greeting: hello -> kia ora; median latency {:.1} ms",
        median.as_secs_f64() * 1e3
    ));
    let reports = settled_status(&mut session).await;
    outln!("\n{}", super::status::table(&reports));
    let (mut evidence, mut rejected) = (0, 0);
    for r in reports.iter().flatten().filter(|r| r.id != MALICIOUS) {
        evidence += r.evidence;
        rejected += r.counters.rejected;
    }
    // The attack and its defeat, as this run saw them.
    let led = first == MALICIOUS;
    say(&format!(
        "node {MALICIOUS}'s attack ({behaviour}): {}{}",
        behaviour.describe(),
        if behaviour.attacks_as_leader() && !led {
            " — it never led in this run, so it had nothing to attack"
        } else {
            ""
        }
    ));
    say(&format!(
        "its defeat: {}; the honest nodes hold {evidence} piece(s) of Evidence and rejected {rejected} message(s), and their logs are compared below",
        behaviour.defence()
    ));
    session.close_gracefully().await;
    Ok(())
}

/// Clients 1..=BURST each put one key at once, so that the malicious leader's term has
/// several entries to attack; every put must still be accepted (f+1 matching replies),
/// after the honest nodes depose the leader if they must.
async fn burst(config: &std::path::Path, leader: (Term, NodeId)) -> Result<(), String> {
    let loaded = crate::runtime::Loaded::load(config).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut puts = tokio::task::JoinSet::new();
    for c in 1..=BURST as crate::protocol::ClientId {
        let mut session = Session::connect_as(&loaded, c, None)
            .await
            .map_err(|e| e.to_string())?;
        session.hint_leader(leader.0, leader.1);
        puts.spawn(async move {
            let op = Op::Put {
                key: format!("burst-{c}"),
                value: format!("from client {c}").into(),
            };
            let r = session.execute(op, Duration::from_secs(20)).await;
            session.close_gracefully().await;
            (c, r)
        });
    }
    say(&format!(
        "clients 1..{BURST} each send a signed put at once, while node {} leads",
        leader.1
    ));
    while let Some(joined) = puts.join_next().await {
        let (c, r) = joined.map_err(|e| e.to_string())?;
        match r {
            Ok(OpResult::Ok) => {}
            other => return Err(format!("client {c}'s burst put gave {other:?}")),
        }
    }
    say(&format!(
        "all {BURST} puts accepted (f+1 matching replies each) within {} ms",
        t0.elapsed().as_millis()
    ));
    Ok(())
}

/// The nodes' status once every honest node has reached the highest honest commit index
/// (a starved or forked follower catches up from its peers once per election timeout),
/// or after two seconds, whichever is first.
async fn settled_status(session: &mut Session) -> Vec<Option<crate::transport::NodeReport>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reports = session.status(Duration::from_secs(1)).await;
        let commits: Vec<u64> = reports
            .iter()
            .flatten()
            .filter(|r| r.id != MALICIOUS)
            .map(|r| r.commit)
            .collect();
        let settled = commits.len() == NODES - 1 && commits.iter().min() == commits.iter().max();
        if settled || Instant::now() >= deadline {
            return reports;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long the demo lets an attack on a term's entries play out before going on.
const ATTACK_WINDOW: Duration = Duration::from_secs(3);

/// Waits, up to `ATTACK_WINDOW`, for the honest nodes to depose the malicious leader, and
/// says what they did; returns the leader the story goes on with.
async fn watch(session: &mut Session, led: (Term, NodeId)) -> Result<(Term, NodeId), String> {
    let t0 = Instant::now();
    while t0.elapsed() < ATTACK_WINDOW {
        let now = leader(session, Duration::from_secs(2)).await;
        if let Some(next) = now.filter(|&l| l != led) {
            say(&format!(
                "the honest nodes deposed node {} {} ms after the burst; node {} leads term {}",
                led.1,
                t0.elapsed().as_millis(),
                next.1,
                next.0
            ));
            session.hint_leader(next.0, next.1);
            return Ok(next);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(&format!(
        "node {} still leads term {} {} s after the burst",
        led.1,
        led.0,
        ATTACK_WINDOW.as_secs()
    ));
    Ok(led)
}

/// Reads every honest node's log from disk (the nodes are stopped) and compares them.
fn check_logs(cluster: &LocalCluster) -> bool {
    let mut logs = Vec::new();
    for id in cluster.honest() {
        match cluster.read_log(id) {
            Ok((entries, commit)) => logs.push((id, entries, commit)),
            Err(e) => {
                say(&format!("cannot read node {id}'s log: {e}"));
                return false;
            }
        }
    }
    match compare_committed(&logs) {
        Ok(a) => {
            let (_, entries, _) = &logs[0];
            let mut chain = Log::new(&cluster_id(cluster), true);
            for e in entries.iter().take(a.common as usize) {
                chain.append(e.clone());
            }
            let ids: Vec<String> = cluster.honest().iter().map(|i| i.to_string()).collect();
            say(&format!(
                "honest nodes {} hold the same log on disk: {} committed entries at every one, chain head {}",
                ids.join(", "),
                a.common,
                &chain.last_hash().to_string()[..16]
            ));
            true
        }
        Err(e) => {
            say(&format!("SAFETY VIOLATION: {e}"));
            false
        }
    }
}

fn cluster_id(cluster: &LocalCluster) -> String {
    crate::config::ClusterConfig::load(&cluster.config)
        .map(|c| c.cluster_id)
        .unwrap_or_default()
}
