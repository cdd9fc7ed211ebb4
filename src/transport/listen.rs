//! The accepting side: identify each connection by its pinned certificate, read its
//! streams, authenticate every message, and hand what checks out to the protocol loop.

use super::frame::Sender;
use super::{
    frame_reason_index, kind_index, peer, read_frame, reject_index, Inbound, LiveCounters,
    ReadFailure, Wire, CLIENT_QUEUE,
};
use crate::crypto::{Keyring, Principal, SigCache};
use crate::protocol::{authenticate_cached, AuthError, Message};
use std::sync::Arc;
use tokio::sync::mpsc;

use super::tls::Pins;
use super::verify::{Pending, Verifiers};

/// Indexes into [`super::FRAME_REASONS`] and [`super::REJECT_REASONS`] of the failures
/// that are not a `FrameError` or an `AuthError`.
const UNEXPECTED_KIND: usize = 4;
const STATUS_TO_NODE: usize = 5;
const NOT_FOR_A_CLIENT: usize = 5;

/// Signatures remembered as verified, per stream (or per node link, in a verifier).
pub(super) const SIG_CACHE: usize = 4096;
/// Connections one node may hold open at once (it needs one; a restart leaves its old one
/// until it times out): with the per-connection stream limits, this bounds what one peer
/// can make us hold.
const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// The same for one client key: each of its sessions (a CLI call, a status query) holds
/// one connection per node while it runs, and parallel calls with one key are allowed.
/// Sessions close their connections when they end, so only live ones count.
pub(crate) const MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// Open connections per principal.
type Census = Arc<std::sync::Mutex<std::collections::HashMap<Principal, (usize, Quota)>>>;

/// Messages one principal may have waiting in the node's shared inbound queue, over all
/// its connections and streams. A peer at its quota waits (its streams stop being read,
/// QUIC flow control pushes back on it) while everyone else's messages still get in: one
/// flooding peer cannot fill the shared queue and delay the others.
pub(crate) const NODE_INBOUND_QUOTA: usize = 1024;
pub(crate) const CLIENT_INBOUND_QUOTA: usize = 64;

/// A principal's share of the inbound queue: a permit per queued message.
pub(crate) type Quota = Arc<tokio::sync::Semaphore>;

/// Counts a connection for as long as it lives.
struct Counted {
    census: Census,
    who: Principal,
    quota: Quota,
}

impl Counted {
    fn admit(census: &Census, who: Principal) -> Option<Counted> {
        let mut c = census.lock().unwrap_or_else(|p| p.into_inner());
        let (most, share) = match who {
            Principal::Node(_) => (MAX_CONNECTIONS_PER_PEER, NODE_INBOUND_QUOTA),
            Principal::Client(_) => (MAX_CONNECTIONS_PER_CLIENT, CLIENT_INBOUND_QUOTA),
        };
        let (n, quota) = c
            .entry(who)
            .or_insert_with(|| (0, Arc::new(tokio::sync::Semaphore::new(share))));
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(Counted {
            census: census.clone(),
            who,
            quota: quota.clone(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut c = self.census.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = c.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.who);
            }
        }
    }
}

pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    pins: Arc<Pins>,
    ring: Arc<Keyring>,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<LiveCounters>,
    verifiers: Option<Verifiers>,
) {
    let census = Census::default();
    while let Some(incoming) = endpoint.accept().await {
        let (pins, ring, inbound, counters, census, verifiers) = (
            pins.clone(),
            ring.clone(),
            inbound.clone(),
            counters.clone(),
            census.clone(),
            verifiers.clone(),
        );
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => serve(conn, pins, ring, inbound, counters, census, verifiers).await,
                // Unknown or wrong certificates end here, refused by the TLS verifier.
                Err(e) => tracing::info!("refused a connection at the handshake: {e}"),
            }
        });
    }
}

/// The principal whose pinned certificate the peer presented.
fn principal_of(conn: &quinn::Connection, pins: &Pins) -> Option<Principal> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    pins.principal(certs.first()?.as_ref())
}

struct Stream {
    from: Principal,
    sender: Sender,
    conn: quinn::Connection,
    ring: Arc<Keyring>,
    cache: SigCache,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<LiveCounters>,
    quota: Quota,
    /// Where this peer's messages go to be verified in batches; `None`: on this stream.
    verifiers: Option<Verifiers>,
}

