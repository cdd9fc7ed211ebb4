//! Messages verified together. Under load many clients' requests, and many nodes' Acks,
//! Commits and AppendEntries, arrive at the same moment. Their streams hand them to a few
//! verifier tasks, each of which takes whatever is queued (up to [`MAX_VERIFY_BATCH`]
//! messages) and checks every signature they carry as one ZIP-215 batch
//! (`protocol::auth::authenticate_batch_cached`: bisected on failure, so a bad message is
//! refused alone, or its signer blamed, exactly as single verification would). A node's
//! link keeps its signature cache here, in the verifier that serves it. Verification stays
//! on the transport's threads, off the protocol loop.
//!
//! A client or node is always served by the same verifier, which keeps its messages in
//! order. Whether clients' and nodes' messages come here or are checked one by one on
//! their streams is chosen apart ([`CLIENT_VERIFY_ENV`], [`NODE_VERIFY_ENV`]).

use super::listen::{forward, SIG_CACHE};
use super::{kind_index, Inbound, LiveCounters};
use crate::crypto::{Keyring, LinkCaches, Principal};
use crate::protocol::auth::authenticate_batch_cached;
use crate::protocol::Message;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// The environment variable that chooses how a node verifies client requests:
/// `batched` (the default) or `single` (each on its own stream, as before batching; kept
/// so that the benchmark can compare the two in one run).
pub const CLIENT_VERIFY_ENV: &str = "TANGAROA_CLIENT_VERIFY";

/// The environment variable that chooses how a node verifies other nodes' messages:
/// `batched` (the default: queued together across links, one ZIP-215 batch) or `single`
/// (each on its own stream, one verification per signature, as before).
pub const NODE_VERIFY_ENV: &str = "TANGAROA_NODE_VERIFY";

/// Client messages queued towards one verifier, at most: a client stream that finds it
/// full waits (its share of the inbound queue already held), nothing is dropped.
const VERIFY_QUEUE: usize = 1024;
/// Most client messages one verifier checks together.
const MAX_VERIFY_BATCH: usize = 256;
/// Verifier tasks per node, at most (one per core below that).
const MAX_VERIFIERS: usize = 4;
/// How many times a verifier lets other tasks run to gather more before it verifies, by
/// default; [`GATHER_ENV`] may say otherwise. Off: measured on the 2-core host (bft, 64
/// clients, 7 runs each, node messages batched), 4 yields grew the leader's batches from
/// 1.3 to 4.5 messages but changed neither throughput nor CPU per request beyond the
/// noise (n=4: 1405 against 1413 req/s, 596 against 596 µs; n=7: 681 against 656 req/s,
/// 1454 against 1489 µs).
const GATHER_YIELDS: usize = 0;

/// The environment variable that overrides [`GATHER_YIELDS`] (kept so that the benchmark
/// can compare gathering with none in one run).
pub const GATHER_ENV: &str = "TANGAROA_VERIFY_GATHER";

/// How a node checks the signatures of the requests its clients send it (and, chosen apart,
/// of the messages other nodes send it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientVerify {
    /// Each request alone, on its stream's task.
    Single,
    /// Requests queued together, as one batch.
    Batched,
}

impl ClientVerify {
    pub const ALL: [ClientVerify; 2] = [ClientVerify::Batched, ClientVerify::Single];

    pub fn name(self) -> &'static str {
        match self {
            ClientVerify::Single => "single",
            ClientVerify::Batched => "batched",
        }
    }

    pub fn parse(s: &str) -> Option<ClientVerify> {
        ClientVerify::ALL.into_iter().find(|v| v.name() == s)
    }

    /// What this process was told by [`CLIENT_VERIFY_ENV`]; batched if unset or unknown.
    pub fn from_env() -> ClientVerify {
        ClientVerify::from_env_var(CLIENT_VERIFY_ENV)
    }

    /// What this process was told by [`NODE_VERIFY_ENV`]; batched if unset or unknown.
    pub fn nodes_from_env() -> ClientVerify {
        ClientVerify::from_env_var(NODE_VERIFY_ENV)
    }

    fn from_env_var(var: &str) -> ClientVerify {
        std::env::var(var)
            .ok()
            .and_then(|v| ClientVerify::parse(&v))
            .unwrap_or(ClientVerify::Batched)
    }
}

