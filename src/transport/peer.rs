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
    let mut backoff = BACKOFF_MIN;
    loop {
        let stream = match connect(&l).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %l.name, "connect failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        tracing::debug!(peer = %l.name, "link up");
        match drain(stream, &mut l.queue, &l.counters).await {
            Drained::QueueClosed => return,
            Drained::StreamFailed(e) => {
                tracing::debug!(peer = %l.name, "link down: {e}");
            }
        }
    }
}

async fn connect(l: &Link) -> Result<quinn::SendStream, String> {
    let connecting = l
        .endpoint
        .connect_with(l.cfg.clone(), l.addr, &l.name)
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    // A peer that grants no stream must not wedge the link.
    tokio::time::timeout(CONNECT_TIMEOUT, conn.open_uni())
        .await
        .map_err(|_| "no stream granted".to_string())?
        .map_err(|e| e.to_string())
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
