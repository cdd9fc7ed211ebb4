//! `tangaroa client`: signed requests from the command line.

use super::BadInput;
use crate::protocol::{Op, OpResult, MAX_OP_BYTES};
use crate::runtime::client::{ClientError, Session};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes a script can rely on.
pub mod exit {
    /// The cluster accepted the request and (for cas) the swap happened.
    pub const OK: u8 = 0;
    /// No agreed result before --timeout: the outcome is unknown.
    pub const NO_RESULT: u8 = 1;
    /// Bad arguments, configuration or keys.
    pub const BAD_INPUT: u8 = 2;
    /// cas: the current value was not OLD (it is printed).
    pub const CAS_FAILED: u8 = 3;
    /// get: the key does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// Not applied: the cluster had already applied a later request of this client (its
    /// key was used elsewhere at the same time, e.g. from another machine).
    pub const NOT_APPLIED: u8 = 5;
}

#[derive(Debug, Args)]
#[command(after_help = "\
A result is accepted only when enough nodes reply the same (f+1 in bft), so up to f lying
nodes cannot fool the client. Requests go to the leader; on timeout to every node, and
after a second timeout with a signed Revolution against the leader.

Calls with one key may run at the same time on one machine: they take turns (a lock on the
key file), so each request's sequence number is above the last one's.

Exit codes: 0 done; 1 no agreed result before --timeout (outcome unknown); 2 bad input;
3 cas failed (current value printed); 4 get: no such key; 5 not applied (a later request
of this client was applied first).")]
pub struct ClientArgs {
    /// Cluster configuration written by `tangaroa keygen`.
    #[arg(long)]
    pub config: PathBuf,
    /// The client's Ed25519 secret key (default: client-0.key next to the config). Its
    /// TLS key and certificate are read from the same place (.tls.key, .crt).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    #[command(subcommand)]
    pub op: ClientOp,
}

#[derive(Debug, Subcommand)]
pub enum ClientOp {
    /// Set KEY to VALUE.
    Put { key: String, value: String },
    /// Print KEY's value.
    Get { key: String },
    /// Remove KEY.
    Delete { key: String },
    /// Set KEY to NEW if its value is OLD ('-' for absent).
    Cas {
        key: String,
        old: String,
        new: String,
    },
    /// Send a signed Revolution against the current leader. In bft it is deposed only if
    /// it fails to commit the request the Revolution carries within the request timeout.
    Revolt,
}

fn op_of(c: &ClientOp) -> Op {
    match c {
        ClientOp::Put { key, value } => Op::Put {
            key: key.clone(),
            value: value.clone(),
        },
        ClientOp::Get { key } => Op::Get { key: key.clone() },
        ClientOp::Delete { key } => Op::Delete { key: key.clone() },
        ClientOp::Cas { key, old, new } => Op::Cas {
            key: key.clone(),
            expected: (old != "-").then(|| old.clone()),
            new: new.clone(),
        },
        // What a Revolution carries: a harmless read the leader must commit.
        ClientOp::Revolt => Op::Get {
            key: "tangaroa/revolution".into(),
        },
    }
}

