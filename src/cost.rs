//! Where a process's CPU goes: nanosecond counters around the calls whose cost the
//! benchmark breaks down (signing, verifying one by one and in batches, hashing, encoding
//! and decoding, fsync). Each timed call costs two clock reads and a relaxed atomic add,
//! small next to the work it times (the cheapest, a SHA-256 of a few dozen bytes, takes
//! some hundreds of ns). The counters are process-wide: a node process reports its own in
//! its status, the in-process bench reads the sum over its nodes and clients.
//!
//! Batch verification and fsync are timed on the thread's CPU clock: on a busy machine a
//! thread is often preempted in the middle of a millisecond batch, and the wall clock
//! would count other threads' time too; reading that clock is a system call of some
//! hundred ns, small next to those calls. Everything else (a signature, a single
//! verification, a hash, an encoding: from well under a µs to some tens) is rarely
//! preempted and too frequent for a system call each: it is timed on the (vDSO) wall
//! clock. fsync mostly waits for the disk, so its wall time is counted apart.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The kinds of work counted, in the order of the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Sign,
    /// Signatures verified alone (including single members of a bisected batch).
    VerifySingle,
    /// Batch equations over several signatures.
    VerifyBatched,
    /// SHA-256: signing digests, the hash chain, signature-cache keys.
    Hash,
    /// postcard encoding and decoding of messages, entries and records.
    Codec,
    /// CPU time of fsync calls.
    Fsync,
    /// Wall time of fsync calls (not CPU: mostly waiting for the disk).
    FsyncWall,
}

const WORKS: usize = 7;

static NANOS: [AtomicU64; WORKS] = [const { AtomicU64::new(0) }; WORKS];
/// Calls, except for `VerifyBatched`, where it counts the signatures in the batches.
static COUNTS: [AtomicU64; WORKS] = [const { AtomicU64::new(0) }; WORKS];

fn add(work: Work, nanos: u64, count: u64) {
    NANOS[work as usize].fetch_add(nanos, Ordering::Relaxed);
    COUNTS[work as usize].fetch_add(count, Ordering::Relaxed);
}

/// Runs `f`, counting its wall time as `work` (for calls far shorter than a time slice).
pub fn timed<R>(work: Work, f: impl FnOnce() -> R) -> R {
    timed_n(work, 1, f)
}

/// As `timed`, counting `items` (the signatures of a batch) rather than one call.
pub fn timed_n<R>(work: Work, items: u64, f: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let r = f();
    add(work, started.elapsed().as_nanos() as u64, items);
    r
}

/// Runs `f`, counting its thread CPU time as `work` (`items` signatures or one call).
pub fn timed_cpu<R>(work: Work, items: u64, f: impl FnOnce() -> R) -> R {
    let started = thread_cpu_nanos();
    let r = f();
    add(work, thread_cpu_nanos().saturating_sub(started), items);
    r
}

/// Runs a call that mostly waits (fsync): its thread CPU time counts as `Fsync`, its
/// wall time as `FsyncWall`.
pub fn timed_wait<R>(f: impl FnOnce() -> R) -> R {
    let (cpu, wall) = (thread_cpu_nanos(), Instant::now());
    let r = f();
    add(Work::FsyncWall, wall.elapsed().as_nanos() as u64, 1);
    add(Work::Fsync, thread_cpu_nanos().saturating_sub(cpu), 1);
    r
}

