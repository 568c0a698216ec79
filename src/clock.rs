//! Time, passed in rather than read from the system, so tests can move it by hand.
//!
//! Two readings: [`Clock::now_ms`], the wall clock, for what is stored or shown (record
//! timestamps, commit times); and [`Clock::monotonic_ms`], for timeouts and ages (session and
//! replica lag timeouts, the age of a segment for retention), which never goes back and is not
//! moved by a jump of the wall clock (an operator's `date -s`, a VM resumed, NTP stepping).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;

    /// Milliseconds on a clock that never goes back, in the wall clock's units: it starts at
    /// the wall clock's reading when the process first asks and then moves with the
    /// monotonic clock only, so the two differ by the jumps the wall clock made since.
    fn monotonic_ms(&self) -> i64;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn monotonic_ms(&self) -> i64 {
        // One anchor per process, so every `SystemClock` agrees.
        static ANCHOR: OnceLock<(Instant, i64)> = OnceLock::new();
        let (at, wall_ms) = ANCHOR.get_or_init(|| (Instant::now(), SystemClock.now_ms()));
        wall_ms + at.elapsed().as_millis() as i64
    }
}

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to. Time passing (`advance_ms`, or `set_ms` forward)
/// moves both readings; `jump_ms` moves the wall clock alone, as a clock fault does.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
    monotonic_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicI64::new(now_ms),
            monotonic_ms: AtomicI64::new(now_ms),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
        self.monotonic_ms.fetch_add(ms.max(0), Ordering::SeqCst);
    }

    /// Sets the wall clock; the monotonic one moves by as much if that is forward.
    pub fn set_ms(&self, ms: i64) {
        let before = self.now_ms.swap(ms, Ordering::SeqCst);
        self.monotonic_ms
            .fetch_add((ms - before).max(0), Ordering::SeqCst);
    }

    /// The wall clock jumps by `ms` (forward or back); no time passes.
    pub fn jump_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> i64 {
        self.monotonic_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_jump_does_not_move_the_monotonic_clock() {
        let c = ManualClock::new(1_000_000);
        c.advance_ms(10);
        c.jump_ms(3_600_000);
        assert_eq!((c.now_ms(), c.monotonic_ms()), (4_600_010, 1_000_010));
        c.jump_ms(-7_200_000);
        c.set_ms(c.now_ms() + 5);
        assert_eq!((c.now_ms(), c.monotonic_ms()), (-2_599_985, 1_000_015));
        let s = SystemClock;
        let a = s.monotonic_ms();
        assert!(s.monotonic_ms() >= a);
        assert!((a - s.now_ms()).abs() < 60_000, "starts at the wall clock");
    }
}
