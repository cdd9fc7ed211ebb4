//! `tangaroa bench --in-process`: the sans-IO cores alone, driven over an in-memory router.
//!
//! No network, no fsync: what a node persists is taken and dropped (the core keeps its log
//! in memory anyway). Everything else is what the node process does
//! (`runtime::node`): every message a node receives is authenticated first
//! (`protocol::authenticate_cached`, one signature cache per link, as the transport keeps
//! one per stream), whatever arrived together is stepped as one batch
//! (`Node::step_batch`) through the driver the runtime and the simulator use
//! ([`crate::driver`]): it applies committed entries to the key-value store, builds the
//! replies, and answers retries of applied requests from the state machine.
//! Clients are the real [`ClientCore`]: each signs its request, keeps one outstanding and
//! accepts a result with enough matching replies (f+1 in bft, 1 in raft).
//!
//! One loop delivers, authenticates, steps and applies for every node and client in
//! rounds, on one thread by default; with `threads` > 1 each round's per-node work
//! (authenticating what the node received, then stepping it) is shared among that many
//! scoped threads (applying is part of stepping), while clients and routing stay on the
//! loop's thread. Time is the wall clock: the cores are ticked every
//! [`TICK`] of it, and throughput and latency are measured on it. So the figures are what
//! one core (or `threads` cores) can do for the whole cluster and its clients; the crypto
//! bound printed beside them is the bound for that many cores.
//!
//! The tick is 1 ms with ten times the default timeouts in ticks ([`timing`]): the same
//! wall-clock timeouts as a `keygen` cluster (10 ms ticks), but the core's bound of
//! `MAX_APPENDS_PER_TICK` AppendEntries per follower per tick no longer caps one client at
//! 16 round trips per 10 ms (1,600 put/s), which at 10 ms it did, whatever the machine.

use super::crypto_bound::CryptoCost;
use super::{Progress, RunResult, StopAfter};
use crate::client::{ClientCore, ClientOutput};
use crate::crypto::{signing_key_from_seed, Domain, Keyring, Principal, SigCache};
use crate::driver::{self, Admission, Driver, Effect, Ready};
use crate::protocol::auth::authenticate_batch;
use crate::protocol::{
    authenticate_cached, AuthError, ClientId, Input, Message, Node, NodeConfig, NodeId, Op,
    OpResult, Reply, Rules, Timing, Variant,
};
use crate::transport::verify::ClientVerify;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The cores' clock period: a tenth of a `keygen` cluster's (see [`timing`]).
pub const TICK: Duration = Duration::from_millis(1);
/// The runtime client's timeout (50 ticks of 10 ms), in ticks of [`TICK`].
const CLIENT_TIMEOUT_TICKS: u32 = 500;

/// The default timeouts in ticks, times ten: with 1 ms ticks, the default wall-clock
/// timeouts of 10 ms ticks.
pub fn timing() -> Timing {
    let d = Timing::default();
    Timing {
        election_ticks: d.election_ticks * 10,
        heartbeat_ticks: d.heartbeat_ticks * 10,
        request_ticks: d.request_ticks * 10,
    }
}
/// Signatures remembered per link (the transport's per-stream cache).
const SIG_CACHE: usize = 4096;
/// Most ticks stepped at once after a long round.
const MAX_TICKS_PER_ROUND: u64 = 1000;
/// How long a cell may wait for its first leader.
const ELECTION_LIMIT: Duration = Duration::from_secs(5);
/// A cell never runs longer than this past its warm-up, whatever `--requests` says.
const CELL_LIMIT: Duration = Duration::from_secs(120);
pub const CLUSTER_ID: &str = "inproc";

