//! `Partition`: one partition's replica on this broker — its log, its role, its high watermark.
//!
//! The high watermark is the offset below which records are committed: visible to consumers and
//! safe to acknowledge. With one replica under group commit it is the log's durable offset (what
//! an fsync has covered); under the interval flush policy it is the log end offset. With
//! followers it becomes the minimum end offset across the ISR.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::controller::PartitionRegistration;
use crate::log::{FetchDataInfo, FlushPolicy, LogAppendInfo, LogError, UnifiedLog};
use crate::model::{BrokerId, LeaderEpoch, Offset, TopicId, TopicPartition};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("broker {local} is not the leader of {tp} (leader {leader})")]
    NotLeader {
        tp: TopicPartition,
        local: BrokerId,
        leader: BrokerId,
    },
    #[error("{tp}: request epoch {requested} is older than the current leader epoch {current}")]
    FencedLeaderEpoch {
        tp: TopicPartition,
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("{tp}: request epoch {requested} is newer than the current leader epoch {current}")]
    UnknownLeaderEpoch {
        tp: TopicPartition,
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("{tp}: {isr} in-sync replicas, fewer than min.insync.replicas {min_isr}")]
    NotEnoughReplicas {
        tp: TopicPartition,
        isr: usize,
        min_isr: usize,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The leadership facts of a partition, as the metadata image last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub partition_epoch: i32,
}

impl From<&PartitionRegistration> for PartitionState {
    fn from(r: &PartitionRegistration) -> Self {
        PartitionState {
            leader: r.leader,
            leader_epoch: r.leader_epoch,
            replicas: r.replicas.clone(),
            isr: r.isr.clone(),
            partition_epoch: r.partition_epoch,
        }
    }
}

#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: TopicId,
    log: Arc<UnifiedLog>,
    local: BrokerId,
    // Short sections only: read or replace the state, never across I/O or `.await`.
    state: Mutex<PartitionState>,
    high_watermark: AtomicI64,
    min_insync_replicas: AtomicI64,
    /// Bumped whenever any partition's high watermark advances; long-polling fetches wait on it.
    data_version: Arc<watch::Sender<u64>>,
}

impl Partition {
    pub fn new(
        tp: TopicPartition,
        topic_id: TopicId,
        log: Arc<UnifiedLog>,
        local: BrokerId,
        state: PartitionState,
        min_insync_replicas: usize,
        data_version: Arc<watch::Sender<u64>>,
    ) -> Partition {
        // What survived recovery is on disk; with no followers it is all committed.
        let hw = log.log_end_offset();
        Partition {
            tp,
            topic_id,
            log,
            local,
            state: Mutex::new(state),
            high_watermark: AtomicI64::new(hw.0),
            min_insync_replicas: AtomicI64::new(min_insync_replicas as i64),
            data_version,
        }
    }

    pub fn log(&self) -> &Arc<UnifiedLog> {
        &self.log
    }

    pub fn state(&self) -> PartitionState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn update_state(&self, state: PartitionState, min_insync_replicas: usize) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
        self.min_insync_replicas
            .store(min_insync_replicas as i64, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.state().leader == self.local
    }

    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire))
    }

    /// Checks that this broker leads the partition at `epoch` (-1: any epoch).
    pub fn check_leader(&self, epoch: LeaderEpoch) -> Result<PartitionState, PartitionError> {
        let state = self.state();
        if state.leader != self.local {
            return Err(PartitionError::NotLeader {
                tp: self.tp.clone(),
                local: self.local,
                leader: state.leader,
            });
        }
        if epoch != LeaderEpoch::UNKNOWN {
            if epoch < state.leader_epoch {
                return Err(PartitionError::FencedLeaderEpoch {
                    tp: self.tp.clone(),
                    requested: epoch,
                    current: state.leader_epoch,
                });
            }
            if epoch > state.leader_epoch {
                return Err(PartitionError::UnknownLeaderEpoch {
                    tp: self.tp.clone(),
                    requested: epoch,
                    current: state.leader_epoch,
                });
            }
        }
        Ok(state)
    }

    /// Appends a producer's batches. `acks == -1` requires `min.insync.replicas` in the ISR.
    pub fn append_as_leader(
        &self,
        records: bytes::Bytes,
        acks: i16,
    ) -> Result<LogAppendInfo, PartitionError> {
        let state = self.check_leader(LeaderEpoch::UNKNOWN)?;
        let min_isr = self.min_insync_replicas.load(Ordering::Relaxed).max(1) as usize;
        if acks == -1 && state.isr.len() < min_isr {
            return Err(PartitionError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr: state.isr.len(),
                min_isr,
            });
        }
        let info = self.log.append_as_leader(records, state.leader_epoch)?;
        if !self.waits_for_fsync() {
            self.advance_high_watermark();
        }
        Ok(info)
    }

    fn waits_for_fsync(&self) -> bool {
        matches!(self.log.config().flush_policy, FlushPolicy::GroupCommit)
    }

    /// Resolves once everything below `end_offset` is committed (below the high watermark).
    pub async fn wait_committed(&self, end_offset: Offset) -> Result<(), PartitionError> {
        if self.waits_for_fsync() {
            self.log.wait_durable(end_offset).await?;
        }
        self.advance_high_watermark();
        Ok(())
    }

    /// Moves the high watermark to what is now committed, waking long-polling fetches.
    pub fn advance_high_watermark(&self) {
        let candidate = if self.waits_for_fsync() {
            self.log.durable_offset()
        } else {
            self.log.log_end_offset()
        };
        let previous = self.high_watermark.fetch_max(candidate.0, Ordering::AcqRel);
        if candidate.0 > previous {
            self.data_version.send_modify(|v| *v += 1);
        }
    }

    /// Reads committed batches for a consumer, from `offset`, up to `max_bytes`.
    pub fn read_committed(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo, PartitionError> {
        Ok(self
            .log
            .read(offset, max_bytes, self.high_watermark(), min_one_batch)?)
    }

    /// Truncations below the high watermark (DeleteRecords past it) are refused by the caller;
    /// after a truncation the high watermark is clamped to the new end.
    pub fn clamp_high_watermark(&self) {
        let leo = self.log.log_end_offset();
        self.high_watermark.fetch_min(leo.0, Ordering::AcqRel);
    }
}
