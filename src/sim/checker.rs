//! Safety and liveness, checked on every simulated run.
//!
//! Safety (all variants; a violation is a finding, never expected from `bft`):
//! - no two honest nodes commit different entries at one index;
//! - a committed entry is never changed or lost, across restarts too;
//! - a request is applied (executed) at most once per state machine;
//! - every committed request was issued and signed by its client;
//! - every result a client accepted is the result honest nodes computed;
//! - no honest node signs two messages that would be Evidence against it (`signatures`),
//!   and no honest node holds Evidence against another honest node;
//! - every snapshot an honest node takes or installs is the honest state at its index
//!   (honest nodes' own snapshots at one index agree, and an installed one equals them).
//!
//! Liveness (checked when the run asks for it): once faults stop, every honest node
//! commits every request issued before the deadline, within a stated bound.

use super::signatures::SignatureAudit;
use crate::crypto::Digest;
use crate::crypto::Keyring;
use crate::kv::Applied;
use crate::protocol::{ClientId, Durable, Entry, Index, LogBase, Message, NodeId, Op, OpResult};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Safety,
    Liveness,
    /// The run exceeded its work budget (a message storm): it is stopped and reported.
    Resource,
}

/// What exactly a violation is, so tests and tools match on it rather than on wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Honest nodes committed different entries at one index.
    Fork,
    /// A restarted honest node came back without entries it had committed.
    LostCommit,
    /// An honest node applied out of index order.
    OutOfOrder,
    /// A committed request its client never issued, or without its valid signature.
    Forgery,
    /// A request executed twice by one state machine.
    DoubleExecution,
    /// Honest nodes computed different results for one request.
    DivergentResult,
    /// A client accepted a result no honest node computed.
    WrongAccepted,
    /// An honest node signed two messages that are Evidence against it.
    HonestEquivocation,
    /// An honest node holds Evidence against another honest node.
    HonestConvicted,
    /// A node tripped one of its own assertions.
    Panic,
    /// Requests not committed everywhere honest within the bound.
    Uncommitted,
    /// The run went over its work budget.
    Storm,
    /// An honest node took or installed a snapshot that is not the honest state there.
    BadSnapshot,
}

