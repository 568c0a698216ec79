//! The leadership check every leader operation of a [`Partition`](super::Partition) starts with.

use super::{PartitionError, PartitionState};
use crate::model::{BrokerId, LeaderEpoch, TopicPartition};

/// Whether `local` leads the partition in `state` at `epoch` (`LeaderEpoch::UNKNOWN`: any).
pub(super) fn check_leader(
    tp: &TopicPartition,
    local: BrokerId,
    state: &PartitionState,
    epoch: LeaderEpoch,
) -> Result<(), PartitionError> {
    if state.leader != local {
        return Err(PartitionError::NotLeader {
            tp: tp.clone(),
            local,
            leader: state.leader,
        });
    }
    if epoch != LeaderEpoch::UNKNOWN {
        if epoch < state.leader_epoch {
            return Err(PartitionError::FencedLeaderEpoch {
                tp: tp.clone(),
                requested: epoch,
                current: state.leader_epoch,
            });
        }
        if epoch > state.leader_epoch {
            return Err(PartitionError::UnknownLeaderEpoch {
                tp: tp.clone(),
                requested: epoch,
                current: state.leader_epoch,
            });
        }
    }
    Ok(())
}
