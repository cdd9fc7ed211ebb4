//! A program that talks to a running tangaroa cluster through the library's client API.
//!
//! Start a cluster (it writes its keys and `cluster.toml` the first time), then run this
//! against its configuration:
//!
//! ```sh
//! cargo run --release -- cluster --nodes 4 --dir /tmp/tg &
//! cargo run --release --example client -- /tmp/tg/cluster.toml [/tmp/tg/client-1.key]
//! ```
//!
//! It puts a binary value, reads it back, swaps it with a compare-and-swap, shows that
//! "absent" and "empty" differ to cas, and prints who leads. Exit code 0 when every step
//! gave the expected result, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tangaroa::protocol::{Op, OpResult};
use tangaroa::runtime::client::Session;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let Some(config) = args.next() else {
        eprintln!("usage: client CLUSTER.TOML [CLIENT.KEY]");
        return ExitCode::from(2);
    };
    let key = args.next();
    match run(config, key).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: PathBuf, key: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    // Connects to every node in the background; requests wait for the connections.
    let mut s = Session::connect(&config, key.as_deref()).await?;
    println!("client {} of a {}-node cluster", s.id, s.nodes());

    // A unique key per run, so the cas steps below start from "absent".
    let key = format!("example/{}", std::process::id());
    let blob: Vec<u8> = vec![0x00, 0xff, b'\n', 0x80];
    let put = Op::Put {
        key: key.clone(),
        value: blob.clone(),
    };
    expect(s.execute(put, LIMIT).await?, OpResult::Ok, "put")?;
    let get = Op::Get { key: key.clone() };
    expect(
        s.execute(get, LIMIT).await?,
        OpResult::Value(Some(blob.clone())),
        "get",
    )?;

    // Compare-and-swap: `expected: Some(bytes)` must match the current value exactly.
    let swap = Op::Cas {
        key: key.clone(),
        expected: Some(blob),
        new: b"swapped".to_vec(),
    };
    expect(s.execute(swap, LIMIT).await?, OpResult::Ok, "cas")?;

    // `expected: None` means "absent"; the empty value is `Some(vec![])`, not absence.
    let fresh = format!("{key}/fresh");
    let empty_is_not_absent = Op::Cas {
        key: fresh.clone(),
        expected: Some(Vec::new()),
        new: b"x".to_vec(),
    };
    expect(
        s.execute(empty_is_not_absent, LIMIT).await?,
        OpResult::CasFailed(None),
        "cas expecting the empty value on an absent key",
    )?;
    let create = Op::Cas {
        key: fresh,
        expected: None,
        new: Vec::new(),
    };
    expect(
        s.execute(create, LIMIT).await?,
        OpResult::Ok,
        "cas expecting absence",
    )?;

    // Each node's own account of itself (not a proof: a Byzantine node may lie here).
    let reports = s.status(Duration::from_secs(2)).await;
    for (id, r) in reports.iter().enumerate() {
        match r {
            Some(r) => println!(
                "node {id}: {} in term {}, commit {}",
                r.role, r.term, r.commit
            ),
            None => println!("node {id}: no answer"),
        }
    }
    s.close_gracefully().await;
    println!("all steps gave the expected results");
    Ok(())
}

fn expect(got: OpResult, want: OpResult, step: &str) -> Result<(), String> {
    if got == want {
        println!("{step}: {got:?}");
        Ok(())
    } else {
        Err(format!("{step}: expected {want:?}, got {got:?}"))
    }
}
