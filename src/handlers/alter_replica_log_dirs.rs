//! AlterReplicaLogDirs: moves this broker's replicas between its `log.dirs` (what
//! `kafka-reassign-partitions --replica-log-dirs` and Cruise Control send). Needs ALTER on the
//! cluster. Per partition, as Kafka answers: NONE when the replica is in that dir or a move
//! there started or is under way; LOG_DIR_NOT_FOUND for a path that is not one of
//! `log.dirs`; KAFKA_STORAGE_ERROR when the dir (or the replica's current dir) is offline;
//! REPLICA_NOT_AVAILABLE when the replica is not on this broker yet (the dir is remembered and
//! the replica is created there when it arrives). The move itself is `log::alter_log_dirs`'.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, ResponseKind,
};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::log::alter_log_dirs::AlterLogDirError;
use crate::log::LogManager;
use crate::model::TopicPartition;
use crate::protocol::topic_name;
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 2 };

/// The wire code of a refused partition (a future log that cannot be created in the target
/// dir is that dir's storage error).
fn error_code(e: &AlterLogDirError) -> i16 {
    match e {
        AlterLogDirError::LogDirNotFound { .. } => ResponseError::LogDirNotFound.code(),
        AlterLogDirError::LogDirOffline { .. } | AlterLogDirError::FutureLog { .. } => {
            ResponseError::KafkaStorageError.code()
        }
    }
}

pub fn handle(ctx: RequestContext, req: AlterReplicaLogDirsRequest) -> Reply {
    let refused = ctx.authorize_cluster(AclOperation::Alter).err();
    let logs = Arc::clone(ctx.apis.replicas.logs());
    // Starting or cancelling a move creates or deletes directories: off the reactor.
    Reply::later(async move {
        let answer = tokio::task::spawn_blocking(move || answer(&logs, &req, refused)).await;
        ResponseKind::AlterReplicaLogDirs(answer.unwrap_or_else(|e| {
            tracing::error!(error = %e, "AlterReplicaLogDirs panicked");
            AlterReplicaLogDirsResponse::default()
        }))
    })
}

fn answer(
    logs: &LogManager,
    req: &AlterReplicaLogDirsRequest,
    refused: Option<i16>,
) -> AlterReplicaLogDirsResponse {
    // topic -> partition -> code, in name order.
    let mut results: BTreeMap<String, BTreeMap<i32, i16>> = BTreeMap::new();
    for dir in &req.dirs {
        let path = Path::new(dir.path.as_str());
        for topic in &dir.topics {
            for &p in &topic.partitions {
                let code = match refused {
                    Some(code) => code,
                    None => {
                        let tp = TopicPartition::new(topic.name.0.as_str(), p);
                        match logs.alter_log_dir(&tp, path) {
                            Ok(crate::log::alter_log_dirs::AlterLogDirOutcome::Preferred) => {
                                ResponseError::ReplicaNotAvailable.code()
                            }
                            Ok(_) => 0,
                            Err(e) => {
                                tracing::warn!(partition = %tp, error = %e, "AlterReplicaLogDirs refused");
                                error_code(&e)
                            }
                        }
                    }
                };
                results
                    .entry(topic.name.0.to_string())
                    .or_default()
                    .insert(p, code);
            }
        }
    }
    let results = results
        .into_iter()
        .map(|(name, partitions)| {
            AlterReplicaLogDirTopicResult::default()
                .with_topic_name(topic_name(name))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, code)| {
                            AlterReplicaLogDirPartitionResult::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    AlterReplicaLogDirsResponse::default().with_results(results)
}
