//! [`TxnMetrics`]: the transactions this broker coordinates.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

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
    /// Partition leaders' KIP-890 questions, by where the coordinator was and the answer.
    pub verifications: IntCounterVec,
    /// How long a transaction's first batch on a partition waited for its question, by where
    /// the coordinator was.
    pub verification_seconds: HistogramVec,
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
            verifications: counter_vec(
                r,
                "strata_txn_verifications_total",
                "Transactions this broker, as partition leader, verified with their coordinator before appending their first batch on a partition (KIP-890), by coordinator (local or remote) and result (verified, refused: not in the transaction, retriable: asked again by the producer's retry, error: any other refusal).",
                &["coordinator", "result"],
            ),
            verification_seconds: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "strata_txn_verification_seconds",
                        "Time a partition leader waited for the transaction coordinator's answer before appending a transaction's first batch (KIP-890), by coordinator: local or remote.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                    &["coordinator"],
                )
                .expect("metric definition is valid");
                r.register(Box::new(h.clone()))
                    .expect("metric registered once");
                h
            },
        };
        // Both results exist from the start, so dashboards and rates see 0 rather than no series.
        for result in ["commit", "abort"] {
            metrics.completed.with_label_values(&[result]);
        }
        for coordinator in ["local", "remote"] {
            for result in ["verified", "refused", "retriable", "error"] {
                metrics
                    .verifications
                    .with_label_values(&[coordinator, result]);
            }
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_results_are_exported_before_any_transaction_completes() {
        let registry = Registry::new();
        let _metrics = TxnMetrics::new(&registry);
        let family = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "strata_txn_completed_total")
            .expect("exported");
        let mut results: Vec<(String, f64)> = family
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_string(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        results.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            results,
            vec![("abort".to_string(), 0.0), ("commit".to_string(), 0.0)]
        );
    }
}