async fn serve(
    conn: quinn::Connection,
    pins: Arc<Pins>,
    ring: Arc<Keyring>,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<LiveCounters>,
    census: Census,
    verifiers: Option<Verifiers>,
) {
    let Some(from) = principal_of(&conn, &pins) else {
        // The verifier admits only pinned certificates; this cannot happen, but if it
        // does the connection is not trusted.
        conn.close(2u32.into(), b"unknown peer");
        return;
    };
    let Some(counted) = Counted::admit(&census, from) else {
        tracing::warn!(peer = ?from, "too many connections from one peer; refusing another");
        conn.close(3u32.into(), b"too many connections");
        return;
    };
    tracing::debug!("connection from {from:?}");
    let stream = |conn: &quinn::Connection| Stream {
        from,
        sender: match from {
            Principal::Node(_) => Sender::Node,
            Principal::Client(_) => Sender::Client,
        },
        conn: conn.clone(),
        ring: ring.clone(),
        cache: SigCache::new(SIG_CACHE),
        inbound: inbound.clone(),
        counters: counters.clone(),
        quota: counted.quota.clone(),
        verifiers: verifiers.clone().filter(|v| v.serves(from)),
    };
    loop {
        tokio::select! {
            uni = conn.accept_uni(), if matches!(from, Principal::Node(_)) => match uni {
                Ok(recv) => { tokio::spawn(read_uni(stream(&conn), recv)); }
                Err(_) => return,
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => { tokio::spawn(serve_bi(stream(&conn), send, recv)); }
                Err(_) => return,
            },
        }
    }
}

/// A node's stream of protocol frames.
async fn read_uni(mut s: Stream, mut recv: quinn::RecvStream) {
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut recv, &mut buf, s.sender).await {
            Ok(Some(Wire::Protocol(msg))) => {
                if !s.deliver(msg, buf.len()).await {
                    return;
                }
            }
            Ok(Some(other)) => {
                s.bad(
                    UNEXPECTED_KIND,
                    &format!("unexpected {:?} on a node stream", kind(&other)),
                );
                return;
            }
            Ok(None) | Err(ReadFailure::Closed) => return,
            Err(ReadFailure::Bad(e)) => {
                s.bad(frame_reason_index(&e), &e.to_string());
                return;
            }
        }
    }
}

