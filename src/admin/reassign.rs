//! `strata cluster drain BROKER` and `strata cluster balance [run|status|pause|resume]`: replica moves
//! planned by [`crate::controller::balance::plan_moves`] from what Metadata reports, executed
//! as partition reassignments (AlterPartitionReassignments), and followed with
//! ListPartitionReassignments. Works against any Kafka 2.4+ cluster.
//!
//! Partition sizes are not fetched: the planner then moves partitions in index order rather
//! than smallest first.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId as WireBrokerId,
    ListPartitionReassignmentsRequest, MetadataRequest,
};

use super::{check, connect};
use crate::client::KafkaClient;
use crate::controller::balance::{plan_moves, PartitionLoad, ReplicaMove};
use crate::model::{BrokerId, PartitionIndex, TopicId};
use crate::protocol::topic_name;

/// Where the tools connect.
#[derive(Args, Debug)]
pub struct Connection {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    /// The broker to move every replica off (it keeps running; unregister it afterwards). It
    /// is also put on the automatic balancer's drain list, so it stays empty.
    pub broker: i32,
    /// Print the moves without starting them.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many replica moves.
    #[arg(long, default_value_t = 10_000)]
    pub max_moves: usize,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct BalanceArgs {
    #[command(subcommand)]
    pub command: BalanceCommand,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Subcommand, Debug)]
pub enum BalanceCommand {
    /// Move replicas until every broker's replica count lies within --tolerance of the others.
    Run {
        #[arg(long, default_value_t = 1)]
        tolerance: usize,
        #[arg(long, default_value_t = 1000)]
        max_moves: usize,
        #[arg(long)]
        dry_run: bool,
    },
    /// The automatic balancer's settings and the reassignments under way.
    Status,
    /// Stop the automatic balancer from starting moves (those under way complete).
    Pause,
    /// Let the automatic balancer start moves again.
    Resume,
}

/// The brokers, the partitions and the topic names (by id) as Metadata and
/// ListPartitionReassignments report them.
async fn cluster_view(
    client: &mut KafkaClient,
) -> anyhow::Result<(
    Vec<(BrokerId, Option<String>)>,
    Vec<PartitionLoad>,
    BTreeMap<TopicId, String>,
)> {
    let md = client
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await
        .context("metadata")?;
    let brokers = md
        .brokers
        .iter()
        .map(|b| {
            (
                BrokerId(b.node_id.0),
                b.rack.as_ref().map(|r| r.to_string()),
            )
        })
        .collect();
    let ongoing = client
        .send(
            &ListPartitionReassignmentsRequest::default().with_topics(None),
            0,
        )
        .await
        .context("list partition reassignments")?;
    check(
        ongoing.error_code,
        ongoing.error_message.as_deref(),
        "list partition reassignments",
    )?;
    let moving: BTreeSet<(String, i32)> = ongoing
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let mut names = BTreeMap::new();
    let mut loads = Vec::new();
    for t in &md.topics {
        let (Some(name), 0) = (&t.name, t.error_code) else {
            continue;
        };
        let topic_id = TopicId(t.topic_id);
        names.insert(topic_id, name.0.to_string());
        for p in &t.partitions {
            loads.push(PartitionLoad {
                topic_id,
                partition: PartitionIndex(p.partition_index),
                replicas: p.replica_nodes.iter().map(|b| BrokerId(b.0)).collect(),
                size_bytes: 0,
                reassigning: moving.contains(&(name.0.to_string(), p.partition_index)),
            });
        }
    }
    Ok((brokers, loads, names))
}

