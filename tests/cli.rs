//! The `tangaroa sim` contract that scripts rely on: exit codes, JSON, replay commands.

use std::process::Command;

fn tangaroa(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tangaroa"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one JSON object on stdout: {stdout}"
    );
    serde_json::from_str(lines[0]).expect("valid JSON")
}

#[test]
fn clean_runs_exit_zero_with_the_documented_json() {
    let (code, out, _) = tangaroa(&[
        "sim",
        "--nodes",
        "4",
        "--byzantine",
        "1",
        "--behaviours",
        "stall,crash",
        "--seeds",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    for key in [
        "variant",
        "nodes",
        "byzantine",
        "runs",
        "violations",
        "committed_min",
        "committed_total",
        "behaviours",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["variant"], "bft");
    assert_eq!(v["nodes"], 4);
    assert_eq!(v["runs"], 4);
    assert!(v["committed_min"].as_u64().unwrap() > 0);
    assert_eq!(v["behaviours"], serde_json::json!(["stall", "crash"]));
}

#[test]
fn violations_exit_one_and_replay() {
    let (code, out, _) = tangaroa(&[
        "sim",
        "--scenario",
        "tests/scenarios/cachin-vukolic.toml",
        "--variant",
        "tangaroa",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v = json(&out);
    let first = &v["violations"][0];
    assert_eq!(first["kind"], "safety");
    let replay = first["replay"].as_str().unwrap();
    assert!(replay.starts_with("tangaroa sim "), "{replay}");
    // The replay command reproduces the violation.
    let args: Vec<&str> = replay
        .split_whitespace()
        .skip(1)
        .chain(["--json"])
        .collect();
    let (code2, out2, _) = tangaroa(&args);
    assert_eq!(code2, 1);
    assert_eq!(json(&out2)["violations"][0]["detail"], first["detail"]);
    // Human output names the replay command too.
    let (_, human, _) = tangaroa(&[
        "sim",
        "--scenario",
        "tests/scenarios/cachin-vukolic.toml",
        "--variant",
        "tangaroa",
    ]);
    assert!(human.contains("replay: tangaroa sim --scenario"), "{human}");
}

#[test]
fn bad_input_exits_two_with_a_clear_message() {
    let cases: [&[&str]; 6] = [
        &["sim", "--variant", "paxos"],
        &["sim", "--behaviours", "sulk"],
        &["sim", "--nodes", "4", "--byzantine", "4"],
        &["sim", "--seeds", "0"],
        &["sim", "--scenario", "no/such/file.toml"],
        &["sim", "--nodes", "0"],
    ];
    for args in cases {
        let (code, out, err) = tangaroa(args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.to_lowercase().contains("error"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed to stdout: {out}");
    }
}

#[test]
fn help_explains_the_command() {
    let (code, out, _) = tangaroa(&["sim", "--help"]);
    assert_eq!(code, 0);
    for word in [
        "--variant",
        "--behaviours",
        "--scenario",
        "--json",
        "--first-seed",
    ] {
        assert!(out.contains(word), "{word} missing from help");
    }
}

#[test]
fn keygen_writes_a_cluster_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let out_s = out.to_str().unwrap();
    let (code, stdout, err) =
        tangaroa(&["keygen", "--nodes", "4", "--clients", "1", "--out", out_s]);
    assert_eq!(code, 0, "{stdout} {err}");
    assert!(stdout.contains("cluster.toml"));
    let cfg = tangaroa::config::ClusterConfig::load(&out.join("cluster.toml")).expect("loads");
    assert_eq!(cfg.nodes.len(), 4);
    let (code, _, err) = tangaroa(&["keygen", "--nodes", "4", "--out", out_s]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    let (code, _, _) = tangaroa(&["keygen", "--nodes", "4", "--out", out_s, "--force"]);
    assert_eq!(code, 0);
    let (code, _, err) = tangaroa(&["keygen", "--nodes", "0", "--out", out_s]);
    assert_eq!(code, 2, "{err}");
}

/// A fresh key folder for `nodes` nodes; returns it and its configuration's path.
fn keys(nodes: usize, base_port: u16) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (n, p) = (nodes.to_string(), base_port.to_string());
    let (code, _, err) = tangaroa(&["keygen", "--nodes", &n, "--out", out, "--base-port", &p]);
    assert_eq!(code, 0, "{err}");
    let config = dir
        .path()
        .join("cluster.toml")
        .to_str()
        .unwrap()
        .to_string();
    (dir, config)
}

#[test]
fn runtime_commands_explain_bad_input_with_exit_2() {
    let (dir, config) = keys(4, 29500);
    let out = dir.path().to_str().unwrap();
    let config = config.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["node", "--config", config, "--id", "9"], "nodes 0..4"),
        (
            vec![
                "node",
                "--config",
                config,
                "--id",
                "0",
                "--byzantine",
                "twins",
            ],
            "simulator",
        ),
        (
            vec![
                "node",
                "--config",
                config,
                "--id",
                "0",
                "--byzantine",
                "nice",
            ],
            "unknown behaviour",
        ),
        (
            vec!["node", "--config", "/nonexistent.toml", "--id", "0"],
            "cannot read",
        ),
        (
            vec!["client", "--config", "/nonexistent.toml", "get", "k"],
            "cannot read",
        ),
        (
            vec!["client", "--config", config, "--timeout", "0", "get", "k"],
            "--timeout",
        ),
        (
            vec![
                "cluster",
                "--nodes",
                "4",
                "--byzantine",
                "7=stall",
                "--dir",
                out,
            ],
            "nodes are 0..4",
        ),
        (vec!["cluster", "--nodes", "7", "--dir", out], "4-node"),
    ];
    let huge = "v".repeat(70_000);
    let mut cases = cases;
    cases.push((
        vec!["client", "--config", config, "put", "k", &huge],
        "the most is",
    ));
    for (args, needle) in cases {
        let (code, _, err) = tangaroa(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A node whose key file is not the configured one refuses to start.
    std::fs::copy(dir.path().join("node-1.key"), dir.path().join("node-0.key")).unwrap();
    let (code, _, err) = tangaroa(&["node", "--config", config, "--id", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not Node(0)'s"), "{err}");
}

#[test]
fn a_node_refuses_to_start_on_a_log_damaged_in_the_middle() {
    use tangaroa::protocol::{Entry, Payload, Persist};
    let (dir, config) = keys(1, 29600);
    let data = dir.path().join("data");
    {
        let (mut s, _) = tangaroa::storage::Storage::open(&data).unwrap();
        for i in 1..=2 {
            let e = Entry {
                term: 1,
                index: i,
                payload: Payload::Noop,
            };
            s.apply(&[&Persist::Append(vec![e])]).unwrap();
        }
    }
    let log = data.join("log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let (code, _, err) = tangaroa(&[
        "node",
        "--config",
        &config,
        "--id",
        "0",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was cut");
}

/// Runs `tangaroa <args>` with `env` until its stderr holds `needle` or 20 s pass, then
/// stops it (only this child) and returns its stderr.
fn stderr_until(args: &[&str], env: &[(&str, &str)], needle: &str) -> String {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tangaroa"));
    cmd.args(args)
        .env_remove("TANGAROA_LOG")
        .env_remove("RUST_LOG")
        .env_remove("TANGAROA_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(needle) || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(&path).unwrap_or(text)
}

#[test]
fn log_format_json_writes_json_lines_without_colour() {
    let (dir, config) = keys(1, 29700);
    let data = dir.path().join("data");
    let args = [
        "--log-format",
        "json",
        "node",
        "--config",
        &config,
        "--id",
        "0",
        "--data",
        data.to_str().unwrap(),
    ];
    // RUST_LOG is honoured when TANGAROA_LOG is unset.
    let err = stderr_until(&args, &[("RUST_LOG", "info")], "recovered from");
    assert!(err.contains("recovered from"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes in {err}");
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{v}");
    }
    // TANGAROA_LOG wins over RUST_LOG.
    let err = stderr_until(
        &args,
        &[("RUST_LOG", "off"), ("TANGAROA_LOG", "info")],
        "recovered from",
    );
    assert!(err.contains("recovered from"), "{err}");
    // The environment variable sets the format too; text has no colour off a terminal.
    let err = stderr_until(
        &args[2..],
        &[("TANGAROA_LOG", "info"), ("TANGAROA_LOG_FORMAT", "text")],
        "recovered from",
    );
    assert!(err.contains(" INFO ") && !err.contains('\u{1b}'), "{err}");
    assert!(serde_json::from_str::<serde_json::Value>(err.lines().next().unwrap()).is_err());
}

#[test]
fn errors_in_json_mode_are_one_json_line_and_exit_2() {
    let (code, out, err) = tangaroa(&[
        "--log-format",
        "json",
        "node",
        "--config",
        "/nonexistent.toml",
        "--id",
        "0",
    ]);
    assert_eq!(code, 2, "{out} {err}");
    let line = err.lines().last().expect("an error line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(v["level"], "ERROR");
    assert!(v["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot read"));
    let (code, _, err) = tangaroa(&["--log-format", "xml", "sim"]);
    assert_eq!(code, 2);
    assert!(err.contains("json"), "{err}");
}

#[test]
fn completions_cover_the_commands_and_flags() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef tangaroa"),
        ("fish", "complete -c tangaroa"),
    ] {
        let (code, out, err) = tangaroa(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: {out}");
        for word in ["keygen", "cluster", "log-format", "byzantine"] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, out, err) = tangaroa(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("bash"), "{err}");
}

#[test]
fn clap_checks_ranges_with_exit_2() {
    let cases: [(&[&str], &str); 5] = [
        (&["sim", "--nodes", "32"], "1..=31"),
        (&["sim", "--seeds", "0"], "1..=10000000"),
        (&["cluster", "--nodes", "65"], "1..=64"),
        (&["keygen", "--nodes", "0"], "1..=64"),
        (&["bench", "--clients", "4,0"], "1..=1024"),
    ];
    for (args, needle) in cases {
        let (code, out, err) = tangaroa(args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
