//! The consensus state machine: inputs in, outputs out.
//!
//! `Node::step` takes one [`Input`] (a tick, an authenticated message, a forced timeout)
//! and returns the [`Output`]s it caused, in order. The driver must make every
//! `Output::Persist` durable before it releases any later `Send`/`Broadcast`/`Apply` of the
//! same step: that is how "persist before you speak" is kept without the core doing I/O.
//! Randomness (election timeouts) comes from a seed passed in; time from `Tick`s.
//!
//! The rules live in sibling modules by concern: `election`, `replication`, `commit`,
//! `clients`, `evidence`.

use super::log::{Log, LogBase, Snapshot};
use super::message::{
    Ack, CheckpointCert, Commit, ElectionProof, Entry, Evidence, Message, PreparedCert, Vote,
};
use super::types::{ClientId, Index, NodeId, Quorum, Rules, Term, Timing};
use crate::crypto::{Domain, Principal, Signable, Signed};
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most entries one AppendEntries carries in normal replication.
pub const MAX_BATCH: usize = 256;
/// Most bytes of entries (by `Entry::size_bound`) one AppendEntries or CatchUp carries:
/// with `MAX_OP_BYTES` per entry, every such message stays far below the transport's
/// 16 MiB frame limit.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Most entries one AppendEntries carries while bringing a follower up to the leader's lock.
pub const MAX_CATCHUP: usize = 4096;
/// Recent Acks kept per peer for assembling prepared certificates.
pub const ACKS_KEPT: usize = 32;
/// Recent Commits kept per node (ours included) for the commit rule and catch-up.
pub const COMMITS_KEPT: usize = 32;
/// AppendEntries with new entries outstanding per follower before new entries wait.
pub const MAX_IN_FLIGHT: usize = 1;
/// Bound on the in-flight record (heartbeats send past `MAX_IN_FLIGHT`).
pub const IN_FLIGHT_KEPT: usize = 8;
/// Pending request timers kept at most (one per client).
pub const MAX_REQUEST_TIMERS: usize = 4096;
/// AppendEntries a leader signs for one follower in one tick, at most, whatever that
/// follower says: refusals and lying Acks each trigger a resend, and without a bound a
/// follower could drive its leader from one signed AppendEntries per tick to hundreds
/// (the attacker found 377). Well above what load needs (one batch in flight, a few
/// round trips per tick).
pub const MAX_APPENDS_PER_TICK: u32 = 16;
/// Recent Checkpoints kept per node while a stable checkpoint gathers.
pub const CHECKPOINTS_KEPT: usize = 4;
/// Default `checkpoint_interval`: committed entries between two checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 1000;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub n: usize,
    pub cluster_id: String,
    pub rules: Rules,
    pub timing: Timing,
    /// Committed entries between two checkpoints (PROTOCOL.md, "Checkpoints"); 0: never.
    pub checkpoint_interval: u64,
}

/// What must survive a crash. Replaced atomically by the storage layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// Highest term this node has campaigned, voted or followed in.
    pub term: Term,
    /// The latest vote granted: at most one per term, never in a lower term again.
    pub voted: Option<(Term, NodeId)>,
    /// Highest term in which this node voted for another node: it never Acks or Commits
    /// anything of a lower term (PROTOCOL.md, "Election").
    pub ack_floor: Term,
    /// The leader with the highest proof this node followed.
    pub leader: Option<(Term, NodeId)>,
    /// Highest prepared certificate (bft) and, if the log no longer holds the entries it
    /// certifies, those entries (see `replication::retain_lock_chain`).
    pub lock: Option<PreparedCert>,
    pub lock_chain: Vec<Entry>,
    pub commit: Index,
    /// The highest position this node has Acked, in the term of its latest Ack. It makes
    /// "append-only within a term" survive a restart (PROTOCOL.md, "Durability"): a
    /// restarted node that forgot it could truncate what it Acked and Ack a fork in the
    /// same term, signing Evidence against itself (the simulator found that fork).
    pub acked: Option<AckedPosition>,
}