/// Where the loop's time went, per committed request, in microseconds (wall clock of the
/// single thread; the rest is routing, cloning and the loop itself).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Breakdown {
    /// `authenticate_cached` on every delivered message (signature checks, bounds).
    pub auth_us: f64,
    /// `Driver::step_batch` of every node: the protocol (including its own signing),
    /// applying committed entries to the key-value store and building replies.
    pub step_us: f64,
    /// Releasing each batch: routing its messages and replies (the name is kept from
    /// when applying happened here, so that earlier JSON still reads).
    pub apply_us: f64,
    /// The clients: signing requests, counting replies.
    pub client_us: f64,
    /// Inputs per `step_batch` call, averaged over nodes and rounds.
    pub inputs_per_batch: f64,
    /// Requests per AppendEntries carrying entries.
    pub entries_per_append: f64,
    /// Threads that shared the nodes' work.
    #[serde(default)]
    pub threads: usize,
    /// `auth_us` by message kind (request, append-entries, ack, commit, ...).
    #[serde(default)]
    pub auth_us_by_kind: std::collections::BTreeMap<String, f64>,
}

#[derive(Clone, Copy, Debug)]
enum To {
    Node(NodeId),
    Client(ClientId),
}

struct Cluster {
    /// Each node's driver (`crate::driver`, as the runtime and the simulator use it).
    nodes: Vec<Driver>,
    ring: Keyring,
    /// Per receiving node, per link: signatures already verified.
    caches: Vec<HashMap<Principal, SigCache>>,
    inbox: Vec<Vec<Input>>,
    /// Per receiving node: messages delivered this round, to authenticate.
    pending: Vec<Vec<(Principal, Message)>>,
    /// Threads that share a round's per-node work.
    threads: usize,
    /// How requests straight from clients are verified.
    verify: ClientVerify,
    clients: Vec<ClientCore>,
    sent_at: Vec<Instant>,
    queue: Vec<(To, Principal, Message)>,
    value: Vec<u8>,
    issued: Vec<u64>,
    /// Whether clients send new requests when their last is accepted.
    load: bool,
    started: Instant,
    /// (completion since load start, latency) of every accepted request.
    done: Vec<(Duration, Duration)>,
    /// Accepted with another result than a put's `Ok`.
    wrong: u64,
    rejected: u64,
    msgs: u64,
    appends: u64,
    appended: u64,
    batches: u64,
    batch_inputs: u64,
    t_auth: Duration,
    auth_by_kind: std::collections::BTreeMap<&'static str, Duration>,
    t_step: Duration,
    t_apply: Duration,
    t_client: Duration,
}

