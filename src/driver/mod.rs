//! The one driver between a node's [`Actor`] and its host: the simulator's virtual world
//! and the runtime's protocol thread both use it, so what a node does around the core is
//! the same code in both, and a host only moves bytes and keeps time.
//!
//! Around the core the driver does three things:
//! - it answers a client's retry of an applied request from the state machine, without
//!   stepping the core (`admit`);
//! - it steps the actor on a batch of inputs and splits what came out into a [`Ready`]:
//!   what must be durable first, then the messages and applications in the order the core
//!   produced them, so "persist before you speak" is the type's shape, not a convention;
//! - it applies committed entries to the key-value store and builds each client's reply.
//!
//! It also takes the snapshots the core asks for and moves them between nodes
//! (`transfer`): the core decides when and to whom, the driver holds the bytes.
//!
//! No I/O here: the host persists `Ready::persist` (one sync), then carries out
//! `Ready::effects` in order.

mod transfer;

use crate::actor::Actor;
use crate::crypto::Digest;
use crate::crypto::Principal;
use crate::kv::{Applied, Kv};
use crate::protocol::{
    AuthError, CheckpointCert, ClientId, Entry, Index, Input, LogBase, Message, Node, NodeId,
    Output, Persist, Reply, Snapshot, SnapshotChunk, SnapshotVerdict,
};
use std::collections::VecDeque;
use transfer::{Incoming, Taken};

/// Our snapshots' encodings kept in memory to serve peers: the latest stable one and one
/// newer, still gathering its checkpoint. **Chosen**: served from memory (one encoded copy
/// of the state, at most two), not re-read from the snapshot file.
const SNAPSHOTS_KEPT: usize = 2;

/// Most inputs stepped as one batch, by the runtime and the simulator alike.
pub const MAX_INPUTS_PER_BATCH: usize = 1024;

/// What one batch of inputs asks of the host, in the order it must be carried out.
#[derive(Debug, Default)]
pub struct Ready {
    /// Make all of these durable before releasing any effect.
    pub persist: Vec<Persist>,
    /// Then these, in order.
    pub effects: Vec<Effect>,
}

impl Ready {
    fn merge(&mut self, other: Ready) {
        self.persist.extend(other.persist);
        self.effects.extend(other.effects);
    }
}

#[derive(Debug)]
pub enum Effect {
    Send {
        to: NodeId,
        msg: Message,
    },
    /// To every other cluster member.
    Broadcast(Message),
    /// A committed entry, now applied. For a client request: what the state machine did
    /// and the reply this slot sends its client (`None` if the slot stays silent).
    Applied {
        entry: Entry,
        request: Option<AppliedRequest>,
    },
    /// The state machine is now the snapshot at `base` with this digest: one we took
    /// (`installed: false`) or one a peer sent (`installed: true`, replacing the state).
    Snapshot {
        base: LogBase,
        state_digest: Digest,
        installed: bool,
    },
}

#[derive(Debug)]
pub struct AppliedRequest {
    pub client: ClientId,
    pub seq: u64,
    pub applied: Applied,
    pub reply: Option<Reply>,
}

/// What to do with a message from the network. Moved once, never stored: boxing the
/// message would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Admission {
    /// Hand it on: authenticate it (if the host has not yet) and step the actor on it.
    Deliver(Message),
    /// A retry of a request already applied: answered from the state machine (`None` if
    /// this slot stays silent), the core never sees it.
    Answered {
        client: ClientId,
        reply: Option<Reply>,
    },
}

/// The input an authentication verdict calls for: the message itself, the sender's
/// misbehaviour if it signed forged content, or nothing (the error says why).
pub fn input_for(
    from: Principal,
    msg: Message,
    checked: Result<(), AuthError>,
) -> Result<Input, AuthError> {
    match checked {
        Ok(()) => Ok(Input::Message { from, msg }),
        Err(AuthError::SignedForgery(culprit, _)) => Ok(Input::Misbehaved(culprit)),
        Err(e) => Err(e),
    }
}

pub struct Driver {
    actor: Box<dyn Actor>,
    kv: Kv,
    /// Client requests applied since this process started.
    applied: u64,
    /// Our snapshots' encodings by index, oldest first (`SNAPSHOTS_KEPT`).
    snapshots: VecDeque<(Index, Vec<u8>)>,
    /// The snapshot a peer is streaming to us.
    incoming: Option<Incoming>,
    /// Ticks stepped: the clock a stalled incoming snapshot is judged by.
    ticks: u64,
    /// The index of the latest stable checkpoint we compacted to (its encoding is pinned).
    stable_index: Index,
}

