//! Retention decisions: which closed segments a pass may delete. Pure over the log's state
//! (the caller asks the guard and does the I/O).
//!
//! A segment is deletable when it is not the active one and any of:
//! - it lies wholly below the log start offset (DeleteRecords moved it);
//! - `cleanup.policy` includes `delete` and its largest timestamp is older than
//!   `retention.ms` (compared with the injected clock);
//! - `cleanup.policy` includes `delete` and without it the log would still be at least
//!   `retention.bytes` long.
//!
//! For a tiered topic (`remote.storage.enable`, compacted or not) the bounds are
//! `local.retention.ms/bytes`
//! ([`LogConfig::local_retention`](super::LogConfig::local_retention)), and the retention guard
//! holds back every segment not yet in the remote manifest; `retention.*` then bound the whole
//! log and are enforced on the remote part by tiering.
//!
//! Deletion walks from the oldest segment and stops at the first that is not deletable, so the
//! log stays a contiguous suffix (as Kafka's `deletableSegments`).

use super::local_log::LocalLog;

/// `(base_offset, next_offset)` of the segments to delete, oldest first.
pub(crate) fn deletable_segments(log: &LocalLog, now_ms: i64) -> Vec<(i64, i64)> {
    let cfg = &log.config;
    // A tiered compacted log drops local segments by `local.retention.*` like a delete log:
    // the guard keeps every one not yet uploaded, and the remote copy is compacted instead.
    let deletes = cfg.cleanup_policy.deletes() || cfg.remote_storage_enable;
    let (retention_ms, retention_bytes) = cfg.local_retention();
    let mut remaining = log.size_bytes() as i64;
    let mut out = Vec::new();
    let closed = log.segments.len().saturating_sub(1);
    let mut next_bases = log.segments.keys().skip(1);
    for seg in log.segments.values().take(closed) {
        let next_base = next_bases.next().copied().unwrap_or(i64::MAX);
        let below_start = next_base <= log.local_log_start_offset;
        let newest = if seg.max_timestamp >= 0 {
            seg.max_timestamp
        } else {
            seg.created_ms
        };
        let by_time = deletes && retention_ms >= 0 && now_ms - newest > retention_ms;
        let by_size =
            deletes && retention_bytes >= 0 && remaining - seg.size as i64 >= retention_bytes;
        if !(below_start || by_time || by_size) {
            break;
        }
        remaining -= seg.size as i64;
        out.push((seg.base_offset, seg.next_offset));
    }
    out
}
