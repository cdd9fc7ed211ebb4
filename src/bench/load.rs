//! Closed-loop client load: each client keeps exactly one signed request outstanding,
//! sending the next as soon as the previous is accepted (f+1 matching replies in bft).

use crate::protocol::{ClientId, Op, OpResult};
use crate::runtime::client::Session;
use crate::runtime::Loaded;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A single request's limit: past it the request counts as failed and the client moves on.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(10);

pub enum Stop {
    At(Instant),
    /// Total requests across all clients.
    After(u64),
}

#[derive(Default)]
pub struct Samples {
    /// (completion time since load start, latency) of every accepted request.
    pub done: Vec<(Duration, Duration)>,
    pub failed: u64,
}

/// Runs `clients` closed-loop clients until `stop` (and never past `hard_limit`), each
/// putting `payload`-byte values. `issued` counts accepted requests as they happen, for
/// the progress display.
pub async fn run(
    loaded: Arc<Loaded>,
    clients: usize,
    payload: usize,
    stop: Stop,
    hard_limit: Instant,
    issued: Arc<AtomicU64>,
) -> Result<Samples, String> {
    let started = Instant::now();
    let budget = Arc::new(AtomicU64::new(match stop {
        Stop::After(n) => n,
        Stop::At(_) => u64::MAX,
    }));
    let deadline = match stop {
        Stop::At(t) => t.min(hard_limit),
        Stop::After(_) => hard_limit,
    };
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut session = Session::connect_as(&loaded, c as ClientId, None)
            .await
            .map_err(|e| e.to_string())?;
        let (budget, issued) = (budget.clone(), issued.clone());
        let value: Vec<u8> = "v".repeat(payload).into();
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let mut i = 0u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_ok()
            {
                let op = Op::Put {
                    key: format!("c{c}-{i}"),
                    value: value.clone(),
                };
                i += 1;
                let t = Instant::now();
                let limit = REQUEST_LIMIT.min(deadline.saturating_duration_since(t));
                match session.execute(op, limit).await {
                    Ok(OpResult::Ok) => {
                        s.done.push((started.elapsed(), t.elapsed()));
                        issued.fetch_add(1, Ordering::Relaxed);
                    }
                    // Cut off by the end of the run: neither a success nor a failure.
                    _ if Instant::now() >= deadline => {}
                    _ => s.failed += 1,
                }
            }
            session.close();
            s
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())?;
        all.done.extend(s.done);
        all.failed += s.failed;
    }
    all.done.sort();
    Ok(all)
}
