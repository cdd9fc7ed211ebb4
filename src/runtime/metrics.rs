//! `tangaroa node --metrics ADDR`: Prometheus text on `/metrics`, liveness on `/healthz`,
//! readiness on `/readyz`, over plain HTTP/1.1 (one request per connection).
//!
//! The node's state is read the way `tangaroa status` reads it: a status query into the
//! node loop, answered between batches, so the loop needs no shared state for it. The
//! loop reports only what a status report does not hold: batch sizes, persist (fsync)
//! latency, entries per AppendEntries, commit latency and the commit index it has heard
//! of ([`Metrics::batch`], [`Metrics::persisted`], [`Metrics::entries_sent`],
//! [`Metrics::committed`], [`Tracker`]). Per-kind traffic, rejections by kind and reason
//! and verification time are the transport's [`LiveCounters`], read at each scrape.
//!
//! - `/healthz`: 200 when the node loop answers a status query within a second, else 503.
//! - `/readyz`: 200 when the node leads, or follows a proven leader (one whose election
//!   proof it accepted) that it has heard from within the longest election timeout, and
//!   is caught up: its commit index is at most [`CAUGHT_UP_LAG`] below the highest commit
//!   index it has heard of that no f liars can have made up (see [`Tracker::heard`]);
//!   else 503 with the reason.

