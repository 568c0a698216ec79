//! `strata acls`: ACL administration over the Kafka protocol (CreateAcls, DescribeAcls,
//! DeleteAcls), with kafka-acls.sh's flags:
//!
//! ```text
//! strata acls create --allow-principal User:alice --operation Read --operation Describe \
//!     --topic orders. --resource-pattern-type prefixed
//! strata acls list --topic orders.eu --resource-pattern-type match
//! strata acls delete --deny-principal User:mallory --cluster
//! ```
//!
//! `create` writes every combination of the resources, principals, hosts and operations given
//! (pattern type LITERAL unless said; host `*`; operation ALL). `list` and `delete` select with
//! the same flags as a filter, where what is not given matches anything (pattern type ANY).

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};

use super::{check, connect};
use crate::protocol::str_bytes;
use crate::security::acl::{
    AclOperation, AclPermissionType, PatternType, ResourceType, CLUSTER_NAME, WILDCARD_HOST,
};

#[derive(Args, Debug)]
pub struct AclsArgs {
    /// host:port of any broker.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: AclsCommand,
}

/// The resources an ACL names, as kafka-acls.sh takes them.
#[derive(Args, Debug, Default, Clone)]
pub struct ResourceArgs {
    #[arg(long)]
    pub topic: Vec<String>,
    #[arg(long)]
    pub group: Vec<String>,
    #[arg(long)]
    pub transactional_id: Vec<String>,
    /// The cluster resource (`kafka-cluster`).
    #[arg(long)]
    pub cluster: bool,
    /// literal or prefixed (create); any, match, literal or prefixed (list, delete).
    #[arg(long)]
    pub resource_pattern_type: Option<String>,
}

