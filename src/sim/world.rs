//! The event loop: node slots, clients, the virtual network and a seeded RNG, on virtual
//! time. Same configuration and seed, same run, bit for bit (`trace` digests it).

use super::checker::Checker;
use super::disk::Disk;
use super::network::{Endpoint, Network};
use super::{Fault, SimConfig};
use crate::actor::Actor;
use crate::adversary::{self, Behaviour};
use crate::client::{ClientCore, ClientOutput};
use crate::crypto::{sha256, signing_key_from_seed, Digest, Domain, Keyring, Principal, SigCache};
use crate::driver::{self, Admission, Driver, Effect, Ready, MAX_INPUTS_PER_BATCH};
use crate::protocol::{
    authenticate_cached, AuthError, ClientId, Input, Message, Node, NodeConfig, NodeId, Op,
    Persist, Reply,
};
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest as _, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub const CLUSTER_ID: &str = "sim";

/// Deliveries allowed per slot per virtual second, about 20 times what a busy honest
/// cluster needs: a run past it is a message storm, reported and stopped, so every run
/// ends in bounded time and memory whatever its adversaries do.
pub const DELIVERIES_PER_SLOT_SECOND: u64 = 20_000;
/// Events waiting at once, at most.
pub const MAX_QUEUED_EVENTS: usize = 1 << 20;

#[derive(Clone, Debug)]
pub enum Event {
    Tick(usize),
    ClientTick(ClientId),
    Submit(ClientId),
    /// Boxed: thousands wait in the queue at once.
    Deliver {
        to: Endpoint,
        from: Endpoint,
        msg: Box<Message>,
    },
    Fault(Fault),
    /// Steps what reached a slot at this instant as one batch (`Driver::step_batch`, as
    /// the runtime steps what its queue holds).
    Flush(usize),
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    Honest,
    Byzantine(Behaviour),
}

struct Slot {
    id: NodeId,
    kind: SlotKind,
    key: SigningKey,
    /// The running node (its actor and state machine); `None` while crashed.
    driver: Option<Driver>,
    /// Inputs that arrived at this instant, stepped together at its end; lost in a crash
    /// (they were never stepped, so nothing of them was durable or sent).
    inbox: Vec<Input>,
    disk: Disk,
    incarnation: u64,
}

struct ClientSlot {
    core: ClientCore,
    issued: u64,
}

pub struct World {
    pub cfg: SimConfig,
    rng: ChaCha8Rng,
    pub now: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    slots: Vec<Slot>,
    clients: Vec<ClientSlot>,
    ring: Keyring,
    pub net: Network,
    auth_cache: HashMap<(Digest, Principal), Result<(), AuthError>>,
    sig_cache: SigCache,
    pub checker: Checker,
    trace: Sha256,
    pub delivered: u64,
    pub rejected: u64,
    pub kinds: std::collections::BTreeMap<&'static str, u64>,
    /// Whether clients keep submitting new requests (closed loop) or only scripted ones.
    pub load: bool,
}

/// A run's keys derive from its seed; `tag` keeps node and client keys apart.
fn derived_key(seed: u64, id: u32, tag: u8) -> SigningKey {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..12].copy_from_slice(&id.to_le_bytes());
    s[12] = tag;
    signing_key_from_seed(s)
}