/// Where a node's Acks of one term have reached: `(index, hash)` in `term`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedPosition {
    pub term: Term,
    pub index: Index,
    pub hash: crate::crypto::Digest,
}

/// Everything a restarted node gets back from its disk.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub hard: HardState,
    /// The log after the snapshot's base (after the genesis if there is no snapshot).
    pub entries: Vec<Entry>,
    pub evidence: Vec<Evidence>,
    /// The latest stored state-machine snapshot, which replaced the log up to its base.
    pub snapshot: Option<super::log::Snapshot>,
    /// The latest stable checkpoint's certificate (`Persist::Compact`).
    pub stable: Option<CheckpointCert>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    Hard(HardState),
    Append(Vec<Entry>),
    TruncateFrom(Index),
    Evidence(Evidence),
    /// Our state-machine snapshot after applying `base.index` (the host takes it on
    /// `Output::TakeSnapshot`): durable before the Checkpoint that claims it leaves.
    Snapshot(Snapshot),
    /// A peer's snapshot whose digest matched its certificate: it replaces the whole log
    /// (entries past it that the node keeps follow as an `Append`).
    InstallSnapshot(Snapshot),
    /// A stable checkpoint our snapshot covers: keep its certificate (to serve others
    /// and prove our base) and free the log at and below its index.
    Compact(CheckpointCert),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make this durable before releasing anything that follows it.
    Persist(Persist),
    Send {
        to: NodeId,
        msg: Message,
    },
    /// To every other cluster member.
    Broadcast(Message),
    /// A committed entry, in index order, exactly once per node lifetime (entries a
    /// snapshot replaced are not applied: the state machine takes the snapshot instead).
    Apply(Entry),
    /// Snapshot the state machine now, with every entry up to `base.index` applied and
    /// none after, persist it (`Persist::Snapshot`), then step `Input::Snapshotted`.
    TakeSnapshot(LogBase),
    /// Stream our stored snapshot at `cert`'s index to `to`, chunk by chunk.
    SendSnapshot {
        to: NodeId,
        cert: CheckpointCert,
    },
}

// An input is moved once into `step`, never stored in bulk: boxing the message would cost
// an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    Tick,
    /// A message whose signatures `auth::authenticate` has checked; `from` is the link peer.
    Message {
        from: Principal,
        msg: Message,
    },
    /// Act as if the election timeout fired now (scenarios, operators).
    Timeout,
    /// `from` sent a validly signed message with forged content inside.
    Misbehaved(Principal),
    /// The host took (or, after a restart, holds) our snapshot at `base`, durably, and
    /// its digest is `state_digest`.
    Snapshotted {
        base: LogBase,
        state_digest: crate::crypto::Digest,
    },
    /// The host received a snapshot certified by `cert` (`Node::snapshot_wanted` said
    /// so), its digest matched, and it is durable (`Persist::InstallSnapshot`): the state
    /// machine holds it now.
    SnapshotInstalled(CheckpointCert),
}

/// Why this node believes its leader faulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suspicion {
    /// No valid AppendEntries for an election timeout. Cleared by the next one.
    Silence,
    /// A forwarded request stayed uncommitted past the request timeout.
    RequestTimer,
    Evidence,
    Revolution,
    /// It signed forged content, or asked us to break an invariant.
    Misbehaviour,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleName {
    #[default]
    Follower,
    Candidate,
    Leader,
}

impl RoleName {
    pub const ALL: [RoleName; 3] = [RoleName::Follower, RoleName::Candidate, RoleName::Leader];
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            RoleName::Follower => "Follower",
            RoleName::Candidate => "Candidate",
            RoleName::Leader => "Leader",
        })
    }
}