/// A client's or node's message waiting for its verifier.
pub(super) struct Pending {
    pub from: Principal,
    pub msg: Message,
    /// Its frame's length.
    pub bytes: usize,
    /// The sender's share of the inbound queue, taken before queueing here.
    pub permit: OwnedSemaphorePermit,
}

/// The queues of a node's verifier tasks.
#[derive(Clone)]
pub(super) struct Verifiers {
    queues: Vec<mpsc::Sender<Pending>>,
    clients: ClientVerify,
    nodes: ClientVerify,
}

impl Verifiers {
    /// Spawns the verifier tasks (one per core, at most [`MAX_VERIFIERS`]), which serve the
    /// clients if `clients` is batched and the nodes if `nodes` is. Must be called from
    /// inside a tokio runtime.
    pub fn start(
        ring: Arc<Keyring>,
        inbound: mpsc::Sender<Inbound>,
        counters: Arc<LiveCounters>,
        clients: ClientVerify,
        nodes: ClientVerify,
    ) -> Verifiers {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let yields = std::env::var(GATHER_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(GATHER_YIELDS)
            .min(64);
        let queues = (0..cores.clamp(1, MAX_VERIFIERS))
            .map(|_| {
                let (tx, rx) = mpsc::channel(VERIFY_QUEUE);
                tokio::spawn(verify_loop(
                    rx,
                    yields,
                    ring.clone(),
                    inbound.clone(),
                    counters.clone(),
                ));
                tx
            })
            .collect();
        Verifiers {
            queues,
            clients,
            nodes,
        }
    }

    /// Whether `who`'s messages are verified here (or one by one on their streams).
    pub fn serves(&self, who: Principal) -> bool {
        let mode = match who {
            Principal::Client(_) => self.clients,
            Principal::Node(_) => self.nodes,
        };
        mode == ClientVerify::Batched
    }

    /// The queue of the verifier that serves `who` (always the same one). Clients are
    /// spread over the verifiers; every node link goes to the first, so that the Acks and
    /// Commits of one round, which come one or two per peer, are checked together.
    pub fn queue_of(&self, who: Principal) -> &mpsc::Sender<Pending> {
        let k = match who {
            Principal::Client(c) => c as usize,
            Principal::Node(_) => 0,
        };
        &self.queues[k % self.queues.len()]
    }
}

/// Lets the tasks that are ready to run go first, taking what they queue meanwhile, for as
/// long as that adds to the batch (at most `yields` times): the streams woken with
/// this message, and the peers' messages of the same round, then join its batch rather
/// than each waking the verifier for a batch of one. Nothing waits on a timer: with nobody
/// else ready, a yield returns at once and the batch goes as it is.
async fn gather(queue: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, yields: usize) {
    for _ in 0..yields {
        let before = batch.len();
        if before >= MAX_VERIFY_BATCH {
            return;
        }
        tokio::task::yield_now().await;
        while batch.len() < MAX_VERIFY_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

/// Takes whatever is queued, verifies it as one batch (on the node links' caches), and
/// forwards the verdicts in arrival order; ends when every stream has let go of its queue
/// or the loop is gone.
async fn verify_loop(
    mut queue: mpsc::Receiver<Pending>,
    yields: usize,
    ring: Arc<Keyring>,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<LiveCounters>,
) {
    let mut batch = Vec::with_capacity(MAX_VERIFY_BATCH);
    let mut caches = LinkCaches::new(SIG_CACHE);
    while queue.recv_many(&mut batch, MAX_VERIFY_BATCH).await > 0 {
        gather(&mut queue, &mut batch, yields).await;
        assert!(
            batch.len() <= MAX_VERIFY_BATCH,
            "recv_many honours its limit"
        );
        let started = Instant::now();
        let verdicts = {
            let msgs: Vec<(Principal, &Message)> = batch.iter().map(|p| (p.from, &p.msg)).collect();
            authenticate_batch_cached(&ring, &msgs, Some(&mut caches))
        };
        // The histogram is per message: each gets its share of the batch's time.
        let share = started.elapsed().as_secs_f64() / batch.len() as f64;
        for (p, verdict) in batch.drain(..).zip(verdicts) {
            counters.verify_seconds[kind_index(&p.msg)].observe(share);
            let sent = forward(
                &inbound,
                &counters,
                p.from,
                p.msg,
                p.bytes,
                verdict,
                Some(p.permit),
            )
            .await;
            if !sent {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{signing_key_from_seed, Domain};
    use crate::protocol::{ClientId, Op, Request, Variant};

    /// Requests of many clients queued together: the forged one is counted as a bad
    /// signature and dropped, every good one reaches the protocol loop, each client's in
    /// the order it sent them.
    #[test]
    fn a_verifier_drops_only_the_forged_request_of_a_batch() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let d = Domain::new(Variant::Bft, "t");
        let keys: Vec<_> = (0..8u8)
            .map(|i| signing_key_from_seed([i + 9; 32]))
            .collect();
        let ring = Arc::new(
            Keyring::of_signing_keys(d.clone(), &[signing_key_from_seed([1; 32])], &keys).unwrap(),
        );
        let sign = |c: usize, seq: u64| {
            let op = Op::Get { key: "k".into() };
            let body = Request {
                client: c as ClientId,
                seq,
                op,
            };
            d.sign(&keys[c], body)
        };
        let forged = (3usize, 1u64);
        let received = rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(64);
            let counters = Arc::new(LiveCounters::default());
            let verifiers = Verifiers::start(
                ring.clone(),
                tx,
                counters.clone(),
                ClientVerify::Batched,
                ClientVerify::Single,
            );
            let quota = Arc::new(tokio::sync::Semaphore::new(64));
            for seq in 0..2u64 {
                for c in 0..keys.len() {
                    let mut r = sign(c, seq);
                    if (c, seq) == forged {
                        r.sig = sign(c, 99).sig;
                    }
                    let pending = Pending {
                        from: Principal::Client(c as ClientId),
                        msg: Message::Request(r),
                        bytes: 0,
                        permit: quota.clone().acquire_owned().await.unwrap(),
                    };
                    let who = Principal::Client(c as ClientId);
                    assert!(verifiers.serves(who));
                    verifiers.queue_of(who).send(pending).await.unwrap();
                }
            }
            drop(verifiers);
            let mut got = Vec::new();
            while let Some(input) = rx.recv().await {
                match input {
                    Inbound::Message {
                        from,
                        msg: Message::Request(r),
                        ..
                    } => got.push((from, r.body.client as usize, r.body.seq)),
                    _ => panic!("only requests were sent"),
                }
            }
            let k = kind_index(&Message::Request(sign(0, 0)));
            assert_eq!(LiveCounters::get(&counters.rejected), 1);
            assert_eq!(
                LiveCounters::get(&counters.rejected_by[k][1]),
                1,
                "bad-signature"
            );
            got
        });
        assert_eq!(received.len(), 2 * keys.len() - 1);
        assert!(!received.iter().any(|&(_, c, s)| (c, s) == forged));
        for c in 0..keys.len() {
            let seqs: Vec<u64> = received
                .iter()
                .filter(|&&(from, rc, _)| rc == c && from == Principal::Client(c as ClientId))
                .map(|&(_, _, s)| s)
                .collect();
            let expected: Vec<u64> = (0..2).filter(|&s| (c, s) != forged).collect();
            assert_eq!(seqs, expected, "client {c} in order");
        }
    }

    /// Node messages of three links queued together: an Ack with a bad signature is
    /// counted and dropped, an AppendEntries whose lock carries a forged Ack convicts the
    /// leader that signed it (reported as misbehaving, as single verification does), and
    /// every good message around them reaches the protocol loop, each link's in order.
    #[test]
    fn a_verifier_drops_only_the_bad_node_messages_of_a_batch_and_blames_forgers() {
        use crate::crypto::Digest;
        use crate::protocol::{Ack, AppendEntries, Commit, PreparedCert};
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let d = Domain::new(Variant::Bft, "t");
        let keys: Vec<_> = (0..4u8)
            .map(|i| signing_key_from_seed([i + 1; 32]))
            .collect();
        let ring = Arc::new(Keyring::of_signing_keys(d.clone(), &keys, &[]).unwrap());
        let ack = |from: u32, index: u64| {
            let body = Ack {
                term: 2,
                from,
                index,
                hash: Digest::default(),
                success: true,
            };
            d.sign(&keys[from as usize], body)
        };
        let commit = |from: u32, index: u64| {
            let body = Commit {
                term: 2,
                from,
                index,
                hash: Digest::default(),
            };
            Message::Commit(d.sign(&keys[from as usize], body))
        };
        let append = |forged: bool| {
            let mut acks: Vec<_> = (1..4).map(|j| ack(j, 1)).collect();
            if forged {
                acks[2].sig = ack(3, 2).sig;
            }
            let body = AppendEntries {
                term: 2,
                leader: 1,
                prev_index: 0,
                prev_term: 0,
                prev_hash: Digest::default(),
                entries: vec![],
                commit: 0,
                proof: None,
                lock: Some(PreparedCert {
                    term: 1,
                    index: 1,
                    hash: Digest::default(),
                    acks,
                }),
            };
            Message::AppendEntries(d.sign(&keys[1], body))
        };
        let mut bad_ack = ack(2, 5);
        bad_ack.sig = ack(2, 6).sig;
        // (link, message, delivered?) in the order the streams queue them.
        let sent: Vec<(u32, Message, bool)> = vec![
            (1, append(false), true),
            (2, Message::Ack(ack(2, 4)), true),
            (3, Message::Ack(ack(3, 4)), true),
            (2, Message::Ack(bad_ack), false),
            (1, append(true), false),
            (3, commit(3, 4), true),
            (2, commit(2, 4), true),
            (1, Message::Ack(ack(1, 4)), true),
        ];
        let (received, misbehaved) = rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(64);
            let counters = Arc::new(LiveCounters::default());
            let verifiers = Verifiers::start(
                ring.clone(),
                tx,
                counters.clone(),
                ClientVerify::Single,
                ClientVerify::Batched,
            );
            let quota = Arc::new(tokio::sync::Semaphore::new(64));
            for (link, msg, _) in &sent {
                let who = Principal::Node(*link);
                assert!(verifiers.serves(who));
                assert!(!verifiers.serves(Principal::Client(0)));
                let pending = Pending {
                    from: who,
                    msg: msg.clone(),
                    bytes: 0,
                    permit: quota.clone().acquire_owned().await.unwrap(),
                };
                verifiers.queue_of(who).send(pending).await.unwrap();
            }
            drop(verifiers);
            let (mut got, mut blamed) = (Vec::new(), Vec::new());
            while let Some(input) = rx.recv().await {
                match input {
                    Inbound::Message { from, msg, .. } => got.push((from, msg)),
                    Inbound::Misbehaved(who) => blamed.push(who),
                    _ => panic!("only node messages were sent"),
                }
            }
            assert_eq!(LiveCounters::get(&counters.rejected), 2);
            let k = |m: &Message| kind_index(m);
            assert_eq!(
                LiveCounters::get(&counters.rejected_by[k(&commit(1, 1))][1]),
                0
            );
            assert_eq!(
                LiveCounters::get(&counters.rejected_by[k(&Message::Ack(ack(1, 1)))][1]),
                1,
                "the bad Ack: bad-signature"
            );
            assert_eq!(
                LiveCounters::get(&counters.rejected_by[k(&append(false))][2]),
                1,
                "the forged lock: signed-forgery"
            );
            (got, blamed)
        });
        assert_eq!(misbehaved, vec![Principal::Node(1)], "the leader is blamed");
        let expected: Vec<(Principal, Message)> = sent
            .iter()
            .filter(|(_, _, ok)| *ok)
            .map(|(l, m, _)| (Principal::Node(*l), m.clone()))
            .collect();
        for link in 1..4 {
            let of = |v: &[(Principal, Message)]| -> Vec<Message> {
                v.iter()
                    .filter(|(from, _)| *from == Principal::Node(link))
                    .map(|(_, m)| m.clone())
                    .collect()
            };
            assert_eq!(of(&received), of(&expected), "node {link}'s, in order");
        }
        assert_eq!(received.len(), expected.len());
    }
}