use crate::protocol::node::RoleName;
use crate::protocol::{ClientId, Index, NodeId, Term};
use crate::transport::{
    frame, Counters, Inbound, LiveCounters, NodeReport, Wire, FRAME_REASONS, KINDS, REJECT_REASONS,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

type Labels = Vec<(String, String)>;

/// How long a scrape waits for the node loop.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Most bytes of a request read before answering.
const MAX_REQUEST: usize = 8 * 1024;
/// Caught up: the node's commit index is at most this many entries below the highest
/// commit index it has heard of. A few of the largest batches (under load a batch holds
/// up to a few dozen requests), so a follower one commit round behind stays ready while
/// one that is replaying a backlog (after a restart or a partition) is not.
pub const CAUGHT_UP_LAG: Index = 256;
/// Requests whose arrival time is kept for the commit latency, at most.
const MAX_PENDING: usize = 65_536;
/// A request not applied this long after it arrived is forgotten (never committed here,
/// or committed before this process started).
const PENDING_FOR: Duration = Duration::from_secs(60);

pub struct Metrics {
    registry: Registry,
    role: Family<Labels, Gauge>,
    term: Gauge,
    leader: Gauge,
    last_index: Gauge,
    commit: Gauge,
    applied: Gauge,
    evidence: Gauge,
    ready: Gauge,
    heard: Gauge,
    traffic: Family<Labels, Counter>,
    batch_inputs: Histogram,
    persist_seconds: Histogram,
    entries_sent: Histogram,
    commit_seconds: Histogram,
    /// What the node loop last saw of the leader and the cluster's commit index.
    seen: Mutex<Seen>,
    /// The traffic counters at the last scrape, to turn snapshots into increments.
    last: Mutex<Counters>,
}

impl Metrics {
    /// The transport's counters are read at each scrape.
    pub fn new(transport: Arc<LiveCounters>) -> Metrics {
        let mut r = Registry::with_prefix("tangaroa");
        let role = Family::<Labels, Gauge>::default();
        r.register("role", "1 for the node's current role", role.clone());
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let term = gauge(&mut r, "term", "Current term");
        let leader = gauge(
            &mut r,
            "leader",
            "Leader this node follows (-1: none known)",
        );
        let last_index = gauge(&mut r, "last_index", "Index of the last log entry");
        let commit = gauge(&mut r, "commit_index", "Commit index");
        let applied = gauge(
            &mut r,
            "applied",
            "Requests applied since the process started",
        );
        let evidence = gauge(&mut r, "evidence", "Pieces of misbehaviour evidence held");
        let ready = gauge(&mut r, "ready", "1 when /readyz answers 200");
        let heard = gauge(
            &mut r,
            "heard_commit_index",
            "The commit index this node has heard the cluster reach (-1: not yet known)",
        );
        let traffic = Family::<Labels, Counter>::default();
        r.register(
            "transport",
            "Transport events by kind (sent, received, rejected, bad_frames, dropped)",
            traffic.clone(),
        );
        let batch_inputs = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        r.register(
            "batch_inputs",
            "Inputs stepped per batch of the node loop",
            batch_inputs.clone(),
        );
        let persist_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        r.register(
            "persist_seconds",
            "Time to make a batch durable (write and fsync)",
            persist_seconds.clone(),
        );
        let entries_sent = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        r.register(
            "append_entries_entries",
            "Entries per AppendEntries sent with entries (the leader's replication batches)",
            entries_sent.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        r.register(
            "commit_seconds",
            "Time from a request's arrival at this node to its application here",
            commit_seconds.clone(),
        );
        r.register_collector(Box::new(Traffic(transport)));
        Metrics {
            registry: r,
            role,
            term,
            leader,
            last_index,
            commit,
            applied,
            evidence,
            ready,
            heard,
            traffic,
            batch_inputs,
            persist_seconds,
            entries_sent,
            commit_seconds,
            seen: Mutex::new(Seen::default()),
            last: Mutex::new(Counters::default()),
        }
    }

    /// A batch of `inputs` inputs was stepped.
    pub fn batch(&self, inputs: usize) {
        self.batch_inputs.observe(inputs as f64);
    }

    /// A batch's state took `took` to write and sync.
    pub fn persisted(&self, took: Duration) {
        self.persist_seconds.observe(took.as_secs_f64());
    }

    /// An AppendEntries carrying `entries` entries was sent.
    pub fn entries_sent(&self, entries: usize) {
        self.entries_sent.observe(entries as f64);
    }

    /// A request was applied `took` after it arrived here.
    pub fn committed(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// What the node loop sees (from [`Tracker::seen`]), set before it answers a status
    /// query.
    pub fn seen(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }

    fn readiness(&self, r: &NodeReport) -> Result<(), String> {
        readiness(r, &self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn update(&self, r: &NodeReport) {
        for role in RoleName::ALL {
            let labels = vec![("role".to_string(), role.to_string().to_lowercase())];
            self.role
                .get_or_create(&labels)
                .set(i64::from(r.role == role));
        }
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.term.set(int(r.term));
        self.leader
            .set(r.leader.map_or(-1, |(_, id)| i64::from(id)));
        self.last_index.set(int(r.last_index));
        self.commit.set(int(r.commit));
        self.applied.set(int(r.applied));
        self.evidence.set(int(r.evidence as u64));
        self.ready.set(i64::from(self.readiness(r).is_ok()));
        let heard = self.seen.lock().unwrap_or_else(|p| p.into_inner()).heard;
        self.heard.set(heard.map_or(-1, int));
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = &r.counters;
        for (kind, new, old) in [
            ("sent", now.msgs_sent, last.msgs_sent),
            ("sent_bytes", now.bytes_sent, last.bytes_sent),
            ("received", now.msgs_received, last.msgs_received),
            ("rejected", now.rejected, last.rejected),
            ("bad_frames", now.bad_frames, last.bad_frames),
            ("dropped", now.dropped, last.dropped),
        ] {
            let labels = vec![("kind".to_string(), kind.to_string())];
            self.traffic
                .get_or_create(&labels)
                .inc_by(new.saturating_sub(old));
        }
        *last = now.clone();
    }

    fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// What the node loop saw, for readiness.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// The highest commit index heard of ([`Tracker::heard`], or the node's own if
    /// higher); `None` while too few nodes have claimed any.
    pub heard: Option<Index>,
    /// How long since the leader the node follows last sent it an AppendEntries of the
    /// term it leads; `None` if it never did since this process started, or (when the
    /// node's own term is later than the leader's) not since the node moved to its term.
    pub leader_silent: Option<Duration>,
    /// The longest a follower waits for its leader before it campaigns (2T).
    pub window: Duration,
}

/// Ready: the node leads, or follows a proven leader it has heard from within the window,
/// and its commit index is within [`CAUGHT_UP_LAG`] of the highest commit index it has
/// heard of. A node that moved to a later term than its leader's (it voted or campaigned)
/// is not ready until a leader proves itself in that term, or the old leader is heard
/// from again after the move: `bft` lets a node that campaigned in vain go on taking a
/// live leader's entries below its own term, and it then follows that leader.
pub fn readiness(r: &NodeReport, seen: &Seen) -> Result<(), String> {
    let leads = r.role == RoleName::Leader && r.leader == Some((r.term, r.id));
    if !leads {
        let Some((t, id)) = r.leader else {
            return Err(format!("no leader known in term {} ({})", r.term, r.role));
        };
        match seen.leader_silent {
            Some(d) if d <= seen.window => {}
            Some(d) => {
                return Err(format!(
                    "nothing from the leader (node {id}, term {t}) for {} ms (term {}, {})",
                    d.as_millis(),
                    r.term,
                    r.role
                ))
            }
            None if r.term > t => {
                return Err(format!(
                    "in term {} ({}), no leader of it proven, nothing since from the leader of term {t} (node {id})",
                    r.term, r.role
                ))
            }
            None => {
                return Err(format!(
                    "nothing heard from the leader (node {id}, term {t}) since start (term {}, {})",
                    r.term, r.role
                ))
            }
        }
    }
    let Some(heard) = seen.heard else {
        return Err(
            "not yet heard from enough nodes how far the cluster has committed".to_string(),
        );
    };
    let behind = heard.saturating_sub(r.commit);
    if behind > CAUGHT_UP_LAG {
        return Err(format!(
            "catching up: commit index {} is {behind} behind the {heard} heard of (the bound is {CAUGHT_UP_LAG})",
            r.commit
        ));
    }
    Ok(())
}

/// What the node loop keeps for the metrics: when requests arrived (for the commit
/// latency) and the commit indexes other nodes claim.
///
/// **The commit index heard of.** The runtime cannot know the cluster's commit index; it
/// knows what nodes tell it. Each node's claim is the highest index it has shown this
/// node it holds: in a successful Ack it signed (the end of the prefix it verified against
/// the leader's log; followers Ack heartbeats too, so a quiet cluster still claims), in a
/// Commit it signed (`bft`: "my lock is at this index"), or as leader in an
/// AppendEntries' commit field. Acks and Commits run at most a round ahead of commits, so
/// under load a claim may exceed the commit index by a batch; [`CAUGHT_UP_LAG`] allows
/// for that. [`Tracker::heard`] is the (f+1)-th highest claim of the other nodes in
/// `bft`, which f liars cannot raise: at least one honest node got that far. Until f+1
/// other nodes have claimed anything (a node just started, whose peers have not yet
/// reconnected to it, has heard only its leader, who may lie) it is unknown, and the node
/// is not ready. `raft` assumes no liars and `tangaroa` is broken anyway, so there the
/// highest claim counts.
///
/// A node that was down would hear stale claims first if its peers' links kept the
/// frames they queued for it meanwhile (traced on real processes: the leader's
/// AppendEntries reaching a restarted node carried commit 12, 20, ... 94 while the leader
/// was at 405). Links drop what they queue for an unreachable peer
/// (`transport::peer::discard_queued`), and `tests/metrics.rs`,
/// `a_node_far_behind_is_not_ready_until_it_caught_up`, checks it. What the check also catches
/// is a node that hears the head and lags it, e.g. one whose disk is slower under load.
pub struct Tracker {
    me: NodeId,
    /// The highest index each node has claimed, if it claimed any.
    claims: Vec<Option<Index>>,
    /// Liars the heard-of index must resist.
    liars: usize,
    /// The last AppendEntries from each node: its term and when it came.
    appends: Vec<Option<(Term, Instant)>>,
    /// [`Seen::window`].
    window: Duration,
    /// The node's term and when the node loop first saw it.
    term: (Term, Option<Instant>),
    arrived: HashMap<(ClientId, u64), Instant>,
    order: VecDeque<((ClientId, u64), Instant)>,
}

impl Tracker {
    /// `window`: the longest election timeout (2T in wall-clock time).
    pub fn new(me: NodeId, n: usize, liars: usize, window: Duration) -> Tracker {
        Tracker {
            me,
            claims: vec![None; n],
            liars: liars.min(n.saturating_sub(1)),
            appends: vec![None; n],
            window,
            term: (0, None),
            arrived: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// `node` claims to hold `index` (Acked, locked or committed).
    pub fn claim(&mut self, node: NodeId, index: Index) {
        if node == self.me {
            return;
        }
        if let Some(c) = self.claims.get_mut(node as usize) {
            *c = Some(c.map_or(index, |c| c.max(index)));
        }
    }

    /// `leader` sent an AppendEntries of `term` (authenticated: from its own link).
    pub fn append_from(&mut self, leader: NodeId, term: Term, now: Instant) {
        if let Some(a) = self.appends.get_mut(leader as usize) {
            *a = Some((term, now));
        }
    }

    /// The node's term after a batch.
    pub fn term(&mut self, term: Term, now: Instant) {
        if term != self.term.0 {
            self.term = (term, Some(now));
        }
    }

    /// What readiness needs, for a node in `term` following `leader` with `own_commit`.
    pub fn seen(
        &mut self,
        term: Term,
        leader: Option<(Term, NodeId)>,
        own_commit: Index,
        now: Instant,
    ) -> Seen {
        self.term(term, now);
        let moved_at = self.term.1;
        let leader_silent = leader.and_then(|(t, id)| match self.appends.get(id as usize)? {
            // Below its own term, only what the leader sent after the move counts.
            Some((lt, at)) if *lt == t && (t >= term || moved_at.is_none_or(|m| *at >= m)) => {
                Some(now.duration_since(*at))
            }
            _ => None,
        });
        Seen {
            heard: self.heard().map(|h| h.max(own_commit)),
            leader_silent,
            window: self.window,
        }
    }

    /// The (liars+1)-th highest claim of the other nodes; `None` until that many claimed.
    pub fn heard(&self) -> Option<Index> {
        let mut sorted: Vec<Index> = self.claims.iter().flatten().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let enough = (self.liars + 1).min(self.claims.len().saturating_sub(1));
        match enough {
            0 => Some(0), // a cluster of one: no one else to hear of
            k => sorted.get(k - 1).copied(),
        }
    }

    /// A request arrived (from its client, or forwarded); the first arrival counts.
    pub fn arrived(&mut self, client: ClientId, seq: u64, now: Instant) {
        while let Some(&(key, at)) = self.order.front() {
            if now.duration_since(at) < PENDING_FOR && self.order.len() < MAX_PENDING {
                break;
            }
            self.order.pop_front();
            if self.arrived.get(&key) == Some(&at) {
                self.arrived.remove(&key);
            }
        }
        if let std::collections::hash_map::Entry::Vacant(v) = self.arrived.entry((client, seq)) {
            v.insert(now);
            self.order.push_back(((client, seq), now));
        }
    }

    /// A request was applied: how long after it arrived, if it arrived here.
    pub fn applied(&mut self, client: ClientId, seq: u64, now: Instant) -> Option<Duration> {
        let at = self.arrived.remove(&(client, seq))?;
        Some(now.duration_since(at))
    }
}

/// The transport's counters, encoded at each scrape.
struct Traffic(Arc<LiveCounters>);

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Traffic")
    }
}

impl Collector for Traffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let get = LiveCounters::get;
        for (name, help, by_kind) in [
            (
                "messages_received",
                "Messages decoded from peers' and clients' streams, by kind",
                &c.received_by_kind,
            ),
            (
                "messages_sent",
                "Messages handed to the transport to send, by kind (one per destination)",
                &c.sent_by_kind,
            ),
        ] {
            let counter = ConstCounter::new(0u64);
            let mut m = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for (k, kind) in KINDS.iter().enumerate() {
                let labels = [("kind", *kind)];
                ConstCounter::new(get(&by_kind[k])).encode(m.encode_family(&labels)?)?;
            }
        }
        let counter = ConstCounter::new(0u64);
        let mut m = encoder.encode_descriptor(
            "messages_rejected",
            "Messages refused by authentication, by kind and reason (only those seen)",
            None,
            counter.metric_type(),
        )?;
        for (k, kind) in KINDS.iter().enumerate() {
            for (r, reason) in REJECT_REASONS.iter().enumerate() {
                let n = get(&c.rejected_by[k][r]);
                if n > 0 {
                    let labels = [("kind", *kind), ("reason", *reason)];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let mut m = encoder.encode_descriptor(
            "bad_frames",
            "Frames refused (each cost its sender the connection), by reason",
            None,
            counter.metric_type(),
        )?;
        for (r, reason) in FRAME_REASONS.iter().enumerate() {
            let labels = [("reason", *reason)];
            ConstCounter::new(get(&c.bad_frames_by[r])).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "verify_seconds",
            "Time to authenticate one message (bounds, sender, signatures) on the transport's threads, by kind",
            None,
            c.verify_seconds[0].metric_type(),
        )?;
        for (k, kind) in KINDS.iter().enumerate() {
            let labels = [("kind", *kind)];
            c.verify_seconds[k].encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Binds `addr` (must be called inside the runtime) and serves until the runtime stops.
pub fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    node: mpsc::Sender<Inbound>,
) -> Result<(), String> {
    let std = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("--metrics {addr}: cannot bind: {e}"))?;
    std.set_nonblocking(true)
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    let listener =
        tokio::net::TcpListener::from_std(std).map_err(|e| format!("--metrics {addr}: {e}"))?;
    tracing::info!("metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (metrics, node) = (metrics.clone(), node.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(stream, &metrics, &node).await {
                    tracing::debug!("metrics: {e}");
                }
            });
        }
    });
    Ok(())
}

/// The node loop's status report, if it answers in time.
async fn query(node: &mpsc::Sender<Inbound>) -> Option<NodeReport> {
    let (tx, mut rx) = mpsc::channel(1);
    tokio::time::timeout(ANSWER_WITHIN, node.send(Inbound::StatusQuery(tx)))
        .await
        .ok()?
        .ok()?;
    let bytes = tokio::time::timeout(ANSWER_WITHIN, rx.recv())
        .await
        .ok()??;
    match frame::decode(bytes.get(4..)?) {
        Ok(Wire::Status(r)) => Some(*r),
        _ => None,
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    metrics: &Metrics,
    node: &mpsc::Sender<Inbound>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&buf);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body) = if method != "GET" && method != "HEAD" {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        match path {
            "/metrics" => {
                if let Some(r) = query(node).await {
                    metrics.update(&r);
                }
                (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.text(),
                )
            }
            "/healthz" => match query(node).await {
                Some(_) => (200, "text/plain", "ok\n".into()),
                None => (503, "text/plain", "the node loop does not answer\n".into()),
            },
            "/readyz" => match query(node).await.map(|r| metrics.readiness(&r)) {
                Some(Ok(())) => (200, "text/plain", "ready\n".into()),
                Some(Err(why)) => (503, "text/plain", format!("not ready: {why}\n")),
                None => (503, "text/plain", "the node loop does not answer\n".into()),
            },
            _ => (
                404,
                "text/plain",
                "not found; try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(term: u64, leader: Option<(u64, NodeId)>, commit: Index) -> NodeReport {
        NodeReport {
            role: RoleName::Follower,
            term,
            leader,
            commit,
            ..NodeReport::default()
        }
    }

    fn seen(heard: Index, silent_ms: Option<u64>) -> Seen {
        Seen {
            heard: Some(heard),
            leader_silent: silent_ms.map(Duration::from_millis),
            window: Duration::from_millis(400),
        }
    }

    /// Ready needs both: a leader (itself, or one it heard from within the window), and a
    /// commit index within the bound of the one heard of.
    #[test]
    fn ready_means_following_a_live_leader_and_caught_up() {
        let follower = report(3, Some((3, 1)), 100);
        assert!(readiness(&follower, &seen(100, Some(10))).is_ok());
        assert!(readiness(&follower, &seen(100 + CAUGHT_UP_LAG, Some(10))).is_ok());
        let behind = readiness(&follower, &seen(101 + CAUGHT_UP_LAG, Some(10)));
        assert!(behind.unwrap_err().contains("catching up"));
        let silent = readiness(&follower, &seen(100, Some(401))).unwrap_err();
        assert!(silent.contains("nothing from the leader"), "{silent}");
        assert!(readiness(&follower, &seen(100, None)).is_err());
        // A node in a later term (it campaigned in vain) that a live leader still feeds.
        let passive = report(5, Some((3, 1)), 100);
        assert!(readiness(&passive, &seen(100, Some(10))).is_ok());
        assert!(readiness(&report(4, None, 100), &seen(0, None)).is_err());
        // The leader needs no one to hear from, only to be caught up.
        let mut leader = report(3, Some((3, 0)), 100);
        leader.role = RoleName::Leader;
        assert!(readiness(&leader, &seen(100, None)).is_ok());
        assert!(readiness(&leader, &seen(1000, None)).is_err());
        let unknown = Seen {
            heard: None,
            ..seen(0, Some(10))
        };
        assert!(
            readiness(&follower, &unknown).is_err(),
            "too few claims heard"
        );
    }

    /// Silence is measured from the leader's last AppendEntries of the term it leads.
    #[test]
    fn leader_silence_counts_only_its_term() {
        let w = Duration::from_millis(400);
        let mut t = Tracker::new(0, 4, 1, w);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        t.term(3, t0);
        assert_eq!(t.seen(3, Some((3, 1)), 0, t0).leader_silent, None);
        t.append_from(1, 3, ms(10));
        let s = t.seen(3, Some((3, 1)), 0, ms(60));
        assert_eq!(s.leader_silent, Some(Duration::from_millis(50)));
        assert_eq!(
            t.seen(3, Some((4, 1)), 0, ms(60)).leader_silent,
            None,
            "another term"
        );
        assert_eq!(
            t.seen(3, Some((3, 2)), 0, ms(60)).leader_silent,
            None,
            "another node"
        );
        // The node moves to term 4 (it voted or campaigned): the leader of term 3 counts
        // again only once it is heard from after the move.
        t.term(4, ms(70));
        assert_eq!(t.seen(4, Some((3, 1)), 0, ms(80)).leader_silent, None);
        t.append_from(1, 3, ms(90));
        let s = t.seen(4, Some((3, 1)), 0, ms(100));
        assert_eq!(s.leader_silent, Some(Duration::from_millis(10)));
    }

    /// The heard-of commit index is the (f+1)-th highest claim: one liar claiming the
    /// moon changes nothing; two honest nodes ahead make a lagging node not caught up.
    #[test]
    fn the_heard_commit_index_resists_f_liars() {
        let mut t = Tracker::new(0, 4, 1, Duration::from_millis(400));
        assert_eq!(t.heard(), None, "nothing heard");
        t.claim(3, u64::MAX);
        assert_eq!(t.heard(), None, "one claim, maybe a liar's");
        t.claim(1, 10);
        assert_eq!(t.heard(), Some(10));
        t.claim(1, 500);
        t.claim(2, 600);
        assert_eq!(t.heard(), Some(600));
        // Claims never go back; the node's own claims do not count.
        t.claim(2, 5);
        t.claim(0, 10_000);
        assert_eq!(t.heard(), Some(600));
        // Without liars to resist (raft), the highest claim counts.
        let mut raft = Tracker::new(0, 4, 0, Duration::from_millis(400));
        raft.claim(2, 42);
        assert_eq!(raft.heard(), Some(42));
        // Claims from ids outside the cluster are ignored.
        raft.claim(9, 1000);
        assert_eq!(raft.heard(), Some(42));
        // A cluster of one hears of no one and needs to.
        assert_eq!(Tracker::new(0, 1, 0, Duration::ZERO).heard(), Some(0));
        // The node's own commit index counts when it is higher.
        let s = t.seen(1, None, 700, Instant::now());
        assert_eq!(s.heard, Some(700));
    }

    /// Commit latency runs from a request's first arrival to its application; requests
    /// never applied are forgotten, so the map stays bounded.
    #[test]
    fn commit_latency_from_first_arrival_bounded() {
        let mut t = Tracker::new(0, 4, 1, Duration::from_millis(400));
        let t0 = Instant::now();
        t.arrived(1, 7, t0);
        t.arrived(1, 7, t0 + Duration::from_millis(5)); // a retry: the first counts
        let took = t.applied(1, 7, t0 + Duration::from_millis(12));
        assert_eq!(took, Some(Duration::from_millis(12)));
        assert_eq!(t.applied(1, 7, t0), None, "counted once");
        assert_eq!(t.applied(2, 1, t0), None, "never arrived here");
        for seq in 0..(MAX_PENDING as u64 + 10) {
            t.arrived(3, seq, t0);
        }
        assert!(t.arrived.len() <= MAX_PENDING && t.order.len() <= MAX_PENDING);
        t.arrived(4, 0, t0 + PENDING_FOR + Duration::from_secs(1));
        assert_eq!(t.arrived.len(), 1, "stale arrivals are dropped");
    }

    /// Every series of the scrape is there, labelled, before any traffic.
    #[test]
    fn the_page_names_every_kind_and_reason() {
        let counters = Arc::new(LiveCounters::default());
        LiveCounters::add(&counters.rejected_by[2][1], 3);
        LiveCounters::add(&counters.bad_frames_by[0], 1);
        counters.verify_seconds[3].observe(0.00002);
        let m = Metrics::new(counters);
        m.committed(Duration::from_millis(3));
        m.entries_sent(16);
        let page = m.text();
        for want in [
            "tangaroa_messages_received_total{kind=\"append-entries\"} 0",
            "tangaroa_messages_sent_total{kind=\"reply\"} 0",
            "tangaroa_messages_rejected_total{kind=\"append-entries\",reason=\"bad-signature\"} 3",
            "tangaroa_bad_frames_total{reason=\"too-large\"} 1",
            "tangaroa_verify_seconds_count{kind=\"ack\"} 1",
            "tangaroa_commit_seconds_count 1",
            "tangaroa_append_entries_entries_count 1",
        ] {
            assert!(page.contains(want), "{want} missing from:\n{page}");
        }
    }
}