impl Cluster {
    fn new(cell: &Cell) -> Cluster {
        let Cell {
            variant,
            nodes: n,
            clients,
            payload,
            threads,
            verify,
            ..
        } = *cell;
        let threads = threads.max(1);
        let key = |tag: u8, i: u32| {
            let mut s = [tag; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            signing_key_from_seed(s)
        };
        let node_keys: Vec<_> = (0..n as u32).map(|i| key(b'N', i)).collect();
        let client_keys: Vec<_> = (0..clients as u32).map(|i| key(b'C', i)).collect();
        let ring =
            Keyring::of_signing_keys(Domain::new(variant, CLUSTER_ID), &node_keys, &client_keys)
                .expect("derived keys are valid");
        let nodes = node_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let cfg = NodeConfig {
                    id: i as NodeId,
                    n,
                    cluster_id: CLUSTER_ID.into(),
                    rules: Rules::for_variant(variant),
                    timing: timing(),
                    // Checkpoints on, as in a real cluster (issue 13 asks for it).
                    checkpoint_interval: crate::protocol::node::DEFAULT_CHECKPOINT_INTERVAL,
                };
                let node = Node::new(cfg, k.clone(), 0x5eed ^ i as u64, Default::default());
                Driver::new(Box::new(node))
            })
            .collect();
        let clients = client_keys
            .into_iter()
            .enumerate()
            .map(|(c, k)| {
                ClientCore::new(
                    c as ClientId,
                    k,
                    variant,
                    CLUSTER_ID,
                    n,
                    CLIENT_TIMEOUT_TICKS,
                    1,
                )
            })
            .collect::<Vec<_>>();
        let now = Instant::now();
        Cluster {
            nodes,
            ring,
            caches: (0..n).map(|_| HashMap::new()).collect(),
            inbox: vec![Vec::new(); n],
            pending: vec![Vec::new(); n],
            threads,
            verify,
            sent_at: vec![now; clients.len()],
            issued: vec![0; clients.len()],
            clients,
            queue: Vec::new(),
            value: vec![b'v'; payload],
            load: false,
            started: now,
            done: Vec::new(),
            wrong: 0,
            rejected: 0,
            msgs: 0,
            appends: 0,
            appended: 0,
            batches: 0,
            batch_inputs: 0,
            t_auth: Duration::ZERO,
            auth_by_kind: Default::default(),
            t_step: Duration::ZERO,
            t_apply: Duration::ZERO,
            t_client: Duration::ZERO,
        }
    }

    /// The leader every node follows, if they agree and it knows it leads.
    fn agreed_leader(&self) -> Option<(u64, NodeId)> {
        let first = self.nodes[0].node().leader()?;
        (self.nodes.iter().all(|x| x.node().leader() == Some(first))
            && self.nodes[first.1 as usize].node().is_leader())
        .then_some(first)
    }

    fn tick(&mut self, due: u64) {
        for inbox in &mut self.inbox {
            inbox.extend((0..due).map(|_| Input::Tick));
        }
        for c in 0..self.clients.len() {
            for _ in 0..due {
                let out = self.clients[c].tick();
                self.client_outputs(c as ClientId, out);
            }
        }
    }

    fn submit(&mut self, c: ClientId) {
        let i = self.issued[c as usize];
        self.issued[c as usize] += 1;
        let op = Op::Put {
            key: format!("c{c}-{i}"),
            value: self.value.clone(),
        };
        let t = Instant::now();
        self.sent_at[c as usize] = t;
        let out = self.clients[c as usize].submit(op);
        self.t_client += t.elapsed();
        self.client_outputs(c, out);
    }

    fn client_outputs(&mut self, c: ClientId, out: Vec<ClientOutput>) {
        for o in out {
            match o {
                ClientOutput::Send { to, msg } => {
                    self.queue.push((To::Node(to), Principal::Client(c), msg))
                }
                ClientOutput::Broadcast(msg) => {
                    for to in 0..self.nodes.len() as NodeId {
                        self.queue
                            .push((To::Node(to), Principal::Client(c), msg.clone()));
                    }
                }
                ClientOutput::Accepted { result, .. } => {
                    let now = Instant::now();
                    self.done
                        .push((now - self.started, now - self.sent_at[c as usize]));
                    if result != OpResult::Ok {
                        self.wrong += 1;
                    }
                    if self.load {
                        self.submit(c);
                    }
                }
            }
        }
    }

    /// Delivers everything queued, then authenticates and steps every node with what it
    /// received: on this thread, or with `threads` > 1 and enough work, the nodes split
    /// among scoped threads (each node's work is its own, as in separate processes).
    fn round(&mut self) {
        let mut to_nodes = 0usize;
        for (to, from, msg) in std::mem::take(&mut self.queue) {
            match to {
                To::Client(c) => {
                    let (Principal::Node(node), Message::Reply(r)) = (from, msg) else {
                        continue;
                    };
                    let t = Instant::now();
                    let out = self.clients[c as usize].on_reply(node, r);
                    self.t_client += t.elapsed();
                    self.client_outputs(c, out);
                }
                To::Node(n) => match self.nodes[n as usize].admit(from, msg) {
                    Admission::Answered { client, reply } => self.reply(n, client, reply),
                    Admission::Deliver(msg) => {
                        to_nodes += 1;
                        self.pending[n as usize].push((from, msg));
                    }
                },
            }
        }
        // A thread per round costs tens of µs: worth it only for verification work.
        let parallel =
            self.threads > 1 && ((self.ring.domain.signed && to_nodes >= 4) || to_nodes >= 512);
        let ring = &self.ring;
        let verify = self.verify;
        let work = self
            .nodes
            .iter_mut()
            .zip(self.caches.iter_mut())
            .zip(self.inbox.iter_mut())
            .zip(self.pending.iter_mut())
            .map(|(((driver, caches), inbox), pending)| NodeWork {
                driver,
                caches,
                inbox,
                pending,
            });
        let mut jobs: Vec<NodeWork> = work.collect();
        let done: Vec<Worked> = if parallel {
            let per = jobs.len().div_ceil(self.threads);
            std::thread::scope(|scope| {
                let mut chunks = jobs.chunks_mut(per);
                let mine = chunks.next().expect("nodes");
                let handles: Vec<_> = chunks
                    .map(|chunk| {
                        scope.spawn(move || chunk.iter_mut().map(|j| j.run(ring, verify)).collect())
                    })
                    .collect();
                let mut all: Vec<Worked> = mine.iter_mut().map(|j| j.run(ring, verify)).collect();
                for h in handles {
                    let part: Vec<Worked> = h.join().expect("a node's work panicked");
                    all.extend(part);
                }
                all
            })
        } else {
            jobs.iter_mut().map(|j| j.run(ring, verify)).collect()
        };
        drop(jobs);
        for (n, w) in done.into_iter().enumerate() {
            self.t_auth += w.auth;
            for (k, d) in w.by_kind {
                *self.auth_by_kind.entry(k).or_default() += d;
            }
            self.t_step += w.step;
            self.rejected += w.rejected;
            if w.inputs > 0 {
                self.batches += 1;
                self.batch_inputs += w.inputs as u64;
            }
            let t = Instant::now();
            self.release(n as NodeId, w.ready);
            self.t_apply += t.elapsed();
        }
    }

    /// What the node process does with a batch's `Ready`, minus the disk: persists are
    /// dropped (nothing here crashes), messages are routed, applied requests answered.
    fn release(&mut self, me: NodeId, ready: Ready) {
        for effect in ready.effects {
            match effect {
                Effect::Send { to, msg } => {
                    self.count(&msg, 1);
                    self.queue.push((To::Node(to), Principal::Node(me), msg));
                }
                Effect::Broadcast(msg) => {
                    let n = self.nodes.len();
                    self.count(&msg, n - 1);
                    for to in (0..n as NodeId).filter(|&t| t != me) {
                        self.queue
                            .push((To::Node(to), Principal::Node(me), msg.clone()));
                    }
                }
                Effect::Applied {
                    request: Some(r), ..
                } => self.reply(me, r.client, r.reply),
                Effect::Snapshot { .. } => {}
                Effect::Applied { request: None, .. } => {}
            }
        }
    }

    fn count(&mut self, msg: &Message, copies: usize) {
        self.msgs += copies as u64;
        if let Message::AppendEntries(ae) = msg {
            if !ae.body.entries.is_empty() {
                self.appends += copies as u64;
                self.appended += (copies * ae.body.entries.len()) as u64;
            }
        }
    }

    fn reply(&mut self, n: NodeId, client: ClientId, reply: Option<Reply>) {
        if client as usize >= self.clients.len() {
            return;
        }
        if let Some(reply) = reply {
            self.msgs += 1;
            self.queue.push((
                To::Client(client),
                Principal::Node(n),
                Message::Reply(reply),
            ));
        }
    }

    /// Runs rounds until `done` says so, ticking on the wall clock; sleeps when idle.
    fn run_until(&mut self, mut done: impl FnMut(&Cluster) -> bool, next_tick: &mut Instant) {
        while !done(self) {
            let now = Instant::now();
            if now >= *next_tick {
                let behind = (now - *next_tick).as_nanos() / TICK.as_nanos() + 1;
                *next_tick += TICK * behind as u32;
                self.tick((behind as u64).min(MAX_TICKS_PER_ROUND));
            }
            if self.queue.is_empty() && self.inbox.iter().all(Vec::is_empty) {
                std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
                continue;
            }
            self.round();
        }
    }
}

