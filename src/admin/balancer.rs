//! The automatic balancer's controls: `strata cluster balance pause|resume`, the drain list
//! `strata cluster drain` adds to, and `strata cluster unregister BROKER`. Each is a dynamic
//! cluster-wide broker config (IncrementalAlterConfigs on the default broker resource), so it
//! is a record of the metadata log and outlives a controller failover.

use anyhow::Context;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, UnregisterBrokerRequest,
};

use super::check;
use crate::client::KafkaClient;
use crate::controller::balancer::{
    BALANCER_DRAIN_BROKERS, BALANCER_ENABLE, BALANCER_MAX_CONCURRENT_MOVES,
    BALANCER_TOLERANCE_REPLICAS,
};
use crate::protocol::str_bytes;

const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations (Kafka's `AlterConfigOp.OpType`).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Sets, deletes, appends to or subtracts from one cluster-wide dynamic broker config.
async fn alter(client: &mut KafkaClient, key: &str, op: i8, value: &str) -> anyhow::Result<()> {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(str_bytes(""))
            .with_configs(vec![AlterableConfig::default()
                .with_name(str_bytes(key))
                .with_config_operation(op)
                .with_value((op != OP_DELETE).then(|| str_bytes(value)))]),
    ]);
    let resp = client
        .send(&req, 1)
        .await
        .context("incremental alter configs")?;
    for r in &resp.responses {
        check(r.error_code, r.error_message.as_deref(), key)?;
    }
    Ok(())
}

/// `strata cluster balance pause`: the balancer starts no more moves (those under way finish).
pub async fn pause(client: &mut KafkaClient) -> anyhow::Result<()> {
    alter(client, BALANCER_ENABLE, OP_SET, "false").await?;
    println!("balancer paused");
    Ok(())
}

/// `strata cluster balance resume`: back to the node configs' `strata.balancer.enable`.
pub async fn resume(client: &mut KafkaClient) -> anyhow::Result<()> {
    alter(client, BALANCER_ENABLE, OP_DELETE, "").await?;
    println!("balancer resumed");
    Ok(())
}

/// Puts a broker on the balancer's drain list: it is emptied and never filled again.
pub async fn mark_draining(client: &mut KafkaClient, broker: i32) -> anyhow::Result<()> {
    alter(
        client,
        BALANCER_DRAIN_BROKERS,
        OP_APPEND,
        &broker.to_string(),
    )
    .await
}

/// `strata cluster unregister BROKER`: UnregisterBroker, then the broker leaves the drain list
/// (a new broker may later take its id).
pub async fn unregister(client: &mut KafkaClient, broker: i32) -> anyhow::Result<()> {
    let resp = client
        .send(
            &UnregisterBrokerRequest::default()
                .with_broker_id(kafka_protocol::messages::BrokerId(broker)),
            0,
        )
        .await
        .context("unregister broker")?;
    check(
        resp.error_code,
        resp.error_message.as_deref(),
        &format!("unregister broker {broker}"),
    )?;
    alter(
        client,
        BALANCER_DRAIN_BROKERS,
        OP_SUBTRACT,
        &broker.to_string(),
    )
    .await?;
    println!("broker {broker} unregistered");
    Ok(())
}

/// The balancer's settings as the broker asked describes them, one `key = value` line each.
pub async fn settings(client: &mut KafkaClient) -> anyhow::Result<Vec<(String, String)>> {
    let keys = [
        BALANCER_ENABLE,
        BALANCER_MAX_CONCURRENT_MOVES,
        BALANCER_TOLERANCE_REPLICAS,
        BALANCER_DRAIN_BROKERS,
    ];
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(str_bytes(""))
            .with_configuration_keys(Some(keys.iter().map(|k| str_bytes(*k)).collect()))]);
    let resp = client.send(&req, 1).await.context("describe configs")?;
    let mut out = Vec::new();
    for r in &resp.results {
        check(r.error_code, r.error_message.as_deref(), "describe configs")?;
        for c in &r.configs {
            out.push((
                c.name.to_string(),
                c.value.as_deref().unwrap_or("").to_string(),
            ));
        }
    }
    Ok(out)
}
