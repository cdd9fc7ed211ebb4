//! A client session over QUIC: one authenticated stream to every node, driven by the
//! sans-IO [`ClientCore`] (sign, address the leader, broadcast on timeout, escalate to a
//! Revolution, accept on enough matching replies). Used by `tangaroa client`, the demo and
//! the benchmark, and the library's client API.
//!
//! ```no_run
//! use std::time::Duration;
//! use tangaroa::protocol::{Op, OpResult};
//! use tangaroa::runtime::client::Session;
//!
//! # async fn demo() -> Result<(), tangaroa::runtime::client::ClientError> {
//! // The configuration `tangaroa keygen` wrote; the key defaults to client-0.key beside it.
//! let mut s = Session::connect("keys/cluster.toml".as_ref(), None).await?;
//! let put = Op::Put { key: "k".into(), value: b"\x00 any bytes".to_vec() };
//! assert_eq!(s.execute(put, Duration::from_secs(10)).await?, OpResult::Ok);
//! let swap = Op::Cas { key: "k2".into(), expected: None, new: b"first".to_vec() };
//! match s.execute(swap, Duration::from_secs(10)).await? {
//!     OpResult::Ok => println!("k2 was absent; now set"),
//!     OpResult::CasFailed(current) => println!("k2 is already {current:?}"),
//!     other => println!("{other:?}"),
//! }
//! s.close_gracefully().await;
//! # Ok(())
//! # }
//! ```
//!
//! A session is one client identity with one sequence of requests: use it from one task
//! at a time (its methods take `&mut self`), and give concurrent workers their own client
//! keys (sessions of one key in two processes at once make the older one's requests
//! stale: [`OpResult::Stale`]).

use super::{Loaded, SetupError};
use crate::client::{ClientCore, ClientOutput};
use crate::crypto::Principal;
use crate::protocol::{ClientId, Message, NodeId, Op, OpResult, Term, MAX_OP_BYTES};
use crate::transport::{
    self, peer, quic_client_config, read_frame, LiveCounters, NodeReport, Wire,
};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Ticks (of the cluster's `tick_ms`) before a pending request is re-sent to everyone.
const CLIENT_TIMEOUT_TICKS: u32 = 50;

/// Why a session could not start or an operation got no agreed result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration, the key files or the certificates could not be loaded.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// No result enough nodes agree on within the limit. The request may still commit:
    /// retrying it is safe only for idempotent operations (a retry is a new request).
    #[error("no result within {0:?}: the outcome is unknown (the request may still commit)")]
    Timeout(Duration),
    /// More than [`MAX_OP_BYTES`] of keys and values: nodes would ignore it. Not sent.
    #[error("the operation carries {0} bytes of keys and values; the most is {MAX_OP_BYTES}")]
    TooLarge(usize),
    /// The local UDP socket could not be opened.
    #[error("cannot open a client endpoint: {0}")]
    Endpoint(std::io::Error),
}

/// A signed client's connection to a whole cluster: a QUIC stream to every node (mutual
/// TLS against the certificates pinned in the configuration), kept up and redialled in
/// the background. [`execute`](Session::execute) returns a result only when enough nodes
/// reply the same (f+1 in `bft`), so up to f lying nodes cannot fool it.
pub struct Session {
    /// This client's id in the configuration.
    pub id: ClientId,
    core: ClientCore,
    links: Vec<mpsc::Sender<Bytes>>,
    inbox: mpsc::Receiver<(NodeId, Wire)>,
    tick: Duration,
    endpoint: quinn::Endpoint,
    counters: Arc<LiveCounters>,
}

impl Session {
    /// Connects to every node of the configuration as the client whose secret key is at
    /// `secret` (default: the first registered client). Connections are made in the
    /// background and retried; requests wait for them.
    pub async fn connect(config: &Path, secret: Option<&Path>) -> Result<Session, ClientError> {
        let loaded = Loaded::load(config)?;
        let id = loaded.client_id(secret)?;
        Session::connect_as(&loaded, id, secret).await
    }

