//! `tangaroa status`: what every node says about itself.

use super::BadInput;
use crate::runtime::client::Session;
use crate::transport::NodeReport;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "\
Each node reports its own state; a Byzantine node may lie here too. Exit code 0 when every
node answered, 1 when some did not, 2 on bad input.")]
pub struct StatusArgs {
    /// Cluster configuration written by `tangaroa keygen`.
    #[arg(long)]
    pub config: PathBuf,
    /// A registered client's secret key to connect with (default: client-0.key).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Wait this long for answers, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Print JSON (one array of reports, null for silent nodes) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> Result<u8, BadInput> {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(BadInput(
            "--timeout must be between 0 and 600 seconds".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BadInput(format!("cannot start the async runtime: {e}")))?;
    let reports = rt.block_on(async {
        let mut session = Session::connect(&args.config, args.key.as_deref())
            .await
            .map_err(|e| BadInput(e.to_string()))?;
        let r = session.status(Duration::from_secs_f64(args.timeout)).await;
        session.close_gracefully().await;
        Ok::<_, BadInput>(r)
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialize")
        );
    } else {
        out!("{}", table(&reports));
    }
    Ok(if reports.iter().all(Option::is_some) {
        0
    } else {
        1
    })
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`812 B`, `3.4 MiB`).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The status table shared by `status`, `cluster` and `demo`.
pub fn table(reports: &[Option<NodeReport>]) -> String {
    let mut s = format!(
        "{:<5} {:<10} {:>5} {:>7} {:>7} {:>7} {:>8} {:>9} {:<14} {:<13} {:>8} {:>9} {:>9}\n",
        "node",
        "role",
        "term",
        "base",
        "last",
        "commit",
        "snapshot",
        "disk",
        "commit hash",
        "leader",
        "evidence",
        "rejected",
        "msgs out"
    );
    for (i, r) in reports.iter().enumerate() {
        match r {
            None => s.push_str(&format!("{i:<5} (no answer)\n")),
            Some(r) => {
                let leader = r
                    .leader
                    .map_or("-".to_string(), |(t, l)| format!("{l} (term {t})"));
                let hash: String = r.commit_hash.chars().take(12).collect();
                let snapshot = r.snapshot_index.map_or("-".to_string(), |i| i.to_string());
                s.push_str(&format!(
                    "{:<5} {:<10} {:>5} {:>7} {:>7} {:>7} {:>8} {:>9} {:<14} {:<13} {:>8} {:>9} {:>9}\n",
                    r.id,
                    r.role,
                    r.term,
                    r.log_base,
                    r.last_index,
                    r.commit,
                    snapshot,
                    human_bytes(r.disk_bytes),
                    hash,
                    leader,
                    r.evidence,
                    r.counters.rejected,
                    r.counters.msgs_sent
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_base_snapshot_and_disk_use() {
        let report = NodeReport {
            log_base: 1000,
            last_index: 1200,
            commit: 1190,
            snapshot_index: Some(1000),
            disk_bytes: 3 << 20,
            ..NodeReport::default()
        };
        let t = table(&[Some(report), Some(NodeReport::default()), None]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("base") && lines[0].contains("snapshot") && lines[0].contains("disk")
        );
        assert!(
            lines[1].contains("1000") && lines[1].contains("3.0 MiB"),
            "{t}"
        );
        assert!(lines[2].contains(" - ") && lines[2].contains("0 B"), "{t}");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