impl Driver {
    /// A fresh state machine: the core replays its committed log into it from the start.
    pub fn new(actor: Box<dyn Actor>) -> Driver {
        Driver {
            actor,
            kv: Kv::new(),
            applied: 0,
            snapshots: VecDeque::new(),
            incoming: None,
            ticks: 0,
            stable_index: 0,
        }
    }

    /// A restarted node whose state machine starts from its stored snapshot (the core
    /// replays only the committed entries after the snapshot's base into it). The host
    /// must then carry out `resume`'s Ready.
    pub fn restored(actor: Box<dyn Actor>, kv: Kv, snapshot: Snapshot) -> Driver {
        let mut d = Driver::new(actor);
        d.kv = kv;
        d.snapshots.push_back((snapshot.base.index, snapshot.state));
        d
    }

    /// After `restored`: tells the core it holds the stored snapshot again, so that it
    /// can claim it (re-sending the same signed Checkpoint) and serve it.
    pub fn resume(&mut self) -> Ready {
        let Some((index, bytes)) = self.snapshots.back() else {
            return Ready::default();
        };
        let base = self.node().log().base();
        if base.index != *index {
            return Ready::default();
        }
        let state_digest = crate::crypto::sha256(bytes);
        self.step(Input::Snapshotted { base, state_digest })
    }

