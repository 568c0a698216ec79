//! `strata transactions`: list and describe the transactions the coordinators hold, and abort
//! a transactional id's open transaction (ListTransactions, DescribeTransactions, and an
//! InitProducerId that fences the id's producer), or a hanging one on a partition that no
//! coordinator will end (DescribeProducers and WriteTxnMarkers to the partition's leader, as
//! Kafka's `kafka-transactions.sh abort --start-offset` does).

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, FindCoordinatorRequest,
    InitProducerIdRequest, ListTransactionsRequest, MetadataRequest, ProducerId, TransactionalId,
    WriteTxnMarkersRequest,
};

use super::connect;
use crate::client::KafkaClient as Client;
use crate::protocol::{str_bytes, topic_name};

#[derive(Args, Debug)]
pub struct TransactionsArgs {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: TransactionsCommand,
}

#[derive(Subcommand, Debug)]
pub enum TransactionsCommand {
    /// List transactional ids with their producer id and state, from every broker.
    List {
        /// Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort
        /// (repeatable).
        #[arg(long = "state")]
        states: Vec<String>,
    },
    /// Show a transactional id's state, producer, timeout and partitions.
    Describe { transactional_id: String },
    /// Abort the id's open transaction. This fences its current producer, as a new producer
    /// instance with the same transactional.id would. Or, with --topic, --partition and
    /// --start-offset, abort the transaction open on that partition from that offset, which
    /// no coordinator will end (a hanging transaction), with a marker written by its leader.
    Abort {
        #[arg(required_unless_present = "topic", conflicts_with_all = ["topic", "partition", "start_offset"])]
        transactional_id: Option<String>,
        #[arg(long, requires_all = ["partition", "start_offset"])]
        topic: Option<String>,
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// The transaction's first offset: the partition's last stable offset, or
        /// `current_txn_start_offset` in `kafka-transactions.sh describe-producers`.
        #[arg(long, requires = "topic", value_parser = clap::value_parser!(i64).range(0..))]
        start_offset: Option<i64>,
    },
}

fn error_name(code: i16) -> String {
    E::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"))
}

