//! `tangaroa node --metrics ADDR`: Prometheus text on `/metrics`, liveness on `/healthz`,
//! readiness on `/readyz`, over plain HTTP/1.1 (one request per connection).
//!
//! The node's state is read the way `tangaroa status` reads it: a status query into the
//! node loop, answered between batches, so the loop needs no shared state for it. The
//! loop reports only what a status report does not hold: batch sizes and persist (fsync)
//! latency, through [`Metrics::batch`] and [`Metrics::persisted`].
//!
//! - `/healthz`: 200 when the node loop answers a status query within a second, else 503.
//! - `/readyz`: 200 when the node knows the leader of its current term (it leads, or it
//!   follows a leader whose election proof it accepted), else 503 with the reason.

use crate::transport::{frame, Counters, Inbound, NodeReport, Wire};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

type Labels = Vec<(String, String)>;

/// How long a scrape waits for the node loop.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Most bytes of a request read before answering.
const MAX_REQUEST: usize = 8 * 1024;

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
    traffic: Family<Labels, Counter>,
    batch_inputs: Histogram,
    persist_seconds: Histogram,
    /// The traffic counters at the last scrape, to turn snapshots into increments.
    last: Mutex<Counters>,
}

const ROLES: [&str; 3] = ["Follower", "Candidate", "Leader"];

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
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
            traffic,
            batch_inputs,
            persist_seconds,
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

    fn update(&self, r: &NodeReport) {
        for role in ROLES {
            let labels = vec![("role".to_string(), role.to_lowercase())];
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
        self.ready.set(i64::from(readiness(r).is_ok()));
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

/// Ready: the node knows the leader of its current term (leads, or follows one).
pub fn readiness(r: &NodeReport) -> Result<(), String> {
    match r.leader {
        Some((t, _)) if t == r.term => Ok(()),
        Some((t, id)) => Err(format!(
            "the leader known (node {id}, term {t}) is not of the current term {}",
            r.term
        )),
        None => Err(format!("no leader known in term {} ({})", r.term, r.role)),
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
            "/readyz" => match query(node).await.map(|r| readiness(&r)) {
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
