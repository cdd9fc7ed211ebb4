//! The deterministic simulator: n cores and some clients over a virtual network, on
//! virtual time, driven by one seeded RNG, with Byzantine slots and a checker on every run.
//!
//! A run has two phases. During *chaos* the seed picks faults: partitions, loss,
//! duplication, delay (hence reordering), crashes and restarts, forced election timeouts.
//! Then faults stop (*calm*): the network heals and crashed nodes restart. Byzantine nodes
//! keep misbehaving throughout. Liveness is judged at the end of calm.

mod checker;
mod disk;
mod network;
pub mod scenario;
mod signatures;
mod world;

pub use checker::{Finding, Kind, Violation};
pub use network::Endpoint;
pub use world::{World, CLUSTER_ID};

use crate::adversary::Behaviour;
use crate::protocol::{ClientId, NodeId, Op, Rules, Timing, Variant};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Liveness bound, in maximum election timeouts (2T each): after faults stop, every honest
/// node commits every pending request within this. It covers deposing up to f Byzantine
/// leaders in a row (request timeout plus an election each), clients' retry timers, and a
/// restarted node catching up.
pub const LIVENESS_BOUND_TIMEOUTS: u64 = 20;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Slots on different sides cannot talk; slots not listed are alone.
    Partition(Vec<Vec<usize>>),
    Heal,
    /// Cut / restore the directed link between two node ids, for every message kind or
    /// for one (`Message::kind` names).
    Block(NodeId, NodeId, Option<&'static str>),
    Unblock(NodeId, NodeId, Option<&'static str>),
    Loss {
        drop: f64,
        duplicate: f64,
        delay: (u64, u64),
    },
    Crash(usize),
    /// Crash while the slot's current step is being persisted: the step is lost whole.
    CrashMidStep(usize),
    /// Crash mid-step, then restart after the given ms.
    Bounce(usize, u64),
    Restart(usize),
    /// Force node's election timeout now.
    Timeout(NodeId),
    Request {
        client: ClientId,
        op: Op,
        to: Option<NodeId>,
    },
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub rules: Rules,
    pub nodes: usize,
    pub byzantine: Vec<(NodeId, Behaviour)>,
    pub clients: usize,
    pub seed: u64,
    pub timing: Timing,
    pub tick_ms: u64,
    pub chaos_ms: u64,
    pub calm_ms: u64,
    pub max_requests: u64,
    /// Committed entries between checkpoints: small, so that every run compacts and
    /// restarted or lagging nodes catch up by snapshot.
    pub checkpoint_interval: u64,
}

/// The simulator's default `checkpoint_interval`: several checkpoints per run.
pub const SIM_CHECKPOINT_INTERVAL: u64 = 16;

impl SimConfig {
    pub fn new(variant: Variant, nodes: usize, seed: u64) -> SimConfig {
        let timing = Timing::default();
        SimConfig {
            rules: Rules::for_variant(variant),
            nodes,
            byzantine: vec![],
            clients: 2,
            seed,
            timing,
            tick_ms: 10,
            chaos_ms: 3000,
            calm_ms: 0,
            max_requests: 1000,
            checkpoint_interval: SIM_CHECKPOINT_INTERVAL,
        }
        .with_default_calm()
    }

    /// The longest election timeout, in ms.
    pub fn election_timeout_ms(&self) -> u64 {
        2 * self.timing.election_ticks as u64 * self.tick_ms
    }

    pub fn liveness_bound_ms(&self) -> u64 {
        LIVENESS_BOUND_TIMEOUTS * self.election_timeout_ms()
    }

    fn with_default_calm(mut self) -> SimConfig {
        self.calm_ms = self.liveness_bound_ms() + 1000;
        self
    }
}

/// What one run found.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// Requests committed at every honest node.
    pub committed: usize,
    pub byzantine: Vec<(NodeId, String)>,
    #[serde(skip)]
    pub trace: crate::crypto::Digest,
    pub delivered: u64,
}

/// Runs one seeded run with random faults, then calm, then the checker.
pub fn run(cfg: &SimConfig) -> RunReport {
    let cfg2 = cfg.clone();
    let result = std::panic::catch_unwind(move || run_inner(cfg2));
    result.unwrap_or_else(|p| panic_report(cfg.seed, &cfg.byzantine, p))
}

/// A panic inside a node is an invariant it caught breaking: a safety finding.
fn panic_report(
    seed: u64,
    byz: &[(NodeId, Behaviour)],
    p: Box<dyn std::any::Any + Send>,
) -> RunReport {
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    RunReport {
        seed,
        violations: vec![Violation::new(
            Finding::Panic,
            format!("a node panicked: {msg}"),
        )],
        committed: 0,
        byzantine: describe_byz(byz),
        trace: Default::default(),
        delivered: 0,
    }
}

fn describe_byz(byz: &[(NodeId, Behaviour)]) -> Vec<(NodeId, String)> {
    byz.iter()
        .map(|(id, b)| (*id, b.name().to_string()))
        .collect()
}

fn report_of(cfg: &SimConfig, w: &World) -> RunReport {
    RunReport {
        seed: cfg.seed,
        violations: w.checker.violations.clone(),
        committed: w.checker.committed_min(),
        byzantine: describe_byz(&cfg.byzantine),
        trace: w.trace_digest(),
        delivered: w.delivered,
    }
}

fn run_inner(cfg: SimConfig) -> RunReport {
    let w = run_world(&cfg);
    report_of(&cfg, &w)
}

