//! One node process: the protocol loop around an [`Actor`] (the honest node or an
//! adversary), its storage and its key-value store, fed by the transport.
//!
//! The loop runs on its own thread. It takes a batch of inputs (messages, ticks, queries),
//! steps the actor on each, then makes every `Persist` of the batch durable with one sync
//! per file before it releases any message, reply or application of the batch: the core's
//! "persist before you speak", with the fsync cost shared by the whole batch.

use super::{Loaded, SetupError, StopSignals};
use crate::actor::Actor;
use crate::adversary::{self, Behaviour};
use crate::crypto::Principal;
use crate::driver::{Admission, Driver, Effect, Ready, MAX_INPUTS_PER_BATCH};
use crate::kv::Kv;
use crate::protocol::{
    ClientId, Input, Message, NodeConfig, NodeId, Persist, Reply, Rules, Variant,
};
use crate::storage::Storage;
use crate::transport::{self, Inbound, Net, NetSetup, NodeReport, Wire};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most bytes of message frames stepped in one batch. What a batch persists comes from its
/// messages (requests, entries), so this bounds the batch's log record too: 1024 requests
/// at the 64 KiB limit would be a 67 MB record, over the storage's 64 MiB limit.
const MAX_BYTES_PER_BATCH: usize = 8 << 20;
/// Most ticks stepped at once after a stall.
const MAX_TICKS_PER_BATCH: u64 = 1000;
/// Reply streams kept per client: its sessions at once (bounded anyway by the transport's
/// connections per principal).
const MAX_LINKS_PER_CLIENT: usize = 64;

