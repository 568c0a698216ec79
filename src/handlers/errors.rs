//! Typed errors to Kafka error codes, in one place (STYLE.md: mapped to the wire once).

use kafka_protocol::error::ResponseError as E;

use crate::controller::ControllerError;
use crate::group::CoordinatorError;
use crate::log::remote::RemoteLogError;
use crate::log::{LogError, PartitionLogError, RecordError, RecordErrorKind};
use crate::quota::QuotaError;
use crate::replication::PartitionError;

pub const NONE: i16 = 0;

pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::CorruptBatch { .. } => E::CorruptMessage.code(),
        LogError::BatchTooLarge { .. } => E::MessageTooLarge.code(),
        LogError::UnsupportedMagic { .. } => E::UnsupportedForMessageFormat.code(),
        LogError::InvalidRecord { .. } => E::InvalidRecord.code(),
        LogError::RecordsRejected { kind, .. } => match kind {
            RecordErrorKind::InvalidRecord => E::InvalidRecord.code(),
            RecordErrorKind::InvalidTimestamp => E::InvalidTimestamp.code(),
        },
        LogError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        LogError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber.code(),
        LogError::ProducerFenced { .. } => E::InvalidProducerEpoch.code(),
        LogError::InvalidTxnState { .. } => E::InvalidTxnState.code(),
        LogError::TransactionNotVerified { .. } => E::InvalidTxnState.code(),
        LogError::TransactionCoordinatorFenced { .. } => E::TransactionCoordinatorFenced.code(),
        LogError::UnknownProducerId { .. } => E::UnknownProducerId.code(),
        LogError::CorruptSegment { .. }
        | LogError::DiskFull { .. }
        // Retriable for clients; see `log::disk_pressure` for why this code.
        | LogError::DiskPressure { .. }
        | LogError::Io { .. }
        | LogError::LogDirOffline { .. } => E::KafkaStorageError.code(),
        LogError::Closed => E::NotLeaderOrFollower.code(),
    }
}

pub fn partition_error_code(e: &PartitionError) -> i16 {
    match e {
        PartitionError::NotLeader { .. } => E::NotLeaderOrFollower.code(),
        PartitionError::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch.code(),
        PartitionError::UnknownLeaderEpoch { .. } => E::UnknownLeaderEpoch.code(),
        PartitionError::NotEnoughReplicas { .. } => E::NotEnoughReplicas.code(),
        PartitionError::NotEnoughReplicasAfterAppend { .. } => {
            E::NotEnoughReplicasAfterAppend.code()
        }
        // A broker fetching as a replica of a partition it is not assigned.
        PartitionError::UnknownReplica { .. } => E::NotLeaderOrFollower.code(),
        PartitionError::Log(l) => log_error_code(l),
    }
}

/// The bad records of a refused produce batch (KIP-467), none for other errors.
pub fn record_errors(e: &PartitionError) -> &[RecordError] {
    match e {
        PartitionError::Log(LogError::RecordsRejected { record_errors, .. }) => record_errors,
        _ => &[],
    }
}

/// Remote reads and remote steps: every failure is retriable for the client (Kafka answers
/// KAFKA_STORAGE_ERROR for a failed remote fetch); corrupt data is never served.
pub fn remote_log_error_code(e: &RemoteLogError) -> i16 {
    match e {
        RemoteLogError::Storage { .. }
        | RemoteLogError::CorruptBatch { .. }
        | RemoteLogError::NotLoaded { .. } => E::KafkaStorageError.code(),
    }
}

/// A partition log's error: from its local part or its remote part.
pub fn partition_log_error_code(e: &PartitionLogError) -> i16 {
    match e {
        PartitionLogError::Local(e) => log_error_code(e),
        PartitionLogError::Remote(e) => remote_log_error_code(e),
    }
}

pub fn controller_error_code(e: &ControllerError) -> i16 {
    match e {
        ControllerError::TopicExists(_) => E::TopicAlreadyExists.code(),
        ControllerError::UnknownTopic(_) => E::UnknownTopicOrPartition.code(),
        ControllerError::UnknownTopicId(_) => E::UnknownTopicId.code(),
        ControllerError::InvalidTopic { .. } => E::InvalidTopicException.code(),
        ControllerError::InvalidPartitions { .. } => E::InvalidPartitions.code(),
        ControllerError::InvalidReplicationFactor { .. } => E::InvalidReplicationFactor.code(),
        ControllerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment.code(),
        ControllerError::InvalidConfig(_) => E::InvalidConfig.code(),
        ControllerError::StaleLeaderEpoch { .. } => E::FencedLeaderEpoch.code(),
        ControllerError::InvalidUpdateVersion { .. } => E::InvalidUpdateVersion.code(),
        ControllerError::IneligibleReplica(_) => E::IneligibleReplica.code(),
        ControllerError::NoReassignmentInProgress => E::NoReassignmentInProgress.code(),
        ControllerError::ElectionNotNeeded(_) => E::ElectionNotNeeded.code(),
        ControllerError::PreferredLeaderNotAvailable(_) => E::PreferredLeaderNotAvailable.code(),
        ControllerError::EligibleLeadersNotAvailable(_) => E::EligibleLeadersNotAvailable.code(),
        ControllerError::BrokerIdNotRegistered(_) => E::BrokerIdNotRegistered.code(),
        ControllerError::BrokerInUse { .. } => E::InvalidRequest.code(),
        ControllerError::NotController { .. } | ControllerError::ShuttingDown => {
            E::NotController.code()
        }
        ControllerError::Encode(_) | ControllerError::Io { .. } | ControllerError::Raft(_) => {
            E::UnknownServerError.code()
        }
        ControllerError::Mirror(e) => mirror_error_code(e),
    }
}