impl Finding {
    pub fn kind(self) -> Kind {
        match self {
            Finding::Uncommitted => Kind::Liveness,
            Finding::Storm => Kind::Resource,
            _ => Kind::Safety,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: Kind,
    pub finding: Finding,
    pub detail: String,
}

impl Violation {
    pub fn new(finding: Finding, detail: String) -> Violation {
        Violation {
            kind: finding.kind(),
            finding,
            detail,
        }
    }
}

type ReqId = (ClientId, u64);

pub struct Checker {
    ring: Keyring,
    signed: bool,
    honest: Vec<bool>,
    /// The first entry an honest node committed at each index.
    committed: BTreeMap<Index, (usize, Entry)>,
    applied_upto: Vec<Index>,
    applied_ever: Vec<Index>,
    executions: Vec<HashMap<ReqId, u32>>,
    applied_reqs: Vec<HashSet<ReqId>>,
    issued: HashMap<ReqId, (Op, u64)>,
    honest_result: HashMap<ReqId, OpResult>,
    accepted: Vec<(ReqId, OpResult)>,
    /// The state digest at each snapshotted index, as the first honest node to snapshot
    /// or install there had it (and which one).
    digests: BTreeMap<Index, (NodeId, Digest)>,
    audit: SignatureAudit,
    pub violations: Vec<Violation>,
}

impl Checker {
    pub fn new(ring: Keyring, honest: Vec<bool>) -> Checker {
        let slots = honest.len();
        Checker {
            signed: ring.domain.signed,
            ring,
            honest,
            committed: BTreeMap::new(),
            applied_upto: vec![0; slots],
            applied_ever: vec![0; slots],
            executions: vec![HashMap::new(); slots],
            applied_reqs: vec![HashSet::new(); slots],
            issued: HashMap::new(),
            honest_result: HashMap::new(),
            accepted: Vec::new(),
            digests: BTreeMap::new(),
            audit: SignatureAudit::default(),
            violations: Vec::new(),
        }
    }

    fn safety(&mut self, finding: Finding, detail: String) {
        if self.violations.len() < 16 {
            self.violations.push(Violation::new(finding, detail));
        }
    }

    /// The run went over its work budget: what it was doing is a denial of service.
    pub fn over_budget(&mut self, detail: String) {
        self.violations.push(Violation::new(Finding::Storm, detail));
    }

    pub fn is_honest(&self, slot: usize) -> bool {
        self.honest[slot]
    }

    /// Every message an honest slot sends: it must never contradict what that node signed
    /// before, in this life or an earlier one.
    pub fn on_signed(&mut self, slot: usize, node: NodeId, msg: &Message) {
        // Plain Raft signs nothing and has no Evidence: there is nothing to contradict.
        if !self.honest[slot] || !self.signed {
            return;
        }
        if let Some(conflict) = self.audit.on_signed(node, msg) {
            self.safety(Finding::HonestEquivocation, conflict);
        }
    }

    /// An honest slot persisted Evidence against `culprit`: that must be a Byzantine node.
    pub fn on_evidence(
        &mut self,
        slot: usize,
        node: NodeId,
        culprit: NodeId,
        culprit_honest: bool,
    ) {
        if self.honest[slot] && culprit_honest {
            self.safety(
                Finding::HonestConvicted,
                format!("honest node {node} holds Evidence against honest node {culprit}"),
            );
        }
    }

    pub fn on_issue(&mut self, client: ClientId, seq: u64, op: Op, now: u64) {
        self.issued.insert((client, seq), (op, now));
    }

    pub fn on_apply(&mut self, slot: usize, node: u32, e: &Entry, applied: Option<&Applied>) {
        if !self.honest[slot] {
            return;
        }
        if e.index != self.applied_upto[slot] + 1 {
            self.safety(
                Finding::OutOfOrder,
                format!(
                    "node {node} applied index {} after {}",
                    e.index, self.applied_upto[slot]
                ),
            );
        }
        self.applied_upto[slot] = e.index;
        self.applied_ever[slot] = self.applied_ever[slot].max(e.index);
        match self.committed.get(&e.index) {
            Some((other, first)) if first != e => {
                let detail = format!(
                    "honest nodes committed different entries at index {}: slot {other} has {}, node {node} has {}",
                    e.index,
                    describe(first),
                    describe(e)
                );
                self.safety(Finding::Fork, detail);
            }
            Some(_) => {}
            None => {
                self.committed.insert(e.index, (slot, e.clone()));
            }
        }
        let Some(r) = e.payload.request() else { return };
        let id = (r.body.client, r.body.seq);
        match self.issued.get(&id) {
            Some((op, _)) if *op == r.body.op => {}
            _ => self.safety(
                Finding::Forgery,
                format!(
                "node {node} committed a request its client never issued: client {} seq {} {:?}",
                id.0, id.1, r.body.op
            ),
            ),
        }
        if self.signed && !self.ring.verify(r) {
            self.safety(
                Finding::Forgery,
                format!("node {node} committed a request without a valid client signature"),
            );
        }
        self.applied_reqs[slot].insert(id);
        let Some(applied) = applied else { return };
        if let Applied::Executed(result) = applied {
            let count = self.executions[slot].entry(id).or_insert(0);
            *count += 1;
            if *count > 1 {
                self.safety(
                    Finding::DoubleExecution,
                    format!("node {node} executed client {} seq {} twice", id.0, id.1),
                );
            }
            match self.honest_result.get(&id) {
                Some(r) if r != result => {
                    let detail = format!(
                        "honest nodes computed different results for client {} seq {}",
                        id.0, id.1
                    );
                    self.safety(Finding::DivergentResult, detail);
                }
                Some(_) => {}
                None => {
                    self.honest_result.insert(id, result.clone());
                }
            }
        }
    }

    /// A restarted node must come back with everything it had committed.
    pub fn on_restart(&mut self, slot: usize, node: u32, d: &Durable) {
        if !self.honest[slot] {
            return;
        }
        if d.hard.commit < self.applied_ever[slot] {
            self.safety(
                Finding::LostCommit,
                format!(
                "node {node} lost committed entries on restart: applied {} but recovered commit {}",
                self.applied_ever[slot], d.hard.commit
            ),
            );
        }
        self.applied_upto[slot] = 0;
        self.executions[slot].clear();
        self.applied_reqs[slot].clear();
        if let Some(snap) = &d.snapshot {
            self.covered_by_snapshot(slot, snap.base.index);
        }
    }

    /// An honest node's snapshot (one it took, or one a peer sent it that it installed):
    /// the state at `base.index` must be the one every honest node had there. An
    /// installed snapshot also stands for the entries up to its base, applied.
    pub fn on_snapshot(
        &mut self,
        slot: usize,
        node: NodeId,
        base: LogBase,
        digest: Digest,
        installed: bool,
    ) {
        if !self.honest[slot] {
            return;
        }
        let how = if installed { "installed" } else { "took" };
        match self.digests.get(&base.index) {
            Some((first, d)) if *d != digest => {
                let detail = format!(
                    "node {node} {how} a snapshot at {} whose state differs from node {first}'s there",
                    base.index
                );
                self.safety(Finding::BadSnapshot, detail);
            }
            Some(_) => {}
            None => {
                self.digests.insert(base.index, (node, digest));
            }
        }
        if installed {
            self.covered_by_snapshot(slot, base.index);
        }
    }

    /// The node's state machine now stands at `index`: what it holds counts as applied.
    fn covered_by_snapshot(&mut self, slot: usize, index: Index) {
        let from = self.applied_upto[slot];
        for (_, (_, e)) in self.committed.range(from + 1..=index) {
            if let Some(r) = e.payload.request() {
                self.applied_reqs[slot].insert((r.body.client, r.body.seq));
            }
        }
        self.applied_upto[slot] = index.max(from);
        self.applied_ever[slot] = self.applied_ever[slot].max(index);
    }

    pub fn on_accept(&mut self, client: ClientId, seq: u64, result: OpResult) {
        self.accepted.push(((client, seq), result));
    }

    /// Requests held committed by every honest slot, and whether `id` is one of them.
    pub fn committed_everywhere(&self, id: &ReqId) -> bool {
        self.honest
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .all(|(s, _)| self.applied_reqs[s].contains(id))
    }

    /// The fewest requests any honest node holds committed.
    pub fn committed_min(&self) -> usize {
        self.honest
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(s, _)| self.applied_reqs[s].len())
            .min()
            .unwrap_or(0)
    }

    /// End of run: clients' accepted results, and liveness for requests issued by `deadline`.
    pub fn finish(&mut self, liveness_deadline: Option<u64>, bound_desc: &str) {
        let accepted = std::mem::take(&mut self.accepted);
        for (id, result) in &accepted {
            match self.honest_result.get(id) {
                Some(r) if r == result || *result == OpResult::Stale => {}
                Some(r) => {
                    let d = format!(
                        "client {} accepted {result:?} for seq {} but honest nodes computed {r:?}",
                        id.0, id.1
                    );
                    self.safety(Finding::WrongAccepted, d);
                }
                None => {
                    let d = format!(
                        "client {} accepted {result:?} for seq {}, which no honest node executed",
                        id.0, id.1
                    );
                    self.safety(Finding::WrongAccepted, d);
                }
            }
        }
        self.accepted = accepted;
        let Some(deadline) = liveness_deadline else {
            return;
        };
        let mut late: Vec<&ReqId> = self
            .issued
            .iter()
            .filter(|(_, (_, at))| *at <= deadline)
            .map(|(id, _)| id)
            .filter(|id| !self.committed_everywhere(id))
            .collect();
        late.sort();
        if let Some(first) = late.first() {
            let detail = format!(
                "{} request(s) issued before the faults stopped (or within the bound after) are not committed at every honest node {bound_desc}; first: client {} seq {}",
                late.len(),
                first.0,
                first.1
            );
            self.violations
                .push(Violation::new(Finding::Uncommitted, detail));
        }
    }
}

fn describe(e: &Entry) -> String {
    match e.payload.request() {
        Some(r) => format!(
            "(term {}, client {} seq {})",
            e.term, r.body.client, r.body.seq
        ),
        None => format!("(term {}, no-op)", e.term),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Domain, Signed};
    use crate::protocol::{Payload, Request, Variant};

    fn setup() -> (Checker, ed25519_dalek::SigningKey, Domain) {
        let node = signing_key_from_seed([1; 32]);
        let client = signing_key_from_seed([2; 32]);
        let domain = Domain::new(Variant::Bft, "c");
        let ring = Keyring::new(
            domain.clone(),
            vec![node.verifying_key(); 3],
            [(0, client.verifying_key())].into(),
        )
        .unwrap();
        (Checker::new(ring, vec![true, true, false]), client, domain)
    }

    fn entry(
        d: &Domain,
        k: &ed25519_dalek::SigningKey,
        index: u64,
        seq: u64,
        value: &str,
    ) -> Entry {
        let op = Op::Put {
            key: "k".into(),
            value: value.into(),
        };
        let r = d.sign(k, Request { client: 0, seq, op });
        Entry {
            term: 1,
            index,
            payload: Payload::Request(r),
        }
    }

    fn put(v: &str) -> Op {
        Op::Put {
            key: "k".into(),
            value: v.into(),
        }
    }

    #[test]
    fn agreement_is_clean_when_honest_nodes_agree() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        let e = entry(&d, &k, 1, 1, "a");
        c.on_apply(0, 0, &e, Some(&Applied::Executed(OpResult::Ok)));
        c.on_apply(1, 1, &e, Some(&Applied::Executed(OpResult::Ok)));
        c.on_accept(0, 1, OpResult::Ok);
        c.finish(Some(10), "");
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.committed_min(), 1);
    }

    #[test]
    fn catches_different_entries_at_one_index() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        c.on_issue(0, 2, put("b"), 0);
        c.on_apply(0, 0, &entry(&d, &k, 1, 1, "a"), None);
        c.on_apply(1, 1, &entry(&d, &k, 1, 2, "b"), None);
        assert_eq!(c.violations[0].finding, Finding::Fork);
    }

    #[test]
    fn ignores_byzantine_slots() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        c.on_apply(0, 0, &entry(&d, &k, 1, 1, "a"), None);
        c.on_apply(2, 2, &entry(&d, &k, 1, 1, "zzz"), None);
        assert!(c.violations.is_empty());
    }

    #[test]
    fn catches_double_execution() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        c.on_apply(
            0,
            0,
            &entry(&d, &k, 1, 1, "a"),
            Some(&Applied::Executed(OpResult::Ok)),
        );
        c.on_apply(
            0,
            0,
            &entry(&d, &k, 2, 1, "a"),
            Some(&Applied::Executed(OpResult::Ok)),
        );
        assert!(
            c.violations
                .iter()
                .any(|v| v.finding == Finding::DoubleExecution),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn catches_forged_and_unsigned_requests() {
        let (mut c, k, d) = setup();
        // Never issued by the client.
        c.on_apply(0, 0, &entry(&d, &k, 1, 7, "x"), None);
        assert!(c.violations.iter().any(|v| v.finding == Finding::Forgery));
        // Issued, but the committed copy's signature is not the client's.
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        let mut e = entry(&d, &k, 1, 1, "a");
        if let Payload::Request(Signed { sig, .. }) = &mut e.payload {
            *sig = Some(
                d.sign(
                    &signing_key_from_seed([9; 32]),
                    Request {
                        client: 0,
                        seq: 1,
                        op: put("a"),
                    },
                )
                .sig
                .unwrap(),
            );
        }
        c.on_apply(0, 0, &e, None);
        assert!(
            c.violations.iter().any(|v| v.finding == Finding::Forgery),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn catches_committed_entries_lost_on_restart() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        c.on_apply(0, 0, &entry(&d, &k, 1, 1, "a"), None);
        c.on_restart(0, 0, &Durable::default());
        assert!(c
            .violations
            .iter()
            .any(|v| v.finding == Finding::LostCommit));
    }

    #[test]
    fn catches_a_client_accepting_a_lie() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        c.on_apply(
            0,
            0,
            &entry(&d, &k, 1, 1, "a"),
            Some(&Applied::Executed(OpResult::Ok)),
        );
        c.on_accept(0, 1, OpResult::Value(Some("forged".into())));
        c.finish(None, "");
        assert!(
            c.violations
                .iter()
                .any(|v| v.finding == Finding::WrongAccepted),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn catches_requests_left_uncommitted_after_faults_stop() {
        let (mut c, k, d) = setup();
        c.on_issue(0, 1, put("a"), 0);
        c.on_apply(0, 0, &entry(&d, &k, 1, 1, "a"), None);
        // Slot 1 never applied it.
        c.finish(Some(5), "within the bound");
        assert_eq!(c.violations.len(), 1);
        assert_eq!(c.violations[0].kind, Kind::Liveness);
    }
}
