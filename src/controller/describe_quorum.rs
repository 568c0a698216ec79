//! What this node reports about the metadata quorum: DescribeQuorum (as this node sees it, or
//! as the active controller does) and the controller gauges.

use std::collections::BTreeSet;

use super::network::{
    ControllerReply, ControllerRequest, QuorumDescription, ReplicaDescription, ReplicaProgress,
};
use super::node::{active_in, Controller};
use super::quorum::NodeId;
use super::ControllerError;

impl Controller {
    /// The quorum as this node sees it.
    pub fn describe(&self) -> QuorumDescription {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut out_voters = Vec::new();
        let mut learners = Vec::new();
        for (id, node) in membership.nodes() {
            if voters.contains(id) {
                out_voters.push((*id, node.addr.clone()));
            } else {
                learners.push((*id, node.addr.clone()));
            }
        }
        let image = self.image();
        let leading = active_in(&m, self.settings.node_id).is_some();
        let log_end_offset = m.last_log_index.map(|i| i + 1);
        let replicas = if leading {
            let now = ReplicaProgress::now_ms();
            membership
                .nodes()
                .map(|(id, _)| {
                    let (log_end, (fetch, caught_up)) = if *id == self.settings.node_id {
                        (log_end_offset, (Some(now), Some(now)))
                    } else {
                        let matched = m.replication.as_ref().and_then(|r| r.get(id)).copied();
                        (
                            matched.flatten().map(|l| l.index + 1),
                            self.progress.times(*id),
                        )
                    };
                    ReplicaDescription {
                        node_id: *id,
                        voter: voters.contains(id),
                        log_end_offset: log_end,
                        last_fetch_ms: fetch,
                        last_caught_up_ms: caught_up,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        QuorumDescription {
            node_id: self.settings.node_id,
            log_end_offset,
            high_watermark: m.last_applied.map(|l| l.index + 1),
            replicas,
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            voters: out_voters,
            learners,
            image_offset: image.offset,
            metadata_version: image.metadata_version,
            brokers: image
                .brokers
                .values()
                .map(|b| {
                    (
                        b.broker_id.0,
                        format!("{}:{}", b.host, b.port),
                        b.rack.clone(),
                        b.fenced,
                    )
                })
                .collect(),
        }
    }

    /// Refreshes the controller gauges (at scrape time).
    pub fn sync_metrics(&self, out: &super::ControllerMetrics) {
        let m = self.raft.metrics().borrow().clone();
        let leading = active_in(&m, self.settings.node_id).is_some();
        let log_end = m.last_log_index.map_or(0, |i| i + 1);
        let applied = m.last_applied.map_or(0, |l| l.index + 1);
        let committed = match (&m.replication, leading) {
            (Some(replication), true) => {
                // What a majority of voters holds: the leader has its whole log.
                let membership = m.membership_config.membership();
                let mut ends: Vec<u64> = membership
                    .voter_ids()
                    .map(|id| {
                        if id == self.settings.node_id {
                            log_end
                        } else {
                            replication
                                .get(&id)
                                .copied()
                                .flatten()
                                .map_or(0, |l| l.index + 1)
                        }
                    })
                    .collect();
                ends.sort_unstable_by(|a, b| b.cmp(a));
                ends.get(ends.len() / 2)
                    .copied()
                    .unwrap_or(applied)
                    .max(applied)
            }
            _ => applied,
        };
        let image = self.image();
        let gauge = |g: &prometheus::IntGauge, v: u64| g.set(v.min(i64::MAX as u64) as i64);
        gauge(&out.active, leading as u64);
        gauge(&out.term, m.current_term);
        gauge(&out.log_end_offset, log_end);
        gauge(&out.committed_offset, committed);
        gauge(&out.applied_offset, applied);
        gauge(&out.commit_lag, log_end.saturating_sub(committed));
        gauge(&out.image_offset, image.offset);
        gauge(&out.registered_brokers, image.brokers.len() as u64);
        gauge(
            &out.fenced_brokers,
            image.brokers.values().filter(|b| b.fenced).count() as u64,
        );
        let balancer = self.settings.balancer.effective(&image);
        let counts = super::balancer::replicas_per_broker(&image);
        gauge(
            &out.balancer_moves_in_flight,
            super::reassignment::ongoing_reassignments(&image).count() as u64,
        );
        gauge(&out.balancer_paused, (!balancer.enable) as u64);
        // The counter follows this node's own count, which only grows.
        let completed = self
            .reassignments_completed
            .load(std::sync::atomic::Ordering::Relaxed);
        let exported = out.reassignments_completed.get();
        if completed > exported {
            out.reassignments_completed.inc_by(completed - exported);
        }
        let count = |c: Option<&usize>| c.copied().unwrap_or(0) as u64;
        gauge(
            &out.balancer_max_replicas_per_broker,
            count(counts.values().max()),
        );
        gauge(
            &out.balancer_min_replicas_per_broker,
            count(counts.values().min()),
        );
        let sizes = self.replica_sizes().partition_sizes(&image);
        let mut bytes: std::collections::BTreeMap<_, u64> =
            counts.keys().map(|b| (*b, 0)).collect();
        for ((topic_id, index), size) in &sizes {
            let replicas = image
                .topics
                .get(topic_id)
                .and_then(|t| t.partitions.get(index))
                .map(|p| p.replicas.as_slice())
                .unwrap_or_default();
            for b in replicas {
                if let Some(n) = bytes.get_mut(b) {
                    *n += size;
                }
            }
        }
        gauge(
            &out.balancer_max_bytes_per_broker,
            bytes.values().max().copied().unwrap_or(0),
        );
        gauge(
            &out.balancer_min_bytes_per_broker,
            bytes.values().min().copied().unwrap_or(0),
        );
    }

    /// The quorum as the active controller sees it (with every member's replication).
    pub async fn describe_active(&self) -> Result<QuorumDescription, ControllerError> {
        match self.to_leader(ControllerRequest::Describe).await? {
            ControllerReply::Describe(d) if d.leader == Some(d.node_id) => Ok(d),
            ControllerReply::Describe(d) => {
                Err(ControllerError::NotController { leader: d.leader })
            }
            _ => Err(ControllerError::Raft("unexpected reply".into())),
        }
    }
}