/// Kafka's codes for a refused SCRAM credential alteration.
pub fn scram_alteration_error_code(e: &crate::controller::ScramAlterationError) -> i16 {
    use crate::controller::ScramAlterationError as S;
    match e {
        S::UnacceptableCredential(_) => E::UnacceptableCredential.code(),
        S::UnsupportedMechanism(_) => E::UnsupportedSaslMechanism.code(),
        S::Duplicate => E::DuplicateResource.code(),
        S::NotFound => E::ResourceNotFound.code(),
    }
}

/// Kafka answers an unknown entity or match type with UNSUPPORTED_VERSION (a newer client's
/// filter), anything else malformed with INVALID_REQUEST.
pub fn quota_error_code(e: &QuotaError) -> i16 {
    match e {
        QuotaError::UnknownEntityType(_) | QuotaError::UnknownMatchType(_) => {
            E::UnsupportedVersion.code()
        }
        QuotaError::InvalidEntity(_)
        | QuotaError::IpQuotasUnsupported
        | QuotaError::UnknownKey(_)
        | QuotaError::NotEnforced(_)
        | QuotaError::NotPositive { .. }
        | QuotaError::NotWhole { .. }
        | QuotaError::DuplicateKey(_)
        | QuotaError::DuplicateEntity(_)
        | QuotaError::InvalidFilter(_) => E::InvalidRequest.code(),
    }
}

pub fn unknown_topic_or_partition() -> i16 {
    E::UnknownTopicOrPartition.code()
}

/// A partition this broker holds no replica of: NOT_LEADER_OR_FOLLOWER when the cluster has it
/// (the client's metadata is old, or a reassignment moved the replica away), so the client
/// looks for the leader; UNKNOWN_TOPIC_OR_PARTITION when it does not exist (Kafka's
/// `ReplicaManager.getPartitionOrError`).
pub fn not_hosted(image: &crate::controller::MetadataImage, topic: &str, partition: i32) -> i16 {
    let exists = image.topic_by_name(topic).is_some_and(|t| {
        t.partitions
            .contains_key(&crate::model::PartitionIndex(partition))
    });
    if exists {
        E::NotLeaderOrFollower.code()
    } else {
        E::UnknownTopicOrPartition.code()
    }
}

pub fn unknown_topic_id() -> i16 {
    E::UnknownTopicId.code()
}

pub fn coordinator_error_code(e: &CoordinatorError) -> i16 {
    match e {
        CoordinatorError::NotAvailable(_) | CoordinatorError::Busy => {
            E::CoordinatorNotAvailable.code()
        }
        CoordinatorError::NotCoordinator => E::NotCoordinator.code(),
        CoordinatorError::LoadInProgress => E::CoordinatorLoadInProgress.code(),
    }
}

/// A fetch that cannot continue its session: the whole response carries the code, and the
/// fetcher starts over with a full request.
pub fn fetch_session_error_code(e: &crate::handlers::fetch_session::FetchSessionError) -> i16 {
    use crate::handlers::fetch_session::FetchSessionError as F;
    match e {
        F::IdNotFound { .. } => E::FetchSessionIdNotFound.code(),
        F::InvalidEpoch { .. } => E::InvalidFetchSessionEpoch.code(),
        F::TopicIdMismatch { .. } => E::FetchSessionTopicIdError.code(),
    }
}

/// Mirror link refusals: an unknown link is RESOURCE_NOT_FOUND, any other is INVALID_REQUEST
/// (the message says which rule).
pub fn mirror_error_code(e: &crate::controller::mirror::MirrorError) -> i16 {
    use crate::controller::mirror::MirrorError as M;
    match e {
        M::UnknownLink(_) => E::ResourceNotFound.code(),
        M::NotMirrorTopic(_) => E::UnknownTopicOrPartition.code(),
        M::LinkExists(_)
        | M::InvalidLink { .. }
        | M::LinkInUse { .. }
        | M::SourceIsSelf(_)
        | M::NothingToReverse(_) => E::InvalidRequest.code(),
    }
}

/// A transactional request refused by the coordinator's state machine. Kafka answers
/// PRODUCER_FENCED only to versions that know it (InitProducerId v3+, the other transactional
/// APIs v2+); older ones get INVALID_PRODUCER_EPOCH.
pub fn txn_error_code(e: &crate::txn::TxnError, knows_producer_fenced: bool) -> i16 {
    use crate::txn::TxnError;
    match e {
        TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout.code(),
        TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping.code(),
        TxnError::ProducerFenced if knows_producer_fenced => E::ProducerFenced.code(),
        TxnError::ProducerFenced => E::InvalidProducerEpoch.code(),
        TxnError::ConcurrentTransactions => E::ConcurrentTransactions.code(),
        TxnError::InvalidTxnState => E::InvalidTxnState.code(),
    }
}

/// A transaction state write that did not complete.
pub fn txn_write_error_code(e: &crate::txn::shard::TxnWriteError) -> i16 {
    use crate::txn::shard::TxnWriteError;
    match e {
        TxnWriteError::NotCoordinator => E::NotCoordinator.code(),
        TxnWriteError::TimedOut | TxnWriteError::Failed => E::CoordinatorNotAvailable.code(),
    }
}