/// Runs one seed and returns the world as it ends, for inspection.
pub fn run_world(cfg: &SimConfig) -> World {
    let mut w = World::new(cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xfa017);
    // Chaos: faults at random moments.
    let mut t = rng.gen_range(50..300);
    while t < cfg.chaos_ms {
        w.run_until(t);
        let f = random_fault(&mut rng, &w);
        w.apply_fault(f);
        t += rng.gen_range(80..500);
    }
    w.run_until(cfg.chaos_ms);
    // Calm: heal and restart everything; Byzantine nodes go on.
    w.apply_fault(Fault::Heal);
    for s in 0..w.slot_count() {
        w.apply_fault(Fault::Restart(s));
    }
    let end = cfg.chaos_ms + cfg.calm_ms;
    w.run_until(end);
    // Liveness is promised by bft with all its rules and at most f Byzantine nodes.
    let check_liveness =
        cfg.rules == Rules::for_variant(Variant::Bft) && 3 * cfg.byzantine.len() < cfg.nodes;
    let deadline = check_liveness.then(|| end - cfg.liveness_bound_ms());
    let bound = format!("within {} election timeouts", LIVENESS_BOUND_TIMEOUTS);
    w.checker.finish(deadline, &bound);
    w
}

fn random_fault(rng: &mut ChaCha8Rng, w: &World) -> Fault {
    let slots = w.slot_count();
    let honest = w.honest_slots();
    let crashed: Vec<usize> = honest
        .iter()
        .copied()
        .filter(|&s| w.is_crashed(s))
        .collect();
    let has_twins = (0..w.cfg.nodes as NodeId).any(|id| w.slots_of(id).len() > 1);
    if w.byzantine_leads() && crashed.len() < 2 && rng.gen_bool(0.7) {
        // A Byzantine leader's term is when an honest follower's memory of what it signed
        // matters most (an equivocating leader widens its fork to a restarted follower):
        // bounce one quickly, so it rejoins the same term.
        let up: Vec<usize> = honest
            .iter()
            .copied()
            .filter(|&s| !w.is_crashed(s))
            .collect();
        if let Some(&s) = up.choose(rng) {
            return Fault::Bounce(s, rng.gen_range(5..60));
        }
    }
    match rng.gen_range(0..100) {
        0..=29 => {
            let mut sides = vec![vec![], vec![]];
            for s in 0..slots {
                sides[rng.gen_range(0..2)].push(s);
            }
            if has_twins {
                // Twins live on different sides of every partition.
                for id in 0..w.cfg.nodes as NodeId {
                    let copies = w.slots_of(id);
                    if copies.len() == 2 {
                        for side in sides.iter_mut() {
                            side.retain(|s| !copies.contains(s));
                        }
                        let flip = rng.gen_bool(0.5) as usize;
                        sides[flip].push(copies[0]);
                        sides[1 - flip].push(copies[1]);
                    }
                }
            }
            Fault::Partition(sides)
        }
        30..=44 => Fault::Heal,
        45..=59 if crashed.len() < 2 => {
            let up: Vec<usize> = honest
                .iter()
                .copied()
                .filter(|&s| !w.is_crashed(s))
                .collect();
            match up.choose(rng) {
                Some(&s) if rng.gen_bool(0.5) => Fault::CrashMidStep(s),
                Some(&s) => Fault::Crash(s),
                None => Fault::Heal,
            }
        }
        45..=69 if !crashed.is_empty() => Fault::Restart(*crashed.choose(rng).expect("non-empty")),
        45..=89 => {
            let drop = *[0.0, 0.02, 0.1, 0.3].choose(rng).expect("non-empty");
            let duplicate = *[0.0, 0.05, 0.2].choose(rng).expect("non-empty");
            let delay = *[(1, 5), (1, 30), (5, 150)].choose(rng).expect("non-empty");
            Fault::Loss {
                drop,
                duplicate,
                delay,
            }
        }
        _ => Fault::Timeout(rng.gen_range(0..w.cfg.nodes as NodeId)),
    }
}

/// A batch: many seeds, the Byzantine roles rotating over the chosen behaviours.
#[derive(Clone, Debug)]
pub struct Batch {
    pub base: SimConfig,
    pub byzantine: usize,
    pub behaviours: Vec<Behaviour>,
    pub first_seed: u64,
    pub seeds: u64,
}

impl Batch {
    /// The configuration of one seed: which nodes are Byzantine and how.
    pub fn config(&self, seed: u64) -> SimConfig {
        let mut cfg = self.base.clone();
        cfg.seed = seed;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb1a5);
        let mut ids: Vec<NodeId> = (0..cfg.nodes as NodeId).collect();
        ids.shuffle(&mut rng);
        let k = self.behaviours.len().max(1);
        cfg.byzantine = ids
            .into_iter()
            .take(self.byzantine)
            .enumerate()
            .map(|(j, id)| (id, self.behaviours[(seed as usize + j) % k]))
            .collect();
        cfg
    }

    /// Runs every seed on all cores; `progress` is called after each run.
    pub fn run(&self, progress: &(dyn Fn(&RunReport) + Sync)) -> Vec<RunReport> {
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(self.seeds as usize)
            .max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if i >= self.seeds {
                        break;
                    }
                    let report = run(&self.config(self.first_seed + i));
                    progress(&report);
                    results
                        .lock()
                        .expect("no worker panics while holding the lock")
                        .push(report);
                });
            }
        });
        let mut r = results.into_inner().expect("workers finished");
        r.sort_by_key(|r| r.seed);
        r
    }
}