pub(super) struct LeaderState {
    pub proof: ElectionProof,
    /// The certificate this leader was elected on (bft).
    pub lock: Option<PreparedCert>,
    pub next: Vec<Index>,
    pub matched: Vec<Index>,
    /// Tick of the latest positive Ack of this term from each node.
    pub last_ack: Vec<Option<u64>>,
    pub heartbeat_elapsed: u32,
    pub replicated_to: Index,
    /// The commit index at `progress_at`, the last tick our commit advanced (or nothing
    /// was pending). A leader whose entries stay uncommitted for the request timeout steps
    /// down (bft): a follower below its Ack floor cannot help it, and one Byzantine node
    /// withholding its Commits must not stall the cluster behind an honest leader.
    pub commit_seen: Index,
    pub progress_at: u64,
    /// Ticks since we last checked that a quorum still Acks us.
    pub quorum_check_elapsed: u32,
    /// Tick of the last resend caused by each follower's refusal: at most one per tick, so
    /// a liar's refusals cannot drive a resend storm.
    pub last_resend: Vec<u64>,
    /// Per follower, the last index of each AppendEntries with entries it has not yet
    /// Acked. New entries wait while `MAX_IN_FLIGHT` are outstanding, so under load they
    /// pile up into one larger batch: one signature and one Ack/Commit round for many
    /// requests. At low load nothing waits.
    pub in_flight: Vec<VecDeque<Index>>,
    /// Per follower: the tick of its latest AppendEntries and how many it got in that tick.
    pub sent_in_tick: Vec<(u64, u32)>,
}

pub(super) enum Role {
    Follower,
    Candidate {
        votes: BTreeMap<NodeId, Signed<Vote>>,
        /// The certificate our RequestVote carried: the lock every counted vote names and
        /// the one we lead on if we win.
        lock: Option<PreparedCert>,
    },
    Leader(Box<LeaderState>),
}

/// The leader this node currently follows, proven by an election proof.
#[derive(Clone, Debug)]
pub(super) struct Follow {
    pub term: Term,
    pub leader: NodeId,
    pub lock: Option<PreparedCert>,
}

/// A snapshot for `status` and the simulator's checker.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub id: NodeId,
    pub role: RoleName,
    pub term: Term,
    pub leader: Option<(Term, NodeId)>,
    pub last_index: Index,
    pub commit: Index,
    pub lock: Option<(Term, Index)>,
    pub evidence: usize,
}

pub struct Node {
    pub(super) cfg: NodeConfig,
    pub(super) rules: Rules,
    /// This variant's answers where the variants part ways (`rulebook.rs`).
    pub(super) book: &'static super::rulebook::Rulebook,
    pub(super) quorum: Quorum,
    pub(super) key: SigningKey,
    pub(super) domain: Domain,
    pub(super) hard: HardState,
    pub(super) log: Log,
    pub(super) role: Role,
    pub(super) follow: Option<Follow>,
    pub(super) rng: ChaCha8Rng,
    pub(super) now: u64,
    pub(super) election_elapsed: u32,
    pub(super) election_timeout: u32,
    pub(super) suspect: Option<Suspicion>,
    /// Lazy voting's held-back RequestVotes and the penalties (`ballot.rs`).
    pub(super) ballot: super::ballot::Ballot,
    /// How far terms may rise: proven and campaigned terms seen.
    pub(super) reach: super::term_reach::TermReach,
    /// When we last answered a peer's repeated Commit with ours, and with which.
    pub(super) helped: Vec<Option<(Term, Index, u64)>>,
    /// When we last pushed committed entries to each peer.
    pub(super) pushed: Vec<Option<u64>>,
    /// Per peer that holds our committed entries: since when, and behind which commit
    /// point of ours, its Commits have lagged (`Node::prove_if_lagging`).
    pub(super) commit_lag: Vec<Option<(u64, Index)>>,
    /// Checkpoints gathering, our snapshots and the stable checkpoint (`checkpoint.rs`).
    pub(super) checkpoints: super::checkpoint::Checkpoints,
    /// When we last offered each peer our snapshot.
    pub(super) snapshot_sent: Vec<Option<u64>>,
    /// Peers' Acks and Commits: certificates, commit points, known matches (`tally.rs`).
    pub(super) tally: super::tally::Tally,
    pub(super) my_ack: Option<Signed<Ack>>,
    pub(super) my_commit: Option<Signed<Commit>>,
    /// Evidence held, who stands convicted, and what later conflicts are proven against.
    pub(super) accounts: super::evidence::Accountability,
    /// Forwarded requests timed on the leader's behalf, and Revolutions acted on.
    pub(super) watch: super::client_watch::ClientWatch,
    pub(super) applied: Index,
    pub(super) applied_seq: HashMap<ClientId, u64>,
    /// The hard state changed during this step: it is persisted once, at the step's end.
    pub(super) hard_dirty: bool,
    pub(super) out: Vec<Output>,
}