/// A client's or operator's session: requests and queries in, replies and reports out.
async fn serve_bi(mut s: Stream, send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let (tx, mut rx) = mpsc::channel(CLIENT_QUEUE);
    let counters = s.counters.clone();
    tokio::spawn(async move { peer::drain(send, &mut rx, &counters).await });
    // A client's replies go to the stream it last sent a request on (not merely the last
    // one it opened: a status query must not divert a running session's replies).
    let mut linked = false;
    let mut buf = Vec::new();
    loop {
        let ok = match read_frame(&mut recv, &mut buf, s.sender).await {
            Ok(Some(Wire::Protocol(msg))) => {
                if let (Principal::Client(c), false) = (s.from, linked) {
                    linked = true;
                    if s.inbound
                        .send(Inbound::ClientLink(c, tx.clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                s.deliver(msg, buf.len()).await
            }
            Ok(Some(Wire::StatusQuery)) => s
                .inbound
                .send(Inbound::StatusQuery(tx.clone()))
                .await
                .is_ok(),
            Ok(Some(Wire::Hello)) => match (s.from, linked) {
                (Principal::Client(c), false) => {
                    linked = true;
                    s.inbound
                        .send(Inbound::ClientLink(c, tx.clone()))
                        .await
                        .is_ok()
                }
                _ => true,
            },
            Ok(Some(Wire::Status(_))) => {
                s.bad(STATUS_TO_NODE, "a status report sent to a node");
                false
            }
            Ok(None) | Err(ReadFailure::Closed) => false,
            Err(ReadFailure::Bad(e)) => {
                s.bad(frame_reason_index(&e), &e.to_string());
                false
            }
        };
        if !ok {
            return;
        }
    }
}

fn kind(w: &Wire) -> &'static str {
    match w {
        Wire::Protocol(m) => m.kind(),
        Wire::StatusQuery => "status-query",
        Wire::Status(_) => "status",
        Wire::Hello => "hello",
    }
}

impl Stream {
    /// A frame no honest peer sends: log, count (`reason` indexes
    /// [`super::FRAME_REASONS`]), and drop the connection.
    fn bad(&self, reason: usize, why: &str) {
        LiveCounters::add(&self.counters.bad_frames, 1);
        LiveCounters::add(&self.counters.bad_frames_by[reason], 1);
        tracing::warn!(peer = ?self.from, "bad frame, dropping the connection: {why}");
        self.conn.close(1u32.into(), b"bad frame");
    }

    /// Authenticates and forwards one message; false once the protocol loop is gone.
    async fn deliver(&mut self, msg: Message, bytes: usize) -> bool {
        LiveCounters::add(&self.counters.msgs_received, 1);
        let k = kind_index(&msg);
        LiveCounters::add(&self.counters.received_by_kind[k], 1);
        if matches!(self.from, Principal::Client(_))
            && !matches!(msg, Message::Request(_) | Message::Revolution(_))
        {
            LiveCounters::add(&self.counters.rejected, 1);
            LiveCounters::add(&self.counters.rejected_by[k][NOT_FOR_A_CLIENT], 1);
            tracing::debug!(peer = ?self.from, "a client sent a {}", msg.kind());
            return true;
        }
        if let Some(verifiers) = &self.verifiers {
            // Verified with whatever other peers sent meanwhile; our share of the queue
            // first, so that at the quota only this peer waits.
            let Ok(permit) = self.quota.clone().acquire_owned().await else {
                return false;
            };
            let pending = Pending {
                from: self.from,
                msg,
                bytes,
                permit,
            };
            return verifiers.queue_of(self.from).send(pending).await.is_ok();
        }
        let started = std::time::Instant::now();
        let checked = authenticate_cached(&self.ring, &mut self.cache, self.from, &msg);
        self.counters.verify_seconds[k].observe(started.elapsed().as_secs_f64());
        let permit = match checked {
            // Our share of the queue first: at the quota, only this peer waits.
            Ok(()) => match self.quota.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return false,
            },
            Err(_) => None,
        };
        forward(
            &self.inbound,
            &self.counters,
            self.from,
            msg,
            bytes,
            checked,
            permit,
        )
        .await
    }
}

/// Hands an authenticated message to the protocol loop; counts and drops a refused one,
/// and reports the signer of a forgery. False once the protocol loop is gone.
pub(super) async fn forward(
    inbound: &mpsc::Sender<Inbound>,
    counters: &LiveCounters,
    from: Principal,
    msg: Message,
    bytes: usize,
    checked: Result<(), AuthError>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> bool {
    if let Err(e) = &checked {
        LiveCounters::add(&counters.rejected_by[kind_index(&msg)][reject_index(e)], 1);
    }
    let input = match checked {
        Ok(()) => {
            assert!(
                permit.is_some(),
                "an accepted message holds its queue share"
            );
            Inbound::Message {
                from,
                msg,
                bytes,
                permit,
            }
        }
        Err(AuthError::SignedForgery(culprit, what)) => {
            LiveCounters::add(&counters.rejected, 1);
            tracing::warn!("{culprit:?} signed a {} with a forged {what}", msg.kind());
            Inbound::Misbehaved(culprit)
        }
        Err(e) => {
            LiveCounters::add(&counters.rejected, 1);
            tracing::debug!(peer = ?from, "rejected a {}: {e}", msg.kind());
            return true;
        }
    };
    inbound.send(input).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexes used for failures that have no error type name what they count, and
    /// every message kind has its own counter.
    #[test]
    fn counter_indexes_name_their_failures() {
        use super::super::{FRAME_REASONS, KINDS, REJECT_REASONS, REPLY_KIND};
        assert_eq!(FRAME_REASONS[UNEXPECTED_KIND], "unexpected-kind");
        assert_eq!(FRAME_REASONS[STATUS_TO_NODE], "status-to-node");
        assert_eq!(REJECT_REASONS[NOT_FOR_A_CLIENT], "not-for-a-client");
        assert_eq!(KINDS[REPLY_KIND], "reply");
        let e = AuthError::Oversized("x");
        assert_eq!(REJECT_REASONS[reject_index(&e)], "oversized");
    }

    /// All connections of one principal share one inbound quota; another principal has
    /// its own, so a peer that used up its share does not stop anyone else.
    #[test]
    fn each_principal_has_its_own_share_of_the_inbound_queue() {
        let census = Census::default();
        let a1 = Counted::admit(&census, Principal::Node(1)).unwrap();
        let a2 = Counted::admit(&census, Principal::Node(1)).unwrap();
        let b = Counted::admit(&census, Principal::Node(2)).unwrap();
        let c = Counted::admit(&census, Principal::Client(7)).unwrap();
        let held: Vec<_> = (0..NODE_INBOUND_QUOTA)
            .map(|_| a1.quota.clone().try_acquire_owned().unwrap())
            .collect();
        assert!(
            a2.quota.clone().try_acquire_owned().is_err(),
            "a's share is spent"
        );
        assert!(
            b.quota.clone().try_acquire_owned().is_ok(),
            "b is not held up"
        );
        assert_eq!(c.quota.available_permits(), CLIENT_INBOUND_QUOTA);
        drop(held);
        assert!(a2.quota.clone().try_acquire_owned().is_ok());
        // The census forgets a principal with no connections left.
        drop((a1, a2));
        assert!(!census.lock().unwrap().contains_key(&Principal::Node(1)));
    }
}
