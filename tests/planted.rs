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
            r.violations.iter().any(|v| v.kind == Kind::Safety),
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

#[test]
fn without_votes_binding_the_lock_a_leader_claims_no_lock_and_forks_a_committed_entry() {
    check("tests/planted/vote-binds-lock.toml", |r| {
        r.vote_binds_lock = false
    });
}

/// The restart hole: an equivocating leader widens its fork to a follower that Acked the
/// real order and then crashed. A campaign (the simulator bounces honest followers while
/// a Byzantine node leads) finds it in this seed range when the Acked position is volatile,
/// and nothing when it is durable.
#[test]
fn without_durable_acks_a_restarted_follower_acks_an_equivocators_fork() {
    use tangaroa::adversary::Behaviour;
    use tangaroa::sim::{Batch, SimConfig};
    let campaign = |rules: Rules| {
        let mut base = SimConfig::new(Variant::Bft, 4, 0);
        base.rules = rules;
        Batch {
            base,
            byzantine: 1,
            behaviours: vec![Behaviour::Equivocate],
            first_seed: 10_000_140,
            seeds: 12,
        }
        .run(&|_| {})
    };
    let bft = Rules::for_variant(Variant::Bft);
    let mut planted = bft;
    planted.durable_acks = false;
    let unsafe_runs = |reports: &[tangaroa::sim::RunReport]| {
        reports
            .iter()
            .filter(|r| r.violations.iter().any(|v| v.kind == Kind::Safety))
            .count()
    };
    assert_eq!(unsafe_runs(&campaign(bft)), 0);
    assert!(
        unsafe_runs(&campaign(planted)) > 0,
        "with volatile Acks the campaign found nothing"
    );
}