/// Preconditions on a node's configuration (the config loader refuses these first).
fn check_config(cfg: &NodeConfig) {
    assert!(
        (cfg.id as usize) < cfg.n,
        "node id {} outside cluster of {}",
        cfg.id,
        cfg.n
    );
    let r = cfg.rules;
    assert!(
        r.commit_round || !(r.catch_up || r.commit_retransmit),
        "catch-up and Commit retransmission are built on the Commit round"
    );
}

impl Node {
    /// A node starting from `durable` (empty for a fresh node). `seed` drives its election
    /// timeouts; two nodes should get different seeds.
    pub fn new(cfg: NodeConfig, key: SigningKey, seed: u64, durable: Durable) -> Node {
        check_config(&cfg);
        let rules = cfg.rules;
        let quorum = Quorum::new(rules.variant, cfg.n);
        // A snapshot replaces the log up to its base: the log goes on from there, and what
        // it covers is committed and applied (the state machine starts from it).
        let base = durable.snapshot.as_ref().map(|s| s.base);
        let mut log = match base {
            Some(b) => Log::from_base(rules.signed, b),
            None => Log::new(&cfg.cluster_id, rules.signed),
        };
        let covered = log.base().index;
        let stable = durable.stable.filter(|c| c.index() <= covered);
        for e in durable.entries {
            log.append(e);
        }
        let domain = Domain::new(rules.variant, &cfg.cluster_id);
        let n = cfg.n;
        let mut hard = durable.hard;
        if !rules.durable_acks {
            hard.acked = None; // the planted bug: forget what we Acked
        }
        hard.commit = hard.commit.max(covered);
        assert!(
            hard.commit <= log.last_index(),
            "durable commit index beyond durable log"
        );
        let mut node = Node {
            rules,
            book: super::rulebook::Rulebook::for_variant(rules.variant),
            quorum,
            key,
            domain,
            reach: super::term_reach::TermReach::new(
                n,
                quorum.f,
                hard.leader.map_or(0, |(t, _)| t),
            ),
            helped: vec![None; n],
            pushed: vec![None; n],
            commit_lag: vec![None; n],
            checkpoints: super::checkpoint::Checkpoints::new(n, stable),
            snapshot_sent: vec![None; n],
            hard,
            log,
            role: Role::Follower,
            follow: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            election_elapsed: 0,
            election_timeout: 0,
            suspect: None,
            ballot: Default::default(),
            tally: super::tally::Tally::new(n),
            my_ack: None,
            my_commit: None,
            accounts: super::evidence::Accountability::restored(durable.evidence),
            watch: Default::default(),
            applied: covered,
            applied_seq: HashMap::new(),
            hard_dirty: false,
            out: Vec::new(),
            cfg,
        };
        node.reset_election_timer();
        node
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The latest stable checkpoint this node holds a certificate for (the one it serves).
    pub fn stable_checkpoint(&self) -> Option<&super::message::CheckpointCert> {
        self.checkpoints.stable()
    }

    pub fn commit_index(&self) -> Index {
        self.hard.commit
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard
    }

    pub fn evidence(&self) -> &[Evidence] {
        self.accounts.held()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader this node follows (itself if it leads).
    pub fn leader(&self) -> Option<(Term, NodeId)> {
        self.follow.as_ref().map(|f| (f.term, f.leader))
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: match self.role {
                Role::Follower => RoleName::Follower,
                Role::Candidate { .. } => RoleName::Candidate,
                Role::Leader(_) => RoleName::Leader,
            },
            term: self.hard.term,
            leader: self.leader(),
            last_index: self.log.last_index(),
            commit: self.hard.commit,
            lock: self.hard.lock.as_ref().map(|c| c.rank()),
            evidence: self.accounts.held().len(),
        }
    }

    /// Feeds one input; returns what it caused, in the order it must be carried out.
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        self.dispatch(input);
        self.end_of_step()
    }

