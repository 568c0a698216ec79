//! Promoting a mirror topic, on the leaders of its partitions: the final catch-up with the
//! source before the promotion, and the abort of the source transactions the promotion leaves
//! open (their markers will never arrive, and no coordinator of this cluster owns them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId as WireBrokerId, ListOffsetsRequest};

use super::{MirrorFetcherManager, Partition, BACKOFF_MAX, BACKOFF_MIN};
use crate::controller::mirror::{source, MirrorLinkSpec};
use crate::model::TopicPartition;
use crate::net::Network;
use crate::protocol::control::{EndTransactionMarker, TransactionResult};
use crate::protocol::topic_name;

impl MirrorFetcherManager {
    /// A partition led here whose topic was just promoted: the transactions still open in it
    /// were opened by source producers whose markers never arrived, and no coordinator of this
    /// cluster owns them, so none would ever end them and the last stable offset would stay
    /// where they began (read_committed consumers held). Once the link fetcher stopped, every
    /// transaction open below the end it reached is aborted with a marker at its producer's
    /// epoch, committed to the ISR; retried while this broker leads the partition.
    pub(super) async fn abort_open_transactions(
        self: Arc<Self>,
        partition: Arc<Partition>,
        link: String,
        fetcher: Option<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(f) = fetcher {
            let _ = f.await;
        }
        let mirrored_end = partition.log().log_end_offset();
        let tp = partition.tp.clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            let open: Vec<_> = partition
                .log()
                .producer_states()
                .into_iter()
                .filter(|s| s.current_txn_start_offset.is_some_and(|o| o < mirrored_end))
                .collect();
            let mut failed = None;
            for s in &open {
                let marker = EndTransactionMarker {
                    result: TransactionResult::Abort,
                    coordinator_epoch: s.coordinator_epoch,
                };
                match partition
                    .write_txn_marker(s.producer_id, s.producer_epoch, marker)
                    .await
                {
                    Ok(_) => {
                        tracing::warn!(%link, partition = %tp, producer_id = s.producer_id.0,
                            first_offset = s.current_txn_start_offset.map_or(-1, |o| o.0),
                            "aborted a source transaction left open by the promotion");
                        self.metrics
                            .promotion_aborted_transactions
                            .with_label_values(&[&link, &tp.topic, &tp.partition.0.to_string()])
                            .inc();
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let Some(e) = failed else {
                return;
            };
            if !partition.is_leader() {
                tracing::warn!(%link, partition = %tp, error = %e, "leadership moved before the source transactions left open by the promotion were aborted; abort them with `strata transactions abort --topic --partition --start-offset`");
                return;
            }
            tracing::warn!(%link, partition = %tp, error = %e, "cannot abort a source transaction left open by the promotion yet; retrying");
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Before a promotion: waits, at most `timeout`, until the partitions of `topic` mirrored
    /// here have committed (high watermark) the source's end as the source reports it now (a
    /// final catch-up), and until no transaction is open in them. A source answers a commit
    /// before it writes the markers, so a transaction the source's producer saw committed may
    /// still be open at the end it reported: the source is asked again until its markers are
    /// here too. A source that does not answer in time is not waited for; the partitions still
    /// behind are returned with their gap, for the log.
    pub async fn catch_up(&self, topic: &str, timeout: Duration) -> Vec<(TopicPartition, i64)> {
        let here: Vec<(Arc<Partition>, MirrorLinkSpec)> = self
            .tasks()
            .values()
            .filter(|t| t.partition.tp.topic == topic)
            .map(|t| (t.partition.clone(), t.link.clone()))
            .collect();
        let Some((_, link)) = here.first() else {
            return vec![];
        };
        let link = link.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut behind = Vec::new();
        loop {
            let ends =
                tokio::time::timeout_at(deadline, source_ends(&self.net, &link, topic)).await;
            let ends = match ends {
                Ok(Ok(ends)) => ends,
                Ok(Err(e)) => {
                    tracing::warn!(link = %link.name, %topic, error = %e, "no final catch-up: the source did not answer");
                    return behind;
                }
                Err(_) => {
                    tracing::warn!(link = %link.name, %topic, "no final catch-up: the source did not answer in time");
                    return behind;
                }
            };
            loop {
                behind = here
                    .iter()
                    .filter_map(|(p, _)| {
                        let end = ends.get(&p.tp.partition.0)?;
                        let gap = end - p.high_watermark().0;
                        (gap > 0).then(|| (p.tp.clone(), gap))
                    })
                    .collect();
                if behind.is_empty() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let open = here
                .iter()
                .any(|(p, _)| p.log().first_unstable_offset().is_some());
            if !behind.is_empty() || !open || tokio::time::Instant::now() >= deadline {
                return behind;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The source's latest offset (high watermark) of each partition of `topic`, asked of each
/// partition's leader.
async fn source_ends(
    net: &Arc<dyn Network>,
    link: &MirrorLinkSpec,
    topic: &str,
) -> Result<HashMap<i32, i64>, String> {
    let mut bootstrap = source::connect_any(net, link).await?;
    let md = source::metadata(&mut bootstrap, Some(&[topic.to_string()])).await?;
    let mut ends = HashMap::new();
    let Some(t) = md.topics.first() else {
        return Ok(ends);
    };
    for p in &t.partitions {
        let Some(b) = md.brokers.iter().find(|b| b.node_id == p.leader_id) else {
            continue;
        };
        let mut c = source::connect(net, link, &format!("{}:{}", b.host.as_str(), b.port)).await?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(WireBrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic.to_string()))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)])]);
        let resp = c.send(&req, 7).await.map_err(|e| e.to_string())?;
        for r in resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|r| r.error_code == 0)
        {
            ends.insert(r.partition_index, r.offset);
        }
    }
    Ok(ends)
}
