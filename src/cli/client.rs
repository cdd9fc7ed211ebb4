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
    /// Bad arguments, configuration, keys or value file; nothing was sent. (Returned
    /// through `BadInput`, as for every command.)
    #[allow(dead_code)]
    pub const BAD_INPUT: u8 = 2;
    /// cas: the current value was not the expected one (it is printed; absent: nothing
    /// on stdout, "absent" on stderr).
    pub const CAS_FAILED: u8 = 3;
    /// get: the key does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// Not applied: the cluster had already applied a later request of this client (its
    /// key was used elsewhere at the same time, e.g. from another machine).
    pub const NOT_APPLIED: u8 = 5;
    /// The cluster answered, but the answer could not be written to stdout.
    pub const OUTPUT_FAILED: u8 = 6;
}

#[derive(Debug, Args)]
#[command(after_help = "\
A result is accepted only when enough nodes reply the same (f+1 in bft), so up to f lying
nodes cannot fool the client. Requests go to the leader; on timeout to every node, and
after a second timeout with a signed Revolution against the leader.

Values are bytes. A VALUE or NEW argument is taken as its UTF-8 text; `-` reads the value
from stdin (all of it, exactly: no newline is stripped), and --value-file reads it from a
file. To store the one-character text \"-\", pipe it: `printf - | tangaroa client ... put K -`.
cas says what it expects with exactly one of --expect VALUE (text), --expect-file PATH, or
--expect-absent (the key must not exist). An empty --expect \"\" expects the empty value,
which is not absence.

Output (--output): `text` (default) prints a UTF-8 value and a newline, and a value that is
not UTF-8 as hex with a note on stderr; `hex` always prints hex and a newline; `raw` writes
the exact bytes and nothing else.

Calls with one key may run at the same time on one machine: they take turns (a lock on the
key file), so each request's sequence number is above the last one's.

Exit codes:
  0  done (put, delete, cas swapped, get found the key, revolt's request accepted)
  1  no agreed result before --timeout: the outcome is unknown (the request may still commit)
  2  bad input (arguments, configuration, keys, value file or stdin); nothing was sent
  3  cas failed: the current value is not the expected one (printed; absent: nothing on stdout)
  4  get: no such key
  5  not applied: a later request of this client was applied first
  6  the cluster answered but the result could not be written to stdout")]
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
    /// How to print a value: text (hex if not UTF-8), hex, or raw bytes.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub op: ClientOp,
}

/// How `get` and a failed `cas` print a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// UTF-8 text and a newline; a value that is not UTF-8 as hex, with a note on stderr.
    Text,
    /// Lowercase hex and a newline.
    Hex,
    /// The exact bytes, nothing added.
    Raw,
}

/// Where a value comes from: the argument's text, stdin (`-`), or a file.
#[derive(Debug, Args)]
pub struct ValueArgs {
    /// The value as text; `-` reads it from stdin.
    #[arg(
        value_name = "VALUE",
        required_unless_present = "value_file",
        conflicts_with = "value_file"
    )]
    pub value: Option<String>,
    /// Read the value from this file (any bytes).
    #[arg(long, value_name = "PATH")]
    pub value_file: Option<PathBuf>,
}

/// What a cas expects: exactly one of a value, a file's bytes, or absence.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ExpectArgs {
    /// Swap only if the current value is this text (\"\" is the empty value, not absence).
    #[arg(long, value_name = "VALUE", allow_hyphen_values = true)]
    pub expect: Option<String>,
    /// Swap only if the current value is this file's bytes.
    #[arg(long, value_name = "PATH")]
    pub expect_file: Option<PathBuf>,
    /// Swap only if the key does not exist.
    #[arg(long)]
    pub expect_absent: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientOp {
    /// Set KEY to VALUE.
    Put {
        key: String,
        #[command(flatten)]
        value: ValueArgs,
    },
    /// Print KEY's value.
    Get { key: String },
    /// Remove KEY.
    Delete { key: String },
    /// Set KEY to NEW if its value is the expected one (--expect, --expect-file or
    /// --expect-absent).
    Cas {
        key: String,
        #[command(flatten)]
        expect: ExpectArgs,
        /// The new value (`-`: stdin, or --value-file).
        #[command(flatten)]
        new: ValueArgs,
    },
    /// Send a signed Revolution against the current leader. In bft it is deposed only if
    /// it fails to commit the request the Revolution carries within the request timeout.
    Revolt,
}

