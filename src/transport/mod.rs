//! QUIC with mutual TLS between nodes and clients. It moves frames and authenticates
//! links and signatures; it decides nothing about the protocol.
//!
//! - Each node dials every other node once and keeps one long-lived unidirectional stream
//!   to it ([`peer`]): a bounded queue per peer, writes coalesced, reconnect with back-off.
//! - It accepts connections from nodes (unidirectional streams of protocol frames) and from
//!   clients and operators (bidirectional streams: requests in, replies and status out)
//!   ([`listen`]). Who is on the other end comes from the pinned certificate ([`tls`]).
//! - Every protocol message is authenticated (`protocol::authenticate_cached`, or
//!   `authenticate_batch_cached` with others queued beside it) before it reaches the node:
//!   bad signatures and messages whose claimed sender is not the link's peer are counted
//!   and dropped. Client requests and node messages are verified in
//!   batches across links ([`verify`]), with the same verdicts.

pub mod frame;
mod listen;
pub(crate) mod peer;
pub mod tls;
pub mod verify;

pub use frame::{Counters, NodeReport, Wire};

use crate::crypto::{Keyring, Principal};
use crate::protocol::{ClientId, Message, NodeId};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tls::{Identity, Pins};
use tokio::sync::mpsc;

/// Frames queued per peer before new ones are dropped (the protocol retransmits).
pub const PEER_QUEUE: usize = 4096;
/// Frames queued towards one client or operator stream.
pub const CLIENT_QUEUE: usize = 1024;
/// How long the body of a started frame may take to arrive.
const FRAME_DEADLINE: Duration = Duration::from_secs(30);
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 64 << 10;
/// Streams a peer may have open on one connection: a node needs one unidirectional
/// stream, a client a session and a status query.
const MAX_UNI_STREAMS: u32 = 4;
const MAX_BIDI_STREAMS: u32 = 8;
/// Inputs queued towards the node's protocol loop.
pub const INBOUND_QUEUE: usize = 8192;

/// What the transport hands the node's protocol loop.
// Nearly every input is a message, moved once into the loop: boxing would only allocate.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    /// An authenticated protocol message from `from` (the link's pinned principal).
    Message {
        from: Principal,
        msg: Message,
        /// Its frame's length, for bounding the loop's batches by bytes.
        bytes: usize,
        /// The sender's share of the queue, given back when the loop takes the message.
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// `culprit` signed a message that carries forged signatures inside.
    Misbehaved(Principal),
    /// A client opened a stream: replies to it go to `link`.
    ClientLink(ClientId, mpsc::Sender<Bytes>),
    /// Someone asked for our status: answer on `link`.
    StatusQuery(mpsc::Sender<Bytes>),
    /// Wakes the loop: the clock has ticks due (counted apart from the queue, so a full
    /// queue delays ticks but never loses them).
    Tick,
    Shutdown,
}

/// Message kinds, in the order of the per-kind counters (`Message::kind` names).
pub const KINDS: [&str; 12] = Message::KINDS;

/// The index of replies in [`KINDS`] (they are counted apart from protocol messages).
pub const REPLY_KIND: usize = 8;

/// Why an authenticated-looking message was refused, in the order of the counters.
pub const REJECT_REASONS: [&str; 6] = [
    "wrong-sender",
    "bad-signature",
    "signed-forgery",
    "unknown-client",
    "oversized",
    "not-for-a-client",
];

/// Why a frame was refused (each cost its sender the connection), in counter order.
pub const FRAME_REASONS: [&str; 7] = [
    "too-large",
    "undecodable",
    "refused",
    "slow",
    "unexpected-kind",
    "status-to-node",
    "wire-version",
];

/// The counter index of a message's kind.
pub fn kind_index(msg: &Message) -> usize {
    let k = msg.kind();
    KINDS.iter().position(|&x| x == k).unwrap_or(0)
}

/// The counter index of an authentication failure.
pub fn reject_index(e: &crate::protocol::AuthError) -> usize {
    use crate::protocol::AuthError as E;
    match e {
        E::WrongSender { .. } => 0,
        E::BadSignature(_) => 1,
        E::SignedForgery(..) => 2,
        E::UnknownClient(_) => 3,
        E::Oversized(_) => 4,
    }
}

/// The counter index of a frame failure.
pub fn frame_reason_index(e: &frame::FrameError) -> usize {
    match e {
        frame::FrameError::TooLarge(_) => 0,
        frame::FrameError::Decode(_) => 1,
        frame::FrameError::Refused(_) => 2,
        frame::FrameError::Slow(_) => 3,
        frame::FrameError::Version(_) => 6,
    }
}

