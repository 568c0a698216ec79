//! [`ControllerMetrics`]: the metadata quorum as this node sees it.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::metrics::{counter, gauge};

/// The metadata quorum as this node sees it, refreshed from the Raft metrics and the image at
/// scrape time. Offsets are Raft log indexes + 1 (the next entry), as DescribeQuorum reports
/// them.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    pub active: IntGauge,
    pub term: IntGauge,
    pub log_end_offset: IntGauge,
    pub committed_offset: IntGauge,
    pub applied_offset: IntGauge,
    pub commit_lag: IntGauge,
    pub image_offset: IntGauge,
    pub registered_brokers: IntGauge,
    pub fenced_brokers: IntGauge,
    pub balancer_moves_in_flight: IntGauge,
    pub reassignments_completed: IntCounter,
    pub balancer_paused: IntGauge,
    pub balancer_max_replicas_per_broker: IntGauge,
    pub balancer_min_replicas_per_broker: IntGauge,
    pub balancer_max_bytes_per_broker: IntGauge,
    pub balancer_min_bytes_per_broker: IntGauge,
}

impl ControllerMetrics {
    pub fn new(r: &Registry) -> ControllerMetrics {
        ControllerMetrics {
            active: gauge(r, "strata_controller_active", "1 on the active controller (the Raft leader), else 0."),
            term: gauge(r, "strata_controller_term", "The current Raft term (the controller epoch)."),
            log_end_offset: gauge(r, "strata_controller_log_end_offset", "End of this node's copy of the metadata log."),
            committed_offset: gauge(r, "strata_controller_committed_offset", "Committed end of the metadata log: on the active controller what a majority of voters holds; elsewhere what this node has applied (the most it knows to be committed)."),
            applied_offset: gauge(r, "strata_controller_applied_offset", "End of the metadata log this node has applied to its image."),
            commit_lag: gauge(r, "strata_controller_commit_lag_records", "Metadata log entries this node holds that are not yet known committed (log end minus committed)."),
            image_offset: gauge(r, "strata_controller_image_offset", "Offset of this node's metadata image (the last record folded in)."),
            registered_brokers: gauge(r, "strata_controller_registered_brokers", "Brokers registered in the metadata image."),
            fenced_brokers: gauge(r, "strata_controller_fenced_brokers", "Registered brokers that are fenced."),
            balancer_moves_in_flight: gauge(r, "strata_controller_balancer_moves_in_flight", "Partition reassignments under way (the balancer's and any others); at most strata.balancer.max.concurrent.moves are the balancer's doing."),
            reassignments_completed: counter(r, "strata_controller_reassignments_completed_total", "Partition reassignments (the balancer's and any others) this node completed as the active controller."),
            balancer_paused: gauge(r, "strata_controller_balancer_paused", "1 while strata.balancer.enable is false (the balancer starts no moves)."),
            balancer_max_replicas_per_broker: gauge(r, "strata_controller_balancer_max_replicas_per_broker", "Replicas on the unfenced broker holding the most; with the minimum, the imbalance the balancer evens out."),
            balancer_min_replicas_per_broker: gauge(r, "strata_controller_balancer_min_replicas_per_broker", "Replicas on the unfenced broker holding the fewest."),
            balancer_max_bytes_per_broker: gauge(r, "strata_controller_balancer_max_bytes_per_broker", "Bytes (replicas' local log sizes, as the brokers report them) on the unfenced broker holding the most, as the active controller sees them; 0 elsewhere."),
            balancer_min_bytes_per_broker: gauge(r, "strata_controller_balancer_min_bytes_per_broker", "Bytes on the unfenced broker holding the fewest, as the active controller sees them; 0 elsewhere."),
        }
    }
}
