//! `bad-snapshot`: an honest node in everything but state transfer, where it serves only
//! bad snapshots. Whenever its core would stream a snapshot (`Output::SendSnapshot`), and
//! unprompted to every peer every half election timeout, it sends one built by itself
//! instead, each peer getting every lie in turn:
//!
//! - `WrongBytes`: the real stable certificate with the bytes of another state (a
//!   well-formed encoding whose digest is not the certified one);
//! - `Stale`: an older stable certificate (with its real bytes when it kept them, which is
//!   a true committed state and so harmless, else wrong bytes);
//! - `Alone`: a certificate of its own Checkpoint only, certifying the wrong state it sends
//!   (bytes and digest agree, so only the quorum check stops it);
//! - `Repeated`: the same Checkpoint q times (one signer counted q times);
//! - `Outsider`: its Checkpoint plus Checkpoints it signs for ids outside the cluster;
//! - `Disagree`: its wrong-state Checkpoint plus the real signers' Checkpoints, which
//!   certify another point;
//! - `Endless`: the real certificate and chunks of a well-formed but endless state, never
//!   the last one: `ENDLESS_PER_TICK` small chunks per tick (bounded per tick, so it is
//!   not the simulator's work budget that stops it), with no other offer to that peer
//!   meanwhile, for `ENDLESS_TIMEOUTS` election timeouts or until the peer claims the
//!   certified index.
//!
//! It offers every peer every half election timeout (a peer at or past the index drops
//! the offer unread).
//!
//! Honest receivers check the certificate (q distinct members agreeing on one point), then
//! the digest of the whole, and take an honest peer's snapshot instead.

use super::{Context, Kit};
use crate::actor::Actor;
use crate::crypto::Principal;
use crate::crypto::{sha256, Signed};
use crate::kv::Kv;
use crate::protocol::{
    Checkpoint, CheckpointCert, Index, Input, Message, Node, NodeId, Op, Output, Request,
    SnapshotChunk,
};
use std::collections::BTreeMap;

/// Chunks of an endless stream sent per tick, per victim.
const ENDLESS_PER_TICK: usize = 4;
/// Bytes per chunk of an endless stream.
const ENDLESS_CHUNK_BYTES: usize = 8;
/// How long an endless stream goes on, in election timeouts: long enough to hold a
/// receiver's slot (`driver::transfer::STALLED_TICKS`), short enough that the other lies
/// still come round to that peer.
const ENDLESS_TIMEOUTS: u64 = 3;
/// Keys of the endless stream's state: bytes for more chunks than a receiver takes
/// (`kv::MAX_SNAPSHOT_CHUNKS`), never its end.
const ENDLESS_KEYS: usize = 4000;
/// Our real snapshots' encodings (from the shadow state machine), and stable certificates
/// seen, kept for the stale lie.
const KEPT: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lie {
    WrongBytes,
    Stale,
    Alone,
    Repeated,
    Outsider,
    Disagree,
    Endless,
}

impl Lie {
    pub(crate) const ALL: [Lie; 7] = [
        Lie::WrongBytes,
        Lie::Stale,
        Lie::Alone,
        Lie::Repeated,
        Lie::Outsider,
        Lie::Disagree,
        Lie::Endless,
    ];
}

/// An endless stream under way.
struct Endless {
    to: NodeId,
    cert: CheckpointCert,
    next: usize,
    until: u64,
}

pub struct BadSnapshot {
    inner: Node,
    kit: Kit,
    q: usize,
    ticks: u64,
    /// Per peer, index into `Lie::ALL` of the next lie it gets: each peer sees them all.
    next: Vec<usize>,
    /// The state machine as our core applies it (`None` after the core installed a
    /// snapshot whose bytes we never saw), and its encodings at our snapshot points.
    shadow: Option<Kv>,
    real_bytes: BTreeMap<Index, Vec<u8>>,
    /// Stable certificates seen, by index.
    certs: BTreeMap<Index, CheckpointCert>,
    /// Our own latest Checkpoint (the highest point we applied and signed).
    own: Option<Checkpoint>,
    /// The last index each peer claimed to hold.
    claimed: Vec<Index>,
    /// A wrong state, encoded; and the endless stream's bytes.
    evil: Vec<u8>,
    endless_bytes: Vec<u8>,
    endless: Vec<Endless>,
}

