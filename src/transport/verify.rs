//! Client requests verified together. Each client has its own stream and one request in
//! flight, so a stream never holds two requests to check at once; but under load many
//! clients' requests arrive at the same moment. Their streams hand them to a few verifier
//! tasks, each of which takes whatever is queued (up to [`MAX_VERIFY_BATCH`]) and checks
//! the lot as one ZIP-215 batch (`protocol::auth::authenticate_batch`: bisected on failure,
//! so a bad request is refused alone and blamed on its link exactly as single verification
//! would). Verification stays on the transport's threads, off the protocol loop.
//!
//! A client is always served by the same verifier, which keeps its messages in order.

use super::listen::forward;
use super::{kind_index, Inbound, LiveCounters};
use crate::crypto::{Keyring, Principal};
use crate::protocol::auth::authenticate_batch;
use crate::protocol::{ClientId, Message};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// The environment variable that chooses how a node verifies client requests:
/// `batched` (the default) or `single` (each on its own stream, as before batching; kept
/// so that the benchmark can compare the two in one run).
pub const CLIENT_VERIFY_ENV: &str = "TANGAROA_CLIENT_VERIFY";

/// Client messages queued towards one verifier, at most: a client stream that finds it
/// full waits (its share of the inbound queue already held), nothing is dropped.
const VERIFY_QUEUE: usize = 1024;
/// Most client messages one verifier checks together.
const MAX_VERIFY_BATCH: usize = 256;
/// Verifier tasks per node, at most (one per core below that).
const MAX_VERIFIERS: usize = 4;

/// How a node checks the signatures of the requests its clients send it.
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
        std::env::var(CLIENT_VERIFY_ENV)
            .ok()
            .and_then(|v| ClientVerify::parse(&v))
            .unwrap_or(ClientVerify::Batched)
    }
}

/// A client's message waiting for its verifier.
pub(super) struct Pending {
    pub from: Principal,
    pub msg: Message,
    /// Its frame's length.
    pub bytes: usize,
    /// The client's share of the inbound queue, taken before queueing here.
    pub permit: OwnedSemaphorePermit,
}

/// The queues of a node's verifier tasks.
#[derive(Clone)]
pub(super) struct Verifiers {
    queues: Vec<mpsc::Sender<Pending>>,
}

impl Verifiers {
    /// Spawns the verifier tasks (one per core, at most [`MAX_VERIFIERS`]). Must be called
    /// from inside a tokio runtime.
    pub fn start(
        ring: Arc<Keyring>,
        inbound: mpsc::Sender<Inbound>,
        counters: Arc<LiveCounters>,
    ) -> Verifiers {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let queues = (0..cores.clamp(1, MAX_VERIFIERS))
            .map(|_| {
                let (tx, rx) = mpsc::channel(VERIFY_QUEUE);
                tokio::spawn(verify_loop(
                    rx,
                    ring.clone(),
                    inbound.clone(),
                    counters.clone(),
                ));
                tx
            })
            .collect();
        Verifiers { queues }
    }

    /// The queue of the verifier that serves `client` (always the same one).
    pub fn queue_of(&self, client: ClientId) -> &mpsc::Sender<Pending> {
        &self.queues[client as usize % self.queues.len()]
    }
}

/// Takes whatever is queued, verifies it as one batch, and forwards the verdicts in
/// arrival order; ends when every stream has let go of its queue or the loop is gone.
async fn verify_loop(
    mut queue: mpsc::Receiver<Pending>,
    ring: Arc<Keyring>,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<LiveCounters>,
) {
    let mut batch = Vec::with_capacity(MAX_VERIFY_BATCH);
    while queue.recv_many(&mut batch, MAX_VERIFY_BATCH).await > 0 {
        assert!(
            batch.len() <= MAX_VERIFY_BATCH,
            "recv_many honours its limit"
        );
        let started = Instant::now();
        let verdicts = {
            let msgs: Vec<(Principal, &Message)> = batch.iter().map(|p| (p.from, &p.msg)).collect();
            authenticate_batch(&ring, &msgs)
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
    use crate::protocol::{Op, Request, Variant};

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
            let verifiers = Verifiers::start(ring.clone(), tx, counters.clone());
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
                    verifiers
                        .queue_of(c as ClientId)
                        .send(pending)
                        .await
                        .unwrap();
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
}
