//! Identifiers, variants, quorum arithmetic and timing configuration.
//!
//! Everything here is plain data: no clock, no I/O.

use serde::{Deserialize, Serialize};
use std::fmt;

pub type NodeId = u32;
pub type ClientId = u32;
pub type Term = u64;
pub type Index = u64;

/// A node refuses RequestVotes and proofs whose term lies more than this far above the
/// highest term it has seen proven (PROTOCOL.md, "Numbers"). It bounds how far a liar can
/// push terms, so term arithmetic never approaches `u64::MAX`.
pub const MAX_TERM_GAP: Term = 1000;

/// Which protocol a cluster runs. All nodes of a cluster run the same one; the variant is
/// part of every signature's domain tag, so mixed clusters cannot talk.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Plain Raft: no signatures, no hashes, majority quorum, leader decides commits.
    Raft,
    /// Tangaroa as published (Copeland & Zhong, 2014), flaws included.
    Tangaroa,
    /// Tangaroa with the fixes of PROTOCOL.md (locks, Commit round, f+1 replies...).
    #[default]
    Bft,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Raft, Variant::Tangaroa, Variant::Bft];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Raft => "raft",
            Variant::Tangaroa => "tangaroa",
            Variant::Bft => "bft",
        }
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Cluster size arithmetic. `f = (n-1)/3`; `q = n - f` for the Byzantine variants, a strict
/// majority for `raft`. Any two quorums of size `n - f` overlap in at least `f + 1` nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub n: usize,
    pub f: usize,
    pub q: usize,
}

impl Quorum {
    pub fn new(variant: Variant, n: usize) -> Quorum {
        assert!(n >= 1, "a cluster has at least one node");
        let f = (n - 1) / 3;
        let q = match variant {
            Variant::Raft => n / 2 + 1,
            Variant::Tangaroa | Variant::Bft => n - f,
        };
        Quorum { n, f, q }
    }

    /// Matching replies a client needs before it accepts a result.
    pub fn reply_quorum(&self, variant: Variant) -> usize {
        match variant {
            Variant::Bft => self.f + 1,
            Variant::Raft | Variant::Tangaroa => 1,
        }
    }
}

/// The individual safety and liveness rules of the Byzantine variants.
///
/// The shipped binary derives these from the variant only ([`Rules::for_variant`]). Tests
/// switch single rules off to prove the simulator catches the resulting bug; that is the
/// only reason the fields are public.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub variant: Variant,
    /// Messages carry Ed25519 signatures and are checked (tangaroa, bft).
    pub signed: bool,
    /// Election proofs count distinct voter ids, never messages.
    pub distinct_voters: bool,
    /// Votes are granted only once the voter believes the leader faulty (T).
    pub lazy_voting: bool,
    /// Votes require the candidate's lock to be at least the voter's (bft).
    pub lock_vote_check: bool,
    /// Votes require the candidate's log to be at least as recent (raft, tangaroa). bft
    /// does not use it: PROTOCOL.md explains why both together could deadlock.
    pub log_vote_check: bool,
    /// Commit needs a second round of q Commits (bft); otherwise tangaroa commits when prepared.
    pub commit_round: bool,
    /// A node whose commit lags its lock resends its Commit, and peers answer a repeated
    /// Commit with theirs (bft; needs `commit_round`).
    pub commit_retransmit: bool,
    /// Any node pushes committed entries, proven by its Commits table, to a peer that lags
    /// (bft; needs `commit_round`, whose Commits are the proof).
    pub catch_up: bool,
    /// A follower never truncates an entry it Acked in the same term (bft).
    pub append_only_in_term: bool,
    /// What a node Acked in its current term survives a restart (bft; PROTOCOL.md,
    /// "Durability"). Switched off only by the planted test that shows why.
    pub durable_acks: bool,
    /// Followers Ack only at or past the lock the leader was elected on (bft).
    pub follow_leader_lock: bool,
    /// Votes name the lock they were granted on; a proof's votes must all name one lock,
    /// and the leader's AppendEntries must claim exactly it (bft).
    pub vote_binds_lock: bool,
    /// Forwarded requests start timers; expiry means the leader is faulty (bft).
    pub request_timers: bool,
    /// A leader whose entries stay uncommitted for the request timeout steps down (bft).
    pub stuck_leader_steps_down: bool,
    /// A deposed leader gets no vote for n election rounds (bft).
    pub depose_penalty: bool,
    /// A candidate we voted for that never led sits out the next round (bft).
    pub candidate_sit_out: bool,
    /// Equivocation is kept and gossiped as Evidence (bft).
    pub evidence: bool,
    /// A Revolution deposes only if its request stays uncommitted (bft); else at once (T).
    pub revolution_needs_timeout: bool,
    /// A checkpoint certificate counts distinct member signers, q of them (tangaroa, bft).
    /// Off (planted bug): it counts Checkpoints, so one node's signature repeated q times
    /// passes (`Node::valid_checkpoint_cert`).
    pub checkpoint_quorum: bool,
    /// A streamed snapshot is installed only if its digest is the certified one (every
    /// variant). Off (planted bug): the driver installs any whole, well-formed snapshot
    /// (`driver::transfer::Incoming::take`).
    pub snapshot_digest: bool,
}

