//! One outbound link to a peer node: a long-lived QUIC connection carrying one
//! unidirectional stream of frames, fed from a bounded queue.
//!
//! Frames waiting in the queue are written together (coalesced) in one call. When the
//! connection fails, the link reconnects with exponential back-off; frames that were being
//! written when it broke are lost, which the protocol tolerates (it retransmits).

use super::LiveCounters;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most bytes written in one coalesced call.
const COALESCE_BYTES: usize = 1 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Link {
    pub endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
    pub name: String,
    pub cfg: quinn::ClientConfig,
    pub queue: mpsc::Receiver<Bytes>,
    pub counters: Arc<LiveCounters>,
}

pub(super) async fn link(mut l: Link) {
    let mut backoff = Backoff::default();
    loop {
        let stream = match dial(&l.endpoint, &l.cfg, l.addr, &l.name).await {
            // A peer that grants no stream must not wedge the link.
            Ok(conn) => in_time("open a stream", conn.open_uni()).await,
            Err(e) => Err(e),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let stale = discard_queued(&mut l.queue);
                LiveCounters::add(&l.counters.dropped, stale);
                tracing::debug!(peer = %l.name, stale, "connect failed: {e}; retrying");
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
        tracing::debug!(peer = %l.name, "link up");
        match drain(stream, &mut l.queue, &l.counters).await {
            Drained::QueueClosed => return,
            Drained::StreamFailed(e) => {
                tracing::debug!(peer = %l.name, "link down: {e}");
            }
        }
    }
}

/// Drops every frame queued for a peer we cannot reach, returning how many. Kept, they
/// would reach it only when it comes back, seconds stale: a restarted node would first
/// hear commit points long past, believe itself caught up (`/readyz` said ready at commit
/// 0 with the cluster at 412), and spend its first seconds on obsolete messages. The
/// network may lose messages; the protocol resends what matters (heartbeats, Acks,
/// Commits, RequestVotes at the next timeout), so a link keeps at most what was queued
/// since its last failed attempt.
fn discard_queued(queue: &mut mpsc::Receiver<Bytes>) -> u64 {
    let mut n = 0;
    while queue.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// Exponential back-off between reconnection attempts, with full jitter: each wait is drawn
/// uniformly from [0, cap], and the cap doubles from `BACKOFF_MIN` to `BACKOFF_MAX`. Nodes
/// that lost a peer together do not all redial it in the same instant. (The simulator has
/// its own network; this randomness never reaches it.)
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(BACKOFF_MIN)
    }
}

impl Backoff {
    pub async fn wait(&mut self) {
        let delay = self.next_delay(&mut rand::thread_rng());
        tokio::time::sleep(delay).await;
    }

    /// The next wait, drawn from [0, cap]; then the cap doubles, up to `BACKOFF_MAX`.
    fn next_delay(&mut self, rng: &mut impl rand::Rng) -> Duration {
        let delay = self.0.mul_f64(rng.gen_range(0.0..=1.0));
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }
}

/// `fut`, or an error if it takes longer than `CONNECT_TIMEOUT`.
pub(crate) async fn in_time<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

/// A QUIC connection to `addr` with the pinned client configuration `cfg`.
pub(crate) async fn dial(
    endpoint: &quinn::Endpoint,
    cfg: &quinn::ClientConfig,
    addr: SocketAddr,
    name: &str,
) -> Result<quinn::Connection, String> {
    let connecting = endpoint
        .connect_with(cfg.clone(), addr, name)
        .map_err(|e| e.to_string())?;
    in_time("handshake", connecting).await
}

pub(crate) enum Drained {
    QueueClosed,
    StreamFailed(String),
}

/// Writes queued frames to `stream`, coalescing whatever is waiting, until the queue
/// closes or the stream fails.
pub(crate) async fn drain(
    mut stream: quinn::SendStream,
    queue: &mut mpsc::Receiver<Bytes>,
    counters: &LiveCounters,
) -> Drained {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(64);
    loop {
        let Some(first) = queue.recv().await else {
            let _ = stream.finish();
            return Drained::QueueClosed;
        };
        let mut bytes = first.len();
        chunks.push(first);
        while bytes < COALESCE_BYTES {
            match queue.try_recv() {
                Ok(f) => {
                    bytes += f.len();
                    chunks.push(f);
                }
                Err(_) => break,
            }
        }
        let frames = chunks.len() as u64;
        if let Err(e) = stream.write_all_chunks(&mut chunks).await {
            chunks.clear();
            return Drained::StreamFailed(e.to_string());
        }
        chunks.clear();
        LiveCounters::add(&counters.msgs_sent, frames);
        LiveCounters::add(&counters.bytes_sent, bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_jittered_under_a_doubling_cap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut b = Backoff::default();
        let mut cap = BACKOFF_MIN;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let d = b.next_delay(&mut rng);
            assert!(d <= cap, "{d:?} above the cap {cap:?}");
            delays.push(d);
            cap = (cap * 2).min(BACKOFF_MAX);
        }
        assert_eq!(b.0, BACKOFF_MAX);
        // Jittered: the waits at the cap are not all equal to it, nor to each other.
        let at_cap = &delays[6..];
        assert!(
            at_cap.iter().any(|d| *d < BACKOFF_MAX * 9 / 10),
            "{at_cap:?}"
        );
        assert!(at_cap.windows(2).any(|w| w[0] != w[1]), "{at_cap:?}");
        b.reset();
        assert!(b.next_delay(&mut rng) <= BACKOFF_MIN);
    }
}