/// One node's share of a round: its deliveries to authenticate, then its batch to step.
struct NodeWork<'a> {
    driver: &'a mut Driver,
    caches: &'a mut HashMap<Principal, SigCache>,
    inbox: &'a mut Vec<Input>,
    pending: &'a mut Vec<(Principal, Message)>,
}

struct Worked {
    ready: Ready,
    auth: Duration,
    by_kind: Vec<(&'static str, Duration)>,
    step: Duration,
    rejected: u64,
    inputs: usize,
}

impl NodeWork<'_> {
    /// What the transport does (authenticate each message on its link's cache), then what
    /// the node loop does (step everything that arrived as one batch).
    fn run(&mut self, ring: &Keyring, verify: ClientVerify) -> Worked {
        let t = Instant::now();
        let mut rejected = 0;
        let mut by_kind: Vec<(&'static str, Duration)> = Vec::new();
        let verdicts = self.authenticate(ring, verify, &mut by_kind);
        assert_eq!(verdicts.len(), self.pending.len(), "a verdict per message");
        for ((from, msg), checked) in self.pending.drain(..).zip(verdicts) {
            match driver::input_for(from, msg, checked) {
                Ok(input) => self.inbox.push(input),
                Err(_) => rejected += 1,
            }
        }
        let auth = t.elapsed();
        let inputs = self.inbox.len();
        if inputs == 0 {
            return Worked {
                ready: Ready::default(),
                auth,
                by_kind,
                step: Duration::ZERO,
                rejected,
                inputs,
            };
        }
        let t = Instant::now();
        // Stepping includes applying committed entries and building replies (the driver's).
        let ready = self.driver.step_batch(std::mem::take(self.inbox));
        Worked {
            ready,
            auth,
            by_kind,
            step: t.elapsed(),
            rejected,
            inputs,
        }
    }
}

impl NodeWork<'_> {
    /// A verdict for every pending message, in order: with `Batched`, the requests that
    /// came straight from clients checked together as one batch (as the transport's
    /// verifiers do), everything else one by one on its link's cache.
    fn authenticate(
        &mut self,
        ring: &Keyring,
        verify: ClientVerify,
        by_kind: &mut Vec<(&'static str, Duration)>,
    ) -> Vec<Result<(), AuthError>> {
        let mut add =
            |kind: &'static str, took: Duration| match by_kind.iter_mut().find(|(k, _)| *k == kind)
            {
                Some((_, d)) => *d += took,
                None => by_kind.push((kind, took)),
            };
        let mut verdicts: Vec<Option<Result<(), AuthError>>> = vec![None; self.pending.len()];
        let from_clients: Vec<usize> = (0..self.pending.len())
            .filter(|&i| {
                verify == ClientVerify::Batched
                    && matches!(self.pending[i], (Principal::Client(_), Message::Request(_)))
            })
            .collect();
        if !from_clients.is_empty() {
            let started = Instant::now();
            let msgs: Vec<(Principal, &Message)> = from_clients
                .iter()
                .map(|&i| (self.pending[i].0, &self.pending[i].1))
                .collect();
            let batch = authenticate_batch(ring, &msgs);
            add("request", started.elapsed());
            for (&i, v) in from_clients.iter().zip(batch) {
                verdicts[i] = Some(v);
            }
        }
        for (i, (from, msg)) in self.pending.iter().enumerate() {
            if verdicts[i].is_some() {
                continue;
            }
            let cache = self
                .caches
                .entry(*from)
                .or_insert_with(|| SigCache::new(SIG_CACHE));
            let started = Instant::now();
            verdicts[i] = Some(authenticate_cached(ring, cache, *from, msg));
            add(msg.kind(), started.elapsed());
        }
        verdicts
            .into_iter()
            .map(|v| v.expect("every message has its verdict"))
            .collect()
    }
}

// `Actor::reply_to` is how the runtime builds replies; the honest node is the actor here.

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get())
}

