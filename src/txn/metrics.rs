//! [`TxnMetrics`]: the transactions this broker coordinates.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metrics::{counter, counter_vec, float_gauge, gauge};

/// Transactions of the transactional ids this broker coordinates. The gauges are refreshed at
/// scrape time from what the shards last published; the counters count as decisions complete.
#[derive(Debug, Clone)]
pub struct TxnMetrics {
    pub open: IntGauge,
    pub oldest_open_age_seconds: prometheus::Gauge,
    pub markers_written: IntCounter,
    pub completed: IntCounterVec,
    pub timed_out: IntCounter,
}

impl TxnMetrics {
    pub fn new(r: &Registry) -> TxnMetrics {
        let metrics = TxnMetrics {
            open: gauge(
                r,
                "strata_txn_open_transactions",
                "Transactions open (Ongoing, or prepared with markers still being written) on the transactional ids this broker coordinates.",
            ),
            oldest_open_age_seconds: float_gauge(
                r,
                "strata_txn_oldest_open_transaction_age_seconds",
                "Age of the oldest open transaction this broker coordinates, 0 when none is open.",
            ),
            markers_written: counter(
                r,
                "strata_txn_markers_written_total",
                "Transaction markers (commit or abort) written on data partitions for transactions this broker coordinates, one per partition.",
            ),
            completed: counter_vec(
                r,
                "strata_txn_completed_total",
                "Transactions completed (every marker written), by result: commit or abort.",
                &["result"],
            ),
            timed_out: counter(
                r,
                "strata_txn_timed_out_total",
                "Transactions aborted by the coordinator because they passed their transaction.timeout.ms.",
            ),
        };
        // Both results exist from the start, so dashboards and rate() see a zero before the
        // first transaction completes rather than no series at all.
        for result in ["commit", "abort"] {
            metrics.completed.with_label_values(&[result]);
        }
        metrics
    }
}
