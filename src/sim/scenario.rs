//! Scripted scenarios: a TOML file fixes the nodes, the variant and the Byzantine roles,
//! and sets a timeline of partitions, blocked links, forced election timeouts, crashes,
//! restarts and client requests. No random faults: the seed only draws message delays
//! (1 to 5 ms) and election timeouts.
//!
//! ```toml
//! name = "example"
//! description = "what it shows"
//! variant = "bft"          # default; `tangaroa sim --variant` overrides
//! nodes = 4
//! clients = 2
//! seed = 1
//! duration_ms = 4000
//! load = false             # true: clients also issue random requests in a closed loop
//!
//! liveness_ms = 3000       # optional: every request issued at least this long before
//!                          # the end commits at every honest node by the end (checked for
//!                          # each variant expected "safe")
//!
//! [expect]                 # per variant: "safe" or "violation" (checked by
//! tangaroa = "violation"   # `tangaroa sim --scenario` and by the tests)
//! bft = "safe"
//!
//! [[byzantine]]
//! node = 0
//! behaviour = "equivocate"
//!
//! [[event]]
//! at_ms = 0
//! action = "timeout"       # force node's election timeout
//! node = 0
//! ```
//!
//! Actions: `timeout {node}`, `partition {groups = [[0,1],[2,3]]}`, `heal`,
//! `block {from, to, kinds?}` / `unblock {from, to, kinds?}` (one direction; `kinds`
//! limits it to message kinds such as `["commit"]`), `crash {node}`,
//! `restart {node}`, `request {client, op = "put x 1", to?}` (`to` names the node the
//! client first sends to), `loss {drop, duplicate, delay_ms = [min, max]}`.

use super::{Fault, RunReport, SimConfig, World};
use crate::adversary::Behaviour;
use crate::kv::parse_op;
use crate::protocol::{ClientId, NodeId, Rules, Variant};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    variant: Option<String>,
    nodes: usize,
    #[serde(default = "one")]
    clients: usize,
    #[serde(default)]
    seed: u64,
    duration_ms: u64,
    #[serde(default)]
    load: bool,
    liveness_ms: Option<u64>,
    #[serde(default)]
    expect: BTreeMap<String, String>,
    #[serde(default)]
    byzantine: Vec<ByzFile>,
    #[serde(default)]
    event: Vec<EventFile>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ByzFile {
    node: NodeId,
    behaviour: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    at_ms: u64,
    action: String,
    node: Option<NodeId>,
    groups: Option<Vec<Vec<NodeId>>>,
    from: Option<NodeId>,
    to: Option<NodeId>,
    client: Option<ClientId>,
    op: Option<String>,
    drop: Option<f64>,
    duplicate: Option<f64>,
    delay_ms: Option<[u64; 2]>,
    kinds: Option<Vec<String>>,
}

/// Message kinds a `block` may name.
const KINDS: [&str; 12] = crate::protocol::Message::KINDS;

/// What a scenario expects of a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Safe,
    Violation,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub variant: Variant,
    pub nodes: usize,
    pub clients: usize,
    pub seed: u64,
    pub duration_ms: u64,
    pub load: bool,
    /// Requests issued this long before the end must commit everywhere honest by the end.
    pub liveness_ms: Option<u64>,
    pub expect: BTreeMap<Variant, Expect>,
    pub byzantine: Vec<(NodeId, Behaviour)>,
    pub events: Vec<(u64, ScenarioEvent)>,
}

/// A timeline event, in node ids (the world maps them to slots).
#[derive(Debug, Clone)]
pub enum ScenarioEvent {
    Partition(Vec<Vec<NodeId>>),
    Crash(NodeId),
    Restart(NodeId),
    Other(Fault),
}