    /// Feeds several inputs that arrived together, as if each were stepped, except that
    /// what a leader appends meanwhile is shipped once, at the end: many client requests
    /// become one AppendEntries per follower (one signature, one Ack round) instead of one
    /// each. Delaying a send is always allowed, so this is `step` with batching, no new
    /// rule; the runtime calls it with whatever its queue held.
    pub fn step_batch(&mut self, inputs: impl IntoIterator<Item = Input>) -> Vec<Output> {
        for input in inputs {
            self.dispatch(input);
        }
        self.end_of_step()
    }

    fn dispatch(&mut self, input: Input) {
        match input {
            Input::Tick => self.tick(),
            Input::Message { from, msg } => self.receive(from, msg),
            Input::Timeout => self.election_timer_fired(),
            Input::Misbehaved(p) => self.misbehaved(p),
            Input::Snapshotted { base, state_digest } => self.snapshotted(base, state_digest),
            Input::SnapshotInstalled(cert) => self.snapshot_installed(cert),
        }
    }

    /// Ships the step's appends, applies what committed, and orders the outputs: every
    /// `Persist` (the hard state once, last among them) before any message or apply, so a
    /// driver that persists a step's prefix of `Persist`s before releasing the rest keeps
    /// "persist before you speak" whatever order the rules produced them in.
    ///
    /// (PROTOCOL.md rule D1)
    fn end_of_step(&mut self) -> Vec<Output> {
        self.replicate_new_entries();
        self.apply_committed();
        self.check_invariants();
        let out = std::mem::take(&mut self.out);
        let (mut persists, rest): (Vec<Output>, Vec<Output>) = out
            .into_iter()
            .partition(|o| matches!(o, Output::Persist(_)));
        if std::mem::take(&mut self.hard_dirty) {
            persists.push(Output::Persist(Persist::Hard(self.hard.clone())));
        }
        persists.extend(rest);
        persists
    }

    fn receive(&mut self, from: Principal, msg: Message) {
        let book = self.book;
        match msg {
            Message::RequestVote(rv) if self.is_peer(rv.body.candidate) => {
                (book.on_request_vote)(self, rv)
            }
            Message::AppendEntries(ae) if self.is_peer(ae.body.leader) => {
                (book.on_append_entries)(self, ae)
            }
            Message::Ack(a) if self.is_peer(a.body.from) => (book.on_ack)(self, a),
            // Claims to come from us or from outside the cluster: nothing to act on.
            Message::RequestVote(_) | Message::AppendEntries(_) | Message::Ack(_) => {}
            Message::Vote(v) => self.on_vote(v),
            Message::Commit(c) => self.on_commit(c),
            Message::Evidence(e) => self.on_evidence(e),
            Message::Request(r) => self.on_request(from, r),
            Message::Revolution(r) => self.on_revolution(r),
            Message::Reply(_) => {} // replies go to clients, never to nodes
            Message::CatchUp(c) => self.on_catch_up(c),
            Message::Checkpoint(c) => self.on_checkpoint(c),
            // Chunks are assembled by the driver, which asks `snapshot_wanted` first.
            Message::Snapshot(_) => {}
        }
    }

