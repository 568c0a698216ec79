//! `strata topics`: topic administration over the Kafka protocol, so it works against any
//! Kafka-compatible broker. `strata groups` lives in [`groups`], `strata quotas` in [`quotas`],
//! `strata acls` in [`acls`], `strata cluster drain` and `strata cluster balance` in
//! [`reassign`] (the automatic balancer's pause, resume, drain list and `strata cluster
//! unregister` in [`balancer`]), `strata transactions` in [`transactions`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest,
};

use crate::client::KafkaClient;
use crate::protocol::{str_bytes, topic_name};

pub mod acls;
pub mod balancer;
pub mod cluster;
pub mod command_config;
pub mod groups;
pub mod mirror;
pub mod quotas;
pub mod reassign;
pub mod restore;
pub mod transactions;
pub mod users;

#[derive(Args, Debug)]
pub struct TopicsArgs {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show partitions, leaders, replicas, ISR and config overrides.
    Describe { name: String },
    /// Set or delete topic configs.
    Alter {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        deletes: Vec<String>,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

/// Connects the tools' client to `addr`, with TLS and SASL as `--command-config` says.
/// Connects to the first broker of `bootstrap` (Kafka's comma-separated `host:port` list) that
/// answers, as Kafka's tools do: a list whose first broker is down still works.
pub async fn connect(bootstrap: &str) -> anyhow::Result<KafkaClient> {
    let settings = command_config::settings();
    let network = command_config::network(&settings)?;
    let mut last = None;
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match KafkaClient::connect(
            network.as_ref(),
            addr,
            "strata-admin",
            Duration::from_secs(10),
        )
        .await
        {
            Ok(mut client) => {
                if let Some(creds) = &settings.sasl {
                    client.authenticate(creds).await?;
                }
                return Ok(client);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => anyhow::bail!("no broker address in '{bootstrap}'"),
    }
}

fn parse_kv(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .with_context(|| format!("'{s}': expected KEY=VALUE"))
}

fn check(code: i16, message: Option<&str>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let name = kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| e.to_string())
        .unwrap_or_default();
    bail!(
        "{what}: {name} ({code}){}",
        message.map(|m| format!(": {m}")).unwrap_or_default()
    )
}

pub async fn run_topics(args: TopicsArgs) -> anyhow::Result<()> {
    command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    match args.command {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = configs
                .iter()
                .map(|c| {
                    parse_kv(c).map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let topic = CreatableTopic::default()
                .with_name(topic_name(name.clone()))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(configs);
            let req = CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(30_000);
            let resp = client.send(&req, 7).await?;
            for t in resp.topics {
                check(
                    t.error_code,
                    t.error_message.as_deref(),
                    &format!("creating '{}'", &*t.name.0),
                )?;
                println!(
                    "created topic {} ({} partitions, replication factor {}, id {})",
                    &*t.name.0, t.num_partitions, t.replication_factor, t.topic_id
                );
            }
        }
        TopicsCommand::List => {
            let resp = client
                .send(&MetadataRequest::default().with_topics(None), 9)
                .await?;
            let mut names: Vec<String> = resp
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        TopicsCommand::Describe { name } => {
            // Describing must not create the topic, whatever the broker's auto-creation setting.
            let req = MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(name.clone()))),
                ]));
            let resp = client.send(&req, 10).await?;
            for t in &resp.topics {
                check(t.error_code, None, &format!("describing '{name}'"))?;
                println!(
                    "Topic: {name}\tTopicId: {}\tPartitionCount: {}",
                    t.topic_id,
                    t.partitions.len()
                );
                let mut parts: Vec<_> = t.partitions.iter().collect();
                parts.sort_by_key(|p| p.partition_index);
                for p in parts {
                    let ids = |v: &Vec<kafka_protocol::messages::BrokerId>| {
                        v.iter()
                            .map(|b| b.0.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    println!(
                        "\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}",
                        p.partition_index,
                        p.leader_id.0,
                        p.leader_epoch,
                        ids(&p.replica_nodes),
                        ids(&p.isr_nodes)
                    );
                }
            }
            let req = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes(name.clone()))
                    .with_configuration_keys(None),
            ]);
            let resp = client.send(&req, 1).await?;
            let mut overrides = BTreeMap::new();
            for r in resp.results {
                check(
                    r.error_code,
                    r.error_message.as_deref(),
                    "describing configs",
                )?;
                for c in r.configs {
                    // Source 1 is a topic-level override.
                    if c.config_source == 1 {
                        overrides.insert(
                            c.name.to_string(),
                            c.value.map(|v| v.to_string()).unwrap_or_default(),
                        );
                    }
                }
            }
            let list: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("\tConfigs: {}", list.join(","));
        }
        TopicsCommand::Alter {
            name,
            sets,
            deletes,
        } => {
            let mut configs = Vec::new();
            for s in &sets {
                let (k, v) = parse_kv(s)?;
                configs.push(
                    AlterableConfig::default()
                        .with_name(str_bytes(k))
                        .with_config_operation(0)
                        .with_value(Some(str_bytes(v))),
                );
            }
            for d in deletes {
                configs.push(
                    AlterableConfig::default()
                        .with_name(str_bytes(d))
                        .with_config_operation(1),
                );
            }
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes(name.clone()))
                    .with_configs(configs),
            ]);
            let resp = client.send(&req, 0).await?;
            for r in resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_deref(),
                    &format!("altering '{name}'"),
                )?;
            }
            println!("altered topic {name}");
        }
        TopicsCommand::Delete { name } => {
            let req = DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name(name.clone())])
                .with_timeout_ms(30_000);
            let resp = client.send(&req, 4).await?;
            for r in resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_deref(),
                    &format!("deleting '{name}'"),
                )?;
            }
            println!("deleted topic {name}");
        }
    }
    Ok(())
}
