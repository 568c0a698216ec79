//! Transactional offset commits (TxnOffsetCommit): offsets a transactional producer commits
//! for a group as part of its transaction. They are written at once, in a transactional batch
//! of that producer, but kept apart per producer id and become the group's committed offsets
//! only when the transaction's commit marker reaches this `__consumer_offsets` partition; an
//! abort marker drops them (Kafka's `pendingTransactionalOffsetCommits`). A load does the same
//! with the batches and markers it reads back.

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{code, Decision, Group, GroupResponse, GroupShard, GroupState, Waiter};
use crate::group::records::{OffsetAndMetadata, OffsetsRecord};

/// One pending offset: group, topic, partition and the offset.
pub(super) type PendingOffset = (String, String, i32, OffsetAndMetadata);

impl GroupShard {
    pub(super) fn txn_commit(
        &mut self,
        d: &mut Decision,
        waiter: Waiter,
        req: TxnOffsetCommitRequest,
        now_ms: i64,
    ) {
        let group_id = req.group_id.0.to_string();
        if let Err(c) = self.admit_txn_commit(&req, now_ms) {
            return d.reply(waiter, GroupResponse::TxnCommit(txn_commit_error(&req, c)));
        }
        let producer_id = req.producer_id.0;
        // A producer older than one whose offsets are pending is a zombie.
        if self
            .pending_txn_epochs
            .get(&producer_id)
            .is_some_and(|e| *e > req.producer_epoch)
        {
            let c = code(E::InvalidProducerEpoch);
            return d.reply(waiter, GroupResponse::TxnCommit(txn_commit_error(&req, c)));
        }
        self.pending_txn_epochs
            .insert(producer_id, req.producer_epoch);
        let max_metadata = self.config.offset_metadata_max_bytes;
        let pending = self.pending_txn_offsets.entry(producer_id).or_default();
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let topic = t.name.0.to_string();
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let c = if metadata.len() > max_metadata {
                    code(E::OffsetMetadataTooLarge)
                } else {
                    let value = OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms: None,
                    };
                    pending.retain(|(g, t, q, _)| {
                        !(g == &group_id && t == &topic && *q == p.partition_index)
                    });
                    pending.push((
                        group_id.clone(),
                        topic.clone(),
                        p.partition_index,
                        value.clone(),
                    ));
                    d.records.push(OffsetsRecord::OffsetCommit {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: p.partition_index,
                        value: Some(value),
                    });
                    0
                };
                partitions.push(
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(c),
                );
            }
            topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        if !d.records.is_empty() {
            d.producer = Some((producer_id, req.producer_epoch));
        }
        d.reply(
            waiter,
            GroupResponse::TxnCommit(TxnOffsetCommitResponse::default().with_topics(topics)),
        );
    }

    /// Kafka's checks: a known group's member and generation when the request names them
    /// (v3+); a group that does not exist is created, as a simple commit would.
    fn admit_txn_commit(&mut self, req: &TxnOffsetCommitRequest, now_ms: i64) -> Result<(), i16> {
        let group_id = req.group_id.0.to_string();
        if group_id.is_empty() {
            return Err(code(E::InvalidGroupId));
        }
        let member_id = req.member_id.to_string();
        let Some(group) = self.groups.get(&group_id) else {
            self.groups
                .insert(group_id.clone(), Group::new(&group_id, now_ms));
            return Ok(());
        };
        if group.state == GroupState::Dead {
            return Err(code(E::CoordinatorNotAvailable));
        }
        if member_id.is_empty() || self.consumer_groups.contains_key(&group_id) {
            return Ok(());
        }
        if let Some(instance) = &req.group_instance_id {
            if group
                .static_members
                .get(instance.as_str())
                .is_some_and(|m| *m != member_id)
            {
                return Err(code(E::FencedInstanceId));
            }
        }
        if !group.members.contains_key(&member_id) {
            return Err(code(E::UnknownMemberId));
        }
        if req.generation_id != group.generation {
            return Err(code(E::IllegalGeneration));
        }
        Ok(())
    }

    /// The marker of `producer_id`'s transaction reached this partition: its pending offsets
    /// become committed (commit) or are dropped (abort).
    pub fn complete_txn_offsets(&mut self, producer_id: i64, commit: bool, now_ms: i64) {
        self.pending_txn_epochs.remove(&producer_id);
        let Some(pending) = self.pending_txn_offsets.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for (group, topic, partition, value) in pending {
            let g = self
                .groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now_ms));
            g.offsets.insert((topic, partition), value);
        }
    }

    /// A marker at `marker_offset` ended `producer_id`'s transaction. The event reaches a
    /// shard still loading too (queued until it serves), so a marker the load did not read
    /// is not missed; one below where the load stopped was replayed by it, and is not applied
    /// again (the offsets pending now may be the producer's next transaction's).
    pub(super) fn txn_completed(
        &mut self,
        producer_id: i64,
        commit: bool,
        marker_offset: i64,
        now_ms: i64,
    ) {
        if marker_offset >= self.loaded_end {
            self.complete_txn_offsets(producer_id, commit, now_ms);
        }
    }

    /// Load: an offset commit read from a transactional batch of `producer_id`.
    pub fn replay_txn_offset(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        record: OffsetsRecord,
    ) {
        self.pending_txn_epochs.insert(producer_id, producer_epoch);
        if let OffsetsRecord::OffsetCommit {
            group,
            topic,
            partition,
            value: Some(value),
        } = record
        {
            let pending = self.pending_txn_offsets.entry(producer_id).or_default();
            pending.retain(|(g, t, p, _)| !(g == &group && t == &topic && *p == partition));
            pending.push((group, topic, partition, value));
        }
    }

    /// Whether a transaction holds a pending offset of the group's partition (OffsetFetch with
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn_offsets
            .values()
            .flatten()
            .any(|(g, t, p, _)| g == group && t == topic && *p == partition)
    }
}