impl World {
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let node_keys: Vec<SigningKey> = (0..cfg.nodes as NodeId)
            .map(|i| derived_key(cfg.seed, i, b'N'))
            .collect();
        let client_keys: Vec<SigningKey> = (0..cfg.clients as ClientId)
            .map(|c| derived_key(cfg.seed, c, b'C'))
            .collect();
        let ring = Keyring::of_signing_keys(
            Domain::new(cfg.rules.variant, CLUSTER_ID),
            &node_keys,
            &client_keys,
        )
        .expect("derived keys are never weak");
        let mut slots = Vec::new();
        for id in 0..cfg.nodes as NodeId {
            let behaviour = cfg
                .byzantine
                .iter()
                .find(|(b, _)| *b == id)
                .map(|(_, b)| *b);
            let kind = behaviour.map_or(SlotKind::Honest, SlotKind::Byzantine);
            let copies = if behaviour == Some(Behaviour::Twins) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                slots.push(Slot {
                    id,
                    kind,
                    key: node_keys[id as usize].clone(),
                    driver: None,
                    inbox: Vec::new(),
                    disk: Disk::default(),
                    incarnation: 0,
                });
            }
        }
        let honest: Vec<bool> = slots.iter().map(|s| s.kind == SlotKind::Honest).collect();
        let checker = Checker::new(ring.clone(), honest);
        let client_timeout = cfg.timing.election_ticks * 3 / 2;
        let clients = client_keys
            .into_iter()
            .enumerate()
            .map(|(c, key)| ClientSlot {
                core: ClientCore::new(
                    c as ClientId,
                    key,
                    cfg.rules.variant,
                    CLUSTER_ID,
                    cfg.nodes,
                    client_timeout,
                    1,
                ),
                issued: 0,
            })
            .collect();
        let mut w = World {
            rng: ChaCha8Rng::seed_from_u64(rng.gen()),
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            slots,
            clients,
            ring,
            net: Network::new(),
            auth_cache: HashMap::new(),
            sig_cache: SigCache::new(1 << 16),
            checker,
            trace: Sha256::new(),
            delivered: 0,
            rejected: 0,
            kinds: Default::default(),
            load: true,
            cfg,
        };
        for s in 0..w.slots.len() {
            w.start_slot(s);
            let phase = w.rng.gen_range(0..w.cfg.tick_ms);
            w.schedule(phase, Event::Tick(s));
        }
        for c in 0..w.clients.len() as ClientId {
            let phase = w.rng.gen_range(0..w.cfg.tick_ms);
            w.schedule(phase, Event::ClientTick(c));
            let start = w.rng.gen_range(0..100);
            w.schedule(start, Event::Submit(c));
        }
        w
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slots that hold node `id` (two for twins).
    pub fn slots_of(&self, id: NodeId) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&s| self.slots[s].id == id)
            .collect()
    }

    pub fn is_crashed(&self, slot: usize) -> bool {
        self.slots[slot].driver.is_none()
    }

    pub fn node(&self, slot: usize) -> Option<&Node> {
        self.slots[slot].driver.as_ref().map(|d| d.node())
    }

    /// Whether every slot of node `id` is honest.
    pub fn is_honest_node(&self, id: NodeId) -> bool {
        self.slots_of(id).iter().all(|&s| self.checker.is_honest(s))
    }

    /// The node ids some honest, running slot follows as a leader that is Byzantine.
    pub fn byzantine_leads(&self) -> bool {
        self.honest_slots().into_iter().any(|s| {
            self.node(s)
                .and_then(|n| n.leader())
                .is_some_and(|(_, l)| !self.is_honest_node(l))
        })
    }

    /// The node is killed while its step's record is being written: the step ran in memory,
    /// its persists never became durable, and so (persist before you speak) nothing it
    /// produced left the node. What a torn or unsynced tail loses on a real disk.
    fn crash_mid_step(&mut self, s: usize) {
        if let Some(driver) = self.slots[s].driver.as_mut() {
            for p in driver.step(Input::Tick).persist {
                self.slots[s].disk.apply(&p);
            }
        }
        self.slots[s].disk.lose_unsynced();
        self.stop_slot(s);
    }

    pub fn honest_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&s| self.checker.is_honest(s))
            .collect()
    }

    pub fn byzantine_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&s| !self.checker.is_honest(s))
            .collect()
    }

    pub fn trace_digest(&self) -> Digest {
        Digest(self.trace.clone().finalize().into())
    }

    pub fn schedule(&mut self, after: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            event,
        }));
    }

    fn start_slot(&mut self, s: usize) {
        let slot = &mut self.slots[s];
        slot.incarnation += 1;
        let cfg = NodeConfig {
            id: slot.id,
            n: self.cfg.nodes,
            cluster_id: CLUSTER_ID.to_string(),
            rules: self.cfg.rules,
            timing: self.cfg.timing,
            checkpoint_interval: self.cfg.checkpoint_interval,
        };
        let seed = self.cfg.seed ^ ((s as u64) << 40) ^ (slot.incarnation << 56) ^ 0x9e37_79b9;
        let durable = slot.disk.durable();
        let restored = durable.snapshot.clone().map(|s| {
            let kv = crate::kv::Kv::from_snapshot_bytes(&s.state)
                .expect("the simulated disk holds only snapshots a node wrote")
                .0;
            (kv, s)
        });
        let actor: Box<dyn Actor> = match slot.kind {
            SlotKind::Honest => Box::new(Node::new(cfg, slot.key.clone(), seed, durable)),
            SlotKind::Byzantine(b) => adversary::make(
                b,
                adversary::Context {
                    cfg,
                    key: slot.key.clone(),
                    seed,
                    durable,
                    ring: self.ring.clone(),
                },
            ),
        };
        let (driver, resume) = match restored {
            Some((kv, snap)) => {
                let mut d = Driver::restored(actor, kv, snap);
                let ready = d.resume();
                (d, Some(ready))
            }
            None => (Driver::new(actor), None),
        };
        slot.driver = Some(driver);
        slot.inbox.clear();
        if let Some(ready) = resume {
            self.release(s, ready);
        }
    }

    /// Runs until virtual time `until` (ms) or until the queue empties, or stops the run
    /// for good when it goes over its work budget.
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            if let Some(why) = self.over_budget() {
                self.checker.over_budget(why);
                self.queue.clear();
                break;
            }
            let Reverse(ev) = self.queue.pop().expect("peeked");
            self.now = ev.at;
            self.handle(ev.event);
        }
        self.now = self.now.max(until);
    }

    fn over_budget(&self) -> Option<String> {
        let seconds = self.now / 1000 + 1;
        let allowed = DELIVERIES_PER_SLOT_SECOND * self.slots.len() as u64 * seconds;
        if self.delivered > allowed {
            return Some(format!(
                "message storm: {} deliveries by {} ms (budget {allowed})",
                self.delivered, self.now
            ));
        }
        (self.queue.len() > MAX_QUEUED_EVENTS).then(|| {
            format!(
                "{} events queued at {} ms (bound {MAX_QUEUED_EVENTS})",
                self.queue.len(),
                self.now
            )
        })
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Tick(s) => {
                let next = self.cfg.tick_ms;
                self.schedule(next, Event::Tick(s));
                self.step(s, Input::Tick);
            }
            Event::ClientTick(c) => {
                let next = self.cfg.tick_ms;
                self.schedule(next, Event::ClientTick(c));
                let out = self.clients[c as usize].core.tick();
                self.client_outputs(c, out);
            }
            Event::Submit(c) => {
                if self.load
                    && !self.clients[c as usize].core.busy()
                    && self.clients[c as usize].issued < self.cfg.max_requests
                {
                    let op = self.random_op();
                    self.submit(c, op, None);
                }
            }
            Event::Deliver { to, from, msg } => self.deliver(to, from, *msg),
            Event::Fault(f) => self.apply_fault(f),
            Event::Flush(s) => self.flush(s),
        }
    }

    fn random_op(&mut self) -> Op {
        let key = format!("k{}", self.rng.gen_range(0..4));
        match self.rng.gen_range(0..10) {
            0..=4 => Op::Put {
                key,
                value: format!("v{}", self.rng.gen_range(0..100)).into(),
            },
            5..=6 => Op::Get { key },
            7 => Op::Delete { key },
            _ => Op::Cas {
                key,
                expected: Some(format!("v{}", self.rng.gen_range(0..100)).into()),
                new: format!("v{}", self.rng.gen_range(0..100)).into(),
            },
        }
    }

    /// A client issues a request (to `to` if given, else where it believes the leader is).
    pub fn submit(&mut self, c: ClientId, op: Op, to: Option<NodeId>) {
        let client = &mut self.clients[c as usize];
        if client.core.busy() {
            return;
        }
        client.issued += 1;
        let mut out = client.core.submit(op.clone());
        let seq = client
            .core
            .pending_request()
            .expect("just submitted")
            .body
            .seq;
        self.checker.on_issue(c, seq, op, self.now);
        if let (Some(to), Some(ClientOutput::Send { to: t, .. })) = (to, out.first_mut()) {
            *t = to;
        }
        self.client_outputs(c, out);
    }

    fn client_outputs(&mut self, c: ClientId, out: Vec<ClientOutput>) {
        for o in out {
            match o {
                ClientOutput::Send { to, msg } => {
                    for s in self.slots_of(to) {
                        self.send(Endpoint::Client(c), Endpoint::Slot(s), msg.clone());
                    }
                }
                ClientOutput::Broadcast(msg) => {
                    for s in 0..self.slots.len() {
                        self.send(Endpoint::Client(c), Endpoint::Slot(s), msg.clone());
                    }
                }
                ClientOutput::Accepted { seq, result } => {
                    self.checker.on_accept(c, seq, result);
                    let think = self.rng.gen_range(20..200);
                    self.schedule(think, Event::Submit(c));
                }
            }
        }
    }

    fn send(&mut self, from: Endpoint, to: Endpoint, msg: Message) {
        let delays = self.net.plan(&mut self.rng, from, to, msg.kind());
        for d in delays {
            self.schedule(
                d,
                Event::Deliver {
                    to,
                    from,
                    msg: Box::new(msg.clone()),
                },
            );
        }
    }

    fn deliver(&mut self, to: Endpoint, from: Endpoint, msg: Message) {
        let bytes = crate::codec::encode(&msg);
        let digest = sha256(&bytes);
        self.trace.update(self.now.to_le_bytes());
        self.trace.update(format!("{to:?}{from:?}").as_bytes());
        self.trace.update(digest.0);
        if std::env::var_os("TANGAROA_SIM_TRACE").is_some() {
            eprintln!("{} {to:?} <- {from:?} {msg:?}", self.now);
        }
        self.delivered += 1;
        *self.kinds.entry(msg.kind()).or_default() += 1;
        match to {
            Endpoint::Client(c) => {
                let (Endpoint::Slot(s), Message::Reply(r)) = (from, msg) else {
                    return;
                };
                let node = self.slots[s].id;
                let out = self.clients[c as usize].core.on_reply(node, r);
                self.client_outputs(c, out);
            }
            Endpoint::Slot(s) => {
                let link = match from {
                    Endpoint::Slot(f) => Principal::Node(self.slots[f].id),
                    Endpoint::Client(c) => Principal::Client(c),
                };
                let Some(driver) = self.slots[s].driver.as_mut() else {
                    return;
                };
                let msg = match driver.admit(link, msg) {
                    Admission::Answered { client, reply } => {
                        return self.reply_to_client(s, client, reply);
                    }
                    Admission::Deliver(msg) => msg,
                };
                let (ring, cache) = (&self.ring, &mut self.sig_cache);
                let verdict = self
                    .auth_cache
                    .entry((digest, link))
                    .or_insert_with(|| authenticate_cached(ring, cache, link, &msg))
                    .clone();
                if verdict.is_err() {
                    self.rejected += 1;
                }
                if let Ok(input) = driver::input_for(link, msg, verdict) {
                    self.step(s, input);
                }
            }
        }
    }

    fn reply_to_client(&mut self, s: usize, client: ClientId, reply: Option<Reply>) {
        if let (Some(reply), true) = (reply, (client as usize) < self.clients.len()) {
            let to = Endpoint::Client(client);
            self.send(Endpoint::Slot(s), to, Message::Reply(reply));
        }
    }

    /// Queues `input` for slot `s`: it is stepped with whatever else reaches the slot at
    /// this instant, at the instant's end (or at once if the batch is full).
    pub fn step(&mut self, s: usize, input: Input) {
        if self.slots[s].driver.is_none() {
            return;
        }
        if self.slots[s].inbox.is_empty() {
            // Scheduled after every event already queued for this instant.
            self.schedule(0, Event::Flush(s));
        }
        self.slots[s].inbox.push(input);
        if self.slots[s].inbox.len() >= MAX_INPUTS_PER_BATCH {
            self.flush(s);
        }
    }

    fn flush(&mut self, s: usize) {
        let inputs = std::mem::take(&mut self.slots[s].inbox);
        let Some(driver) = self.slots[s].driver.as_mut() else {
            return;
        };
        if inputs.is_empty() {
            return;
        }
        let ready = driver.step_batch(inputs);
        self.release(s, ready);
    }

    fn stop_slot(&mut self, s: usize) {
        self.slots[s].driver = None;
        self.slots[s].inbox.clear();
    }

    /// What the runtime does with a batch's `Ready`: its persists durable (one record,
    /// one fsync) before anything else; the disk model keeps them pending until then.
    fn release(&mut self, s: usize, ready: Ready) {
        let me = self.slots[s].id;
        for p in &ready.persist {
            if let Persist::Evidence(e) = p {
                if let Principal::Node(c) = e.culprit() {
                    let honest = self.is_honest_node(c);
                    self.checker.on_evidence(s, me, c, honest);
                }
            }
            self.slots[s].disk.apply(p);
        }
        self.slots[s].disk.sync();
        for effect in ready.effects {
            match effect {
                Effect::Send { to, msg } => {
                    self.checker.on_signed(s, me, &msg);
                    for t in self.slots_of(to) {
                        if t != s {
                            self.send(Endpoint::Slot(s), Endpoint::Slot(t), msg.clone());
                        }
                    }
                }
                Effect::Broadcast(msg) => {
                    self.checker.on_signed(s, me, &msg);
                    for t in 0..self.slots.len() {
                        if self.slots[t].id != me {
                            self.send(Endpoint::Slot(s), Endpoint::Slot(t), msg.clone());
                        }
                    }
                }
                Effect::Applied { entry, request } => {
                    let applied = request.as_ref().map(|r| &r.applied);
                    self.checker.on_apply(s, me, &entry, applied);
                    if let Some(r) = request {
                        self.reply_to_client(s, r.client, r.reply);
                    }
                }
                Effect::Snapshot {
                    base,
                    state_digest,
                    installed,
                } => self
                    .checker
                    .on_snapshot(s, me, base, state_digest, installed),
            }
        }
    }

    pub fn apply_fault(&mut self, f: Fault) {
        let slots = self.slots.len();
        match f {
            Fault::Partition(sides) => self.net.partition(slots, &sides),
            Fault::Heal => self.net.heal(),
            Fault::Block(a, b, kind) => {
                for x in self.slots_of(a) {
                    for y in self.slots_of(b) {
                        self.net.block(x, y, kind);
                    }
                }
            }
            Fault::Unblock(a, b, kind) => {
                for x in self.slots_of(a) {
                    for y in self.slots_of(b) {
                        self.net.unblock(x, y, kind);
                    }
                }
            }
            Fault::Loss {
                drop,
                duplicate,
                delay,
            } => {
                self.net.drop = drop;
                self.net.duplicate = duplicate;
                self.net.delay = delay;
            }
            Fault::Crash(s) => {
                self.stop_slot(s);
            }
            Fault::CrashMidStep(s) => self.crash_mid_step(s),
            Fault::Bounce(s, after) => {
                self.crash_mid_step(s);
                self.schedule(after, Event::Fault(Fault::Restart(s)));
            }
            Fault::Restart(s) => {
                if self.slots[s].driver.is_none() {
                    let d = self.slots[s].disk.durable();
                    let id = self.slots[s].id;
                    self.checker.on_restart(s, id, &d);
                    self.start_slot(s);
                }
            }
            Fault::Timeout(id) => {
                for s in self.slots_of(id) {
                    self.step(s, Input::Timeout);
                }
            }
            Fault::Request { client, op, to } => {
                if (client as usize) < self.clients.len() {
                    self.submit(client, op, to);
                }
            }
        }
    }
}