/// Who, from where, doing what.
#[derive(Args, Debug, Default, Clone)]
pub struct EntryArgs {
    /// A principal to allow (`User:alice`, `User:*`).
    #[arg(long)]
    pub allow_principal: Vec<String>,
    /// A principal to deny.
    #[arg(long)]
    pub deny_principal: Vec<String>,
    /// Hosts (IP addresses) the allow ACLs apply to; default every host.
    #[arg(long)]
    pub allow_host: Vec<String>,
    /// Hosts the deny ACLs apply to; default every host.
    #[arg(long)]
    pub deny_host: Vec<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite, All.
    #[arg(long)]
    pub operation: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum AclsCommand {
    /// Add ACLs.
    Create {
        #[command(flatten)]
        resource: ResourceArgs,
        #[command(flatten)]
        entry: EntryArgs,
    },
    /// Show ACLs, all of them or those the flags select.
    List {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only ACLs of this principal.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Remove the ACLs the flags select.
    Delete {
        #[command(flatten)]
        resource: ResourceArgs,
        #[command(flatten)]
        entry: EntryArgs,
    },
}

impl ResourceArgs {
    /// (resource type, name) of each resource named.
    fn resources(&self) -> Vec<(ResourceType, String)> {
        let mut out: Vec<(ResourceType, String)> = Vec::new();
        out.extend(self.topic.iter().map(|n| (ResourceType::Topic, n.clone())));
        out.extend(self.group.iter().map(|n| (ResourceType::Group, n.clone())));
        out.extend(
            self.transactional_id
                .iter()
                .map(|n| (ResourceType::TransactionalId, n.clone())),
        );
        if self.cluster {
            out.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        out
    }

    fn pattern_type(&self, default: PatternType) -> anyhow::Result<PatternType> {
        match &self.resource_pattern_type {
            None => Ok(default),
            Some(s) => match PatternType::parse(s) {
                Some(p) if !matches!(p, PatternType::Unknown) => Ok(p),
                _ => bail!("'{s}': the pattern type is one of literal, prefixed, match, any"),
            },
        }
    }
}

impl EntryArgs {
    fn operations(&self) -> anyhow::Result<Vec<AclOperation>> {
        self.operation
            .iter()
            .map(|o| match AclOperation::parse(o) {
                Some(op) if !matches!(op, AclOperation::Unknown | AclOperation::Any) => Ok(op),
                _ => bail!("'{o}' is not an operation"),
            })
            .collect()
    }

    /// (principal, permission, hosts) for each principal named.
    fn principals(&self) -> Vec<(String, AclPermissionType, Vec<String>)> {
        let hosts = |given: &Vec<String>| {
            if given.is_empty() {
                vec![WILDCARD_HOST.to_string()]
            } else {
                given.clone()
            }
        };
        let allow = self
            .allow_principal
            .iter()
            .map(|p| (p.clone(), AclPermissionType::Allow, hosts(&self.allow_host)));
        let deny = self
            .deny_principal
            .iter()
            .map(|p| (p.clone(), AclPermissionType::Deny, hosts(&self.deny_host)));
        allow.chain(deny).collect()
    }
}

/// One ACL as `list` prints it.
fn line(
    resource_type: i8,
    pattern_type: i8,
    name: &str,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> String {
    format!(
        "{}:{}:{name}\t{principal}\t{host}\t{}\t{}",
        ResourceType::from_code(resource_type),
        PatternType::from_code(pattern_type),
        AclOperation::from_code(operation),
        AclPermissionType::from_code(permission)
    )
}

/// Runs one command and returns the lines it prints.
pub async fn execute(args: AclsArgs) -> anyhow::Result<Vec<String>> {
    super::command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    let mut out = Vec::new();
    match args.command {
        AclsCommand::Create { resource, entry } => {
            let pattern = resource.pattern_type(PatternType::Literal)?;
            let resources = resource.resources();
            let principals = entry.principals();
            if resources.is_empty() {
                bail!("name a resource: --topic, --group, --transactional-id or --cluster");
            }
            if principals.is_empty() {
                bail!("name a principal: --allow-principal or --deny-principal");
            }
            let mut operations = entry.operations()?;
            if operations.is_empty() {
                operations.push(AclOperation::All);
            }
            let mut creations = Vec::new();
            for (rt, name) in &resources {
                for (principal, permission, hosts) in &principals {
                    for host in hosts {
                        for op in &operations {
                            creations.push(
                                AclCreation::default()
                                    .with_resource_type(rt.code())
                                    .with_resource_name(str_bytes(name.clone()))
                                    .with_resource_pattern_type(pattern.code())
                                    .with_principal(str_bytes(principal.clone()))
                                    .with_host(str_bytes(host.clone()))
                                    .with_operation(op.code())
                                    .with_permission_type(permission.code()),
                            );
                        }
                    }
                }
            }
            let resp = client
                .send(
                    &CreateAclsRequest::default().with_creations(creations.clone()),
                    3,
                )
                .await?;
            for (c, r) in creations.iter().zip(&resp.results) {
                let text = line(
                    c.resource_type,
                    c.resource_pattern_type,
                    &c.resource_name,
                    &c.principal,
                    &c.host,
                    c.operation,
                    c.permission_type,
                );
                check(
                    r.error_code,
                    r.error_message.as_deref(),
                    &format!("creating {text}"),
                )?;
                out.push(format!("created {text}"));
            }
        }
        AclsCommand::List {
            resource,
            principal,
        } => {
            let pattern = resource.pattern_type(PatternType::Any)?;
            let mut resources: Vec<(ResourceType, Option<String>)> = resource
                .resources()
                .into_iter()
                .map(|(t, n)| (t, Some(n)))
                .collect();
            if resources.is_empty() {
                resources.push((ResourceType::Any, None));
            }
            for (rt, name) in resources {
                let req = DescribeAclsRequest::default()
                    .with_resource_type_filter(rt.code())
                    .with_resource_name_filter(name.map(str_bytes))
                    .with_pattern_type_filter(pattern.code())
                    .with_principal_filter(principal.clone().map(str_bytes))
                    .with_host_filter(None)
                    .with_operation(AclOperation::Any.code())
                    .with_permission_type(AclPermissionType::Any.code());
                let resp = client.send(&req, 3).await?;
                check(
                    resp.error_code,
                    resp.error_message.as_deref(),
                    "listing ACLs",
                )?;
                for r in &resp.resources {
                    for a in &r.acls {
                        out.push(line(
                            r.resource_type,
                            r.pattern_type,
                            &r.resource_name,
                            &a.principal,
                            &a.host,
                            a.operation,
                            a.permission_type,
                        ));
                    }
                }
            }
            out.sort();
            out.dedup();
        }
        AclsCommand::Delete { resource, entry } => {
            let pattern = resource.pattern_type(PatternType::Any)?;
            let mut resources: Vec<(ResourceType, Option<String>)> = resource
                .resources()
                .into_iter()
                .map(|(t, n)| (t, Some(n)))
                .collect();
            if resources.is_empty() {
                resources.push((ResourceType::Any, None));
            }
            let mut principals: Vec<(Option<String>, AclPermissionType)> = Vec::new();
            principals.extend(
                entry
                    .allow_principal
                    .iter()
                    .map(|p| (Some(p.clone()), AclPermissionType::Allow)),
            );
            principals.extend(
                entry
                    .deny_principal
                    .iter()
                    .map(|p| (Some(p.clone()), AclPermissionType::Deny)),
            );
            if principals.is_empty() {
                principals.push((None, AclPermissionType::Any));
            }
            let mut operations = entry.operations()?;
            if operations.is_empty() {
                operations.push(AclOperation::Any);
            }
            let mut filters = Vec::new();
            for (rt, name) in &resources {
                for (principal, permission) in &principals {
                    for op in &operations {
                        filters.push(
                            DeleteAclsFilter::default()
                                .with_resource_type_filter(rt.code())
                                .with_resource_name_filter(name.clone().map(str_bytes))
                                .with_pattern_type_filter(pattern.code())
                                .with_principal_filter(principal.clone().map(str_bytes))
                                .with_host_filter(None)
                                .with_operation(op.code())
                                .with_permission_type(permission.code()),
                        );
                    }
                }
            }
            let resp = client
                .send(&DeleteAclsRequest::default().with_filters(filters), 3)
                .await?;
            for f in &resp.filter_results {
                check(f.error_code, f.error_message.as_deref(), "deleting ACLs")?;
                for a in &f.matching_acls {
                    let text = line(
                        a.resource_type,
                        a.pattern_type,
                        &a.resource_name,
                        &a.principal,
                        &a.host,
                        a.operation,
                        a.permission_type,
                    );
                    out.push(format!("deleted {text}"));
                }
            }
            out.dedup();
        }
    }
    Ok(out)
}

pub async fn run_acls(args: AclsArgs) -> anyhow::Result<()> {
    for l in execute(args).await? {
        println!("{l}");
    }
    Ok(())
}
