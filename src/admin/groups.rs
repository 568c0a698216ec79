//! `strata groups`: consumer-group administration over the Kafka protocol — list, describe
//! (committed offset, log end offset and lag per partition), reset offsets, delete.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use bytes::Buf;
use clap::{Args, Subcommand};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment,
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::Decodable;

use super::connect;
use crate::client::KafkaClient as Client;
use crate::protocol::{str_bytes, topic_name};

#[derive(Args, Debug)]
pub struct GroupsArgs {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// List consumer groups (optionally only those in the given states).
    List {
        /// Empty, Stable, PreparingRebalance, CompletingRebalance (repeatable).
        #[arg(long = "state")]
        states: Vec<String>,
    },
    /// Show a group's state and members, and per partition its committed offset, the log end
    /// offset and the lag.
    Describe { group: String },
    /// Move a group's committed offsets. The group must have no members. Prints the plan;
    /// commits it only with --execute.
    ResetOffsets {
        group: String,
        /// The topic whose partitions to reset (all of its partitions).
        #[arg(long)]
        topic: String,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        #[arg(long, group = "target", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// Commit the new offsets (otherwise only show them).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups that have no members, with their committed offsets.
    Delete { groups: Vec<String> },
}

fn error_name(code: i16) -> String {
    kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"))
}

pub(super) async fn coordinator(bootstrap: &mut Client, group: &str) -> anyhow::Result<Client> {
    for _ in 0..20 {
        let resp = bootstrap
            .send(
                &FindCoordinatorRequest::default()
                    .with_key(str_bytes(group))
                    .with_key_type(0),
                3,
            )
            .await?;
        if resp.error_code == 0 {
            return connect(&format!("{}:{}", resp.host.as_str(), resp.port)).await;
        }
        // The offsets topic may be being created or loaded.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    bail!("no coordinator found for group '{group}'")
}

/// Every partition's log end offset (ListOffsets latest), asked of each partition's leader.
pub(super) async fn end_offsets(
    bootstrap: &mut Client,
    topics: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    offsets_at(bootstrap, topics, -1).await
}

async fn offsets_at(
    bootstrap: &mut Client,
    topics: &BTreeSet<String>,
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let req = MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|t| {
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic_name(t.clone())))
            })
            .collect(),
    ));
    let meta = bootstrap.send(&req, 9).await?;
    let brokers: BTreeMap<i32, String> = meta
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for t in &meta.topics {
        let Some(name) = &t.name else { continue };
        for p in &t.partitions {
            by_leader
                .entry(p.leader_id.0)
                .or_default()
                .entry(name.0.to_string())
                .or_default()
                .push(p.partition_index);
        }
    }
    for (leader, topics) in by_leader {
        let Some(addr) = brokers.get(&leader) else {
            continue;
        };
        let mut client = connect(addr).await?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(WireBrokerId(-1))
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(t.clone()))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(timestamp)
                                            .with_current_leader_epoch(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = client.send(&req, 4).await?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
    }
    Ok(out)
}