impl BadSnapshot {
    pub fn new(ctx: &Context) -> BadSnapshot {
        let shadow = match &ctx.durable.snapshot {
            Some(s) => Kv::from_snapshot_bytes(&s.state).ok().map(|(kv, _)| kv),
            None => Some(Kv::new()),
        };
        let mut evil = Kv::new();
        put(&mut evil, 1, "zz-bad-snapshot", "forged");
        let mut long = Kv::new();
        for k in 0..ENDLESS_KEYS {
            put(&mut long, k as u64 + 1, &format!("e{k:06}"), "x");
        }
        BadSnapshot {
            inner: ctx.honest_node(),
            kit: Kit::new(ctx, 21),
            q: crate::protocol::Quorum::new(ctx.cfg.rules.variant, ctx.cfg.n).q,
            ticks: 0,
            next: vec![0; ctx.cfg.n],
            shadow,
            real_bytes: BTreeMap::new(),
            certs: BTreeMap::new(),
            own: None,
            claimed: vec![0; ctx.cfg.n],
            evil: evil.snapshot_bytes(),
            endless_bytes: long.snapshot_bytes(),
            endless: Vec::new(),
        }
    }

    fn note_cert(&mut self, cert: &CheckpointCert) {
        self.certs.insert(cert.index(), cert.clone());
        while self.certs.len() > KEPT {
            self.certs.pop_first();
        }
    }

    /// One Checkpoint signed by us certifying `state` at our latest point.
    fn forged(&self, from: NodeId, state: &[u8]) -> Option<Signed<Checkpoint>> {
        let point = self
            .own
            .clone()
            .or_else(|| self.inner.stable_checkpoint()?.first().cloned())?;
        Some(self.kit.sign(Checkpoint {
            from,
            state_digest: sha256(state),
            ..point
        }))
    }

    /// The next bad snapshot for `to`, as messages (an endless one starts a stream).
    fn offer(&mut self, to: NodeId) -> Vec<Output> {
        let Some(next) = self.next.get_mut(to as usize) else {
            return Vec::new();
        };
        let lie = Lie::ALL[*next % Lie::ALL.len()];
        *next += 1;
        let me = self.kit.id;
        let real = self.inner.stable_checkpoint().cloned();
        let evil = self.evil.clone();
        let (cert, bytes) = match lie {
            Lie::WrongBytes => match real {
                Some(c) => (c, evil),
                None => return Vec::new(),
            },
            Lie::Stale => {
                let Some(c) = real else { return Vec::new() };
                let Some(old) = self.certs.range(..c.index()).next().map(|(_, c)| c.clone()) else {
                    return Vec::new();
                };
                let bytes = self.real_bytes.get(&old.index()).cloned().unwrap_or(evil);
                (old, bytes)
            }
            Lie::Alone | Lie::Repeated | Lie::Outsider | Lie::Disagree => {
                let Some(mine) = self.forged(me, &evil) else {
                    return Vec::new();
                };
                let mut checkpoints = vec![mine.clone()];
                match lie {
                    Lie::Repeated => {
                        checkpoints.extend(std::iter::repeat_n(mine, self.q.saturating_sub(1)))
                    }
                    Lie::Outsider => {
                        for k in 0..self.q.saturating_sub(1) {
                            let outsider = (self.kit.n + k) as NodeId;
                            checkpoints.extend(self.forged(outsider, &evil));
                        }
                    }
                    Lie::Disagree => {
                        let others = real.iter().flat_map(|c| c.checkpoints.iter());
                        checkpoints.extend(others.filter(|c| c.body.from != me).cloned());
                        checkpoints.truncate(self.q.max(1));
                    }
                    _ => {}
                }
                (CheckpointCert { checkpoints }, evil)
            }
            Lie::Endless => {
                let Some(cert) = real else { return Vec::new() };
                self.endless.retain(|e| e.to != to);
                let until = self.ticks + ENDLESS_TIMEOUTS * self.kit.election_ticks as u64;
                self.endless.push(Endless {
                    to,
                    cert,
                    next: 0,
                    until,
                });
                return Vec::new(); // the stream goes out tick by tick
            }
        };
        vec![Output::Send {
            to,
            msg: Message::Snapshot(SnapshotChunk {
                from: me,
                cert,
                offset: 0,
                chunk: bytes,
                last: true,
            }),
        }]
    }

