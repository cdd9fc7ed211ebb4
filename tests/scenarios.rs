//! Every scenario in tests/scenarios/ meets the expectations it states per variant.

use tangaroa::sim::scenario::{Expect, Scenario};

fn scenarios() -> Vec<(String, Scenario)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/scenarios exists") {
        let path = entry.expect("readable").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let sc = Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), sc));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn scenarios_meet_their_expectations() {
    let all = scenarios();
    assert!(all.len() >= 2);
    for (path, sc) in all {
        assert!(!sc.expect.is_empty(), "{path} states no expectation");
        for (variant, expect) in &sc.expect {
            let r = sc.run(*variant, sc.seed);
            match expect {
                Expect::Safe => assert!(
                    r.violations.is_empty(),
                    "{path} under {variant}: {:?}",
                    r.violations
                ),
                Expect::Violation => assert!(
                    !r.violations.is_empty(),
                    "{path} under {variant}: expected a violation"
                ),
            }
        }
    }
}

#[test]
fn cachin_vukolic_breaks_tangaroa_safety_and_not_bft() {
    let (_, sc) = scenarios()
        .into_iter()
        .find(|(p, _)| p.ends_with("cachin-vukolic.toml"))
        .expect("shipped");
    let r = sc.run(tangaroa::protocol::Variant::Tangaroa, sc.seed);
    assert!(
        r.violations
            .iter()
            .any(|v| v.finding == tangaroa::sim::Finding::Fork),
        "{:?}",
        r.violations
    );
    // bft: safe, and the requests still commit.
    let r = sc.run(tangaroa::protocol::Variant::Bft, sc.seed);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.committed, 2);
}

#[test]
fn bad_scenarios_are_refused_with_a_reason() {
    let base = "name='x'\nnodes=4\nduration_ms=100\n";
    let cases = [
        ("nodes=0", "name='x'\nnodes=0\nduration_ms=100\n", "nodes"),
        (
            "variant",
            &format!("{base}variant='paxos'\n"),
            "unknown variant",
        ),
        (
            "unknown field",
            &format!("{base}colour='red'\n"),
            "unknown field",
        ),
        (
            "node range",
            &format!("{base}[[event]]\nat_ms=1\naction='crash'\nnode=9\n"),
            "does not exist",
        ),
        (
            "action",
            &format!("{base}[[event]]\nat_ms=1\naction='explode'\n"),
            "unknown action",
        ),
        (
            "op",
            &format!("{base}[[event]]\nat_ms=1\naction='request'\nop='fly away'\n"),
            "cannot parse operation",
        ),
        (
            "behaviour",
            &format!("{base}[[byzantine]]\nnode=1\nbehaviour='sulk'\n"),
            "unknown behaviour",
        ),
        ("toml", "name = [", "invalid scenario"),
    ];
    for (what, text, needle) in cases {
        let err = Scenario::parse(text).expect_err(what);
        assert!(err.contains(needle), "{what}: {err}");
    }
}