/// Buckets of the signature verification histograms, in seconds: 1 µs to 32 ms.
fn verify_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-6, 2.0, 16)
}

/// Live counters, shared by the transport's tasks.
pub struct LiveCounters {
    pub msgs_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub msgs_received: AtomicU64,
    pub rejected: AtomicU64,
    pub bad_frames: AtomicU64,
    pub dropped: AtomicU64,
    /// Messages decoded from nodes' and clients' streams, by kind (before authentication).
    pub received_by_kind: [AtomicU64; KINDS.len()],
    /// Messages handed to the transport to send, by kind, one per destination (counted
    /// by the node loop, which knows the kind; a full peer queue still drops them).
    pub sent_by_kind: [AtomicU64; KINDS.len()],
    /// Messages refused by authentication, by kind and reason.
    pub rejected_by: [[AtomicU64; REJECT_REASONS.len()]; KINDS.len()],
    /// Frames refused, by reason.
    pub bad_frames_by: [AtomicU64; FRAME_REASONS.len()],
    /// Time to authenticate one message on the transport's threads (bounds, sender,
    /// signatures; a signature verified earlier on the stream is a cache hit), by kind.
    pub verify_seconds: [prometheus_client::metrics::histogram::Histogram; KINDS.len()],
}

impl Default for LiveCounters {
    fn default() -> LiveCounters {
        LiveCounters {
            msgs_sent: AtomicU64::default(),
            bytes_sent: AtomicU64::default(),
            msgs_received: AtomicU64::default(),
            rejected: AtomicU64::default(),
            bad_frames: AtomicU64::default(),
            dropped: AtomicU64::default(),
            received_by_kind: Default::default(),
            sent_by_kind: Default::default(),
            rejected_by: Default::default(),
            bad_frames_by: Default::default(),
            verify_seconds: std::array::from_fn(|_| {
                prometheus_client::metrics::histogram::Histogram::new(verify_buckets())
            }),
        }
    }
}

impl LiveCounters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Counters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            msgs_sent: g(&self.msgs_sent),
            bytes_sent: g(&self.bytes_sent),
            msgs_received: g(&self.msgs_received),
            rejected: g(&self.rejected),
            bad_frames: g(&self.bad_frames),
            dropped: g(&self.dropped),
            cost: crate::cost::snapshot(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// QUIC settings shared by every endpoint: idle links are kept alive, dead ones noticed.
pub(crate) fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_uni_streams(MAX_UNI_STREAMS.into());
    t.max_concurrent_bidi_streams(MAX_BIDI_STREAMS.into());
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(5)).expect("5 s is a valid timeout"),
    ));
    Arc::new(t)
}

pub(crate) fn quic_client_config(
    me: &Identity,
    expected: rustls::pki_types::CertificateDer<'static>,
) -> Result<quinn::ClientConfig, tls::TlsError> {
    let tls = tls::client_config(me, expected)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| tls::TlsError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport_config());
    Ok(cfg)
}

/// A node's network: listening for everyone, and one outbound link per peer.
pub struct Net {
    me: NodeId,
    peers: Vec<Option<mpsc::Sender<Bytes>>>,
    pub counters: Arc<LiveCounters>,
    endpoint: quinn::Endpoint,
}

pub struct NetSetup {
    pub me: NodeId,
    /// Secret from which the QUIC stateless-reset key is derived (see [`reset_key`]).
    pub reset_secret: [u8; 32],
    pub addresses: Vec<SocketAddr>,
    pub identity: Identity,
    pub pins: Arc<Pins>,
    pub ring: Arc<Keyring>,
}