    /// This tick's chunks of the endless streams.
    fn stream(&mut self) -> Vec<Output> {
        let me = self.kit.id;
        let total = self.endless_bytes.len() / ENDLESS_CHUNK_BYTES;
        let (claimed, now) = (&self.claimed, self.ticks);
        self.endless
            .retain(|e| e.next < total && e.until > now && claimed[e.to as usize] < e.cert.index());
        let mut out = Vec::new();
        for e in &mut self.endless {
            for _ in 0..ENDLESS_PER_TICK {
                if e.next >= total {
                    break;
                }
                let offset = e.next * ENDLESS_CHUNK_BYTES;
                let chunk = self.endless_bytes[offset..offset + ENDLESS_CHUNK_BYTES].to_vec();
                out.push(Output::Send {
                    to: e.to,
                    msg: Message::Snapshot(SnapshotChunk {
                        from: me,
                        cert: e.cert.clone(),
                        offset: offset as u64,
                        chunk,
                        last: false,
                    }),
                });
                e.next += 1;
            }
        }
        out
    }

    fn streaming_to(&self, to: NodeId) -> bool {
        self.endless.iter().any(|e| e.to == to)
    }

    /// What peers claim to hold, from their own messages.
    fn observe(&mut self, input: &Input) {
        let Input::Message {
            from: Principal::Node(j),
            msg,
        } = input
        else {
            return;
        };
        let claim = match msg {
            // A refusal names the index refused, which the peer lacks.
            Message::Ack(a) if a.body.from == *j && a.body.success => a.body.index,
            Message::Commit(c) if c.body.from == *j => c.body.index,
            Message::RequestVote(r) if r.body.candidate == *j => r.body.last_index,
            _ => return,
        };
        if let Some(c) = self.claimed.get_mut(*j as usize) {
            *c = claim;
        }
    }
}

fn put(kv: &mut Kv, seq: u64, key: &str, value: &str) {
    kv.apply(&Request {
        client: 0,
        seq,
        op: Op::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        },
    });
}

impl Actor for BadSnapshot {
    fn step(&mut self, input: Input) -> Vec<Output> {
        let tick = matches!(input, Input::Tick);
        self.observe(&input);
        if matches!(input, Input::SnapshotInstalled(_)) {
            self.shadow = None; // its bytes went to the driver, not to us
        }
        let inner = self.inner.step(input);
        let mut out = Vec::with_capacity(inner.len());
        for o in inner {
            match o {
                Output::SendSnapshot { to, cert } => {
                    self.note_cert(&cert);
                    if !self.streaming_to(to) {
                        out.extend(self.offer(to));
                    }
                }
                Output::Apply(ref e) => {
                    if let (Some(kv), Some(r)) = (self.shadow.as_mut(), e.payload.request()) {
                        kv.apply(&r.body);
                    }
                    out.push(o);
                }
                Output::TakeSnapshot(base) => {
                    if let Some(kv) = &self.shadow {
                        self.real_bytes.insert(base.index, kv.snapshot_bytes());
                        while self.real_bytes.len() > KEPT {
                            self.real_bytes.pop_first();
                        }
                    }
                    out.push(o);
                }
                Output::Broadcast(Message::Checkpoint(ref c)) if c.body.from == self.kit.id => {
                    if self.own.as_ref().is_none_or(|o| o.index <= c.body.index) {
                        self.own = Some(c.body.clone());
                    }
                    out.push(o);
                }
                o => out.push(o),
            }
        }
        if let Some(c) = self.inner.stable_checkpoint().cloned() {
            if self.certs.get(&c.index()) != Some(&c) {
                self.note_cert(&c);
            }
        }
        if tick {
            self.ticks += 1;
            let every = (self.kit.election_ticks as u64 / 2).max(1);
            if self.ticks.is_multiple_of(every) {
                // To every peer: what a peer claims is no sure sign it lags (a restarted
                // node may Ack a heartbeat), and one at or past the index drops it unread.
                for j in self.kit.others() {
                    if !self.streaming_to(j) {
                        out.extend(self.offer(j));
                    }
                }
            }
            out.extend(self.stream());
        }
        out
    }

