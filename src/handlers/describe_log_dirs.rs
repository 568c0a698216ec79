//! DescribeLogDirs: for each of this broker's `log.dirs`, the partitions it holds there, each
//! with its size on local disk and its offset lag (Kafka's definition: how far the log end
//! lies behind the partition's high watermark, 0 for a replica that has everything below it),
//! and (v4) the file system's total and usable bytes. All partitions for a null topic list,
//! else the ones named. Needs DESCRIBE on the cluster.
//!
//! A replica moving to another dir (AlterReplicaLogDirs) is listed twice: in its current dir,
//! and in the target dir with `is_future_key` true, the future log's size and its lag behind
//! the current log's end (as Kafka reports it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::protocol::{str_bytes, topic_name};
use crate::security::acl::AclOperation;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

/// The file system's total and available bytes under `dir`; -1 when it cannot be read.
fn disk_bytes(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let unit = s.f_frsize;
            let total = s.f_blocks.saturating_mul(unit);
            let usable = s.f_bavail.saturating_mul(unit);
            (
                i64::try_from(total).unwrap_or(i64::MAX),
                i64::try_from(usable).unwrap_or(i64::MAX),
            )
        }
        Err(_) => (-1, -1),
    }
}

pub fn handle(ctx: RequestContext, req: DescribeLogDirsRequest) -> Reply {
    // Authorization: DESCRIBE on the cluster (v3+ say so in error_code; older versions get
    // no directories).
    if let Err(code) = ctx.authorize_cluster(AclOperation::Describe) {
        let resp = DescribeLogDirsResponse::default().with_error_code(code);
        return Reply::Now(ResponseKind::DescribeLogDirs(resp));
    }
    let wanted: Option<BTreeSet<(String, i32)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let dirs = ctx.apis.node_config().log_dirs();
    // dir index -> topic -> partitions, in name order.
    let mut held: Vec<BTreeMap<String, Vec<DescribeLogDirsPartition>>> =
        vec![BTreeMap::new(); dirs.len()];
    for partition in ctx.apis.replicas.all() {
        let tp = &partition.tp;
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&(tp.topic.clone(), tp.partition.0)))
        {
            continue;
        }
        let log = partition.log();
        let Some(d) = dirs.iter().position(|d| log.dir().starts_with(d)) else {
            continue;
        };
        let end = log.log_end_offset().0;
        let lag = (partition.high_watermark().0 - end).max(0);
        held[d]
            .entry(tp.topic.clone())
            .or_default()
            .push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(tp.partition.0)
                    .with_partition_size(i64::try_from(log.size_bytes()).unwrap_or(i64::MAX))
                    .with_offset_lag(lag),
            );
    }
    for (tp, m) in ctx.apis.replicas.logs().alter_dirs().futures() {
        let asked = wanted
            .as_ref()
            .is_none_or(|w| w.contains(&(tp.topic.clone(), tp.partition.0)));
        let Some(current) = ctx.apis.replicas.logs().get(&tp).filter(|_| asked) else {
            continue;
        };
        let lag = (current.log_end_offset().0 - m.future.log_end_offset().0).max(0);
        if let Some(topics) = held.get_mut(m.dir_index) {
            topics.entry(tp.topic.clone()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(tp.partition.0)
                    .with_partition_size(i64::try_from(m.future.size_bytes()).unwrap_or(i64::MAX))
                    .with_offset_lag(lag)
                    .with_is_future_key(true),
            );
        }
    }
    let results = dirs
        .iter()
        .zip(held)
        .map(|(dir, topics)| {
            let topics = topics
                .into_iter()
                .map(|(name, mut partitions)| {
                    partitions.sort_by_key(|p| p.partition_index);
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect();
            let r = DescribeLogDirsResult::default()
                .with_log_dir(str_bytes(dir.to_string_lossy().into_owned()))
                .with_topics(topics);
            if ctx.version() >= 4 {
                let (total, usable) = disk_bytes(dir);
                r.with_total_bytes(total).with_usable_bytes(usable)
            } else {
                r
            }
        })
        .collect();
    Reply::Now(ResponseKind::DescribeLogDirs(
        DescribeLogDirsResponse::default().with_results(results),
    ))
}