pub async fn run_groups(args: GroupsArgs) -> anyhow::Result<()> {
    super::command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    match args.command {
        GroupsCommand::List { states } => {
            let meta = client
                .send(&MetadataRequest::default().with_topics(Some(vec![])), 9)
                .await?;
            let mut rows = Vec::new();
            for b in meta.brokers {
                let mut c = connect(&format!("{}:{}", b.host.as_str(), b.port)).await?;
                let resp = c
                    .send(
                        &ListGroupsRequest::default().with_states_filter(
                            states.iter().map(|s| str_bytes(s.clone())).collect(),
                        ),
                        4,
                    )
                    .await?;
                if resp.error_code != 0 {
                    bail!(
                        "listing groups on broker {}: {}",
                        b.node_id.0,
                        error_name(resp.error_code)
                    );
                }
                for g in resp.groups {
                    rows.push((
                        g.group_id.0.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                    ));
                }
            }
            rows.sort();
            println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
            for (g, s, p) in rows {
                println!("{g:<40} {s:<20} {p}");
            }
        }
        GroupsCommand::Describe { group } => {
            let mut coord = coordinator(&mut client, &group).await?;
            // A consumer group (KIP-848) is described by ConsumerGroupDescribe; a classic one
            // answers it GROUP_ID_NOT_FOUND and is described by DescribeGroups below.
            let consumer = coord
                .send(
                    &ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(str_bytes(group.clone()))]),
                    1,
                )
                .await?;
            let consumer = consumer
                .groups
                .into_iter()
                .next()
                .filter(|g| g.error_code == 0);
            let resp = coord
                .send(
                    &DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(str_bytes(group.clone()))]),
                    5,
                )
                .await?;
            let Some(desc) = resp.groups.into_iter().next() else {
                bail!("empty DescribeGroups response")
            };
            if desc.error_code != 0 && consumer.is_none() {
                bail!("describing '{group}': {}", error_name(desc.error_code));
            }
            // Which member owns which partition, from the consumer-protocol assignments.
            let mut owner: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
            if let Some(cg) = &consumer {
                println!(
                    "Group: {group}\tState: {}\tProtocol: consumer {}\tGroup epoch: {}\tAssignment epoch: {}",
                    cg.group_state.as_str(),
                    cg.assignor_name.as_str(),
                    cg.group_epoch,
                    cg.assignment_epoch
                );
                for m in &cg.members {
                    for tp in &m.assignment.topic_partitions {
                        for p in &tp.partitions {
                            owner.insert(
                                (tp.topic_name.0.to_string(), *p),
                                (
                                    m.member_id.to_string(),
                                    m.client_host.to_string(),
                                    m.client_id.to_string(),
                                ),
                            );
                        }
                    }
                }
            } else {
                println!(
                    "Group: {group}\tState: {}\tProtocol: {} {}",
                    desc.group_state.as_str(),
                    desc.protocol_type.as_str(),
                    desc.protocol_data.as_str()
                );
            }
            for m in &desc.members {
                let mut bytes = m.member_assignment.clone();
                if bytes.len() >= 2 {
                    let version = bytes.get_i16();
                    if let Ok(a) =
                        ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3))
                    {
                        for tp in a.assigned_partitions {
                            for p in tp.partitions {
                                owner.insert(
                                    (tp.topic.0.to_string(), p),
                                    (
                                        m.member_id.to_string(),
                                        m.client_host.to_string(),
                                        m.client_id.to_string(),
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            let fetch = coord
                .send(
                    &OffsetFetchRequest::default()
                        .with_group_id(GroupId(str_bytes(group.clone())))
                        .with_topics(None),
                    7,
                )
                .await?;
            if fetch.error_code != 0 {
                bail!(
                    "fetching offsets of '{group}': {}",
                    error_name(fetch.error_code)
                );
            }
            let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for t in fetch.topics {
                for p in t.partitions {
                    if p.committed_offset >= 0 {
                        committed.insert(
                            (t.name.0.to_string(), p.partition_index),
                            p.committed_offset,
                        );
                    }
                }
            }
            let topics: BTreeSet<String> = committed
                .keys()
                .chain(owner.keys())
                .map(|(t, _)| t.clone())
                .collect();
            let ends = end_offsets(&mut client, &topics).await?;
            let keys: BTreeSet<(String, i32)> =
                committed.keys().chain(owner.keys()).cloned().collect();
            println!(
                "{:<30} {:>9} {:>15} {:>15} {:>8}  {:<45} {:<16} CLIENT-ID",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST"
            );
            for k in keys {
                let cur = committed.get(&k).copied();
                let end = ends.get(&k).copied();
                let lag = match (cur, end) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => "-".into(),
                };
                let (m, h, c) = owner
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
                println!(
                    "{:<30} {:>9} {:>15} {:>15} {:>8}  {:<45} {:<16} {}",
                    k.0,
                    k.1,
                    cur.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    end.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                    lag,
                    m,
                    h,
                    c
                );
            }
        }
        GroupsCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let topics: BTreeSet<String> = [topic.clone()].into();
            let targets: BTreeMap<(String, i32), i64> = if to_earliest {
                offsets_at(&mut client, &topics, -2).await?
            } else if to_latest {
                offsets_at(&mut client, &topics, -1).await?
            } else if let Some(o) = to_offset {
                // Clamped into each partition's [earliest, latest], as Kafka's tool does.
                let lo = offsets_at(&mut client, &topics, -2).await?;
                let hi = offsets_at(&mut client, &topics, -1).await?;
                lo.iter()
                    .map(|(k, l)| (k.clone(), o.clamp(*l, hi.get(k).copied().unwrap_or(*l))))
                    .collect()
            } else {
                bail!("give one of --to-earliest, --to-latest, --to-offset N");
            };
            if targets.is_empty() {
                bail!("topic '{topic}' has no partitions (does it exist?)");
            }
            println!("{:<30} {:>9} {:>12}", "TOPIC", "PARTITION", "NEW-OFFSET");
            for ((t, p), o) in &targets {
                println!("{t:<30} {p:>9} {o:>12}");
            }
            if !execute {
                println!("(dry run: add --execute to commit these offsets)");
                return Ok(());
            }
            let mut coord = coordinator(&mut client, &group).await?;
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(str_bytes(group.clone())))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(str_bytes(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic.clone()))
                    .with_partitions(
                        targets
                            .iter()
                            .map(|((_, p), o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    )]);
            let resp = coord.send(&req, 7).await?;
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        let hint = if p.error_code
                            == kafka_protocol::error::ResponseError::IllegalGeneration.code()
                        {
                            " (the group has active members; stop them first)"
                        } else {
                            ""
                        };
                        bail!(
                            "resetting {}-{}: {}{hint}",
                            t.name.0.as_str(),
                            p.partition_index,
                            error_name(p.error_code)
                        );
                    }
                }
            }
            println!("reset offsets of group {group}");
        }
        GroupsCommand::Delete { groups } => {
            let mut failed = false;
            for group in groups {
                let mut coord = coordinator(&mut client, &group).await?;
                let resp = coord
                    .send(
                        &DeleteGroupsRequest::default()
                            .with_groups_names(vec![GroupId(str_bytes(group.clone()))]),
                        2,
                    )
                    .await?;
                for r in resp.results {
                    if r.error_code == 0 {
                        println!("deleted group {}", r.group_id.0.as_str());
                    } else {
                        failed = true;
                        eprintln!(
                            "deleting group {}: {}",
                            r.group_id.0.as_str(),
                            error_name(r.error_code)
                        );
                    }
                }
            }
            if failed {
                bail!("some groups were not deleted");
            }
        }
    }
    Ok(())
}