impl Rules {
    pub fn for_variant(variant: Variant) -> Rules {
        let bft = variant == Variant::Bft;
        let byz = variant != Variant::Raft;
        Rules {
            variant,
            signed: byz,
            distinct_voters: byz,
            lazy_voting: byz,
            lock_vote_check: bft,
            log_vote_check: !bft,
            commit_round: bft,
            commit_retransmit: bft,
            catch_up: bft,
            append_only_in_term: bft,
            durable_acks: bft,
            follow_leader_lock: bft,
            vote_binds_lock: bft,
            request_timers: bft,
            stuck_leader_steps_down: bft,
            depose_penalty: bft,
            candidate_sit_out: bft,
            evidence: bft,
            revolution_needs_timeout: bft,
            checkpoint_quorum: byz,
            snapshot_digest: true,
        }
    }

    /// The rules a planted-bug experiment may switch off, by name.
    pub const SWITCHABLE: [&'static str; 18] = [
        "distinct-voters",
        "lazy-voting",
        "lock-vote-check",
        "commit-round",
        "commit-retransmit",
        "catch-up",
        "append-only-in-term",
        "durable-acks",
        "follow-leader-lock",
        "vote-binds-lock",
        "request-timers",
        "stuck-leader-steps-down",
        "depose-penalty",
        "candidate-sit-out",
        "evidence",
        "revolution-needs-timeout",
        "checkpoint-quorum",
        "snapshot-digest",
    ];

    /// Switches one rule off, for planted-bug experiments (`tangaroa sim --switch-off`):
    /// the simulator must then find what the rule prevents.
    pub fn switch_off(&mut self, name: &str) -> Result<(), String> {
        let flag = match name {
            "distinct-voters" => &mut self.distinct_voters,
            "lazy-voting" => &mut self.lazy_voting,
            "lock-vote-check" => &mut self.lock_vote_check,
            "commit-round" => {
                // The rules built on the Commit round go with it.
                self.commit_retransmit = false;
                self.catch_up = false;
                &mut self.commit_round
            }
            "commit-retransmit" => &mut self.commit_retransmit,
            "catch-up" => &mut self.catch_up,
            "append-only-in-term" => &mut self.append_only_in_term,
            "durable-acks" => &mut self.durable_acks,
            "follow-leader-lock" => &mut self.follow_leader_lock,
            "vote-binds-lock" => &mut self.vote_binds_lock,
            "request-timers" => &mut self.request_timers,
            "stuck-leader-steps-down" => &mut self.stuck_leader_steps_down,
            "depose-penalty" => &mut self.depose_penalty,
            "candidate-sit-out" => &mut self.candidate_sit_out,
            "evidence" => &mut self.evidence,
            "revolution-needs-timeout" => &mut self.revolution_needs_timeout,
            "checkpoint-quorum" => &mut self.checkpoint_quorum,
            "snapshot-digest" => &mut self.snapshot_digest,
            _ => {
                return Err(format!(
                    "unknown rule `{name}`; rules that can be switched off: {}",
                    Self::SWITCHABLE.join(", ")
                ))
            }
        };
        if !*flag {
            return Err(format!("rule `{name}` is already off in this variant"));
        }
        *flag = false;
        Ok(())
    }
}

