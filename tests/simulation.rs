//! The simulator against the protocol: bft survives every adversary, the weaker variants
//! do not, and runs replay bit for bit.

use tangaroa::adversary::Behaviour;
use tangaroa::protocol::{Rules, Variant};
use tangaroa::sim::{run, Batch, Kind, RunReport, SimConfig};

fn batch(
    variant: Variant,
    nodes: usize,
    byzantine: usize,
    behaviours: &[Behaviour],
    seeds: u64,
) -> Vec<RunReport> {
    Batch {
        base: SimConfig::new(variant, nodes, 0),
        byzantine,
        behaviours: behaviours.to_vec(),
        first_seed: 0,
        seeds,
    }
    .run(&|_| {})
}

fn describe(reports: &[RunReport]) -> String {
    reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .take(5)
        .map(|r| format!("seed {} {:?}: {:?}", r.seed, r.byzantine, r.violations))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn same_seed_same_trace_bit_for_bit() {
    let mut cfg = SimConfig::new(Variant::Bft, 4, 42);
    cfg.byzantine = vec![(1, Behaviour::Equivocate)];
    let a = run(&cfg);
    let b = run(&cfg);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.delivered, b.delivered);
    assert_eq!(a.committed, b.committed);
    cfg.seed = 43;
    let c = run(&cfg);
    assert_ne!(a.trace, c.trace, "another seed must give another run");
}

/// bft with `byzantine` adversaries rotating over every behaviour: no violation, and every
/// run commits requests.
fn bft_survives(nodes: usize, byzantine: usize, seeds: u64) {
    let reports = batch(Variant::Bft, nodes, byzantine, &Behaviour::ALL, seeds);
    assert!(
        reports.iter().all(|r| r.violations.is_empty()),
        "{}",
        describe(&reports)
    );
    assert!(
        reports.iter().all(|r| r.committed > 0),
        "a run committed nothing"
    );
}

#[test]
fn bft_four_nodes_survive_every_behaviour() {
    bft_survives(4, 1, 250);
}

/// Each adversary alone, not only rotated in `all`: every attack the attacker found in
/// this round hid in the mix. A dozen seeds each, with crash-restarts of honest nodes
/// (bounced while a Byzantine node leads) and the honest-equivocation audit on.
#[test]
fn bft_four_nodes_survive_each_behaviour_alone() {
    let mut failures = Vec::new();
    for b in Behaviour::ALL {
        let reports = batch(Variant::Bft, 4, 1, &[b], 12);
        if reports
            .iter()
            .any(|r| !r.violations.is_empty() || r.committed == 0)
        {
            failures.push(format!("{b}: {}", describe(&reports)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Seeds where an equivocating leader's log had been compacted: it rebuilt its fork from
/// entries compaction had dropped and panicked (the first campaign with checkpoints and
/// the new behaviours in the rotation found them).
#[test]
fn an_equivocating_leader_with_a_compacted_log_still_forks() {
    for seed in [180, 324, 360, 486] {
        let mut cfg = Batch {
            base: SimConfig::new(Variant::Bft, 4, 0),
            byzantine: 1,
            behaviours: vec![Behaviour::Equivocate],
            first_seed: seed,
            seeds: 1,
        }
        .config(seed);
        cfg.seed = seed;
        let r = run(&cfg);
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
    }
}

#[test]
fn bft_seven_nodes_survive_two_byzantine() {
    bft_survives(7, 2, 40);
}

#[test]
fn raft_is_broken_by_one_byzantine_node() {
    let reports = batch(
        Variant::Raft,
        4,
        1,
        &[
            Behaviour::Tamper,
            Behaviour::Equivocate,
            Behaviour::LieReply,
        ],
        12,
    );
    let unsafe_runs = reports
        .iter()
        .filter(|r| r.violations.iter().any(|v| v.kind == Kind::Safety))
        .count();
    assert!(
        unsafe_runs > 0,
        "the adversaries found nothing against raft: they are not real"
    );
}

#[test]
fn honest_runs_of_every_variant_are_safe() {
    for v in Variant::ALL {
        let reports = batch(v, 4, 0, &[], 12);
        assert!(
            reports.iter().all(|r| r.violations.is_empty()),
            "{v}: {}",
            describe(&reports)
        );
    }
}

#[test]
fn shipped_rules_are_the_variants_rules() {
    // The planted-bug hooks exist for tests only; a config built for a variant has all of
    // that variant's rules on.
    let cfg = SimConfig::new(Variant::Bft, 4, 0);
    assert_eq!(cfg.rules, Rules::for_variant(Variant::Bft));
    assert!(
        cfg.rules.distinct_voters
            && cfg.rules.commit_round
            && cfg.rules.append_only_in_term
            && cfg.rules.lock_vote_check
    );
}
