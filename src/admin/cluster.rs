//! `strata cluster describe`: the active controller, the voters and observers of the metadata
//! quorum, and the brokers with their fencing.
//!
//! With `--bootstrap-server` it asks a broker's Kafka port (DescribeCluster v2 and
//! DescribeQuorum v2, which any node answers for the active controller), so it reaches a
//! secured cluster with the same `--command-config` as the other tools and needs DESCRIBE on
//! the cluster. With `--controller` it asks a controller's RPC port directly: that port is not
//! the Kafka protocol and has no SASL, so that form serves only a PLAINTEXT controller listener
//! (a cluster whose controllers use mutual TLS is described through a broker).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest};
use serde::Serialize;

use super::{check, command_config, connect};
use crate::protocol::topic_name;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// The active controller, the voters and learners, and the brokers with their fencing.
    Describe {
        /// host:port of any broker: ask its Kafka port (DescribeCluster, DescribeQuorum), with
        /// TLS and SASL as --command-config says.
        #[arg(long, conflicts_with = "controller")]
        bootstrap_server: Option<String>,
        /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
        #[arg(long, value_name = "FILE", requires = "bootstrap_server")]
        command_config: Option<std::path::PathBuf>,
        /// A controller listener, host:port (any voter or learner), asked over the controller
        /// RPC; the default when --bootstrap-server is not given.
        #[arg(long)]
        controller: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move every replica off a broker, as partition reassignments.
    Drain(super::reassign::DrainArgs),
    /// Even out replica counts across brokers (`run`), or follow the moves (`status`).
    Balance(super::reassign::BalanceArgs),
    /// Remove a stopped, empty broker's registration (UnregisterBroker) and take it off the
    /// balancer's drain list.
    Unregister {
        broker: i32,
        #[command(flatten)]
        connection: super::reassign::Connection,
    },
}

/// What `describe` prints, whichever port it asked.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    /// The active controller.
    pub leader: Option<i32>,
    /// The Raft term (the controller epoch).
    pub term: i64,
    /// The metadata log's committed offset.
    pub high_watermark: Option<i64>,
    /// (id, host:port of its controller listener, or "" when the broker does not say)
    pub voters: Vec<(i32, String)>,
    pub learners: Vec<(i32, String)>,
    /// (id, host:port, rack, fenced)
    pub brokers: Vec<(i32, String, Option<String>, bool)>,
}

pub async fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let (bootstrap_server, config_file, controller, json) = match args.command {
        ClusterCommand::Describe {
            bootstrap_server,
            command_config,
            controller,
            json,
        } => (bootstrap_server, command_config, controller, json),
        ClusterCommand::Drain(args) => return super::reassign::run_drain(args).await,
        ClusterCommand::Balance(args) => return super::reassign::run_balance(args).await,
        ClusterCommand::Unregister { broker, connection } => {
            command_config::load(connection.command_config.as_deref())?;
            let mut client = super::connect(&connection.bootstrap_server).await?;
            return super::balancer::unregister(&mut client, broker).await;
        }
    };
    let d = match bootstrap_server {
        Some(addr) => {
            command_config::load(config_file.as_deref())?;
            describe_via_broker(&addr).await?
        }
        None => describe_via_controller(controller.as_deref().unwrap_or("127.0.0.1:9093")).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", render(&d));
    }
    Ok(())
}

async fn describe_via_broker(addr: &str) -> anyhow::Result<ClusterDescription> {
    let mut client = connect(addr).await?;
    let cluster = client
        .send(
            &DescribeClusterRequest::default()
                .with_endpoint_type(1)
                .with_include_fenced_brokers(true),
            2,
        )
        .await
        .with_context(|| format!("DescribeCluster to {addr}"))?;
    check(
        cluster.error_code,
        cluster.error_message.as_deref(),
        "DescribeCluster",
    )?;
    let quorum = client
        .send(
            &DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(topic_name("__cluster_metadata"))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)])]),
            2,
        )
        .await
        .with_context(|| format!("DescribeQuorum to {addr}"))?;
    check(
        quorum.error_code,
        quorum.error_message.as_deref(),
        "DescribeQuorum",
    )?;
    let Some(p) = quorum.topics.first().and_then(|t| t.partitions.first()) else {
        bail!("DescribeQuorum from {addr} names no metadata partition");
    };
    check(p.error_code, p.error_message.as_deref(), "DescribeQuorum")?;
    let node_addr = |id: i32| {
        quorum
            .nodes
            .iter()
            .find(|n| n.node_id.0 == id)
            .and_then(|n| n.listeners.first())
            .map(|l| format!("{}:{}", l.host.as_str(), l.port))
            .unwrap_or_default()
    };
    let members = |rs: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
        rs.iter()
            .map(|r| (r.replica_id.0, node_addr(r.replica_id.0)))
            .collect::<Vec<_>>()
    };
    let mut brokers: Vec<_> = cluster
        .brokers
        .iter()
        .map(|b| {
            (
                b.broker_id.0,
                format!("{}:{}", b.host.as_str(), b.port),
                b.rack.as_ref().map(|r| r.to_string()),
                b.is_fenced,
            )
        })
        .collect();
    brokers.sort();
    Ok(ClusterDescription {
        cluster_id: Some(cluster.cluster_id.to_string()),
        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
        term: i64::from(p.leader_epoch),
        high_watermark: (p.high_watermark >= 0).then_some(p.high_watermark),
        voters: members(&p.current_voters),
        learners: members(&p.observers),
        brokers,
    })
}

async fn describe_via_controller(controller: &str) -> anyhow::Result<ClusterDescription> {
    use crate::controller::network::{ControllerReply, ControllerRequest, PeerClient};
    let mut peer = PeerClient::new(crate::net::tokio_network(), controller.to_string());
    let reply = peer
        .call(
            &ControllerRequest::Describe,
            std::time::Duration::from_secs(5),
        )
        .await
        .with_context(|| format!("asking the controller at {controller}"))?;
    let ControllerReply::Describe(d) = reply else {
        bail!("unexpected reply from {controller}");
    };
    let id = |n: u64| n as i32;
    Ok(ClusterDescription {
        cluster_id: None,
        leader: d.leader.map(id),
        term: d.term as i64,
        high_watermark: d.high_watermark.map(|h| h as i64),
        voters: d.voters.iter().map(|(n, a)| (id(*n), a.clone())).collect(),
        learners: d
            .learners
            .iter()
            .map(|(n, a)| (id(*n), a.clone()))
            .collect(),
        brokers: d.brokers.clone(),
    })
}

fn render(d: &ClusterDescription) -> String {
    let mut out = String::new();
    let leader = d
        .leader
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    let hw = d
        .high_watermark
        .map(|h| h.to_string())
        .unwrap_or_else(|| "-".into());
    let cluster = d.cluster_id.as_deref().unwrap_or("-");
    out.push_str(&format!(
        "ClusterId: {cluster}  ActiveController: {leader}  Term: {}  HighWatermark: {hw}\n",
        d.term
    ));
    for (id, addr) in &d.voters {
        let role = if Some(*id) == d.leader {
            "leader"
        } else {
            "follower"
        };
        out.push_str(&format!("Voter {id} {addr} {role}\n"));
    }
    for (id, addr) in &d.learners {
        out.push_str(&format!("Learner {id} {addr}\n"));
    }
    for (id, addr, rack, fenced) in &d.brokers {
        let rack = rack.as_deref().unwrap_or("-");
        let state = if *fenced { "fenced" } else { "unfenced" };
        out.push_str(&format!("Broker {id} {addr} rack={rack} {state}\n"));
    }
    out
}