impl Scenario {
    /// Parses and validates a scenario; errors name the offending field.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let f: File = toml::from_str(text).map_err(|e| format!("invalid scenario: {e}"))?;
        let variant = match &f.variant {
            None => Variant::Bft,
            Some(v) => Variant::parse(v)
                .ok_or_else(|| format!("unknown variant {v:?} (raft, tangaroa or bft)"))?,
        };
        if f.nodes == 0 || f.nodes > 64 {
            return Err(format!("nodes must be between 1 and 64, got {}", f.nodes));
        }
        if f.clients == 0 || f.clients > 64 {
            return Err(format!(
                "clients must be between 1 and 64, got {}",
                f.clients
            ));
        }
        if f.duration_ms == 0 || f.duration_ms > 600_000 {
            return Err("duration_ms must be between 1 and 600000".into());
        }
        if f.liveness_ms.is_some_and(|l| l == 0 || l > f.duration_ms) {
            return Err("liveness_ms must be between 1 and duration_ms".into());
        }
        if let Some(e) = f.event.iter().find(|e| e.at_ms > f.duration_ms) {
            return Err(format!(
                "event {} at {} ms is after the end (duration_ms = {})",
                e.action, e.at_ms, f.duration_ms
            ));
        }
        let node = |what: &str, n: Option<NodeId>| -> Result<NodeId, String> {
            match n {
                Some(n) if (n as usize) < f.nodes => Ok(n),
                Some(n) => Err(format!(
                    "{what}: node {n} does not exist (nodes = {})",
                    f.nodes
                )),
                None => Err(format!("{what}: missing `node`")),
            }
        };
        let mut expect = BTreeMap::new();
        for (v, e) in &f.expect {
            let v = Variant::parse(v).ok_or_else(|| format!("expect: unknown variant {v:?}"))?;
            let e = match e.as_str() {
                "safe" => Expect::Safe,
                "violation" => Expect::Violation,
                other => {
                    return Err(format!(
                        "expect.{v}: {other:?} is neither \"safe\" nor \"violation\""
                    ))
                }
            };
            expect.insert(v, e);
        }
        let mut byzantine = Vec::new();
        for b in &f.byzantine {
            let id = node("byzantine", Some(b.node))?;
            let beh = Behaviour::parse(&b.behaviour)
                .ok_or_else(|| format!("byzantine: unknown behaviour {:?}", b.behaviour))?;
            if byzantine.iter().any(|(x, _)| *x == id) {
                return Err(format!("byzantine: node {id} listed twice"));
            }
            byzantine.push((id, beh));
        }
        let mut events = Vec::new();
        for (k, e) in f.event.iter().enumerate() {
            let what = format!("event {} ({} at {} ms)", k + 1, e.action, e.at_ms);
            let ev = match e.action.as_str() {
                "timeout" => ScenarioEvent::Other(Fault::Timeout(node(&what, e.node)?)),
                "crash" => ScenarioEvent::Crash(node(&what, e.node)?),
                "restart" => ScenarioEvent::Restart(node(&what, e.node)?),
                "heal" => ScenarioEvent::Other(Fault::Heal),
                "partition" => {
                    let groups = e.groups.clone().ok_or_else(|| format!("{what}: missing `groups`"))?;
                    for g in &groups {
                        for &n in g {
                            node(&what, Some(n))?;
                        }
                    }
                    ScenarioEvent::Partition(groups)
                }
                "block" | "unblock" => {
                    let a = node(&format!("{what} from"), e.from)?;
                    let b = node(&format!("{what} to"), e.to)?;
                    let kinds: Vec<Option<&'static str>> = match &e.kinds {
                        None => vec![None],
                        Some(ks) => ks
                            .iter()
                            .map(|k| {
                                KINDS.iter().find(|x| **x == k.as_str()).map(|x| Some(*x)).ok_or_else(|| {
                                    format!("{what}: unknown message kind {k:?} (one of {})", KINDS.join(", "))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                    };
                    for kind in kinds {
                        let f = if e.action == "block" { Fault::Block(a, b, kind) } else { Fault::Unblock(a, b, kind) };
                        events.push((e.at_ms, ScenarioEvent::Other(f)));
                    }
                    continue;
                }
                "request" => {
                    let client = e.client.unwrap_or(0);
                    if client as usize >= f.clients {
                        return Err(format!("{what}: client {client} does not exist (clients = {})", f.clients));
                    }
                    let text = e.op.clone().ok_or_else(|| format!("{what}: missing `op`"))?;
                    let words: Vec<&str> = text.split_whitespace().collect();
                    let op = parse_op(&words).map_err(|err| format!("{what}: {err}"))?;
                    let to = match e.to {
                        Some(t) => Some(node(&what, Some(t))?),
                        None => None,
                    };
                    ScenarioEvent::Other(Fault::Request { client, op, to })
                }
                "loss" => {
                    let drop = e.drop.unwrap_or(0.0);
                    let duplicate = e.duplicate.unwrap_or(0.0);
                    if !(0.0..=1.0).contains(&drop) || !(0.0..=1.0).contains(&duplicate) {
                        return Err(format!("{what}: drop and duplicate are probabilities in [0, 1]"));
                    }
                    let [lo, hi] = e.delay_ms.unwrap_or([1, 5]);
                    if lo > hi {
                        return Err(format!("{what}: delay_ms [min, max] has min > max"));
                    }
                    ScenarioEvent::Other(Fault::Loss { drop, duplicate, delay: (lo, hi) })
                }
                other => {
                    return Err(format!(
                        "{what}: unknown action {other:?} (timeout, partition, heal, block, unblock, crash, restart, request, loss)"
                    ))
                }
            };
            events.push((e.at_ms, ev));
        }
        events.sort_by_key(|(t, _)| *t);
        Ok(Scenario {
            name: f.name,
            description: f.description,
            variant,
            nodes: f.nodes,
            clients: f.clients,
            seed: f.seed,
            duration_ms: f.duration_ms,
            liveness_ms: f.liveness_ms,
            load: f.load,
            expect,
            byzantine,
            events,
        })
    }

    pub fn config(&self, variant: Variant, seed: u64) -> SimConfig {
        let mut cfg = SimConfig::new(variant, self.nodes, seed);
        cfg.rules = Rules::for_variant(variant);
        cfg.byzantine = self.byzantine.clone();
        cfg.clients = self.clients;
        cfg.chaos_ms = 0;
        cfg.calm_ms = self.duration_ms;
        cfg
    }

    /// Runs the timeline under `rules` (a variant's, or a test's with one rule off).
    pub fn run_with(&self, rules: Rules, seed: u64) -> RunReport {
        let mut cfg = self.config(rules.variant, seed);
        cfg.rules = rules;
        let this = self.clone();
        let report = std::panic::catch_unwind(move || this.run_inner(cfg));
        report.unwrap_or_else(|p| super::panic_report(seed, &self.byzantine, p))
    }

    pub fn run(&self, variant: Variant, seed: u64) -> RunReport {
        self.run_with(Rules::for_variant(variant), seed)
    }

    fn run_inner(&self, cfg: SimConfig) -> RunReport {
        let w = self.world(cfg.clone());
        super::report_of(&cfg, &w)
    }

    /// Runs the timeline and returns the world as it ends, for inspection.
    pub fn run_world(&self, rules: Rules, seed: u64) -> World {
        let mut cfg = self.config(rules.variant, seed);
        cfg.rules = rules;
        self.world(cfg)
    }

    fn world(&self, cfg: SimConfig) -> World {
        let mut w = World::new(cfg);
        w.load = self.load;
        for (at, ev) in &self.events {
            w.run_until(*at);
            let faults = match ev {
                ScenarioEvent::Partition(groups) => {
                    let sides = groups
                        .iter()
                        .map(|g| g.iter().flat_map(|&id| w.slots_of(id)).collect())
                        .collect();
                    vec![Fault::Partition(sides)]
                }
                ScenarioEvent::Crash(id) => w.slots_of(*id).into_iter().map(Fault::Crash).collect(),
                ScenarioEvent::Restart(id) => {
                    w.slots_of(*id).into_iter().map(Fault::Restart).collect()
                }
                ScenarioEvent::Other(f) => vec![f.clone()],
            };
            for f in faults {
                w.apply_fault(f);
            }
        }
        w.run_until(self.duration_ms);
        let variant = w.cfg.rules.variant;
        let promised = self.expect.get(&variant) == Some(&Expect::Safe);
        let deadline = self
            .liveness_ms
            .filter(|_| promised)
            .map(|l| self.duration_ms - l);
        let bound = format!("by the end ({} ms)", self.duration_ms);
        w.checker.finish(deadline, &bound);
        w
    }

    /// Whether a run under `variant` met what the file expects of it; `None` if the file
    /// states nothing for that variant.
    pub fn met(&self, variant: Variant, report: &RunReport) -> Option<bool> {
        let expect = self.expect.get(&variant)?;
        Some(match expect {
            Expect::Safe => report.violations.is_empty(),
            Expect::Violation => report
                .violations
                .iter()
                .any(|v| v.kind == super::Kind::Safety),
        })
    }
}