/// Timing, in ticks. The runtime turns ticks into wall time (`tick_ms`); the core only counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Election timeout base T: a follower's timeout is drawn from `[T, 2T)`.
    pub election_ticks: u32,
    /// Leader heartbeat interval; well below T.
    pub heartbeat_ticks: u32,
    /// How long a forwarded request may stay uncommitted before the leader is judged faulty.
    pub request_ticks: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_ticks: 20,
            heartbeat_ticks: 4,
            request_ticks: 40,
        }
    }
}

impl Timing {
    pub fn validate(&self) -> Result<(), String> {
        if self.election_ticks < 4 {
            return Err("election_ticks must be at least 4".into());
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks > self.election_ticks / 2 {
            return Err("heartbeat_ticks must be between 1 and election_ticks / 2".into());
        }
        if self.request_ticks < self.election_ticks {
            return Err("request_ticks must be at least election_ticks".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_arithmetic_for_one_to_ten_nodes() {
        for n in 1..=10usize {
            let bft = Quorum::new(Variant::Bft, n);
            assert_eq!(bft.f, (n - 1) / 3);
            assert!(n > 3 * bft.f, "n={n} must be at least 3f+1 for f={}", bft.f);
            assert_eq!(bft.q, n - bft.f);
            // Two quorums intersect in at least f+1 nodes, so in one honest node.
            // |Q1 ∩ Q2| >= 2q - n must be at least f + 1.
            assert!(
                2 * bft.q > n + bft.f,
                "n={n}: quorums overlap in fewer than f+1"
            );
            // A quorum can be formed by honest nodes alone.
            assert!(bft.q <= n - bft.f);
            let raft = Quorum::new(Variant::Raft, n);
            assert_eq!(raft.q, n / 2 + 1);
            assert!(2 * raft.q > n, "n={n}: raft majorities must intersect");
        }
        assert_eq!(Quorum::new(Variant::Bft, 4).q, 3);
        assert_eq!(Quorum::new(Variant::Bft, 7).q, 5);
        assert_eq!(Quorum::new(Variant::Bft, 10).q, 7);
        assert_eq!(Quorum::new(Variant::Bft, 4).reply_quorum(Variant::Bft), 2);
    }

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()), Some(v));
        }
        assert_eq!(Variant::parse("paxos"), None);
    }
}

#[cfg(test)]
mod switch_tests {
    use super::*;

    /// A planted experiment must remove exactly the rule it names (the Commit round takes
    /// the two rules built on it along), and refuse names it does not know.
    #[test]
    fn switching_off_a_rule_changes_that_rule_only() {
        let bft = Rules::for_variant(Variant::Bft);
        let on = |r: &Rules| {
            [
                r.distinct_voters,
                r.lazy_voting,
                r.lock_vote_check,
                r.commit_round,
                r.commit_retransmit,
                r.catch_up,
                r.append_only_in_term,
                r.durable_acks,
                r.follow_leader_lock,
                r.vote_binds_lock,
                r.request_timers,
                r.stuck_leader_steps_down,
                r.depose_penalty,
                r.candidate_sit_out,
                r.evidence,
                r.revolution_needs_timeout,
                r.checkpoint_quorum,
                r.snapshot_digest,
            ]
            .iter()
            .filter(|&&b| b)
            .count()
        };
        assert_eq!(
            on(&bft),
            Rules::SWITCHABLE.len(),
            "every bft rule is switchable"
        );
        for name in Rules::SWITCHABLE {
            let mut r = bft;
            r.switch_off(name).unwrap();
            let removed = if name == "commit-round" { 3 } else { 1 };
            assert_eq!(on(&bft) - on(&r), removed, "{name}");
            assert!(r.switch_off(name).is_err(), "{name} twice");
        }
        assert!(bft.clone().switch_off("no-such-rule").is_err());
        assert!(Rules::for_variant(Variant::Raft)
            .switch_off("commit-round")
            .is_err());
    }
}