pub struct NodeOptions {
    pub config: PathBuf,
    pub id: NodeId,
    /// Default: `<config dir>/data/node-<id>`.
    pub data: Option<PathBuf>,
    pub byzantine: Option<Behaviour>,
    /// The address to bind; default: this node's address in the configuration (which is
    /// what peers dial, so behind NAT or in a container the two may differ).
    pub listen: Option<std::net::SocketAddr>,
    /// Serve `/metrics`, `/healthz` and `/readyz` over HTTP here.
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Transport(#[from] transport::TransportError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The data directory's records are intact but describe a state no honest node writes.
    #[error("the state recovered from {dir} is inconsistent: {why}")]
    Recovery {
        dir: String,
        why: crate::protocol::recovery::RecoveryError,
    },
    /// The snapshot file is intact (its checksum holds) but does not decode as a state.
    #[error("the snapshot in {dir} is not a valid state: {why}")]
    Snapshot {
        dir: String,
        why: crate::kv::SnapshotError,
    },
}

/// Runs a node until it is told to stop (SIGINT/SIGTERM). Blocks the calling thread.
pub fn run(opts: NodeOptions) -> Result<(), NodeError> {
    let loaded = Loaded::load(&opts.config)?;
    let cfg = &loaded.cfg;
    let me = opts.id;
    if me as usize >= cfg.nodes.len() {
        return Err(SetupError::NotConfigured {
            who: format!("node {me} (--id; it has nodes 0..{})", cfg.nodes.len()),
        }
        .into());
    }
    if opts.byzantine == Some(Behaviour::Twins) {
        return Err(SetupError::Unsupported(
            "twins runs only in the simulator: two processes cannot share one address".into(),
        )
        .into());
    }
    let (key, identity) = loaded.credentials(Principal::Node(me), None)?;
    let ring = Arc::new(cfg.keyring().map_err(SetupError::Keyring)?);
    let data = opts
        .data
        .unwrap_or_else(|| loaded.dir.join("data").join(format!("node-{me}")));
    let owner = crate::storage::Owner {
        cluster_id: cfg.cluster_id.clone(),
        node_id: me,
        public_key: cfg.nodes[me as usize].public_key.clone(),
    };
    // Signals before the data directory: a SIGTERM during start-up (once the directory
    // shows signs of life) must stop the node, not kill it. It is acted on once the loop
    // below runs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(NodeError::Runtime)?;
    let signals = {
        let _guard = rt.enter();
        StopSignals::install().map_err(NodeError::Runtime)?
    };
    let (mut storage, durable) = Storage::open_as(&data, &owner)?;
    // A segment per checkpoint interval of entries: compaction frees whole segments, so
    // the log on disk stays within a few intervals (`SegmentLimits::entries`).
    storage.set_segment_limits(crate::storage::SegmentLimits::for_checkpoint_interval(
        cfg.checkpoint_interval,
    ));
    durable
        .validate(
            cfg.nodes.len(),
            &cfg.cluster_id,
            cfg.variant != Variant::Raft,
        )
        .map_err(|why| NodeError::Recovery {
            dir: data.display().to_string(),
            why,
        })?;
    // The state machine from the snapshot, if the directory holds one: decoded (and its
    // encoding checked) before anything else starts.
    let restored = durable
        .snapshot
        .as_ref()
        .map(|s| Kv::from_snapshot_bytes(&s.state).map(|(kv, _)| (kv, s.clone())))
        .transpose()
        .map_err(|why| NodeError::Snapshot {
            dir: data.display().to_string(),
            why,
        })?;
    tracing::info!(
        node = me,
        base = durable.snapshot.as_ref().map_or(0, |s| s.base.index),
        entries = durable.entries.len(),
        commit = durable.hard.commit,
        term = durable.hard.term,
        "recovered from {}",
        data.display()
    );
    let node_cfg = NodeConfig {
        id: me,
        n: cfg.nodes.len(),
        cluster_id: cfg.cluster_id.clone(),
        rules: Rules::for_variant(cfg.variant),
        timing: cfg.timing,
        checkpoint_interval: cfg.checkpoint_interval,
    };
    // The election timer's randomness: the only OS randomness, and it stays out here.
    let seed: u64 = rand::random();
    // Derived from the node's key (one-way), so every process of this node shares it.
    let reset_secret = crate::crypto::sha256(&key.to_bytes());
    let ctx = adversary::Context {
        cfg: node_cfg,
        key,
        seed,
        durable,
        ring: (*ring).clone(),
    };
    let actor: Box<dyn Actor> = match opts.byzantine {
        Some(b) => {
            tracing::warn!(node = me, "running as a Byzantine node: {}", b.describe());
            adversary::make(b, ctx)
        }
        None => Box::new(ctx.honest_node()),
    };

    let (tx, rx) = mpsc::channel(transport::INBOUND_QUEUE);
    let mut addresses: Vec<_> = cfg.nodes.iter().map(|n| n.address).collect();
    let bind = opts.listen.unwrap_or(addresses[me as usize]);
    addresses[me as usize] = bind;
    let stopping = Arc::new(AtomicBool::new(false));
    rt.spawn(stop_on_signal(signals, tx.clone(), stopping.clone()));
    let net = {
        let _guard = rt.enter();
        Net::start(
            NetSetup {
                me,
                reset_secret: reset_secret.0,
                addresses,
                identity,
                pins: Arc::new(loaded.pins),
                ring: ring.clone(),
            },
            tx.clone(),
        )?
    };
    let metrics = match opts.metrics {
        Some(addr) => {
            let _guard = rt.enter();
            let m = Arc::new(super::metrics::Metrics::new(net.counters.clone()));
            super::metrics::start(addr, m.clone(), tx.clone()).map_err(SetupError::Metrics)?;
            Some(m)
        }
        None => None,
    };
    let ticks_due = Arc::new(AtomicU64::new(0));
    rt.spawn(ticker(
        tx,
        ticks_due.clone(),
        Duration::from_millis(cfg.tick_ms),
    ));
    tracing::info!(node = me, variant = %cfg.variant.name(), advertised = %cfg.nodes[me as usize].host, "listening on {bind}");
    // Claims of how far each node has got come from every node in bft, where f of them
    // may lie; elsewhere liars are not tolerated (see `metrics::Tracker`).
    let liars = match cfg.variant {
        Variant::Bft => (cfg.nodes.len() - 1) / 3,
        Variant::Raft | Variant::Tangaroa => 0,
    };
    let tracker = metrics.as_ref().map(|_| {
        // The longest a follower waits for its leader: 2T.
        let window = Duration::from_millis(
            cfg.tick_ms
                .saturating_mul(2 * u64::from(cfg.timing.election_ticks)),
        );
        super::metrics::Tracker::new(me, cfg.nodes.len(), liars, window)
    });
    let mut process = Process {
        driver: match restored {
            Some((kv, snapshot)) => Driver::restored(actor, kv, snapshot),
            None => Driver::new(actor),
        },
        tracker,
        storage,
        net,
        clients: HashMap::new(),
        metrics,
        stopping,
        ticks_due,
    };
    // A restored node claims its stored snapshot again (to serve it to peers).
    let resumed = process.driver.resume();
    let result = process.release(resumed).and_then(|()| process.run(rx));
    process.net.close();
    // Give the close frames a moment to leave, then stop every task. Everything that
    // holds runtime resources (the endpoint, the links) is dropped inside the runtime.
    rt.block_on(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(process);
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

/// How long a stop may take once signalled. Every batch is durable before anything of it
/// leaves, so a stop forced at this point loses no more than kill -9 would: nothing.
pub const STOP_BOUND: Duration = Duration::from_secs(3);

/// The node's clock: counts ticks in `due` and wakes the loop. The count lives outside the
/// inbound queue, so a queue full of peers' messages delays the clock but cannot slow it:
/// every tick is stepped, late at worst.
async fn ticker(tx: mpsc::Sender<Inbound>, due: Arc<AtomicU64>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        due.fetch_add(1, Ordering::SeqCst);
        // A full queue means the loop is busy and will see the count anyway.
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Inbound::Tick) {
            return;
        }
    }
}

/// Stops the node at the first signal. The stop does not depend on the inbound queue
/// having room or on the loop being responsive: a watchdog ends the process after
/// [`STOP_BOUND`], and a second signal ends it at once.
async fn stop_on_signal(
    mut signals: StopSignals,
    tx: mpsc::Sender<Inbound>,
    stopping: Arc<AtomicBool>,
) {
    let which = signals.recv().await;
    tracing::info!("{which}: stopping");
    stopping.store(true, Ordering::SeqCst);
    std::thread::spawn(|| {
        std::thread::sleep(STOP_BOUND);
        tracing::warn!(
            "the clean stop took over {STOP_BOUND:?}; exiting now (all synced state is on disk)"
        );
        std::process::exit(0);
    });
    // Wakes the loop if it is waiting; if the queue is full it is busy and sees the flag.
    let _ = tx.try_send(Inbound::Shutdown);
    signals.recv().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(0);
}

/// `first` and whatever else is already queued, up to [`MAX_INPUTS_PER_BATCH`] inputs and
/// [`MAX_BYTES_PER_BATCH`] bytes of frames (the input that crosses it is the last); and
/// whether a shutdown came in.
fn take_batch(first: Inbound, rx: &mut mpsc::Receiver<Inbound>) -> (Vec<Inbound>, bool) {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut next = Some(first);
    while let Some(input) = next.take() {
        match input {
            Inbound::Shutdown => return (batch, true),
            Inbound::Message { bytes: b, .. } => bytes = bytes.saturating_add(b),
            _ => {}
        }
        batch.push(input);
        if batch.len() >= MAX_INPUTS_PER_BATCH || bytes >= MAX_BYTES_PER_BATCH {
            break;
        }
        next = rx.try_recv().ok();
    }
    (batch, false)
}

struct Process {
    /// The actor and its state machine (`crate::driver`, shared with the simulator).
    driver: Driver,
    storage: Storage,
    net: Net,
    /// The latest stream of each connected client, for its replies.
    /// Every live stream of each connected client (a client may run several sessions at
    /// once, e.g. parallel CLI calls with one key); replies go to all of them, and each
    /// session keeps those of its own requests.
    clients: HashMap<ClientId, Vec<mpsc::Sender<Bytes>>>,
    metrics: Option<Arc<super::metrics::Metrics>>,
    /// Request arrival times and commit claims, kept only when metrics are served.
    tracker: Option<super::metrics::Tracker>,
    /// Set by the signal handler; checked after every batch.
    stopping: Arc<AtomicBool>,
    /// Ticks counted by the clock and not yet stepped.
    ticks_due: Arc<AtomicU64>,
}

impl Process {
    fn run(&mut self, mut rx: mpsc::Receiver<Inbound>) -> Result<(), NodeError> {
        let mut inputs = Vec::with_capacity(MAX_INPUTS_PER_BATCH);
        while let Some(first) = rx.blocking_recv() {
            let (batch, stop) = take_batch(first, &mut rx);
            // The clock's ticks, however many came due (bounded, in case the process was
            // stopped for a long time: the timers only need to know time has passed).
            let due = self
                .ticks_due
                .swap(0, Ordering::SeqCst)
                .min(MAX_TICKS_PER_BATCH);
            inputs.extend((0..due).map(|_| Input::Tick));
            for input in batch {
                self.handle(input, &mut inputs);
            }
            if !inputs.is_empty() {
                if let Some(m) = &self.metrics {
                    m.batch(inputs.len());
                }
                let ready = self.driver.step_batch(std::mem::take(&mut inputs));
                if let Some(t) = &mut self.tracker {
                    let term = self.driver.node().hard_state().term;
                    t.term(term, std::time::Instant::now());
                }
                self.release(ready)?;
            }
            if stop || self.stopping.load(Ordering::SeqCst) {
                break;
            }
        }
        Ok(())
    }