impl Net {
    /// Binds our address and starts the listener and the peer links. Must be called from
    /// inside a tokio runtime.
    pub fn start(setup: NetSetup, inbound: mpsc::Sender<Inbound>) -> Result<Net, TransportError> {
        let counters = Arc::new(LiveCounters::default());
        let tls = tls::server_config(&setup.identity, setup.pins.clone())?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| tls::TlsError::Config(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(transport_config());
        let addr = setup.addresses[setup.me as usize];
        let bind = |source| TransportError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config(&setup.reset_secret),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind)?;
        let (clients, nodes) = (
            verify::ClientVerify::from_env(),
            verify::ClientVerify::nodes_from_env(),
        );
        let verifiers = [clients, nodes]
            .contains(&verify::ClientVerify::Batched)
            .then(|| {
                verify::Verifiers::start(
                    setup.ring.clone(),
                    inbound.clone(),
                    counters.clone(),
                    clients,
                    nodes,
                )
            });
        tokio::spawn(listen::accept_loop(
            endpoint.clone(),
            setup.pins.clone(),
            setup.ring.clone(),
            inbound,
            counters.clone(),
            verifiers,
        ));
        let mut peers = Vec::with_capacity(setup.addresses.len());
        for (id, &peer_addr) in setup.addresses.iter().enumerate() {
            if id == setup.me as usize {
                peers.push(None);
                continue;
            }
            let expected = setup
                .pins
                .node_cert(id)
                .expect("pins hold every node's certificate")
                .clone();
            let cfg = quic_client_config(&setup.identity, expected)?;
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            tokio::spawn(peer::link(peer::Link {
                endpoint: endpoint.clone(),
                addr: peer_addr,
                name: format!("node-{id}.tangaroa"),
                cfg,
                queue: rx,
                counters: counters.clone(),
            }));
            peers.push(Some(tx));
        }
        Ok(Net {
            me: setup.me,
            peers,
            counters,
            endpoint,
        })
    }

    /// How many peers a broadcast goes to.
    pub fn peer_count(&self) -> usize {
        self.peers.iter().flatten().count()
    }

    /// Queues an encoded frame for `to`; drops it (counted) if that peer's queue is full.
    pub fn send(&self, to: NodeId, frame: Bytes) {
        if let Some(Some(q)) = self.peers.get(to as usize) {
            if q.try_send(frame).is_err() {
                LiveCounters::add(&self.counters.dropped, 1);
            }
        }
    }

    pub fn broadcast(&self, frame: Bytes) {
        for to in 0..self.peers.len() as NodeId {
            if to != self.me {
                self.send(to, frame.clone());
            }
        }
    }

    /// Closes every connection at once, so peers notice immediately.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
    }
}

/// The endpoint's stateless-reset key and connection-id generator, the same in every
/// process of one node.
///
/// quinn's defaults are random per process. A node killed and restarted then cannot reset
/// the connections peers still hold to its previous process: the new process takes their
/// packets' connection ids for garbage (its id generator's key differs) and, if it did
/// not, could not produce the reset token the peer holds (its reset key differs). Peers
/// keep writing into the dead connections until the idle timeout (5 s), and the node is
/// deaf that long. With both derived from the node's secret, the new process answers the
/// first packet of an old connection with a stateless reset the peer accepts; the peer
/// drops that connection at once and dials again.
pub fn endpoint_config(secret: &[u8; 32]) -> quinn::EndpointConfig {
    use sha2::{Digest as _, Sha256};
    let derive = |what: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tangaroa/quic/");
        h.update(what);
        h.update(secret);
        h.finalize().into()
    };
    let reset = derive(b"stateless-reset");
    let cid = derive(b"connection-id");
    let cid_key = u64::from_le_bytes(cid[..8].try_into().expect("8 bytes"));
    let mut cfg = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    // Ids the endpoint can tell from stray packets (only those get a reset), keyed alike.
    cfg.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    cfg
}

/// Queues a frame on a client or operator stream; counted as dropped if it is full.
pub fn send_to_link(link: &mpsc::Sender<Bytes>, frame: Bytes, counters: &LiveCounters) {
    if link.try_send(frame).is_err() {
        LiveCounters::add(&counters.dropped, 1);
    }
}

/// Why reading a frame stopped.
pub enum ReadFailure {
    /// Oversized or undecodable: the peer is broken or hostile.
    Bad(frame::FrameError),
    /// The stream or connection ended or failed: nothing to blame.
    Closed,
}