async fn coordinator(bootstrap: &mut Client, id: &str) -> anyhow::Result<Client> {
    for _ in 0..40 {
        let resp = bootstrap
            .send(
                &FindCoordinatorRequest::default()
                    .with_key(str_bytes(id))
                    .with_key_type(1),
                3,
            )
            .await?;
        if resp.error_code == 0 {
            return connect(&format!("{}:{}", resp.host.as_str(), resp.port)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("no coordinator found for transactional id '{id}'")
}

pub async fn run_transactions(args: TransactionsArgs) -> anyhow::Result<()> {
    super::command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    match args.command {
        TransactionsCommand::List { states } => {
            let meta = client
                .send(&MetadataRequest::default().with_topics(Some(vec![])), 9)
                .await?;
            let mut rows = Vec::new();
            for b in meta.brokers {
                let mut c = connect(&format!("{}:{}", b.host.as_str(), b.port)).await?;
                let resp = c
                    .send(
                        &ListTransactionsRequest::default()
                            .with_state_filters(
                                states.iter().map(|s| str_bytes(s.clone())).collect(),
                            )
                            .with_duration_filter(-1),
                        1,
                    )
                    .await?;
                if resp.error_code != 0 {
                    bail!(
                        "listing transactions on broker {}: {}",
                        b.node_id.0,
                        error_name(resp.error_code)
                    );
                }
                for s in resp.transaction_states {
                    rows.push((
                        s.transactional_id.to_string(),
                        s.producer_id.0,
                        s.transaction_state.to_string(),
                        b.node_id.0,
                    ));
                }
            }
            rows.sort();
            println!(
                "{:<40} {:>12} {:<16} COORDINATOR",
                "TRANSACTIONAL ID", "PRODUCER ID", "STATE"
            );
            for (id, pid, state, node) in rows {
                println!("{id:<40} {pid:>12} {state:<16} {node}");
            }
        }
        TransactionsCommand::Describe { transactional_id } => {
            let mut c = coordinator(&mut client, &transactional_id).await?;
            let resp = c
                .send(
                    &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                        TransactionalId(str_bytes(transactional_id.clone())),
                    ]),
                    0,
                )
                .await?;
            let Some(s) = resp.transaction_states.into_iter().next() else {
                bail!("no answer for '{transactional_id}'");
            };
            if s.error_code != 0 {
                bail!(
                    "describing '{transactional_id}': {}",
                    error_name(s.error_code)
                );
            }
            println!("transactional id: {transactional_id}");
            println!("state:            {}", s.transaction_state.as_str());
            println!(
                "producer:         id {} epoch {}",
                s.producer_id.0, s.producer_epoch
            );
            println!("timeout ms:       {}", s.transaction_timeout_ms);
            println!("started at ms:    {}", s.transaction_start_time_ms);
            for t in s.topics {
                let parts: Vec<String> = t.partitions.iter().map(|p| p.to_string()).collect();
                println!(
                    "partitions:       {} [{}]",
                    t.topic.as_str(),
                    parts.join(", ")
                );
            }
        }
        TransactionsCommand::Abort {
            transactional_id: Some(id),
            ..
        } => abort_transactional_id(&mut client, &id).await?,
        TransactionsCommand::Abort {
            topic: Some(topic),
            partition: Some(partition),
            start_offset: Some(start_offset),
            ..
        } => abort_hanging(&mut client, &topic, partition, start_offset).await?,
        TransactionsCommand::Abort { .. } => {
            bail!("abort needs a transactional id, or --topic, --partition and --start-offset")
        }
    }
    Ok(())
}

async fn abort_transactional_id(client: &mut Client, transactional_id: &str) -> anyhow::Result<()> {
    let mut c = coordinator(client, transactional_id).await?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(str_bytes(
            transactional_id.to_string(),
        ))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // CONCURRENT_TRANSACTIONS while the abort's markers are written.
    for _ in 0..120 {
        let resp = c.send(&req, 4).await?;
        if resp.error_code == 0 {
            println!(
                "'{transactional_id}' has no open transaction now; its producer is fenced (producer id {} epoch {})",
                resp.producer_id.0, resp.producer_epoch
            );
            return Ok(());
        }
        if resp.error_code != E::ConcurrentTransactions.code()
            && resp.error_code != E::CoordinatorLoadInProgress.code()
        {
            bail!(
                "aborting '{transactional_id}': {}",
                error_name(resp.error_code)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the abort of '{transactional_id}' did not complete in 30 s (markers not written?)")
}

/// Aborts the transaction open on `topic`-`partition` from `start_offset`: its producer comes
/// from the leader's DescribeProducers, and the leader appends the abort marker at that
/// producer's epoch and coordinator epoch (WriteTxnMarkers, which needs ClusterAction).
async fn abort_hanging(
    client: &mut Client,
    topic: &str,
    partition: i32,
    start_offset: i64,
) -> anyhow::Result<()> {
    let meta = client
        .send(
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
                ])),
            9,
        )
        .await?;
    let leader = meta
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition && p.error_code == 0)
        .map(|p| p.leader_id)
        .and_then(|id| meta.brokers.iter().find(|b| b.node_id == id));
    let Some(leader) = leader else {
        bail!("{topic}-{partition}: no such partition, or it has no leader");
    };
    let mut c = connect(&format!("{}:{}", leader.host.as_str(), leader.port)).await?;
    let producers = c
        .send(
            &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![partition])]),
            0,
        )
        .await?;
    let Some(p) = producers
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
    else {
        bail!("{topic}-{partition}: no answer from its leader");
    };
    if p.error_code != 0 {
        bail!(
            "describing the producers of {topic}-{partition}: {}",
            error_name(p.error_code)
        );
    }
    let open: Vec<i64> = p
        .active_producers
        .iter()
        .filter(|s| s.current_txn_start_offset >= 0)
        .map(|s| s.current_txn_start_offset)
        .collect();
    let Some(s) = p
        .active_producers
        .into_iter()
        .find(|s| s.current_txn_start_offset == start_offset)
    else {
        bail!("{topic}-{partition}: no transaction is open from offset {start_offset} (open from: {open:?})");
    };
    let marker = WritableTxnMarker::default()
        .with_producer_id(s.producer_id)
        .with_producer_epoch(i16::try_from(s.producer_epoch)?)
        .with_transaction_result(false)
        .with_coordinator_epoch(s.coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![partition])]);
    let resp = c
        .send(
            &WriteTxnMarkersRequest::default().with_markers(vec![marker]),
            1,
        )
        .await?;
    let code = resp
        .markers
        .iter()
        .flat_map(|m| m.topics.iter())
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.error_code)
        .next()
        .unwrap_or(E::UnknownServerError.code());
    if code != 0 {
        bail!(
            "aborting the transaction on {topic}-{partition}: {}",
            error_name(code)
        );
    }
    println!(
        "aborted the transaction of producer id {} epoch {} open on {topic}-{partition} from offset {start_offset}",
        s.producer_id.0, s.producer_epoch
    );
    Ok(())
}
