//! `strata restore`: rebuilds the topics of a cluster whose disks are gone from its
//! tiered-storage bucket alone, into a fresh cluster on the same bucket.
//!
//! Reads every key of the bucket, the topic manifests (`{topic}-{id}/topic.json`) and the
//! partition manifests, plans with [`strata_tiering::restore_plan`], creates the topics under
//! their old ids with Strata's restore API ([`crate::handlers::restore_topics`]), then waits
//! until every restored partition's leader has restarted its log after its remote end (its
//! log end offset is the remote end + 1), so that clients started afterwards continue at the
//! old offsets; last, commits the groups' exported offsets (`crate::group::export`) for the
//! restored topics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use strata_tiering::{
    restore_plan, PartitionPath, RemotePartitionManifest, RemoteStorage, RemoteTopicManifest,
    RestoreSkip, StorageConfig,
};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest};

use super::{check, connect};
use crate::group::export::{GroupOffsetsExport, GROUP_OFFSETS_PREFIX};
use crate::handlers::restore_topics::{
    RestoreTopicSpec, RestoreTopicsRequest, RestoreTopicsResponse,
};
use crate::protocol::{str_bytes, topic_name};
use crate::protocol::{STRATA_RESTORE_TOPICS_API_KEY, STRATA_RESTORE_TOPICS_VERSION};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// host:port of any broker of the fresh cluster.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, ...
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// The bucket, as the brokers' remote.storage.uri names it (s3://bucket/prefix, file:///dir).
    #[arg(long)]
    pub remote_storage_uri: String,
    /// remote.storage.s3.endpoint, for an S3-compatible server.
    #[arg(long, default_value = "")]
    pub s3_endpoint: String,
    /// remote.storage.s3.region.
    #[arg(long, default_value = "")]
    pub s3_region: String,
    /// remote.storage.s3.path.style (true or false); by default as the brokers decide it.
    #[arg(long)]
    pub s3_path_style: Option<bool>,
    /// Restore only topics whose whole name matches this regex (repeatable); all by default.
    #[arg(long = "include")]
    pub include: Vec<String>,
    /// Replication factor of the restored topics; -1: the cluster's default.
    #[arg(long, default_value_t = -1)]
    pub replication_factor: i16,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the restored partitions to start after their remote ends.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
}