pub(super) fn txn_commit_error(req: &TxnOffsetCommitRequest, c: i16) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(c)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::state::{GroupConfig, GroupRequest};
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, ProducerId, TopicName};

    fn req(pid: i64, offset: i64) -> TxnOffsetCommitRequest {
        TxnOffsetCommitRequest::default()
            .with_group_id(GroupId(crate::protocol::str_bytes("g")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(3)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(crate::protocol::str_bytes("t")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])])
    }

    fn committed(s: &GroupShard) -> Option<i64> {
        s.groups
            .get("g")
            .and_then(|g| g.offsets.get(&("t".to_string(), 0)))
            .map(|o| o.offset)
    }

    #[test]
    fn offsets_are_pending_until_the_commit_marker() {
        let mut s = GroupShard::new(GroupConfig::default());
        let d = s.handle(
            1,
            GroupRequest::TxnCommit {
                req: req(7, 42),
                verification: None,
            },
            0,
        );
        assert_eq!(d.producer, Some((7, 3)));
        assert_eq!(d.records.len(), 1);
        assert_eq!(committed(&s), None);
        // An older epoch of the same producer is fenced and writes nothing.
        let zombie = req(7, 1).with_producer_epoch(2);
        let z = s.handle(
            2,
            GroupRequest::TxnCommit {
                req: zombie,
                verification: None,
            },
            0,
        );
        assert!(z.records.is_empty());
        match &z.replies[0].1 {
            GroupResponse::TxnCommit(r) => assert_eq!(
                r.topics[0].partitions[0].error_code,
                E::InvalidProducerEpoch.code()
            ),
            other => panic!("{other:?}"),
        }
        assert!(s.has_pending_offset("g", "t", 0));
        s.complete_txn_offsets(7, true, 1);
        assert_eq!(committed(&s), Some(42));
        assert!(!s.has_pending_offset("g", "t", 0));
    }

    #[test]
    fn an_abort_marker_drops_them_and_other_producers_are_untouched() {
        let mut s = GroupShard::new(GroupConfig::default());
        s.handle(
            1,
            GroupRequest::TxnCommit {
                req: req(7, 42),
                verification: None,
            },
            0,
        );
        s.handle(
            2,
            GroupRequest::TxnCommit {
                req: req(8, 50),
                verification: None,
            },
            0,
        );
        s.complete_txn_offsets(7, false, 1);
        assert_eq!(committed(&s), None);
        s.complete_txn_offsets(8, true, 1);
        assert_eq!(committed(&s), Some(50));
    }

    #[test]
    fn a_load_keeps_them_pending_until_the_marker_it_reads() {
        let mut s = GroupShard::new(GroupConfig::default());
        let rec = OffsetsRecord::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(OffsetAndMetadata {
                offset: 9,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
                expire_timestamp_ms: None,
            }),
        };
        s.replay_txn_offset(7, 3, rec);
        assert_eq!(committed(&s), None);
        s.complete_txn_offsets(7, true, 0);
        assert_eq!(committed(&s), Some(9));
    }

    #[test]
    fn a_marker_is_applied_once_whether_the_load_read_it_or_not() {
        let completed = |pid: i64, commit: bool, marker_offset: i64| GroupRequest::TxnCompleted {
            producer_id: pid,
            commit,
            marker_offset,
        };
        // The load stopped at offset 10, after the marker of the producer's first transaction
        // (at 5) and a TxnOffsetCommit of its next one.
        let mut s = GroupShard::new(GroupConfig::default());
        s.loaded_end = 10;
        s.handle(
            1,
            GroupRequest::TxnCommit {
                req: req(7, 42),
                verification: None,
            },
            0,
        );
        // The event of the marker at 5 was queued while loading: the load already applied it,
        // and the next transaction's offsets stay pending.
        s.handle(2, completed(7, true, 5), 0);
        assert_eq!(committed(&s), None);
        assert!(s.has_pending_offset("g", "t", 0));
        // A marker the load did not read (at or past 10) is applied from its event.
        s.handle(3, completed(7, true, 12), 0);
        assert_eq!(committed(&s), Some(42));
        assert!(!s.has_pending_offset("g", "t", 0));
    }

    #[test]
    fn a_member_of_an_older_generation_is_refused() {
        let mut s = GroupShard::new(GroupConfig::default());
        s.handle(
            1,
            GroupRequest::TxnCommit {
                req: req(7, 1),
                verification: None,
            },
            0,
        );
        let r = req(7, 2).with_member_id(crate::protocol::str_bytes("nobody"));
        let d = s.handle(
            2,
            GroupRequest::TxnCommit {
                req: r,
                verification: None,
            },
            0,
        );
        match &d.replies[0].1 {
            GroupResponse::TxnCommit(resp) => assert_eq!(
                resp.topics[0].partitions[0].error_code,
                E::UnknownMemberId.code()
            ),
            other => panic!("{other:?}"),
        }
        assert!(d.records.is_empty());
        assert_eq!(d.producer, None);
    }
}