    fn node(&self) -> &Node {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adversary::testkit;
    use crate::protocol::{SnapshotVerdict, Variant};

    fn checkpoint(ctx: &Context, from: NodeId, index: Index) -> Signed<Checkpoint> {
        let keys: Vec<_> = (0..4u8)
            .map(|i| crate::crypto::signing_key_from_seed([i + 1; 32]))
            .collect();
        ctx.domain().sign(
            &keys[from as usize],
            Checkpoint {
                epoch: 0,
                from,
                index,
                term: 1,
                chain_hash: Default::default(),
                state_digest: sha256(b"honest"),
            },
        )
    }

    /// Every lie in the rotation comes out, and an honest node refuses every certificate
    /// the adversary forges (the genuine ones it misuses are refused on their digest).
    #[test]
    fn rotates_through_every_lie_and_honest_nodes_refuse_the_forged_certificates() {
        let mut ctx = testkit::ctx(0, 4, Variant::Bft);
        let real = CheckpointCert {
            checkpoints: (0..3).map(|i| checkpoint(&ctx, i, 32)).collect(),
        };
        let stale = CheckpointCert {
            checkpoints: (0..3).map(|i| checkpoint(&ctx, i, 16)).collect(),
        };
        // A node restarted from its snapshot at 32, stable there.
        ctx.durable.snapshot = Some(crate::protocol::Snapshot {
            base: crate::protocol::LogBase {
                index: 32,
                term: 1,
                hash: Default::default(),
            },
            state: Kv::new().snapshot_bytes(),
        });
        ctx.durable.stable = Some(real.clone());
        let mut b = BadSnapshot::new(&ctx);
        assert_eq!(b.inner.stable_checkpoint(), Some(&real));
        b.note_cert(&stale);
        b.own = Some(checkpoint(&ctx, 0, 48).body);
        let honest = testkit::ctx(1, 4, Variant::Bft).honest_node();
        let mut seen = Vec::new();
        for _ in 0..Lie::ALL.len() {
            let lie = Lie::ALL[b.next[1] % Lie::ALL.len()];
            let out = b.offer(1);
            seen.push(lie);
            let chunks: Vec<&SnapshotChunk> = out
                .iter()
                .map(|o| match o {
                    Output::Send {
                        to: 1,
                        msg: Message::Snapshot(c),
                    } => c,
                    other => panic!("{other:?}"),
                })
                .collect();
            match lie {
                Lie::Endless => assert!(chunks.is_empty() && b.endless.len() == 1),
                Lie::WrongBytes => {
                    assert_eq!(chunks[0].cert, real);
                    assert_ne!(sha256(&chunks[0].chunk), sha256(b"honest"));
                }
                Lie::Stale => assert_eq!(chunks[0].cert, stale),
                _ => {
                    let c = chunks[0];
                    assert_eq!(c.cert.first().unwrap().state_digest, sha256(&c.chunk));
                    assert_eq!(
                        honest.snapshot_wanted(0, &c.cert),
                        SnapshotVerdict::Forged,
                        "{lie:?}"
                    );
                }
            }
        }
        assert_eq!(seen, Lie::ALL);
        // The endless stream: non-last chunks, a few per tick, at consecutive offsets.
        let mut offsets = Vec::new();
        for _ in 0..3 {
            for o in b.stream() {
                let Output::Send {
                    msg: Message::Snapshot(c),
                    ..
                } = o
                else {
                    panic!()
                };
                assert!(!c.last);
                offsets.push(c.offset);
            }
        }
        let want: Vec<u64> = (0..3 * ENDLESS_PER_TICK as u64)
            .map(|k| k * ENDLESS_CHUNK_BYTES as u64)
            .collect();
        assert_eq!(offsets, want);
    }

    /// With the quorum rule switched off (the planted bug), the repeated-signer forgery
    /// passes: what the simulator must then catch.
    #[test]
    fn a_repeated_signer_certificate_passes_only_without_the_quorum_rule() {
        let ctx = testkit::ctx(0, 4, Variant::Bft);
        let one = checkpoint(&ctx, 0, 16);
        let cert = CheckpointCert {
            checkpoints: vec![one.clone(), one.clone(), one],
        };
        let honest = testkit::ctx(1, 4, Variant::Bft);
        assert_eq!(
            honest.honest_node().snapshot_wanted(0, &cert),
            SnapshotVerdict::Forged
        );
        let mut planted = honest;
        planted.cfg.rules.switch_off("checkpoint-quorum").unwrap();
        assert_eq!(
            planted.honest_node().snapshot_wanted(0, &cert),
            SnapshotVerdict::Wanted
        );
    }
}
