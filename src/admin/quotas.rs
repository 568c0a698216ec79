//! `strata quotas`: client quota administration over the Kafka protocol (DescribeClientQuotas,
//! AlterClientQuotas), so operators can set byte-rate quotas without a Kafka tool.
//!
//! An entity is a user, a client id, or both, each by name or as the default:
//! `--user alice`, `--user-default`, `--client-id app`, `--client-id-default`.
//!
//! Keys: Kafka's per-broker `producer_byte_rate`, `consumer_byte_rate` (bytes/s) and
//! `request_percentage` (percent of one thread), and Strata's cluster-wide
//! `strata.cluster.producer_byte_rate`, `strata.cluster.consumer_byte_rate` (bytes/s over all
//! brokers together). Per-topic limits are topic configs (`strata topics`, AlterConfigs).

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};

use super::{check, connect, parse_kv};
use crate::protocol::str_bytes;
use crate::quota::{CLIENT_ID, USER};

#[derive(Args, Debug)]
pub struct QuotasArgs {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: QuotasCommand,
}

/// Which user and client id an alteration names.
#[derive(Args, Debug, Default)]
pub struct EntityArgs {
    /// A user principal name (without authentication every client is ANONYMOUS).
    #[arg(long, conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default user: applies to users with no quota of their own.
    #[arg(long)]
    pub user_default: bool,
    /// A client id.
    #[arg(long, conflicts_with = "client_id_default")]
    pub client_id: Option<String>,
    /// The default client id: applies to client ids with no quota of their own.
    #[arg(long)]
    pub client_id_default: bool,
}

#[derive(Subcommand, Debug)]
pub enum QuotasCommand {
    /// Show quotas: all of them, or those of the entities the flags name (a named entity type
    /// also matches entities that add the other type; --strict excludes them).
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only entities with exactly the given entity types.
        #[arg(long)]
        strict: bool,
    },
    /// Set or remove quotas of one entity: producer_byte_rate, consumer_byte_rate (bytes/s per
    /// broker), request_percentage (percent of one thread's time per broker),
    /// strata.cluster.producer_byte_rate, strata.cluster.consumer_byte_rate (bytes/s over all
    /// brokers together).
    Alter {
        #[command(flatten)]
        entity: EntityArgs,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        deletes: Vec<String>,
        /// Check the change without making it.
        #[arg(long)]
        validate_only: bool,
    },
}

impl EntityArgs {
    /// (entity type, name or None for the default) for each type named.
    fn components(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push((USER, Some(u.clone())));
        } else if self.user_default {
            out.push((USER, None));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, Some(c.clone())));
        } else if self.client_id_default {
            out.push((CLIENT_ID, None));
        }
        out
    }
}

fn entity_text<'a>(parts: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    parts
        .map(|(t, n)| format!("{t}={}", n.unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run_quotas(args: QuotasArgs) -> anyhow::Result<()> {
    super::command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    match args.command {
        QuotasCommand::Describe { entity, strict } => {
            let components = entity
                .components()
                .into_iter()
                .map(|(t, n)| {
                    let c = ComponentData::default().with_entity_type(str_bytes(t));
                    match n {
                        Some(n) => c.with_match_type(0).with_match(Some(str_bytes(n))),
                        None => c.with_match_type(1),
                    }
                })
                .collect();
            let req = DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict);
            let resp = client.send(&req, 1).await?;
            check(
                resp.error_code,
                resp.error_message.as_deref(),
                "describing quotas",
            )?;
            let mut lines: Vec<String> = resp
                .entries
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    let values: Vec<String> = e
                        .values
                        .iter()
                        .map(|v| format!("{}={}", &*v.key, v.value))
                        .collect();
                    format!(
                        "{}\t{}",
                        entity_text(
                            e.entity
                                .iter()
                                .map(|c| (&*c.entity_type, c.entity_name.as_deref()))
                        ),
                        values.join(",")
                    )
                })
                .collect();
            lines.sort();
            for l in lines {
                println!("{l}");
            }
        }
        QuotasCommand::Alter {
            entity,
            sets,
            deletes,
            validate_only,
        } => {
            let components = entity.components();
            if components.is_empty() {
                bail!("name an entity: --user, --user-default, --client-id or --client-id-default");
            }
            if sets.is_empty() && deletes.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let mut ops = Vec::new();
            for s in &sets {
                let (k, v) = parse_kv(s)?;
                let value: f64 = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("'{s}': the value must be a number"))?;
                ops.push(OpData::default().with_key(str_bytes(k)).with_value(value));
            }
            for d in deletes {
                ops.push(OpData::default().with_key(str_bytes(d)).with_remove(true));
            }
            let text = entity_text(components.iter().map(|(t, n)| (*t, n.as_deref())));
            let entry = EntryData::default()
                .with_entity(
                    components
                        .into_iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(t))
                                .with_entity_name(n.map(str_bytes))
                        })
                        .collect(),
                )
                .with_ops(ops);
            let req = AlterClientQuotasRequest::default()
                .with_entries(vec![entry])
                .with_validate_only(validate_only);
            let resp = client.send(&req, 1).await?;
            for e in resp.entries {
                check(
                    e.error_code,
                    e.error_message.as_deref(),
                    &format!("altering quotas of {text}"),
                )?;
            }
            if validate_only {
                println!("validated quotas of {text}");
            } else {
                println!("altered quotas of {text}");
            }
        }
    }
    Ok(())
}