    pub fn node(&self) -> &Node {
        self.actor.node()
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// A message that arrived over `from`'s link (authenticated or not: retries are
    /// answered from what this node applied, which the retry cannot change).
    pub fn admit(&mut self, from: Principal, msg: Message) -> Admission {
        if let (Principal::Client(c), Message::Request(r)) = (from, &msg) {
            if r.body.client == c {
                if let Some(result) = self.kv.cached(c, r.body.seq) {
                    let reply = self.actor.reply_to(c, r.body.seq, result);
                    return Admission::Answered { client: c, reply };
                }
            }
        }
        Admission::Deliver(msg)
    }

    /// Steps the actor on one input.
    pub fn step(&mut self, input: Input) -> Ready {
        self.step_batch(vec![input])
    }

    /// Steps the actor on inputs that arrived together (the honest node batches what it
    /// appends meanwhile: one AppendEntries per follower for the lot). Snapshot chunks
    /// stop here; a snapshot they complete is installed between the inputs before and
    /// after it.
    pub fn step_batch(&mut self, inputs: Vec<Input>) -> Ready {
        let mut ready = Ready::default();
        let mut pending = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                Input::Message {
                    from: Principal::Node(j),
                    msg: Message::Snapshot(c),
                } => match self.take_chunk(j, c) {
                    Some(Taken::Complete { cert, kv, bytes }) => {
                        if !pending.is_empty() {
                            let before = self.actor.step_batch(std::mem::take(&mut pending));
                            let done = self.ready(before);
                            ready.merge(done);
                        }
                        // The inputs just stepped may have committed past it meanwhile.
                        if self.actor.node().snapshot_wanted(j, &cert) == SnapshotVerdict::Wanted {
                            let installed = self.install(cert, kv, bytes);
                            ready.merge(installed);
                        }
                    }
                    Some(Taken::Bad(e)) => {
                        // Not a warning: a liar can send one per chunk, and the verdict is
                        // acted on (the sender misbehaves), not left to an operator.
                        tracing::info!(from = j, error = %e, "refused a snapshot");
                        pending.push(Input::Misbehaved(Principal::Node(j)));
                    }
                    Some(Taken::Pending) | None => {}
                },
                Input::Tick => {
                    self.ticks += 1;
                    pending.push(Input::Tick);
                }
                other => pending.push(other),
            }
        }
        if !pending.is_empty() {
            let out = self.actor.step_batch(pending);
            let rest = self.ready(out);
            ready.merge(rest);
        }
        ready
    }

    /// One chunk of a snapshot a peer streams: assembled if the core wants that snapshot;
    /// a certificate that is none makes the sender misbehaving.
    fn take_chunk(&mut self, from: NodeId, c: SnapshotChunk) -> Option<Taken> {
        match self.actor.node().snapshot_wanted(from, &c.cert) {
            SnapshotVerdict::Forged => {
                return Some(Taken::Bad(crate::kv::SnapshotError::Malformed {
                    offset: c.offset,
                    reason: "its certificate proves no stable checkpoint".into(),
                }))
            }
            SnapshotVerdict::Unneeded => return None,
            SnapshotVerdict::Wanted => {}
        }
        let now = self.ticks;
        let from_leader = self.node().leader().is_some_and(|(_, l)| l == from);
        if c.offset == 0
            && Incoming::yields_to(&self.incoming, from, c.cert.index(), now, from_leader)
        {
            self.incoming = Some(Incoming::start(from, c.cert.clone(), now));
        }
        let current = self.incoming.take()?;
        if !current.is_next(from, &c) {
            self.incoming = Some(current);
            return None; // out of place: dropped; the sender offers again later
        }
        let check_digest = self.actor.node().rules().snapshot_digest;
        let (rest, taken) = current.take(c, now, check_digest);
        self.incoming = rest;
        Some(taken)
    }

    /// A complete snapshot whose digest is the certified one: durable first, then the
    /// state machine and the core take it.
    fn install(&mut self, cert: CheckpointCert, kv: Kv, bytes: Vec<u8>) -> Ready {
        let first = cert
            .first()
            .expect("a wanted certificate is not empty")
            .clone();
        let base = LogBase {
            index: first.index,
            term: first.term,
            hash: first.chain_hash,
        };
        let out = self.actor.step(Input::SnapshotInstalled(cert));
        let mut ready = Ready::default();
        // Only if the actor took it (an adversary wrapping the core may not): the disk
        // and the state machine then follow the core, never run ahead of it.
        if self.node().log().base() == base {
            let snapshot = Snapshot {
                base,
                state: bytes.clone(),
            };
            // Entries past the base that the core kept are durable already: the snapshot
            // goes beside them. Otherwise it replaces the whole log.
            ready
                .persist
                .push(if self.node().log().last_index() > base.index {
                    Persist::Snapshot(snapshot)
                } else {
                    Persist::InstallSnapshot(snapshot)
                });
            ready.effects.push(Effect::Snapshot {
                base,
                state_digest: crate::crypto::sha256(&bytes),
                installed: true,
            });
            self.kv = kv;
            self.snapshots.clear();
            self.snapshots.push_back((base.index, bytes));
        }
        let core = self.ready(out);
        ready.merge(core);
        ready
    }

    /// Splits outputs into what must be durable and what follows, applying committed
    /// entries on the way. Every `Persist` of the batch goes first, whatever its place:
    /// nothing of a batch leaves before all of it is durable.
    fn ready(&mut self, out: Vec<Output>) -> Ready {
        let mut ready = Ready::default();
        for o in out {
            match o {
                Output::Persist(p) => ready.persist.push(p),
                Output::Send { to, msg } => ready.effects.push(Effect::Send { to, msg }),
                Output::Broadcast(msg) => ready.effects.push(Effect::Broadcast(msg)),
                Output::Apply(entry) => {
                    let request = self.apply(&entry);
                    ready.effects.push(Effect::Applied { entry, request });
                }
                Output::TakeSnapshot(base) => {
                    let more = self.take_snapshot(base);
                    ready.merge(more);
                }
                Output::SendSnapshot { to, cert } => self.send_snapshot(to, cert, &mut ready),
            }
        }
        for p in &ready.persist {
            if let Persist::Compact(cert) = p {
                // The stable snapshot is the oldest we need to serve.
                self.stable_index = self.stable_index.max(cert.index());
                let stable = self.stable_index;
                self.snapshots.retain(|(i, _)| *i >= stable);
            }
        }
        ready
    }

    /// Keeps at most `SNAPSHOTS_KEPT` encodings, never the stable one's: that is the one
    /// peers are offered, whatever newer snapshots wait for their checkpoint.
    fn evict_snapshots(&mut self) {
        while self.snapshots.len() > SNAPSHOTS_KEPT {
            let stable = self.stable_index;
            match self.snapshots.iter().position(|(i, _)| *i != stable) {
                Some(k) => {
                    self.snapshots.remove(k);
                }
                None => break,
            }
        }
    }

    /// The core applied `base.index` and wants a snapshot of exactly that state: encode
    /// it, make it durable with this Ready, and tell the core its digest.
    fn take_snapshot(&mut self, base: LogBase) -> Ready {
        let bytes = self.kv.snapshot_bytes();
        let state_digest = crate::crypto::sha256(&bytes);
        let mut ready = Ready::default();
        ready.persist.push(Persist::Snapshot(Snapshot {
            base,
            state: bytes.clone(),
        }));
        self.snapshots.push_back((base.index, bytes));
        self.evict_snapshots();
        ready.effects.push(Effect::Snapshot {
            base,
            state_digest,
            installed: false,
        });
        let out = self.actor.step(Input::Snapshotted { base, state_digest });
        let core = self.ready(out);
        ready.merge(core);
        ready
    }

    /// Streams our snapshot at `cert`'s index to `to`, if we still hold it.
    fn send_snapshot(&self, to: NodeId, cert: CheckpointCert, ready: &mut Ready) {
        let Some((_, bytes)) = self.snapshots.iter().find(|(i, _)| *i == cert.index()) else {
            tracing::debug!(to, index = cert.index(), "no longer hold that snapshot");
            return;
        };
        let from = self.node().id();
        for msg in transfer::chunks(from, &cert, bytes) {
            ready.effects.push(Effect::Send { to, msg });
        }
    }

    fn apply(&mut self, entry: &Entry) -> Option<AppliedRequest> {
        let r = &entry.payload.request()?.body;
        let applied = self.kv.apply(r);
        self.applied += 1;
        let reply = self.actor.reply_to(r.client, r.seq, applied.result());
        Some(AppliedRequest {
            client: r.client,
            seq: r.seq,
            applied,
            reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversary::testkit;
    use crate::crypto::Domain;
    use crate::protocol::{Op, OpResult, Payload, Request, Variant};

    /// An actor that answers every step with a fixed list of outputs.
    struct Scripted {
        node: Node,
        out: Vec<Output>,
    }

    impl Actor for Scripted {
        fn step(&mut self, _: Input) -> Vec<Output> {
            self.out.clone()
        }
        fn node(&self) -> &Node {
            &self.node
        }
    }

    fn scripted(out: Vec<Output>) -> Driver {
        let c = testkit::ctx(0, 4, Variant::Bft);
        let node = Node::new(c.cfg, c.key, c.seed, c.durable);
        Driver::new(Box::new(Scripted { node, out }))
    }

    fn put(seq: u64) -> Entry {
        let op = Op::Put {
            key: "k".into(),
            value: b"v".to_vec(),
        };
        let r = Domain::new(Variant::Bft, "t")
            .sign(&testkit::client_key(), Request { client: 0, seq, op });
        Entry {
            term: 1,
            index: seq,
            payload: Payload::Request(r),
        }
    }

    fn request_message(seq: u64) -> Message {
        match put(seq).payload {
            Payload::Request(r) => Message::Request(r),
            Payload::Noop => unreachable!("put is a request"),
        }
    }

    #[test]
    fn every_persist_of_a_batch_comes_before_any_effect() {
        let out = vec![
            Output::Broadcast(request_message(9)),
            Output::Persist(Persist::TruncateFrom(3)),
            Output::Apply(put(1)),
            Output::Persist(Persist::Append(vec![])),
        ];
        let ready = scripted(out).step(Input::Tick);
        assert_eq!(ready.persist.len(), 2);
        assert!(matches!(
            ready.effects[..],
            [Effect::Broadcast(_), Effect::Applied { .. }]
        ));
    }

    #[test]
    fn applied_requests_reach_the_state_machine_and_get_a_reply() {
        let mut d = scripted(vec![Output::Apply(put(1))]);
        let ready = d.step(Input::Tick);
        let Effect::Applied {
            request: Some(r), ..
        } = &ready.effects[0]
        else {
            panic!("{:?}", ready.effects)
        };
        assert_eq!((r.client, r.seq), (0, 1));
        let reply = r.reply.as_ref().expect("an honest node answers");
        assert_eq!(
            (reply.node, reply.seq, &reply.result),
            (0, 1, &OpResult::Ok)
        );
        assert_eq!(d.applied(), 1);
        assert_eq!(d.kv().get("k"), Some(&b"v"[..]));
    }

    #[test]
    fn a_retry_of_an_applied_request_is_answered_without_the_core() {
        let mut d = scripted(vec![Output::Apply(put(1))]);
        d.step(Input::Tick);
        let retry = request_message(1);
        match d.admit(Principal::Client(0), retry.clone()) {
            Admission::Answered {
                client: 0,
                reply: Some(r),
            } => assert_eq!(r.seq, 1),
            other => panic!("{other:?}"),
        }
        // The same request relayed by a node, or claimed by another client, goes on.
        let relayed = d.admit(Principal::Node(2), retry.clone());
        assert!(matches!(relayed, Admission::Deliver(_)));
        let impostor = d.admit(Principal::Client(1), retry);
        assert!(matches!(impostor, Admission::Deliver(_)));
    }

    /// A fresh honest bft node 0 of four, driven, and a certificate for a snapshot of
    /// `state` at index 5 signed by `signers` (testkit keys).
    fn receiving(state: &Kv, signers: &[u32]) -> (Driver, CheckpointCert) {
        let c = testkit::ctx(0, 4, Variant::Bft);
        let node = Node::new(c.cfg, c.key, c.seed, c.durable);
        let d = Domain::new(Variant::Bft, "t");
        let bytes = state.snapshot_bytes();
        let checkpoints = signers
            .iter()
            .map(|&j| {
                let key = crate::crypto::signing_key_from_seed([j as u8 + 1; 32]);
                let body = crate::protocol::Checkpoint {
                    epoch: 0,
                    from: j,
                    index: 5,
                    term: 1,
                    chain_hash: Digest([5; 32]),
                    state_digest: crate::crypto::sha256(&bytes),
                };
                d.sign(&key, body)
            })
            .collect();
        (Driver::new(Box::new(node)), CheckpointCert { checkpoints })
    }

    fn state_of(n: usize) -> Kv {
        let mut kv = Kv::new();
        for seq in 1..=n as u64 {
            let op = Op::Put {
                key: format!("k{seq}"),
                value: vec![7; 60_000],
            };
            kv.apply(&Request { client: 0, seq, op });
        }
        kv
    }

    fn stream(d: &mut Driver, from: u32, msgs: Vec<Message>) -> Ready {
        let inputs = msgs
            .into_iter()
            .map(|msg| Input::Message {
                from: Principal::Node(from),
                msg,
            })
            .collect();
        d.step_batch(inputs)
    }

    fn installed(r: &Ready) -> bool {
        r.persist
            .iter()
            .any(|p| matches!(p, Persist::InstallSnapshot(_)))
    }

    /// Rule K4, end to end in the driver: a multi-chunk snapshot with a valid certificate
    /// is assembled, installed durably before anything else, and becomes the state.
    #[test]
    fn a_certified_snapshot_in_chunks_is_installed() {
        let state = state_of(40); // about 2.4 MB: three chunks
        let (mut d, cert) = receiving(&state, &[1, 2, 3]);
        let msgs = transfer::chunks(2, &cert, &state.snapshot_bytes());
        assert!(msgs.len() >= 3);
        let ready = stream(&mut d, 2, msgs);
        assert!(matches!(
            ready.persist.first(),
            Some(Persist::InstallSnapshot(_))
        ));
        assert_eq!(d.kv(), &state);
        assert_eq!(d.node().commit_index(), 5);
    }

    /// Rule K4: bytes whose digest is not the certified one are refused and their sender
    /// is reported; chunks out of order are dropped, never spliced.
    #[test]
    fn a_snapshot_that_is_not_the_certified_state_is_refused() {
        let state = state_of(40);
        let (mut d, cert) = receiving(&state, &[1, 2, 3]);
        let mut other = state.clone();
        other.apply(&Request {
            client: 0,
            seq: 99,
            op: Op::Delete { key: "k1".into() },
        });
        assert_ne!(other, state);
        let ready = stream(
            &mut d,
            2,
            transfer::chunks(2, &cert, &other.snapshot_bytes()),
        );
        assert!(!installed(&ready));
        assert_eq!(d.node().commit_index(), 0);
        let mut msgs = transfer::chunks(3, &cert, &state.snapshot_bytes());
        msgs.swap(1, 2);
        let ready = stream(&mut d, 3, msgs.clone());
        assert!(!installed(&ready), "out of order");
        msgs.swap(1, 2);
        let ready = stream(&mut d, 3, msgs);
        assert!(
            installed(&ready),
            "the same sender starting again, in order"
        );
    }

    /// Rule K4: a certificate of fewer than q distinct signers is a forgery: the sender
    /// misbehaves and nothing is assembled.
    #[test]
    fn a_snapshot_under_a_certificate_of_too_few_signers_is_refused() {
        let state = state_of(1);
        let (mut d, cert) = receiving(&state, &[1, 1, 2]);
        let ready = stream(
            &mut d,
            1,
            transfer::chunks(1, &cert, &state.snapshot_bytes()),
        );
        assert!(!installed(&ready));
        assert!(d.incoming.is_none());
    }

    #[test]
    fn forged_content_becomes_misbehaviour_and_other_refusals_nothing() {
        let msg = || request_message(1);
        let from = Principal::Node(1);
        assert!(matches!(
            input_for(from, msg(), Ok(())),
            Ok(Input::Message { .. })
        ));
        let forged = AuthError::SignedForgery(Principal::Node(2), "vote");
        assert!(matches!(
            input_for(from, msg(), Err(forged)),
            Ok(Input::Misbehaved(Principal::Node(2)))
        ));
        assert!(input_for(from, msg(), Err(AuthError::UnknownClient(7))).is_err());
    }
}