/// Starts the moves as reassignments and prints each one with its outcome.
async fn execute(
    client: &mut KafkaClient,
    moves: &[ReplicaMove],
    names: &BTreeMap<TopicId, String>,
    dry_run: bool,
) -> anyhow::Result<()> {
    if moves.is_empty() {
        println!("nothing to move");
        return Ok(());
    }
    let mut by_topic: BTreeMap<&str, Vec<&ReplicaMove>> = BTreeMap::new();
    for m in moves {
        let name = names.get(&m.topic_id).map(String::as_str).unwrap_or("?");
        by_topic.entry(name).or_default().push(m);
        println!(
            "{name}-{}: broker {} -> {} (replicas {:?})",
            m.partition.0,
            m.from.0,
            m.to.0,
            m.target.iter().map(|b| b.0).collect::<Vec<_>>()
        );
    }
    if dry_run {
        return Ok(());
    }
    let topics = by_topic
        .iter()
        .map(|(name, ms)| {
            ReassignableTopic::default()
                .with_name(topic_name(*name))
                .with_partitions(
                    ms.iter()
                        .map(|m| {
                            ReassignablePartition::default()
                                .with_partition_index(m.partition.0)
                                .with_replicas(Some(
                                    m.target.iter().map(|b| WireBrokerId(b.0)).collect(),
                                ))
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = client
        .send(
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(topics),
            0,
        )
        .await
        .context("alter partition reassignments")?;
    check(
        resp.error_code,
        resp.error_message.as_deref(),
        "alter partition reassignments",
    )?;
    let mut failed = 0;
    for t in &resp.responses {
        for p in &t.partitions {
            if let Err(e) = check(
                p.error_code,
                p.error_message.as_deref(),
                &format!("{}-{}", t.name.0, p.partition_index),
            ) {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} moves were refused", moves.len());
    }
    println!(
        "started {} moves; follow them with `strata cluster balance status`",
        moves.len()
    );
    Ok(())
}

pub async fn run_drain(args: DrainArgs) -> anyhow::Result<()> {
    super::command_config::load(args.connection.command_config.as_deref())?;
    let mut client = connect(&args.connection.bootstrap_server).await?;
    let (brokers, loads, names) = cluster_view(&mut client).await?;
    let broker = BrokerId(args.broker);
    // Draining only: the other brokers' counts are left as they are.
    let moves = plan_moves(
        &brokers,
        &loads,
        &BTreeSet::from([broker]),
        usize::MAX,
        args.max_moves,
    );
    let left = loads
        .iter()
        .filter(|p| p.replicas.contains(&broker))
        .count()
        .saturating_sub(moves.len());
    if !args.dry_run {
        // So the automatic balancer empties it too and never fills it again. Other Kafka
        // clusters have no such config: the moves below still run.
        if let Err(e) = super::balancer::mark_draining(&mut client, args.broker).await {
            eprintln!(
                "broker {} not put on the balancer's drain list: {e:#}",
                args.broker
            );
        }
    }
    execute(&mut client, &moves, &names, args.dry_run).await?;
    if left > 0 {
        anyhow::bail!(
            "{left} replicas on broker {} have nowhere to go (or are already moving)",
            args.broker
        );
    }
    Ok(())
}

pub async fn run_balance(args: BalanceArgs) -> anyhow::Result<()> {
    super::command_config::load(args.connection.command_config.as_deref())?;
    let mut client = connect(&args.connection.bootstrap_server).await?;
    match args.command {
        BalanceCommand::Run {
            tolerance,
            max_moves,
            dry_run,
        } => {
            let (brokers, loads, names) = cluster_view(&mut client).await?;
            let moves = plan_moves(&brokers, &loads, &BTreeSet::new(), tolerance, max_moves);
            execute(&mut client, &moves, &names, dry_run).await
        }
        BalanceCommand::Pause => super::balancer::pause(&mut client).await,
        BalanceCommand::Resume => super::balancer::resume(&mut client).await,
        BalanceCommand::Status => {
            match super::balancer::settings(&mut client).await {
                Ok(settings) => {
                    for (k, v) in settings {
                        println!("{k} = {v}");
                    }
                }
                Err(e) => eprintln!("no balancer settings: {e:#}"),
            }
            let resp = client
                .send(
                    &ListPartitionReassignmentsRequest::default().with_topics(None),
                    0,
                )
                .await
                .context("list partition reassignments")?;
            check(
                resp.error_code,
                resp.error_message.as_deref(),
                "list partition reassignments",
            )?;
            let ids = |v: &[WireBrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
            let mut n = 0;
            for t in &resp.topics {
                for p in &t.partitions {
                    n += 1;
                    println!(
                        "{}-{}: replicas {:?} adding {:?} removing {:?}",
                        t.name.0,
                        p.partition_index,
                        ids(&p.replicas),
                        ids(&p.adding_replicas),
                        ids(&p.removing_replicas)
                    );
                }
            }
            if n == 0 {
                println!("no reassignments in progress");
            }
            Ok(())
        }
    }
}