/// Reads the next frame; `Ok(None)` when the stream ended cleanly between frames. What
/// `from` may not send (by length, kind or entry count) is refused before decoding.
pub async fn read_frame(
    stream: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
    from: frame::Sender,
) -> Result<Option<Wire>, ReadFailure> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(_) => return Err(ReadFailure::Closed),
    }
    let len = frame::body_len(prefix, from).map_err(ReadFailure::Bad)?;
    // Grow the buffer as bytes arrive rather than trusting the prefix: a peer that
    // announces 16 MiB and sends nothing costs us nothing.
    // A frame, once begun, must arrive within FRAME_DEADLINE: a peer that trickles a
    // body cannot hold a buffer forever.
    let body = async {
        buf.clear();
        while buf.len() < len {
            let start = buf.len();
            buf.resize(start + (len - start).min(READ_CHUNK), 0);
            match stream.read(&mut buf[start..]).await {
                Ok(Some(n)) => buf.truncate(start + n),
                Ok(None) | Err(_) => return Err(ReadFailure::Closed),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(FRAME_DEADLINE, body).await {
        Ok(r) => r?,
        Err(_) => return Err(ReadFailure::Bad(frame::FrameError::Slow(FRAME_DEADLINE))),
    }
    frame::admit(from, buf).map_err(ReadFailure::Bad)?;
    frame::decode(buf).map(Some).map_err(ReadFailure::Bad)
}

/// Encodes a frame for sending. Our messages are bounded by construction
/// (`MAX_BATCH_BYTES`, `MAX_OP_BYTES`), so `None` means a bug; it is logged and the frame
/// dropped rather than taking the node down (the protocol retransmits).
pub fn encode(w: &Wire) -> Option<Bytes> {
    match frame::encode(w) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            tracing::error!("not sending a frame: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{keygen, KeygenSpec};
    use crate::runtime::Loaded;

    /// A node's listener facing a registered but broken client: an oversized frame, an
    /// undecodable one and one of another wire format version each cost the client its
    /// connection and are counted; a good frame on a fresh connection still gets through.
    #[test]
    fn bad_frames_are_counted_and_cost_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::runtime::local::free_base_port(1).unwrap();
        let config = keygen(&KeygenSpec {
            nodes: 1,
            clients: 1,
            out: dir.path().into(),
            base_port: port,
            variant: crate::protocol::Variant::Bft,
            force: false,
        })
        .unwrap();
        let loaded = Loaded::load(&config).unwrap();
        let (_, node_id) = loaded.credentials(Principal::Node(0), None).unwrap();
        let (_, client_id) = loaded.credentials(Principal::Client(0), None).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(16);
            let net = Net::start(
                NetSetup {
                    me: 0,
                    reset_secret: [7; 32],
                    addresses: vec![loaded.cfg.nodes[0].address],
                    identity: node_id,
                    pins: Arc::new(loaded.pins.clone()),
                    ring: Arc::new(loaded.cfg.keyring().unwrap()),
                },
                tx,
            )
            .unwrap();
            let cfg =
                quic_client_config(&client_id, loaded.pins.node_cert(0).unwrap().clone()).unwrap();
            let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            let dial = || async {
                let conn = endpoint
                    .connect_with(cfg.clone(), loaded.cfg.nodes[0].address, "node-0.tangaroa")
                    .unwrap()
                    .await
                    .unwrap();
                let (send, recv) = conn.open_bi().await.unwrap();
                (conn, send, recv)
            };
            let oversized = ((frame::MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
            let mut garbage = 5u32.to_le_bytes().to_vec();
            garbage.extend_from_slice(&[0xff; 5]);
            // A well-formed Hello of another wire format version.
            let mut other_version = frame::encode(&Wire::Hello).unwrap();
            other_version[4] = crate::codec::WIRE_VERSION + 1;
            for (k, bad) in [oversized, garbage, other_version].into_iter().enumerate() {
                let (conn, mut send, _recv) = dial().await;
                send.write_all(&bad).await.unwrap();
                let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
                    .await
                    .expect("the node drops the connection");
                assert!(
                    matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
                    "{reason:?}"
                );
                assert_eq!(net.counters.snapshot().bad_frames, k as u64 + 1);
            }
            let (_conn, mut send, _recv) = dial().await;
            send.write_all(&encode(&Wire::StatusQuery).unwrap())
                .await
                .unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match rx.recv().await {
                        Some(Inbound::StatusQuery(_)) => return true,
                        Some(_) => continue,
                        None => return false,
                    }
                }
            })
            .await;
            assert_eq!(got, Ok(true), "a good frame still gets through");
            // One client key may hold at most MAX_CONNECTIONS_PER_CLIENT connections: of
            // that many more, at least one is refused.
            let mut extra = Vec::new();
            for _ in 0..listen::MAX_CONNECTIONS_PER_CLIENT {
                // A refused connection may already be closed when the handshake ends.
                let conn = endpoint
                    .connect_with(cfg.clone(), loaded.cfg.nodes[0].address, "node-0.tangaroa")
                    .unwrap()
                    .await;
                extra.push(conn);
            }
            let refused = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    let n = extra
                        .iter()
                        .filter(|c| c.as_ref().map_or(true, |c| c.close_reason().is_some()))
                        .count();
                    if n > 0 {
                        return n;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(matches!(refused, Ok(n) if n >= 1), "{refused:?}");
            net.close();
        });
    }
}