    /// Answers what the loop answers itself; protocol inputs go to `inputs` for the batch.
    fn handle(&mut self, input: Inbound, inputs: &mut Vec<Input>) {
        let step = match input {
            Inbound::Tick => return, // a wake-up: the ticks are counted in `ticks_due`
            Inbound::Message { from, msg, .. } => {
                if let Some(t) = &mut self.tracker {
                    match (&msg, from) {
                        (Message::Request(r), _) => {
                            t.arrived(r.body.client, r.body.seq, std::time::Instant::now())
                        }
                        (Message::Commit(c), Principal::Node(_)) => {
                            t.claim(c.body.from, c.body.index)
                        }
                        (Message::Ack(a), Principal::Node(_)) if a.body.success => {
                            t.claim(a.body.from, a.body.index)
                        }
                        (Message::AppendEntries(a), Principal::Node(_)) => {
                            t.claim(a.body.leader, a.body.commit);
                            let now = std::time::Instant::now();
                            t.append_from(a.body.leader, a.body.term, now);
                        }
                        _ => {}
                    }
                }
                match self.driver.admit(from, msg) {
                    Admission::Deliver(msg) => Input::Message { from, msg },
                    Admission::Answered { client, reply } => {
                        return self.reply(client, reply);
                    }
                }
            }
            Inbound::Misbehaved(p) => Input::Misbehaved(p),
            Inbound::ClientLink(c, link) => {
                let links = self.clients.entry(c).or_default();
                links.retain(|l| !l.is_closed());
                if links.len() >= MAX_LINKS_PER_CLIENT {
                    links.remove(0); // the oldest gives way
                }
                links.push(link);
                return;
            }
            Inbound::StatusQuery(link) => {
                let report = self.report();
                if let (Some(t), Some(m)) = (&mut self.tracker, &self.metrics) {
                    let now = std::time::Instant::now();
                    m.seen(t.seen(report.term, report.leader, report.commit, now));
                }
                let report = Wire::Status(Box::new(report));
                if let Some(frame) = transport::encode(&report) {
                    transport::send_to_link(&link, frame, &self.net.counters);
                }
                return;
            }
            Inbound::Shutdown => return,
        };
        inputs.push(step);
    }

