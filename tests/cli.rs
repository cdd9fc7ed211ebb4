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
    // Random runs: violations mean exit 1.
    let (code, out, _) = tangaroa(&[
        "sim",
        "--variant",
        "tangaroa",
        "--nodes",
        "4",
        "--byzantine",
        "1",
        "--behaviours",
        "equivocate",
        "--seeds",
        "40",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json(&out)["violations"][0]["kind"], "safety");
    // A scenario exits by what it expects of the variant: the Cachin-Vukolic attack is
    // expected to succeed against tangaroa (exit 0) and to fail against bft (exit 0).
    let (code, out, _) = tangaroa(&[
        "sim",
        "--scenario",
        "tests/scenarios/cachin-vukolic.toml",
        "--variant",
        "tangaroa",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
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
    assert_eq!(code2, 0);
    assert_eq!(json(&out2)["violations"][0]["detail"], first["detail"]);
    // Human output names the replay command and the expectation too.
    let (_, human, _) = tangaroa(&[
        "sim",
        "--scenario",
        "tests/scenarios/cachin-vukolic.toml",
        "--variant",
        "tangaroa",
    ]);
    assert!(human.contains("replay: tangaroa sim --scenario"), "{human}");
    assert!(human.contains("expectation met"), "{human}");
    // A scenario whose expectation is not met exits 1: the long partition that never heals.
    let text = std::fs::read_to_string("tests/scenarios/long-partition.toml").unwrap();
    let short = text.replace("action = \"heal\"", "action = \"timeout\"\nnode = 0");
    assert_ne!(short, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.toml");
    std::fs::write(&path, short).unwrap();
    let (code, human, _) = tangaroa(&["sim", "--scenario", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{human}");
    assert!(human.contains("EXPECTATION NOT MET"), "{human}");
}

#[test]
fn scenarios_refuse_events_after_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.toml");
    std::fs::write(
        &path,
        "name = \"late\"\nnodes = 4\nduration_ms = 1000\n[[event]]\nat_ms = 1500\naction = \"heal\"\n",
    )
    .unwrap();
    let (code, _, err) = tangaroa(&["sim", "--scenario", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("after the end"), "{err}");
}

#[test]
fn bad_input_exits_two_with_a_clear_message() {
    let cases: [&[&str]; 8] = [
        &["sim", "--variant", "paxos"],
        &["sim", "--switch-off", "no-such-rule"],
        &["sim", "--variant", "raft", "--switch-off", "commit-round"],
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
    let huge_file = dir.path().join("huge.bin");
    std::fs::write(&huge_file, vec![7u8; 70_000]).unwrap();
    let huge_file = huge_file.to_str().unwrap();
    // A data directory written in another format version.
    let old_data = dir.path().join("old-data");
    std::fs::create_dir(&old_data).unwrap();
    std::fs::write(old_data.join("format"), "tangaroa data format 1\n").unwrap();
    let old_data = old_data.to_str().unwrap();
    let mut cases = cases;
    cases.extend([
        (
            vec!["client", "--config", config, "put", "k", &huge],
            "the most is",
        ),
        (
            vec![
                "client",
                "--config",
                config,
                "put",
                "k",
                "--value-file",
                huge_file,
            ],
            "the most is",
        ),
        (
            vec![
                "client",
                "--config",
                config,
                "put",
                "k",
                "--value-file",
                "/no/such",
            ],
            "cannot read /no/such",
        ),
        // cas must say what it expects, and only one thing.
        (
            vec!["client", "--config", config, "cas", "k", "x"],
            "--expect",
        ),
        (
            vec![
                "client",
                "--config",
                config,
                "cas",
                "k",
                "--expect",
                "a",
                "--expect-absent",
                "x",
            ],
            "cannot be used with",
        ),
        (
            vec!["node", "--config", config, "--id", "0", "--data", old_data],
            "data format version 1, but this build reads version 3",
        ),
    ]);
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
    let log = tangaroa::storage::segment_path(&data, 1);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let (code, _, err) = node_0_on(&config, &data);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was cut");
}

/// Runs `tangaroa node --id 0` of `config` on the data directory `data`.
fn node_0_on(config: &str, data: &std::path::Path) -> (i32, String, String) {
    tangaroa(&[
        "node",
        "--config",
        config,
        "--id",
        "0",
        "--data",
        data.to_str().unwrap(),
    ])
}

#[test]
fn a_node_refuses_to_start_on_an_intact_but_inconsistent_state() {
    use tangaroa::protocol::{HardState, Persist};
    let (dir, config) = keys(1, 29640);
    let data = dir.path().join("data");
    {
        // Checksums are fine; the content is not: a vote in a term above the node's own.
        let (mut s, _) = tangaroa::storage::Storage::open(&data).unwrap();
        let hard = HardState {
            term: 1,
            voted: Some((5, 0)),
            ..Default::default()
        };
        s.apply(&[&Persist::Hard(hard)]).unwrap();
    }
    let (code, _, err) = node_0_on(&config, &data);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inconsistent"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs `tangaroa <args>` with `env` until its stderr holds `needle` or 20 s pass, then
/// stops it (only this child) and returns its stderr.
fn stderr_until(args: &[&str], env: &[(&str, &str)], needle: &str) -> String {
    while_running(args, env, needle, |_| ())
}

/// Like `stderr_until`, calling `during(stderr so far)` while the process still runs once
/// `needle` appeared (or it stopped, or 20 s passed).
fn while_running(
    args: &[&str],
    env: &[(&str, &str)],
    needle: &str,
    during: impl FnOnce(&str),
) -> String {
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
    during(&text);
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

#[test]
fn keygen_takes_addresses_and_hostnames_and_refuses_port_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let out_s = out.to_str().unwrap();
    let list = "localhost:7101,127.0.0.1:7102,[::1]:7103,localhost:7104";
    let (code, stdout, err) = tangaroa(&["keygen", "--addresses", list, "--out", out_s]);
    assert_eq!(code, 0, "{stdout} {err}");
    let text = std::fs::read_to_string(out.join("cluster.toml")).unwrap();
    // Names stay names in the file; loading resolves them.
    assert!(text.contains("address = \"localhost:7101\""), "{text}");
    assert!(text.contains("address = \"[::1]:7103\""), "{text}");
    let cfg = tangaroa::config::ClusterConfig::load(&out.join("cluster.toml")).expect("loads");
    assert_eq!(cfg.nodes.len(), 4);
    assert!(cfg.nodes[0].address.ip().is_loopback());
    assert_eq!(cfg.nodes[0].address.port(), 7101);
    assert_eq!(cfg.nodes[0].host, "localhost:7101");
    assert_eq!(cfg.nodes[2].address, "[::1]:7103".parse().unwrap());
    // A config with a port 0 edited in is refused at load, naming the node.
    std::fs::write(
        out.join("cluster.toml"),
        text.replace("localhost:7104", "localhost:0"),
    )
    .unwrap();
    let (code, _, err) = tangaroa(&[
        "node",
        "--config",
        out.join("cluster.toml").to_str().unwrap(),
        "--id",
        "0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("node 3") && err.contains("port 0"), "{err}");

    let bad: [(&[&str], &str); 6] = [
        (&["--addresses", "127.0.0.1:7000,127.0.0.1:0"], "port 0"),
        (&["--addresses", "localhost:0"], "port 0"),
        (
            &["--addresses", "no-such-host.invalid:7000"],
            "cannot resolve",
        ),
        (&["--addresses", "127.0.0.1"], "needs a port"),
        (
            &[
                "--addresses",
                "127.0.0.1:7000,127.0.0.1:7001",
                "--nodes",
                "3",
            ],
            "--nodes 3",
        ),
        (
            &["--addresses", "127.0.0.1:7000", "--base-port", "7000"],
            "--base-port",
        ),
    ];
    for (args, needle) in bad {
        let fresh = dir.path().join("bad");
        let mut all = vec!["keygen", "--out", fresh.to_str().unwrap()];
        all.extend_from_slice(args);
        let (code, out, err) = tangaroa(&all);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !fresh.join("cluster.toml").exists(),
            "{args:?} wrote a config"
        );
    }
    let (code, _, err) = tangaroa(&["keygen", "--out", out_s]);
    assert_eq!(code, 2);
    assert!(err.contains("--nodes"), "{err}");
}

#[test]
fn a_node_binds_listen_and_reads_its_flags_from_the_environment() {
    use std::net::UdpSocket;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    // Advertised under a name; bound on another port given by the environment.
    let free = |n: u16| -> u16 {
        (20_000..60_000u16)
            .step_by(97)
            .map(|p| p + n)
            .find(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .unwrap()
    };
    let (advertised, bound, flag) = (free(0), free(31), free(57));
    let list = format!("localhost:{advertised}");
    let (code, _, err) = tangaroa(&[
        "keygen",
        "--addresses",
        &list,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let config = out.join("cluster.toml");
    let data = out.join("data");
    let listen = format!("127.0.0.1:{bound}");
    let env = [
        ("TANGAROA_LOG", "info"),
        ("TANGAROA_CONFIG", config.to_str().unwrap()),
        ("TANGAROA_ID", "0"),
        ("TANGAROA_DATA", data.to_str().unwrap()),
        ("TANGAROA_LISTEN", listen.as_str()),
    ];
    let err = while_running(&["node"], &env, "listening on", |_| {
        assert!(
            UdpSocket::bind(("127.0.0.1", bound)).is_err(),
            "the node does not hold its --listen port"
        );
    });
    assert!(
        err.contains(&format!("listening on 127.0.0.1:{bound}")),
        "{err}"
    );
    assert!(
        err.contains(&list),
        "the advertised address is logged: {err}"
    );
    assert!(
        tangaroa::storage::segment_path(&data, 1).exists(),
        "TANGAROA_DATA was not used"
    );
    // A flag wins over its variable.
    let flag_listen = format!("127.0.0.1:{flag}");
    let err = stderr_until(&["node", "--listen", &flag_listen], &env, "listening on");
    assert!(
        err.contains(&format!("listening on {flag_listen}")),
        "{err}"
    );
    // A bad value from the environment is bad input, named.
    let mut env_bad = env;
    env_bad[4] = ("TANGAROA_LISTEN", "nowhere");
    let err = stderr_until(&["node"], &env_bad, "error");
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn the_systemd_unit_is_sandboxed_and_uses_variables_the_node_reads() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/tangaroa-node@.service"),
    )
    .unwrap();
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/tangaroa/node-%i",
        "CapabilityBoundingSet=",
        "ExecStart=/usr/local/bin/tangaroa node",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    let (code, help, _) = tangaroa(&["node", "--help"]);
    assert_eq!(code, 0);
    let vars: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert!(vars.len() >= 3, "{vars:?}");
    for var in vars {
        assert!(help.contains(var), "node --help does not know {var}");
    }
}

/// Starts `tangaroa node` on a fresh one-node cluster with `extra` flags and waits (20 s at
/// most) until it logs that it listens. The caller stops it.
fn one_node(extra: &[&str]) -> (tempfile::TempDir, std::process::Child, std::path::PathBuf) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let base = tangaroa::runtime::local::free_base_port(1)
        .unwrap()
        .to_string();
    let (code, _, err) = tangaroa(&[
        "keygen",
        "--nodes",
        "1",
        "--clients",
        "1",
        "--out",
        out,
        "--base-port",
        &base,
    ]);
    assert_eq!(code, 0, "{err}");
    let config = dir.path().join("cluster.toml");
    let log = dir.path().join("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_tangaroa"))
        .args(["node", "--config", config.to_str().unwrap(), "--id", "0"])
        .args(extra)
        .env("TANGAROA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (dir, child, config)
}

#[test]
fn sigterm_stops_a_node_cleanly_with_exit_0() {
    use std::time::{Duration, Instant};
    let (dir, mut child, _) = one_node(&[]);
    // SAFETY: a signal to the child this test started and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// `bench --in-process` runs both variants end to end from the command line, bounded by a
/// request count, and writes JSON rows that carry the in-process breakdown.
#[test]
fn bench_in_process_runs_raft_and_bft_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json");
    let (code, out, err) = tangaroa(&[
        "bench",
        "--in-process",
        "--nodes",
        "4",
        "--variants",
        "raft,bft",
        "--clients",
        "2",
        "--requests",
        "20",
        "--warmup",
        "0.1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("in-process"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert!(r["requests"].as_u64().unwrap() >= 20, "{r}");
        assert_eq!(r["failed"].as_u64(), Some(0), "{r}");
        assert!(r["in_process"].is_object(), "{r}");
    }
}
