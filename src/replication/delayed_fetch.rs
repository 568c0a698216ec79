//! Long-polling fetches, woken by partition (Kafka's `DelayedFetch` in a purgatory keyed by
//! partition).
//!
//! A fetch that found fewer than `min_bytes` waits for one of its partitions to change. Each
//! [`Partition`] owns its [`FetchWakeups`]; a waiting fetch subscribes to the partitions it
//! asked for and nothing else, so an append to one partition never wakes a fetch waiting on
//! another. What wakes a waiter depends on how far it reads:
//!
//! - a consumer reads up to the high watermark ([`FetchIsolation::HighWatermark`]): it wakes
//!   when the high watermark advances, not on appends that are not yet committed;
//! - a follower reads up to the log end ([`FetchIsolation::LogEnd`]): it wakes on the leader's
//!   appends;
//! - both wake when the partition is truncated or its leadership changes, and answer at once
//!   with whatever error the partition now gives, and when the partition is removed.
//!
//! The max-wait deadline and broker shutdown are the caller's to select on.
//!
//! # To ensure correctness
//! A change between a read and the wait must not be lost: the waiter subscribes before its
//! first read, and [`DelayedFetch::mark_seen`] is called before each read, so a change made
//! during the read is still unseen when [`DelayedFetch::changed`] is awaited.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::sync::watch;

use super::Partition;

/// How far a fetch reads, and so which changes can give it more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchIsolation {
    /// A consumer: committed records only.
    HighWatermark,
    /// A follower: everything the leader has appended.
    LogEnd,
}

/// One partition's wake-ups for the fetches waiting on it. The values are change counters;
/// only their changing matters.
#[derive(Debug)]
pub struct FetchWakeups {
    /// Bumped when the high watermark advances, on truncation and on leadership changes.
    high_watermark: watch::Sender<u64>,
    /// Bumped when the leader appends, on truncation and on leadership changes.
    log_end: watch::Sender<u64>,
}

impl Default for FetchWakeups {
    fn default() -> Self {
        FetchWakeups {
            high_watermark: watch::channel(0).0,
            log_end: watch::channel(0).0,
        }
    }
}

impl FetchWakeups {
    /// Committed records became visible: wakes consumers.
    pub(super) fn high_watermark_advanced(&self) {
        bump(&self.high_watermark);
    }

    /// The leader appended: wakes followers.
    pub(super) fn appended(&self) {
        bump(&self.log_end);
    }

    /// The log was truncated or the leadership changed: every waiter reads again, and answers
    /// with the partition's new error or data.
    pub(super) fn reset(&self) {
        bump(&self.high_watermark);
        bump(&self.log_end);
    }

    fn subscribe(&self, isolation: FetchIsolation) -> watch::Receiver<u64> {
        match isolation {
            FetchIsolation::HighWatermark => self.high_watermark.subscribe(),
            FetchIsolation::LogEnd => self.log_end.subscribe(),
        }
    }
}

fn bump(tx: &watch::Sender<u64>) {
    // Always through the channel's lock, even with nobody subscribed: skipping on a zero
    // receiver count would race a waiter that subscribes and then reads the old value (the
    // count is a relaxed atomic, so on a weakly ordered CPU the writer can miss the subscriber
    // and the waiter miss the write). The lock orders the two.
    tx.send_modify(|v| *v = v.wrapping_add(1));
}

/// Why a waiting fetch woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// One of its partitions changed in a way that may give it more to read.
    Changed,
    /// One of its partitions is gone from this broker.
    Removed,
}

/// A fetch's subscription to the partitions it asked for.
#[derive(Debug)]
pub struct DelayedFetch {
    watched: Vec<watch::Receiver<u64>>,
}

impl DelayedFetch {
    /// Subscribes to `partitions`; call before the first read.
    pub fn new<'a>(
        isolation: FetchIsolation,
        partitions: impl IntoIterator<Item = &'a Partition>,
    ) -> DelayedFetch {
        DelayedFetch {
            watched: partitions
                .into_iter()
                .map(|p| p.fetch_wakeups().subscribe(isolation))
                .collect(),
        }
    }

    /// Marks every change so far as seen; call before each read.
    pub fn mark_seen(&mut self) {
        for rx in &mut self.watched {
            rx.borrow_and_update();
        }
    }

    /// Resolves once a watched partition changed after the last [`mark_seen`](Self::mark_seen).
    /// With no partitions watched it never resolves (the deadline ends the wait).
    pub async fn changed(&mut self) -> Wake {
        let mut waits: Vec<Pin<Box<_>>> = self
            .watched
            .iter_mut()
            .map(|rx| Box::pin(rx.changed()))
            .collect();
        std::future::poll_fn(|cx| {
            for w in &mut waits {
                if let Poll::Ready(r) = w.as_mut().poll(cx) {
                    return Poll::Ready(if r.is_ok() {
                        Wake::Changed
                    } else {
                        Wake::Removed
                    });
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests;