/// Reads at most `MAX_OP_BYTES + 1` bytes (one more tells "too large" from "exactly at
/// the limit"), so a huge file or stream is refused without being read whole.
fn read_limited(r: impl std::io::Read, what: &str) -> Result<Vec<u8>, BadInput> {
    use std::io::Read;
    let mut buf = Vec::new();
    r.take(MAX_OP_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| BadInput(format!("cannot read {what}: {e}")))?;
    Ok(buf)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, BadInput> {
    let what = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| BadInput(format!("cannot read {what}: {e}")))?;
    read_limited(f, &what)
}

impl ValueArgs {
    fn bytes(&self) -> Result<Vec<u8>, BadInput> {
        match (&self.value, &self.value_file) {
            (_, Some(path)) => read_file(path),
            (Some(v), None) if v == "-" => read_limited(std::io::stdin().lock(), "stdin"),
            (Some(v), None) => Ok(v.as_bytes().to_vec()),
            (None, None) => Err(BadInput("no value given".into())),
        }
    }
}

impl ExpectArgs {
    fn expected(&self) -> Result<Option<Vec<u8>>, BadInput> {
        match (&self.expect, &self.expect_file, self.expect_absent) {
            (Some(v), None, false) => Ok(Some(v.as_bytes().to_vec())),
            (None, Some(path), false) => read_file(path).map(Some),
            (None, None, true) => Ok(None),
            _ => Err(BadInput(
                "cas needs exactly one of --expect, --expect-file and --expect-absent".into(),
            )),
        }
    }
}

fn op_of(c: &ClientOp) -> Result<Op, BadInput> {
    Ok(match c {
        ClientOp::Put { key, value } => Op::Put {
            key: key.clone(),
            value: value.bytes()?,
        },
        ClientOp::Get { key } => Op::Get { key: key.clone() },
        ClientOp::Delete { key } => Op::Delete { key: key.clone() },
        ClientOp::Cas { key, expect, new } => Op::Cas {
            key: key.clone(),
            expected: expect.expected()?,
            new: new.bytes()?,
        },
        // What a Revolution carries: a harmless read the leader must commit.
        ClientOp::Revolt => Op::Get {
            key: "tangaroa/revolution".into(),
        },
    })
}

pub fn run(args: ClientArgs) -> Result<u8, BadInput> {
    if !(args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(BadInput(
            "--timeout must be between 0 and 3600 seconds".into(),
        ));
    }
    let limit = Duration::from_secs_f64(args.timeout);
    let op = op_of(&args.op)?;
    let bytes = op.data_bytes();
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
        let outcome = match args.op {
            ClientOp::Revolt => revolt(&mut session, op, limit).await,
            _ => session.execute(op, limit).await.map_err(|e| e.to_string()),
        };
        session.close_gracefully().await;
        Ok(match outcome {
            Ok(result) => print_result(&args.op, &result, args.output),
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

fn print_result(op: &ClientOp, r: &OpResult, output: Output) -> u8 {
    match (op, r) {
        (ClientOp::Revolt, _) => exit::OK,
        (_, OpResult::Ok) => {
            outln!("OK");
            exit::OK
        }
        (_, OpResult::Value(Some(v))) => print_value(v, output).unwrap_or(exit::OK),
        (_, OpResult::Value(None)) => {
            errln!("not found");
            exit::NOT_FOUND
        }
        (_, OpResult::CasFailed(current)) => {
            let failed = match current {
                Some(v) => print_value(v, output),
                None => None,
            };
            match current {
                Some(_) => {
                    errln!("cas failed: the current value (printed) is not the expected one")
                }
                None => errln!("cas failed: the key is absent"),
            }
            failed.unwrap_or(exit::CAS_FAILED)
        }
        (_, OpResult::Stale) => {
            errln!("error: not applied: the cluster applied a later request of this client first");
            exit::NOT_APPLIED
        }
    }
}

/// Writes a value to stdout as `output` says; `Some(exit::OUTPUT_FAILED)` if it could not
/// be written (a closed pipe, a full disk).
fn print_value(v: &[u8], output: Output) -> Option<u8> {
    use std::io::Write;
    let text = match output {
        Output::Raw => None,
        Output::Hex => Some(hex::encode(v)),
        Output::Text => {
            Some(match std::str::from_utf8(v) {
                Ok(t) => t.to_string(),
                Err(_) => {
                    errln!("note: the value is not UTF-8; printed as hex (--output raw writes its bytes)");
                    hex::encode(v)
                }
            })
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match text {
        Some(t) => writeln!(out, "{t}"),
        None => out.write_all(v),
    }
    .and_then(|()| out.flush());
    match written {
        Ok(()) => None,
        Err(e) => {
            errln!("error: cannot write the value to stdout: {e}");
            Some(exit::OUTPUT_FAILED)
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
    loop {
        // An exclusive advisory lock (flock on Unix), released when the file is closed.
        match file.try_lock() {
            Ok(()) => return Some(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(_)) => return Some(None),
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