    /// Persists the batch's state, then releases its messages and replies in order.
    fn release(&mut self, ready: Ready) -> Result<(), NodeError> {
        if !ready.persist.is_empty() {
            // A failed write or sync is fatal: continuing could Ack what is not durable.
            let started = std::time::Instant::now();
            let persists: Vec<&Persist> = ready.persist.iter().collect();
            self.storage.apply(&persists)?;
            if let Some(m) = &self.metrics {
                m.persisted(started.elapsed());
            }
        }
        for effect in ready.effects {
            match effect {
                Effect::Send { to, msg } => {
                    self.count_sent(&msg, 1);
                    if let Some(frame) = transport::encode(&Wire::Protocol(msg)) {
                        self.net.send(to, frame);
                    }
                }
                Effect::Broadcast(msg) => {
                    self.count_sent(&msg, self.net.peer_count());
                    if let Some(frame) = transport::encode(&Wire::Protocol(msg)) {
                        self.net.broadcast(frame);
                    }
                }
                Effect::Applied { request: None, .. } => {}
                Effect::Snapshot {
                    base,
                    state_digest,
                    installed,
                } => {
                    let how = if installed { "installed" } else { "took" };
                    tracing::info!(index = base.index, digest = %state_digest, "{how} a snapshot");
                }
                Effect::Applied {
                    request: Some(r), ..
                } => {
                    if let (Some(t), Some(m)) = (&mut self.tracker, &self.metrics) {
                        let now = std::time::Instant::now();
                        if let Some(took) = t.applied(r.client, r.seq, now) {
                            m.committed(took);
                        }
                    }
                    self.reply(r.client, r.reply);
                }
            }
        }
        Ok(())
    }