pub async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    super::command_config::load(args.command_config.as_deref())?;
    let include: Vec<regex::Regex> = args
        .include
        .iter()
        .map(|r| regex::Regex::new(&format!("^(?:{r})$")))
        .collect::<Result<_, _>>()
        .context("--include is not a valid regex")?;
    let store = StorageConfig::parse(
        &args.remote_storage_uri,
        std::path::Path::new("remote"),
        &args.s3_endpoint,
        &args.s3_region,
        args.s3_path_style,
    )?
    .build()?;
    let keys: Vec<String> = store
        .list("")
        .await
        .context("listing the bucket")?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut described = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with("/topic.json")) {
        let data = store
            .get(key)
            .await
            .with_context(|| format!("reading {key}"))?;
        described.push(RemoteTopicManifest::decode(key, &data)?);
    }
    // Internal topics (tiered with strata.remote.storage.internal.topics.enable) are not
    // restored: the fresh cluster has its own, and group offsets come back from their export.
    let (plan, skipped) = restore_plan(&keys, &described, |t| {
        !t.starts_with("__") && (include.is_empty() || include.iter().any(|r| r.is_match(t)))
    });
    for s in &skipped {
        let RestoreSkip::ShadowedId { topic, topic_id } = s;
        println!("skip {topic} id={topic_id}: another id of this name holds more partitions");
    }
    // The remote end of every partition with a manifest: what its log must continue from.
    let mut remote_ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &plan {
        for &p in &t.manifests {
            let path = PartitionPath::new(&t.topic, t.topic_id, p);
            let key = path.manifest_key();
            let data = store
                .get(&key)
                .await
                .with_context(|| format!("reading {key}"))?;
            let m = RemotePartitionManifest::decode(&key, &data)?;
            if let Some(end) = m.end_offset() {
                remote_ends.insert((t.topic.clone(), p), end);
            }
        }
        println!(
            "topic {}\tid={}\tpartitions={}\tconfigs={:?}{}",
            t.topic,
            t.topic_id,
            t.partitions,
            t.configs,
            if t.described {
                ""
            } else {
                "\t(no topic manifest: partition count from the partition manifests, no configs)"
            }
        );
    }
    for ((topic, p), end) in &remote_ends {
        println!("partition {topic}-{p}\tremote_end={end}");
    }
    if args.dry_run || plan.is_empty() {
        return Ok(());
    }
    let req = RestoreTopicsRequest {
        topics: plan
            .iter()
            .map(|t| RestoreTopicSpec {
                name: t.topic.clone(),
                topic_id: t.topic_id,
                partitions: t.partitions,
                replication_factor: args.replication_factor,
                configs: t.configs.clone(),
            })
            .collect(),
        next_producer_id: described
            .iter()
            .map(|d| d.next_producer_id)
            .max()
            .unwrap_or(0),
    };
    let mut client = connect(&args.bootstrap_server).await?;
    let resp = client
        .send_strata(
            STRATA_RESTORE_TOPICS_API_KEY,
            STRATA_RESTORE_TOPICS_VERSION,
            &serde_json::to_vec(&req)?,
        )
        .await
        .context("the broker did not answer the restore request (is it Strata?)")?;
    let resp: RestoreTopicsResponse =
        serde_json::from_slice(&resp).context("decoding the restore response")?;
    check(resp.error_code, resp.error_message.as_deref(), "restoring")?;
    for r in &resp.topics {
        check(
            r.error_code,
            r.error_message.as_deref(),
            &format!("restoring '{}'", r.name),
        )?;
    }
    // Wait for every restored partition to continue after its remote end.
    let topics: BTreeSet<String> = plan.iter().map(|t| t.topic.clone()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_seconds);
    loop {
        let ends = super::groups::end_offsets(&mut client, &topics)
            .await
            .unwrap_or_default();
        let behind: Vec<String> = remote_ends
            .iter()
            .filter(|(tp, end)| ends.get(*tp).is_none_or(|e| *e < **end + 1))
            .map(|((t, p), end)| format!("{t}-{p} (remote end {end})"))
            .collect();
        if behind.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "restored topics created, but these partitions have not started after their remote end yet: {}",
                behind.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("restored {} topics", plan.len());
    restore_group_offsets(&store, &mut client, &topics, &remote_ends).await
}

/// Commits the exported offsets of every group ([`GroupOffsetsExport`]) for the restored
/// topics, each at most the partition's restored end (records after the remote end were lost
/// with the disks; new writes land there).
async fn restore_group_offsets(
    store: &dyn RemoteStorage,
    client: &mut crate::client::KafkaClient,
    topics: &BTreeSet<String>,
    remote_ends: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<()> {
    let listed = store
        .list(GROUP_OFFSETS_PREFIX)
        .await
        .context("listing the exported group offsets")?;
    for o in listed {
        let data = store
            .get(&o.key)
            .await
            .with_context(|| format!("reading {}", o.key))?;
        let export: GroupOffsetsExport =
            serde_json::from_slice(&data).with_context(|| format!("decoding {}", o.key))?;
        let wanted: Vec<OffsetCommitRequestTopic> = export
            .offsets
            .iter()
            .filter(|(t, _)| topics.contains(*t))
            .map(|(t, parts)| {
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(t.clone()))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, c)| {
                                let end = remote_ends.get(&(t.clone(), *p)).map_or(0, |e| e + 1);
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(c.offset.min(end))
                                    .with_committed_leader_epoch(-1)
                                    .with_committed_metadata(Some(str_bytes(c.metadata.clone())))
                            })
                            .collect(),
                    )
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(export.group_id.clone())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str_bytes(""))
            .with_topics(wanted);
        let mut attempt = 0;
        loop {
            let mut coord = super::groups::coordinator(client, &export.group_id).await?;
            let resp = coord.send(&req, 7).await?;
            let failed: Vec<i16> = resp
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .filter(|c| *c != 0)
                .collect();
            if failed.is_empty() {
                println!("group {}	offsets restored", export.group_id);
                break;
            }
            attempt += 1;
            if attempt >= 20 {
                bail!(
                    "restoring the offsets of group '{}': error {}",
                    export.group_id,
                    failed[0]
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}