/// One cell of the in-process benchmark.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub variant: Variant,
    pub nodes: usize,
    pub clients: usize,
    /// Bytes of value in every put.
    pub payload: usize,
    pub warmup: Duration,
    pub stop: StopAfter,
    /// Threads sharing the nodes' work (authentication and stepping); 1: everything on
    /// the calling thread.
    pub threads: usize,
    /// How requests straight from clients are verified (the transport's lever).
    pub verify: ClientVerify,
}

/// One cell: a fresh in-memory cluster of `n` nodes of `variant` under `clients`
/// closed-loop clients.
pub fn run_one(
    cell: Cell,
    cost: &CryptoCost,
    progress: &mut dyn Progress,
) -> Result<RunResult, String> {
    let Cell {
        variant,
        nodes: n,
        clients,
        warmup,
        stop,
        ..
    } = cell;
    let mut c = Cluster::new(&cell);
    let label = format!(
        "in-process {} n={n} clients={clients} {}",
        variant.name(),
        cell.verify.name()
    );
    let expected = match stop {
        StopAfter::Duration(d) => d + warmup,
        StopAfter::Requests(_) => warmup + Duration::from_secs(5),
    };
    progress.run_started(&label, expected);
    // Node 0 campaigns at once rather than after a random election timeout.
    let mut next_tick = Instant::now() + TICK;
    let out = c.nodes[0].step(Input::Timeout);
    c.release(0, out);
    let elect_start = Instant::now();
    c.run_until(
        |c| c.agreed_leader().is_some() || elect_start.elapsed() > ELECTION_LIMIT,
        &mut next_tick,
    );
    let Some((term, leader)) = c.agreed_leader() else {
        return Err(format!("{label}: no leader within {ELECTION_LIMIT:?}"));
    };
    for client in &mut c.clients {
        client.hint_leader(term, leader);
    }
    c.load = true;
    c.started = Instant::now();
    for id in 0..clients as ClientId {
        c.submit(id);
    }
    let cell_end = c.started + warmup + CELL_LIMIT;
    // The warm-up, then the measured window with counters zeroed at its start.
    let warm_end = c.started + warmup;
    let mut last_progress = Instant::now();
    let mut watch = |c: &Cluster, until: &dyn Fn(&Cluster) -> bool| {
        if last_progress.elapsed() >= Duration::from_millis(100) {
            last_progress = Instant::now();
            progress.tick(c.done.len() as u64);
        }
        until(c)
    };
    c.run_until(
        |c| watch(c, &|_| Instant::now() >= warm_end),
        &mut next_tick,
    );
    let measured_from = c.done.len();
    let cpu_before = super::cpu_seconds(std::process::id());
    let costs_before = crate::cost::snapshot();
    let window_start = Instant::now();
    c.t_auth = Duration::ZERO;
    c.auth_by_kind.clear();
    c.t_step = Duration::ZERO;
    c.t_apply = Duration::ZERO;
    c.t_client = Duration::ZERO;
    (c.msgs, c.appends, c.appended, c.batches, c.batch_inputs) = (0, 0, 0, 0, 0);
    let wrong_before = c.wrong;
    match stop {
        StopAfter::Duration(d) => {
            let end = window_start + d;
            c.run_until(|c| watch(c, &|_| Instant::now() >= end), &mut next_tick);
        }
        StopAfter::Requests(r) => c.run_until(
            |c| {
                watch(c, &|c| {
                    (c.done.len() - measured_from) as u64 >= r || Instant::now() >= cell_end
                })
            },
            &mut next_tick,
        ),
    }
    let window = window_start.elapsed().max(Duration::from_micros(1));
    let cpu = super::cpu_seconds(std::process::id()) - cpu_before;
    let costs = crate::cost::snapshot().since(&costs_before);
    c.load = false;
    // Let outstanding requests finish so that every node applies the same prefix (the
    // test compares them); not measured.
    let drain_end = Instant::now() + Duration::from_secs(2);
    c.run_until(
        |c| c.clients.iter().all(|x| !x.busy()) || Instant::now() >= drain_end,
        &mut next_tick,
    );
    let mut lat: Vec<Duration> = c.done[measured_from..].iter().map(|d| d.1).collect();
    let requests = lat.len() as u64;
    lat.sort();
    let pct = |p: f64| super::percentile_ms(&lat, p);
    let per_req = |x: f64| {
        if requests == 0 {
            0.0
        } else {
            x / requests as f64
        }
    };
    let us = |d: Duration| per_req(d.as_secs_f64() * 1e6);
    let breakdown = Breakdown {
        auth_us: us(c.t_auth),
        step_us: us(c.t_step),
        apply_us: us(c.t_apply),
        client_us: us(c.t_client),
        inputs_per_batch: c.batch_inputs as f64 / c.batches.max(1) as f64,
        entries_per_append: c.appended as f64 / c.appends.max(1) as f64,
        threads: c.threads,
        auth_us_by_kind: c
            .auth_by_kind
            .iter()
            .map(|(k, d)| (k.to_string(), us(*d)))
            .collect(),
    };
    let timeline = super::timeline(&c.done, c.started.elapsed());
    let result = RunResult {
        variant: variant.name().into(),
        nodes: n,
        clients,
        byzantine: vec![],
        throughput_rps: requests as f64 / window.as_secs_f64(),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        cpu_us_per_req: per_req(cpu * 1e6),
        client_cpu_us_per_req: breakdown.client_us,
        bytes_per_req: 0.0,
        msgs_per_req: per_req(c.msgs as f64),
        // The bound of the cores this run could use.
        crypto_bound_rps: cost.bound_rps(c.threads.min(cores()), n),
        requests,
        failed: c.wrong - wrong_before,
        recovery_ms: None,
        timeline,
        in_process: Some(breakdown),
        cost: Some(costs.per_request(requests, per_req(cpu * 1e6))),
        client_verify: Some(cell.verify),
        disk_bytes: vec![],
        log_base: vec![],
    };
    #[cfg(test)]
    check_agreement(&c);
    Ok(result)
}