/// This thread's CPU time so far, in nanoseconds (0 if the clock cannot be read).
fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The counters at one moment, in nanoseconds (and signatures, for batches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Costs {
    pub sign_ns: u64,
    pub verify_single_ns: u64,
    pub verify_batched_ns: u64,
    /// Signatures verified in batches.
    pub batched_signatures: u64,
    pub hash_ns: u64,
    pub codec_ns: u64,
    pub fsync_ns: u64,
    pub fsync_wall_ns: u64,
}

/// This process's counters now.
pub fn snapshot() -> Costs {
    let ns = |w: Work| NANOS[w as usize].load(Ordering::Relaxed);
    Costs {
        sign_ns: ns(Work::Sign),
        verify_single_ns: ns(Work::VerifySingle),
        verify_batched_ns: ns(Work::VerifyBatched),
        batched_signatures: COUNTS[Work::VerifyBatched as usize].load(Ordering::Relaxed),
        hash_ns: ns(Work::Hash),
        codec_ns: ns(Work::Codec),
        fsync_ns: ns(Work::Fsync),
        fsync_wall_ns: ns(Work::FsyncWall),
    }
}

impl Costs {
    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &Costs) -> Costs {
        Costs {
            sign_ns: self.sign_ns.saturating_sub(before.sign_ns),
            verify_single_ns: self
                .verify_single_ns
                .saturating_sub(before.verify_single_ns),
            verify_batched_ns: self
                .verify_batched_ns
                .saturating_sub(before.verify_batched_ns),
            batched_signatures: self
                .batched_signatures
                .saturating_sub(before.batched_signatures),
            hash_ns: self.hash_ns.saturating_sub(before.hash_ns),
            codec_ns: self.codec_ns.saturating_sub(before.codec_ns),
            fsync_ns: self.fsync_ns.saturating_sub(before.fsync_ns),
            fsync_wall_ns: self.fsync_wall_ns.saturating_sub(before.fsync_wall_ns),
        }
    }

    /// The sum of several processes' counters.
    pub fn plus(&self, other: &Costs) -> Costs {
        Costs {
            sign_ns: self.sign_ns + other.sign_ns,
            verify_single_ns: self.verify_single_ns + other.verify_single_ns,
            verify_batched_ns: self.verify_batched_ns + other.verify_batched_ns,
            batched_signatures: self.batched_signatures + other.batched_signatures,
            hash_ns: self.hash_ns + other.hash_ns,
            codec_ns: self.codec_ns + other.codec_ns,
            fsync_ns: self.fsync_ns + other.fsync_ns,
            fsync_wall_ns: self.fsync_wall_ns + other.fsync_wall_ns,
        }
    }

    /// Per request, in µs, with "the rest" of `cpu_us_per_req` (CPU per request of the
    /// same processes) beside it.
    pub fn per_request(&self, requests: u64, cpu_us_per_req: f64) -> CostPerRequest {
        let us = |ns: u64| {
            if requests == 0 {
                0.0
            } else {
                ns as f64 / 1e3 / requests as f64
            }
        };
        let mut c = CostPerRequest {
            sign_us: us(self.sign_ns),
            verify_single_us: us(self.verify_single_ns),
            verify_batched_us: us(self.verify_batched_ns),
            batched_signatures: if requests == 0 {
                0.0
            } else {
                self.batched_signatures as f64 / requests as f64
            },
            hash_us: us(self.hash_ns),
            codec_us: us(self.codec_ns),
            fsync_us: us(self.fsync_ns),
            fsync_wall_us: us(self.fsync_wall_ns),
            rest_us: 0.0,
        };
        c.rest_us = (cpu_us_per_req - c.counted_cpu_us()).max(0.0);
        c
    }
}

/// Where CPU went per committed request, in µs: the counted kinds of work, and the rest
/// (the protocol, the transport, the runtime, the kernel's network stack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostPerRequest {
    pub sign_us: f64,
    pub verify_single_us: f64,
    pub verify_batched_us: f64,
    /// Signatures verified in batches, per request.
    pub batched_signatures: f64,
    pub hash_us: f64,
    pub codec_us: f64,
    /// CPU in fsync calls.
    pub fsync_us: f64,
    /// Wall time in fsync calls (not part of the CPU figures).
    pub fsync_wall_us: f64,
    pub rest_us: f64,
}

impl CostPerRequest {
    /// The CPU the counters account for.
    pub fn counted_cpu_us(&self) -> f64 {
        self.sign_us
            + self.verify_single_us
            + self.verify_batched_us
            + self.hash_us
            + self.codec_us
            + self.fsync_us
    }

    /// One line for the tables.
    pub fn line(&self) -> String {
        format!(
            "sign {:.1}, verify single {:.1}, verify batched {:.1} ({:.1} sigs), hash {:.1}, codec {:.1}, fsync {:.1} (wall {:.1}), rest {:.1}",
            self.sign_us,
            self.verify_single_us,
            self.verify_batched_us,
            self.batched_signatures,
            self.hash_us,
            self.codec_us,
            self.fsync_us,
            self.fsync_wall_us,
            self.rest_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters only grow, and per request the rest is what they do not account for.
    #[test]
    fn costs_add_up_to_the_cpu_they_are_given() {
        let before = snapshot();
        timed(Work::Hash, || {
            std::hint::black_box((0..1000u64).sum::<u64>())
        });
        timed_n(Work::VerifyBatched, 4, || ());
        let d = snapshot().since(&before);
        assert!(d.hash_ns > 0);
        assert!(d.batched_signatures >= 4);
        let c = Costs {
            sign_ns: 2_000,
            hash_ns: 1_000,
            ..Costs::default()
        }
        .per_request(1, 10.0);
        assert_eq!(c.sign_us, 2.0);
        assert!((c.rest_us - 7.0).abs() < 1e-9);
    }
}
