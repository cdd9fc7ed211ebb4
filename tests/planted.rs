//! Planted bugs: switch off one bft rule at a time and the simulator must find the safety
//! violation that rule prevents; with every rule on, the same attack must fail.
//!
//! Each attack is a scripted scenario (tests/planted/*.toml, and the Cachin–Vukolić
//! counterexample for the Commit round): random chaos rarely lines up the exact state a
//! rule guards (one honest node committed, the others only locked), a script does.

use tangaroa::protocol::{Rules, Variant};
use tangaroa::sim::scenario::Scenario;
use tangaroa::sim::Kind;

const SEEDS: u64 = 4;

fn scenario(path: &str) -> Scenario {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(path: &str, switch_off: fn(&mut Rules)) {
    let sc = scenario(path);
    let bft = Rules::for_variant(Variant::Bft);
    let mut planted = bft;
    switch_off(&mut planted);
    assert_ne!(planted, bft, "the planted rule must differ from bft");
    for seed in 0..SEEDS {
        let r = sc.run_with(bft, seed);
        assert!(
            r.violations.is_empty(),
            "{path}, seed {seed}, bft: {:?}",
            r.violations
        );
        assert!(
            r.committed > 0,
            "{path}, seed {seed}: bft committed nothing"
        );
        let r = sc.run_with(planted, seed);
        assert!(
            r.violations
                .iter()
                .any(|v| v.kind == Kind::Safety && v.detail.contains("different entries")),
            "{path}, seed {seed}: with the rule off the simulator found nothing: {:?}",
            r.violations
        );
    }
}

#[test]
fn without_distinct_voters_a_forged_proof_overwrites_a_committed_entry() {
    check("tests/planted/distinct-voters.toml", |r| {
        r.distinct_voters = false
    });
}

#[test]
fn without_the_commit_round_cachin_vukolic_breaks_bft() {
    check("tests/scenarios/cachin-vukolic.toml", |r| {
        r.commit_round = false
    });
}

#[test]
fn without_append_only_within_a_term_an_equivocating_leader_forks_the_cluster() {
    check("tests/planted/append-only.toml", |r| {
        r.append_only_in_term = false
    });
}

#[test]
fn without_the_lock_check_on_votes_a_stale_candidate_overwrites_a_committed_entry() {
    check("tests/planted/lock-check.toml", |r| {
        r.lock_vote_check = false
    });
}