/// Every node applied the same puts, and every accepted put is in every node's store.
#[cfg(test)]
fn check_agreement(c: &Cluster) {
    let applied: Vec<u64> = c.nodes.iter().map(|x| x.node().commit_index()).collect();
    let least = *applied.iter().min().expect("nodes");
    for (i, x) in c.nodes.iter().enumerate() {
        assert_eq!(
            x.node().log().hash_at(least),
            c.nodes[0].node().log().hash_at(least),
            "node {i} disagrees at {least}"
        );
    }
    let top = (0..c.nodes.len())
        .max_by_key(|&i| c.nodes[i].node().commit_index())
        .expect("nodes");
    for (client, &issued) in c.issued.iter().enumerate() {
        assert!(!c.clients[client].busy(), "client {client} still waits");
        for i in 0..issued {
            assert_eq!(
                c.nodes[top].kv().get(&format!("c{client}-{i}")),
                Some(c.value.as_slice()),
                "put {i} of client {client} accepted but not applied"
            );
        }
    }
}

/// The in-process table: the process bench's columns that mean something here, and where
/// the single thread's time went.
pub fn table(r: &super::BenchReport) -> String {
    let m = &r.machine;
    let mut s = format!(
        "in-process: no network, no fsync; {} cores here; threads: 1 = one thread does every node's and \
         client's work, more = the nodes' authentication and stepping shared among them each round \
         (clients and routing stay on one thread)\n\
         Ed25519 sign {:.1} µs, ZIP-215 verify {:.1} µs single, {:.1} µs per signature in batches of 64\n\
         crypto bound (on min(threads, cores) cores): sign + n x verify; batched: sign + n x batched verify\n\n",
        m.cores, m.sign_us, m.verify_us, m.verify_batch_us
    );
    s.push_str(&format!(
        "{:<9} {:>5} {:>7} {:>3} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>6} {:>9} {:>6} {:>9} {:>6}\n",
        "variant", "nodes", "clients", "thr", "verify", "put/s", "p50 ms", "p99 ms", "µs/req", "auth", "step", "apply",
        "client", "msgs", "in/batch", "e/AE", "bound", "%", "batched", "%"
    ));
    for x in &r.results {
        let b = x.in_process.clone().unwrap_or_default();
        let used = b.threads.clamp(1, m.cores.max(1)) as f64;
        let batched = if m.verify_batch_us > 0.0 {
            used * 1e6 / (m.sign_us + x.nodes as f64 * m.verify_batch_us)
        } else {
            0.0
        };
        let signed = x.variant != "raft";
        let pct = |bound: f64| {
            if signed && bound > 0.0 {
                format!("{:.0}%", 100.0 * x.throughput_rps / bound)
            } else {
                "-".into()
            }
        };
        s.push_str(&format!(
            "{:<9} {:>5} {:>7} {:>3} {:>7} {:>9.0} {:>7.2} {:>7.2} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>6.1} {:>9.0} {:>6} {:>9.0} {:>6}",
            x.variant, x.nodes, x.clients, b.threads, x.client_verify.map_or("-", |v| v.name()), x.throughput_rps, x.p50_ms, x.p99_ms, x.cpu_us_per_req,
            b.auth_us, b.step_us, b.apply_us, b.client_us, x.msgs_per_req, b.inputs_per_batch,
            b.entries_per_append, x.crypto_bound_rps, pct(x.crypto_bound_rps), batched, pct(batched)
        ));
        if x.failed > 0 {
            s.push_str(&format!("  ({} wrong answers)", x.failed));
        }
        s.push('\n');
        if let Some(c) = &x.cost {
            s.push_str(&format!("    CPU µs/put: {}\n", c.line()));
        }
        if signed {
            let kinds: Vec<String> = b
                .auth_us_by_kind
                .iter()
                .filter(|(_, us)| **us >= 0.05)
                .map(|(k, us)| format!("{k} {us:.1}"))
                .collect();
            s.push_str(&format!("    auth µs/put by kind: {}\n", kinds.join(", ")));
        }
    }
    s.push_str(
        "\nµs/req: this process's CPU per committed put; auth/step/apply/client: the loop's \
         wall time (summed over threads) in message authentication, Driver::step_batch (protocol, applying, \
         building replies), releasing batches (routing), and \
         the clients (signing, counting replies); msgs: messages routed per put (replies \
         included); in/batch: inputs per step_batch; e/AE: entries per AppendEntries.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl Progress for Quiet {
        fn run_started(&mut self, _: &str, _: Duration) {}
        fn tick(&mut self, _: u64) {}
        fn run_done(&mut self, _: &RunResult) {}
    }

    /// A short in-process run for raft and bft: requests commit, every answer is a put's
    /// `Ok` from enough matching replies, and the nodes agree on what they committed.
    #[test]
    fn in_process_runs_commit_and_answer_correctly() {
        let cost = CryptoCost {
            sign_us: 30.0,
            verify_us: 40.0,
            verify_batch_us: 20.0,
        };
        for variant in [Variant::Raft, Variant::Bft] {
            for (clients, threads, verify) in [
                (1, 1, ClientVerify::Batched),
                (8, 1, ClientVerify::Batched),
                (8, 1, ClientVerify::Single),
                (8, 2, ClientVerify::Batched),
            ] {
                let cell = Cell {
                    variant,
                    nodes: 4,
                    clients,
                    payload: 8,
                    warmup: Duration::from_millis(50),
                    stop: StopAfter::Requests(40),
                    threads,
                    verify,
                };
                let r = run_one(cell, &cost, &mut Quiet).expect("a leader is elected");
                assert!(
                    r.requests >= 40,
                    "{variant:?}/{clients}: {} puts",
                    r.requests
                );
                assert_eq!(r.failed, 0, "{variant:?}/{clients}: wrong answers");
                let b = r.in_process.expect("breakdown");
                if variant == Variant::Bft {
                    assert!(b.auth_us > 0.0, "bft authenticates");
                }
            }
        }
    }
}