pub fn run(args: ClientArgs) -> Result<u8, BadInput> {
    if !(args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(BadInput(
            "--timeout must be between 0 and 3600 seconds".into(),
        ));
    }
    let limit = Duration::from_secs_f64(args.timeout);
    let bytes = op_of(&args.op).data_bytes();
    if bytes > MAX_OP_BYTES {
        return Err(BadInput(format!(
            "the operation carries {bytes} bytes of keys and values; the most is {MAX_OP_BYTES}"
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BadInput(format!("cannot start the async runtime: {e}")))?;
    let key_file = key_path(&args.config, args.key.as_deref())?;
    let deadline = std::time::Instant::now() + limit;
    let Some(_turn) = take_turn(&key_file, deadline) else {
        errln!(
            "error: another call with {} still runs after --timeout; no request was sent",
            key_file.display()
        );
        return Ok(exit::NO_RESULT);
    };
    let limit = deadline.saturating_duration_since(std::time::Instant::now());
    rt.block_on(async move {
        let mut session = Session::connect(&args.config, args.key.as_deref())
            .await
            .map_err(|e| BadInput(e.to_string()))?;
        let op = op_of(&args.op);
        let outcome = match args.op {
            ClientOp::Revolt => revolt(&mut session, op, limit).await,
            _ => session.execute(op, limit).await.map_err(|e| e.to_string()),
        };
        session.close_gracefully().await;
        Ok(match outcome {
            Ok(result) => print_result(&args.op, &result),
            Err(e) => {
                errln!("error: {e}");
                exit::NO_RESULT
            }
        })
    })
}

async fn revolt(session: &mut Session, op: Op, limit: Duration) -> Result<OpResult, String> {
    let reports = session.status(Duration::from_secs(2)).await;
    let Some((term, leader)) = crate::runtime::agreed_leader(&reports) else {
        return Err("no node reports a leader: nothing to revolt against".into());
    };
    outln!("revolution against node {leader} (term {term}), sent to every node");
    let result = session
        .revolt(op, term, leader, limit)
        .await
        .map_err(|e: ClientError| e.to_string())?;
    let after = session.status(Duration::from_secs(2)).await;
    match crate::runtime::agreed_leader(&after) {
        Some((t, l)) if (t, l) != (term, leader) => outln!("node {l} now leads (term {t})"),
        Some(_) => outln!(
            "node {leader} still leads: it committed the carried request, so honest nodes keep it"
        ),
        None => outln!("no leader agreed on yet"),
    }
    Ok(result)
}

fn print_result(op: &ClientOp, r: &OpResult) -> u8 {
    match (op, r) {
        (ClientOp::Revolt, _) => exit::OK,
        (_, OpResult::Ok) => {
            outln!("OK");
            exit::OK
        }
        (_, OpResult::Value(Some(v))) => {
            outln!("{v}");
            exit::OK
        }
        (_, OpResult::Value(None)) => {
            errln!("not found");
            exit::NOT_FOUND
        }
        (_, OpResult::CasFailed(current)) => {
            outln!("{}", current.as_deref().unwrap_or("-"));
            errln!("cas failed: the current value is not the expected one");
            exit::CAS_FAILED
        }
        (_, OpResult::Stale) => {
            errln!("error: not applied: the cluster applied a later request of this client first");
            exit::NOT_APPLIED
        }
    }
}

/// The client's secret key file: `--key`, or the first registered client's beside the
/// configuration.
fn key_path(config: &std::path::Path, key: Option<&std::path::Path>) -> Result<PathBuf, BadInput> {
    if let Some(k) = key {
        return Ok(k.to_path_buf());
    }
    let loaded = crate::runtime::Loaded::load(config).map_err(|e| BadInput(e.to_string()))?;
    let id = loaded
        .client_id(None)
        .map_err(|e| BadInput(e.to_string()))?;
    Ok(crate::keygen::secret_paths(&loaded.dir, &format!("client-{id}")).0)
}

/// Waits, until `deadline`, for this key's turn: an exclusive lock on its file, held
/// until the returned file is dropped (at exit). Calls with one key then run one after
/// another, each with sequence numbers above the previous call's (they start at the
/// clock when the session connects), so none is refused as stale. `None` if the
/// deadline passed; if the file cannot be locked at all, the call goes ahead unlocked.
fn take_turn(key: &std::path::Path, deadline: std::time::Instant) -> Option<Option<std::fs::File>> {
    let Ok(file) = std::fs::File::open(key) else {
        return Some(None); // reading the key will report the problem
    };
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor we own; released when the file is closed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Some(Some(file));
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Some(None);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    #[cfg(not(unix))]
    Some(Some(file))
}
