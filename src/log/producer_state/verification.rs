//! KIP-890's verification state of one partition (Kafka's `VerificationStateEntry` and
//! `VerificationGuard`).
//!
//! Before a leader appends the first transactional batch of a producer's transaction, it asks
//! the transaction coordinator whether this partition is in that ongoing transaction. Between
//! the question and the append the transaction may end and its marker be written here; the
//! guard is how the append learns it. [`VerificationStates::start`] hands out a guard for the
//! producer, every batch or marker of the producer appended meanwhile clears it, and the append
//! presents it and is refused unless it is still the producer's. So a batch that was in flight
//! when its transaction ended cannot open a new transaction that nobody will ever end (a
//! "hanging transaction", which would hold the last stable offset back for good).
//!
//! The entries live in memory only: after a restart or a reload a producer is verified again.
//! They are bounded as the producers are: one per producer id, forgotten at the producer
//! expiration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A token for one verification of one producer on one partition. Guards are unique in the
/// process, so one from before a truncation or a reload never matches a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationGuard(u64);

impl VerificationGuard {
    /// No verification was made: matches no entry (Kafka's `VerificationGuard.SENTINEL`).
    pub const SENTINEL: VerificationGuard = VerificationGuard(0);
}

static LAST_GUARD: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    guard: VerificationGuard,
    producer_epoch: i16,
    created_ms: i64,
}

/// The producers of one partition whose verification is under way. See the module
/// documentation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerificationStates {
    entries: HashMap<i64, Entry>,
}

impl VerificationStates {
    /// The guard for verifying `producer_id`'s transaction at `producer_epoch`: the one already
    /// handed out when a verification of that epoch is under way (a pipelined batch of the same
    /// transaction shares it), a new one otherwise.
    pub fn start(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> VerificationGuard {
        if let Some(e) = self.entries.get(&producer_id) {
            if e.producer_epoch >= producer_epoch {
                return e.guard;
            }
        }
        let guard = VerificationGuard(LAST_GUARD.fetch_add(1, Ordering::Relaxed) + 1);
        self.entries.insert(
            producer_id,
            Entry {
                guard,
                producer_epoch,
                created_ms: now_ms,
            },
        );
        guard
    }

    /// Whether `guard` is still `producer_id`'s: nothing of the producer was appended since it
    /// was handed out.
    pub fn verify(&self, producer_id: i64, guard: VerificationGuard) -> bool {
        guard != VerificationGuard::SENTINEL
            && self
                .entries
                .get(&producer_id)
                .is_some_and(|e| e.guard == guard)
    }

    /// A batch or marker of `producer_id` was appended: its transaction is open here now, or
    /// ended, and either way the guard has served.
    pub fn clear(&mut self, producer_id: i64) {
        self.entries.remove(&producer_id);
    }

    /// Forgets entries older than `max_age_ms` (a verification that failed and was never
    /// followed by an append).
    pub fn remove_expired(&mut self, now_ms: i64, max_age_ms: i64) {
        self.entries
            .retain(|_, e| now_ms - e.created_ms < max_age_ms);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_is_shared_until_an_append_clears_it() {
        let mut v = VerificationStates::default();
        let g = v.start(7, 0, 100);
        assert_ne!(g, VerificationGuard::SENTINEL);
        // A pipelined batch of the same transaction gets the same guard.
        assert_eq!(v.start(7, 0, 110), g);
        assert!(v.verify(7, g));
        assert!(!v.verify(7, VerificationGuard::SENTINEL));
        assert!(!v.verify(8, g));
        // The transaction's marker (or its first batch) was appended: the guard is spent, and
        // the next verification gets a new one.
        v.clear(7);
        assert!(!v.verify(7, g));
        let g2 = v.start(7, 0, 120);
        assert_ne!(g2, g);
        assert!(v.verify(7, g2));
        assert!(!v.verify(7, g));
    }

    #[test]
    fn a_newer_epoch_replaces_the_guard_and_an_older_one_does_not() {
        let mut v = VerificationStates::default();
        let g = v.start(7, 3, 0);
        assert_eq!(v.start(7, 2, 0), g);
        let g4 = v.start(7, 4, 0);
        assert_ne!(g4, g);
        assert!(!v.verify(7, g));
        assert!(v.verify(7, g4));
    }

    #[test]
    fn old_entries_expire() {
        let mut v = VerificationStates::default();
        v.start(1, 0, 0);
        v.start(2, 0, 500);
        v.remove_expired(1000, 1000);
        assert_eq!(v.len(), 1);
        v.remove_expired(1500, 1000);
        assert!(v.is_empty());
    }
}