    /// Sends `reply` on every live stream of `client` (none if it is not connected here:
    /// the client asks every node on timeout).
    fn reply(&mut self, client: ClientId, reply: Option<Reply>) {
        let Some(links) = self.clients.get_mut(&client) else {
            return;
        };
        links.retain(|l| !l.is_closed());
        if links.is_empty() {
            self.clients.remove(&client);
            return;
        }
        let Some(reply) = reply else {
            return;
        };
        if let Some(frame) = transport::encode(&Wire::Protocol(Message::Reply(reply))) {
            transport::LiveCounters::add(
                &self.net.counters.sent_by_kind[transport::REPLY_KIND],
                links.len() as u64,
            );
            for link in links.iter() {
                transport::send_to_link(link, frame.clone(), &self.net.counters);
            }
        }
    }

    /// Counts a message handed to the transport for `copies` destinations, and the
    /// entries of an AppendEntries.
    fn count_sent(&self, msg: &Message, copies: usize) {
        let counters = &self.net.counters;
        transport::LiveCounters::add(
            &counters.sent_by_kind[transport::kind_index(msg)],
            copies as u64,
        );
        if let (Message::AppendEntries(ae), Some(m)) = (msg, &self.metrics) {
            if !ae.body.entries.is_empty() {
                for _ in 0..copies {
                    m.entries_sent(ae.body.entries.len());
                }
            }
        }
    }

    fn report(&self) -> NodeReport {
        let node = self.driver.node();
        let s = node.status();
        NodeReport {
            id: s.id,
            role: s.role,
            term: s.term,
            leader: s.leader,
            last_index: s.last_index,
            commit: s.commit,
            commit_hash: node
                .log()
                .hash_at(s.commit)
                .map(|h| h.to_string())
                .unwrap_or_default(),
            lock: s.lock,
            evidence: s.evidence,
            applied: self.driver.applied(),
            counters: self.net.counters.snapshot(),
            log_base: node.log().base().index,
            snapshot_index: self.storage.snapshot_base().map(|b| b.index),
            // Best effort: a status answer is no reason to fail; 0 means unreadable.
            disk_bytes: self.storage.disk_use().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Signed;
    use crate::protocol::{Op, Request};

    fn request(seq: u64, bytes: usize) -> Inbound {
        Inbound::Message {
            from: Principal::Client(0),
            msg: Message::Request(Signed {
                body: Request {
                    client: 0,
                    seq,
                    op: Op::Get { key: "k".into() },
                },
                sig: None,
            }),
            bytes,
            permit: None,
        }
    }

    /// With the inbound queue full (a flooding peer), ticks are still counted, none lost:
    /// the loop steps them all when it gets to them. (They were dropped before, so a
    /// flood slowed the node's clock.)
    #[test]
    fn a_full_queue_delays_ticks_but_loses_none() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, _rx) = mpsc::channel(1);
        tx.try_send(request(0, 1)).unwrap(); // full
        let due = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            let clock = tokio::spawn(ticker(tx, due.clone(), Duration::from_millis(5)));
            tokio::time::sleep(Duration::from_millis(200)).await;
            clock.abort();
        });
        let n = due.load(Ordering::SeqCst);
        assert!(n >= 20, "{n} ticks counted in 200 ms at 5 ms");
    }

    /// A queue of 1024 requests at the 64 KiB limit makes several batches, each within
    /// the byte bound (plus the one input that crosses it); small inputs still batch by
    /// count; a shutdown ends the batch.
    #[test]
    fn batches_are_bounded_by_bytes_as_well_as_count() {
        let (tx, mut rx) = mpsc::channel(4096);
        let big = crate::protocol::MAX_OP_BYTES + 200;
        for seq in 1..1024 {
            tx.try_send(request(seq, big)).unwrap();
        }
        let (batch, stop) = take_batch(request(0, big), &mut rx);
        assert!(!stop);
        let bytes = batch.len() * big;
        assert!(bytes < MAX_BYTES_PER_BATCH + big, "{} inputs", batch.len());
        while rx.try_recv().is_ok() {}
        for seq in 1..3000 {
            tx.try_send(request(seq, 100)).unwrap();
        }
        let (batch, _) = take_batch(request(0, 100), &mut rx);
        assert_eq!(batch.len(), MAX_INPUTS_PER_BATCH);
        while rx.try_recv().is_ok() {}
        tx.try_send(request(1, 100)).unwrap();
        tx.try_send(Inbound::Shutdown).unwrap();
        tx.try_send(request(2, 100)).unwrap();
        let (batch, stop) = take_batch(request(0, 100), &mut rx);
        assert_eq!((batch.len(), stop), (2, true));
    }
}
