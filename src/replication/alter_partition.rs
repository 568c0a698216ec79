//! ISR maintenance on the partitions this broker leads: ISR changes sent to the controller as
//! they come due (Kafka's `AlterPartitionManager` with the leader's ISR expiration), and high
//! watermarks checkpointed.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ReplicationMetrics;
use super::{IsrProposal, MetadataClient, Partition, ReplicaManager};
use crate::controller::isr::{decide_alter_partition, AlterPartition};
use crate::model::BrokerId;

/// Checks every quarter of `replica.lag.time.max.ms` (at most every 500 ms) which ISR changes
/// are due and sends each to the controller; checkpoints high watermarks every
/// `replica.high.watermark.checkpoint.interval.ms`, and once more at shutdown. Starts the
/// corrupt-range repairs beside it (`replication::repair`).
pub fn spawn_isr_maintenance(
    node_id: BrokerId,
    replicas: Arc<ReplicaManager>,
    metadata: MetadataClient,
    metrics: ReplicationMetrics,
    shutdown: CancellationToken,
) {
    super::repair::spawn_corrupt_range_repairs(replicas.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut last_checkpoint = tokio::time::Instant::now();
        loop {
            let node = metadata.node_config();
            let lag_max_ms = node.get_i64("replica.lag.time.max.ms").max(1);
            let tick = Duration::from_millis((lag_max_ms as u64 / 4).clamp(10, 500));
            let checkpoint_every = Duration::from_millis(
                node.get_i64("replica.high.watermark.checkpoint.interval.ms")
                    .max(100) as u64,
            );
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = shutdown.cancelled() => break,
            }
            for (partition, proposal) in replicas.isr_proposals(lag_max_ms) {
                let (metadata, metrics) = (metadata.clone(), metrics.clone());
                tokio::spawn(async move {
                    alter_partition(node_id, &metadata, &metrics, &partition, proposal).await
                });
            }
            if last_checkpoint.elapsed() >= checkpoint_every {
                last_checkpoint = tokio::time::Instant::now();
                let r = replicas.clone();
                let _ = tokio::task::spawn_blocking(move || r.checkpoint_high_watermarks()).await;
            }
        }
        let _ = tokio::task::spawn_blocking(move || replicas.checkpoint_high_watermarks()).await;
    });
}

/// Sends one ISR change to the controller (Kafka's AlterPartition). The image brings the
/// outcome; a refusal (an older registration, a fenced replica) just allows a new proposal.
async fn alter_partition(
    node_id: BrokerId,
    metadata: &MetadataClient,
    metrics: &ReplicationMetrics,
    partition: &Partition,
    proposal: IsrProposal,
) {
    let req = AlterPartition {
        topic_id: proposal.topic_id,
        partition: partition.tp.partition,
        leader: node_id,
        leader_epoch: proposal.leader_epoch,
        partition_epoch: proposal.partition_epoch,
        new_isr: proposal.new_isr.clone(),
    };
    let old_isr = partition.state().isr;
    match metadata
        .controller()
        .commit(|image| Ok(((), decide_alter_partition(image, &req)?)))
        .await
    {
        Ok(_) => {
            if old_isr.iter().any(|b| !req.new_isr.contains(b)) {
                metrics.isr_shrinks.inc();
            }
            if req.new_isr.iter().any(|b| !old_isr.contains(b)) {
                metrics.isr_expands.inc();
            }
            tracing::info!(partition = %partition.tp, from = ?old_isr, to = ?req.new_isr, "ISR changed");
        }
        Err(e) => {
            tracing::info!(partition = %partition.tp, to = ?req.new_isr, error = %e, "ISR change refused");
            partition.isr_proposal_failed();
        }
    }
}