    /// Connects as client `id` of an already loaded configuration; its secret key is at
    /// `secret`, or `client-ID.key` beside the configuration.
    pub async fn connect_as(
        loaded: &Loaded,
        id: ClientId,
        secret: Option<&Path>,
    ) -> Result<Session, ClientError> {
        let cfg = &loaded.cfg;
        let (key, identity) = loaded.credentials(Principal::Client(id), secret)?;
        // Any local address of the nodes' family, so remote clusters are reachable too.
        let bind = match cfg.nodes.first().map(|n| n.address) {
            Some(std::net::SocketAddr::V6(_)) => "[::]:0",
            _ => "0.0.0.0:0",
        }
        .parse()
        .expect("valid address");
        let endpoint = quinn::Endpoint::client(bind).map_err(ClientError::Endpoint)?;
        let (inbox_tx, inbox) = mpsc::channel(transport::CLIENT_QUEUE);
        let counters = Arc::new(LiveCounters::default());
        let mut links = Vec::new();
        for n in &cfg.nodes {
            let expected = loaded
                .pins
                .node_cert(n.id as usize)
                .expect("every node is pinned")
                .clone();
            let quic = quic_client_config(&identity, expected).map_err(SetupError::from)?;
            let (tx, rx) = mpsc::channel(transport::CLIENT_QUEUE);
            tokio::spawn(link(Link {
                endpoint: endpoint.clone(),
                node: n.id,
                addr: n.address,
                cfg: quic,
                queue: rx,
                inbox: inbox_tx.clone(),
                counters: counters.clone(),
            }));
            links.push(tx);
        }
        // Sequence numbers must grow across runs of the same client: start at the clock.
        let first_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let core = ClientCore::new(
            id,
            key,
            cfg.variant,
            &cfg.cluster_id,
            cfg.nodes.len(),
            CLIENT_TIMEOUT_TICKS,
            first_seq,
        );
        Ok(Session {
            id,
            core,
            links,
            inbox,
            tick: Duration::from_millis(cfg.tick_ms),
            endpoint,
            counters,
        })
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.links.len()
    }

    /// The (term, leader) the latest replies named: where the next request goes first. A
    /// hint only; results never depend on it.
    pub fn leader_hint(&self) -> Option<(Term, NodeId)> {
        self.core.leader_hint()
    }

    /// Sends the next requests to `leader` first (e.g. one learned from [`status`](Session::status)).
    pub fn hint_leader(&mut self, term: Term, leader: NodeId) {
        self.core.hint_leader(term, leader);
    }

    fn send(&self, to: NodeId, msg: Message) {
        if let Some(link) = self.links.get(to as usize) {
            if let Some(frame) = transport::encode(&Wire::Protocol(msg)) {
                transport::send_to_link(link, frame, &self.counters);
            }
        }
    }

    fn dispatch(&self, outs: Vec<ClientOutput>) -> Option<OpResult> {
        let mut accepted = None;
        for o in outs {
            match o {
                ClientOutput::Send { to, msg } => self.send(to, msg),
                ClientOutput::Broadcast(msg) => {
                    for to in 0..self.links.len() as NodeId {
                        self.send(to, msg.clone());
                    }
                }
                ClientOutput::Accepted { result, .. } => accepted = Some(result),
            }
        }
        accepted
    }

    /// Signs and submits `op`, and waits up to `limit` for a result enough nodes agree on.
    ///
    /// The request goes to the leader hinted; after the cluster's client timeout to every
    /// node, and after a second one with a signed Revolution against the leader. Results:
    /// [`OpResult::Ok`] (put, delete, a cas that swapped), [`OpResult::Value`] (get;
    /// `None`: no such key), [`OpResult::CasFailed`] with the current value (`None`:
    /// absent), or [`OpResult::Stale`] when a later request of this client was applied
    /// first. Errors: [`ClientError::TooLarge`] (not sent) and [`ClientError::Timeout`]
    /// (outcome unknown).
    pub async fn execute(&mut self, op: Op, limit: Duration) -> Result<OpResult, ClientError> {
        check_size(&op)?;
        let outs = self.core.submit(op);
        self.wait(outs, limit).await
    }

    /// Submits `op` and at once sends every node a signed Revolution against `leader` of
    /// `term`, carrying it. In bft a node deposes that leader only if the request is
    /// still uncommitted after its request timeout, so a healthy leader survives this.
    pub async fn revolt(
        &mut self,
        op: Op,
        term: Term,
        leader: NodeId,
        limit: Duration,
    ) -> Result<OpResult, ClientError> {
        check_size(&op)?;
        let mut outs = self.core.submit(op);
        outs.push(ClientOutput::Broadcast(self.core.revolution(term, leader)));
        self.wait(outs, limit).await
    }