    fn tick(&mut self) {
        self.now += 1;
        if self.is_leader() {
            return (self.book.on_leader_tick)(self);
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_timer_fired();
        }
        self.check_request_timers();
        if self
            .now
            .is_multiple_of(self.cfg.timing.heartbeat_ticks as u64)
        {
            self.push_catch_up();
        }
    }

    /// The election timer fired (or an operator/scenario forced it): the variant decides
    /// what a follower or candidate does about it; a leader has no election timer.
    fn election_timer_fired(&mut self) {
        if self.is_leader() {
            return;
        }
        self.reset_election_timer();
        (self.book.on_election_timeout)(self)
    }

    fn misbehaved(&mut self, p: Principal) {
        if let (Principal::Node(id), Some(f)) = (p, &self.follow) {
            if f.leader == id && id != self.cfg.id {
                self.judge_leader_faulty(Suspicion::Misbehaviour);
            }
        }
    }

    // ---- small shared helpers -------------------------------------------------------

    /// (PROTOCOL.md rule E1)
    pub(super) fn reset_election_timer(&mut self) {
        // Clamped so that 2t cannot wrap whatever the configuration says (it validates
        // far smaller values; the core does not rely on that).
        let t = self.cfg.timing.election_ticks.clamp(1, u32::MAX / 2);
        self.election_elapsed = 0;
        self.election_timeout = self.rng.gen_range(t..2 * t);
    }

    pub(super) fn sign<T: Signable>(&self, body: T) -> Signed<T> {
        self.domain.sign(&self.key, body)
    }

    /// Marks the hard state for persisting at the end of this step (before anything the
    /// step sends leaves the node).
    pub(super) fn save_hard(&mut self) {
        self.hard_dirty = true;
    }

    /// The highest index we Acked in `term`, 0 if none (PROTOCOL.md, "Replication and
    /// commit": append-only within a term).
    pub(super) fn acked_in(&self, term: Term) -> Index {
        self.hard
            .acked
            .filter(|a| a.term == term)
            .map_or(0, |a| a.index)
    }

    pub(super) fn send(&mut self, to: NodeId, msg: Message) {
        debug_assert_ne!(to, self.cfg.id, "a node never sends to itself");
        self.out.push(Output::Send { to, msg });
    }

    pub(super) fn broadcast(&mut self, msg: Message) {
        self.out.push(Output::Broadcast(msg));
    }

    pub(super) fn peers(&self) -> impl Iterator<Item = NodeId> + 'static {
        let me = self.cfg.id;
        (0..self.cfg.n as NodeId).filter(move |&i| i != me)
    }

    pub(super) fn is_node(&self, id: NodeId) -> bool {
        (id as usize) < self.cfg.n
    }

    /// A cluster member other than us.
    pub(super) fn is_peer(&self, id: NodeId) -> bool {
        self.is_node(id) && id != self.cfg.id
    }

    /// Assertions that hold after every step, whatever the input (TigerBeetle style: an
    /// honest node that breaks one of these stops rather than corrupts).
    fn check_invariants(&self) {
        assert!(
            self.hard.commit <= self.log.last_index(),
            "commit beyond log end"
        );
        assert!(self.applied <= self.hard.commit, "applied beyond commit");
        if let Some((t, _)) = self.hard.voted {
            assert!(t <= self.hard.term, "voted in a term above our own");
        }
        if let Some(lock) = &self.hard.lock {
            let on_log = self.log.hash_at(lock.index) == Some(lock.hash);
            // A lock below the log's base stays valid: its entries are in the snapshot.
            let below_base = lock.index < self.log.base().index;
            assert!(
                on_log || below_base || !self.hard.lock_chain.is_empty(),
                "node {}: lock {:?} neither on the log nor retained",
                self.cfg.id,
                lock.rank()
            );
        }
    }
}