    async fn wait(
        &mut self,
        outs: Vec<ClientOutput>,
        limit: Duration,
    ) -> Result<OpResult, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        if let Some(r) = self.dispatch(outs) {
            return Ok(r);
        }
        // The core counts ticks only to time out a pending request, so wake once per
        // timeout and feed it that many ticks, not every tick: with many clients per
        // process, 100 wakeups a second each were a measurable share of the load
        // generator's CPU.
        let period = self.tick * CLIENT_TIMEOUT_TICKS;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = tokio::time::sleep_until(deadline);
        tokio::pin!(end);
        loop {
            tokio::select! {
                got = self.inbox.recv() => {
                    let Some((from, wire)) = got else { break };
                    if let Wire::Protocol(Message::Reply(r)) = wire {
                        let outs = self.core.on_reply(from, r);
                        if let Some(result) = self.dispatch(outs) {
                            return Ok(result);
                        }
                    }
                }
                _ = ticks.tick() => {
                    let mut outs = Vec::new();
                    for _ in 0..CLIENT_TIMEOUT_TICKS {
                        outs.extend(self.core.tick());
                    }
                    if let Some(result) = self.dispatch(outs) {
                        return Ok(result);
                    }
                }
                _ = &mut end => break,
            }
        }
        self.core.abandon();
        Err(ClientError::Timeout(limit))
    }

    /// Asks every node for its status; returns what answered within `limit`, by node id.
    pub async fn status(&mut self, limit: Duration) -> Vec<Option<NodeReport>> {
        let mut reports = vec![None; self.links.len()];
        if let Some(frame) = transport::encode(&Wire::StatusQuery) {
            for link in &self.links {
                transport::send_to_link(link, frame.clone(), &self.counters);
            }
        }
        let deadline = tokio::time::Instant::now() + limit;
        while reports.iter().any(Option::is_none) {
            tokio::select! {
                got = self.inbox.recv() => match got {
                    Some((from, Wire::Status(r))) if r.id == from => {
                        reports[from as usize] = Some(*r);
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        reports
    }

    /// The (term, leader) every node in `nodes` names, polling until `within` runs out.
    /// Status reports are each node's own word: pass only nodes whose word counts.
    pub async fn leader_named_by(
        &mut self,
        nodes: &[NodeId],
        within: Duration,
    ) -> Option<(Term, NodeId)> {
        self.leader_named_by_at_least(nodes, nodes.len(), within)
            .await
    }

    /// The (term, leader) at least `enough` of `nodes` name (the highest term if several
    /// qualify), polling until `within` runs out. Fewer than all of them is for leaders
    /// that starve a follower, which then names none; honest nodes never name two
    /// leaders in one term.
    pub async fn leader_named_by_at_least(
        &mut self,
        nodes: &[NodeId],
        enough: usize,
        within: Duration,
    ) -> Option<(Term, NodeId)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let reports = self.status(Duration::from_millis(500)).await;
            let mut named: std::collections::BTreeMap<(Term, NodeId), usize> = Default::default();
            for &i in nodes {
                if let Some(l) = reports.get(i as usize).and_then(|r| r.as_ref()?.leader) {
                    *named.entry(l).or_default() += 1;
                }
            }
            let agreed = named.into_iter().rev().find(|&(_, count)| count >= enough);
            if let Some((l, _)) = agreed {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Closes every connection at once, without waiting for the nodes to hear of it.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"done");
    }

    /// Closes every connection and waits (briefly) until the nodes have been told, so a
    /// process that exits right after leaves no half-open connections behind (they would
    /// count against the key's connection limit at every node until they time out).
    pub async fn close_gracefully(&self) {
        self.close();
        let _ = tokio::time::timeout(Duration::from_millis(300), self.endpoint.wait_idle()).await;
    }
}

/// Nodes ignore larger operations (they could not be replicated within a frame).
fn check_size(op: &Op) -> Result<(), ClientError> {
    match op.data_bytes() {
        n if n > MAX_OP_BYTES => Err(ClientError::TooLarge(n)),
        _ => Ok(()),
    }
}

struct Link {
    endpoint: quinn::Endpoint,
    node: NodeId,
    addr: std::net::SocketAddr,
    cfg: quinn::ClientConfig,
    queue: mpsc::Receiver<Bytes>,
    inbox: mpsc::Sender<(NodeId, Wire)>,
    counters: Arc<LiveCounters>,
}

/// Keeps one stream to one node: connect, retry with back-off, relay frames both ways.
async fn link(mut l: Link) {
    let mut backoff = peer::Backoff::default();
    let name = format!("node-{}.tangaroa", l.node);
    let mut warned = false;
    loop {
        let stream = match peer::dial(&l.endpoint, &l.cfg, l.addr, &name).await {
            Ok(conn) => peer::in_time("open a stream", conn.open_bi()).await,
            Err(e) => Err(e),
        };
        // A first frame makes the stream known to the node at once (QUIC announces a stream
        // only with its first bytes), so every node can reply to the first request.
        let stream = match stream {
            Ok((mut send, recv)) => match transport::encode(&Wire::Hello) {
                Some(hello) => match send.write_all(&hello).await {
                    Ok(()) => Ok((send, recv)),
                    Err(e) => Err(e.to_string()),
                },
                None => Ok((send, recv)),
            },
            Err(e) => Err(e),
        };
        let (send, mut recv) = match stream {
            Ok(s) => s,
            Err(e) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(node = l.node, "cannot connect: {e}; retrying");
                }
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
        warned = false;
        let inbox = l.inbox.clone();
        let node = l.node;
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                match read_frame(&mut recv, &mut buf, transport::frame::Sender::Server).await {
                    Ok(Some(w)) => {
                        if inbox.send((node, w)).await.is_err() {
                            return;
                        }
                    }
                    // A node of another wire version, or a broken one: say why.
                    Err(transport::ReadFailure::Bad(e)) => {
                        tracing::warn!(node, "refusing what the node sent: {e}");
                        return;
                    }
                    Ok(None) | Err(transport::ReadFailure::Closed) => return,
                }
            }
        });
        let outcome = peer::drain(send, &mut l.queue, &l.counters).await;
        reader.abort();
        if matches!(outcome, peer::Drained::QueueClosed) {
            return;
        }
    }
}
