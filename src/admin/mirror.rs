//! `strata mirror`: mirror link administration over Strata's own mirror links API
//! ([`crate::handlers::mirror_links`]) on the Kafka port: create, alter, list, describe, pause,
//! resume, promote, failover, reverse (failback) and delete.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{check, connect};
use crate::controller::mirror::{
    CredentialRef, LinkOptions, MirrorLinkSpec, MirrorTopicState, SourceSecurity, TopicSelection,
};
use crate::handlers::mirror_links::{MirrorLinksRequest, MirrorLinksResponse};
use crate::protocol::{STRATA_MIRROR_LINKS_API_KEY, STRATA_MIRROR_LINKS_VERSION};

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// host:port of any broker of the TARGET cluster (where the mirror topics live).
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap_server: String,
    /// Kafka client properties for the target cluster: security.protocol, sasl.mechanism, ...
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: MirrorCommand,
}

/// A link's settings, as `create` and `alter` take them (alter replaces them all).
#[derive(Args, Debug)]
pub struct LinkArgs {
    /// The link's name.
    pub name: String,
    /// bootstrap.servers of the SOURCE cluster.
    #[arg(long)]
    pub source_bootstrap_servers: String,
    /// security.protocol towards the source: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long, default_value = "PLAINTEXT")]
    pub source_security_protocol: String,
    /// A PEM CA bundle, on every target broker, that the source's certificates chain to.
    #[arg(long)]
    pub source_ssl_truststore_location: Option<String>,
    /// A PEM file (certificate chain and key), on every target broker, for a source that
    /// requires client certificates.
    #[arg(long)]
    pub source_ssl_keystore_location: Option<String>,
    /// sasl.mechanism towards the source: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    #[arg(long)]
    pub source_sasl_mechanism: Option<String>,
    #[arg(long)]
    pub source_sasl_username: Option<String>,
    /// A file, on every target broker, holding the source password.
    #[arg(long, conflicts_with = "source_password_env")]
    pub source_password_file: Option<String>,
    /// An environment variable, of every target broker, holding the source password.
    #[arg(long)]
    pub source_password_env: Option<String>,
    /// Mirror topics whose whole name matches this regex (repeatable).
    #[arg(long = "include")]
    pub include: Vec<String>,
    /// Never mirror topics whose whole name matches this regex (repeatable).
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// Mirror this topic (repeatable).
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Copy the source topics' config overrides and follow their changes.
    #[arg(long)]
    pub sync_configs: bool,
    /// Copy committed offsets of groups without active members here.
    #[arg(long)]
    pub sync_group_offsets: bool,
    /// Which groups' offsets to copy (a regex; all when absent).
    #[arg(long)]
    pub group_include: Option<String>,
    /// How often the source's topics and group offsets are read.
    #[arg(long, default_value_t = 5000)]
    pub interval_ms: u64,
}

impl LinkArgs {
    fn spec(self) -> MirrorLinkSpec {
        let credential = match (self.source_password_file, self.source_password_env) {
            (Some(f), _) => Some(CredentialRef::File(f)),
            (None, Some(e)) => Some(CredentialRef::Env(e)),
            (None, None) => None,
        };
        MirrorLinkSpec {
            name: self.name,
            bootstrap_servers: self.source_bootstrap_servers,
            security: SourceSecurity {
                security_protocol: self.source_security_protocol,
                ssl_truststore_location: self.source_ssl_truststore_location,
                ssl_keystore_location: self.source_ssl_keystore_location,
                sasl_mechanism: self.source_sasl_mechanism,
                sasl_username: self.source_sasl_username,
                credential,
            },
            topics: TopicSelection {
                include: self.include,
                exclude: self.exclude,
                literals: self.topics,
            },
            options: LinkOptions {
                sync_configs: self.sync_configs,
                sync_group_offsets: self.sync_group_offsets,
                group_include: self.group_include,
                interval_ms: self.interval_ms,
            },
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Create a link; selected source topics become read-only mirror topics here.
    Create(LinkArgs),
    /// Replace a link's settings (give them all, as for create).
    Alter(LinkArgs),
    /// List links and mirror topics.
    List,
    /// Show one link and its mirror topics.
    Describe {
        name: String,
    },
    /// Stop fetching and creating mirror topics (they stay read-only).
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Make mirror topics writable at the offsets they reached.
    Promote {
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Promote every topic of a link (the source is lost or retired).
    Failover {
        name: String,
    },
    /// Delete a link whose topics are all promoted (or deleted).
    Delete {
        name: String,
    },
    /// Failback, run on the OLD source after a failover: its selected topics become mirrors
    /// of the new primary (--source-bootstrap-servers); each partition's divergent tail (what
    /// the new primary never had) is removed, kept in a file and reported.
    Reverse {
        #[command(flatten)]
        link: LinkArgs,
        /// How long to wait for every partition's report before printing what is known.
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
    },
}

pub async fn run_mirror(args: MirrorArgs) -> anyhow::Result<()> {
    super::command_config::load(args.command_config.as_deref())?;
    let mut client = connect(&args.bootstrap_server).await?;
    let (what, req) = match args.command {
        MirrorCommand::Create(link) => (
            "creating the link",
            MirrorLinksRequest::Create { spec: link.spec() },
        ),
        MirrorCommand::Alter(link) => (
            "altering the link",
            MirrorLinksRequest::Alter { spec: link.spec() },
        ),
        MirrorCommand::List => ("listing links", MirrorLinksRequest::List),
        MirrorCommand::Describe { name } => {
            ("describing the link", MirrorLinksRequest::Describe { name })
        }
        MirrorCommand::Pause { name } => ("pausing the link", MirrorLinksRequest::Pause { name }),
        MirrorCommand::Resume { name } => {
            ("resuming the link", MirrorLinksRequest::Resume { name })
        }
        MirrorCommand::Promote { topics } => {
            catch_up_everywhere(&mut client, &topics).await?;
            (
                "promoting",
                MirrorLinksRequest::Promote {
                    topics,
                    caught_up: true,
                },
            )
        }
        MirrorCommand::Failover { name } => {
            let d = send(
                &mut client,
                &MirrorLinksRequest::Describe { name: name.clone() },
            )
            .await?;
            check(
                d.error_code,
                d.error_message.as_deref(),
                "describing the link",
            )?;
            let topics: Vec<String> = d
                .topics
                .into_iter()
                .filter(|t| t.state != MirrorTopicState::Promoted)
                .map(|t| t.topic)
                .collect();
            catch_up_everywhere(&mut client, &topics).await?;
            (
                "failing over",
                MirrorLinksRequest::Failover {
                    name,
                    caught_up: true,
                },
            )
        }
        MirrorCommand::Delete { name } => {
            ("deleting the link", MirrorLinksRequest::Delete { name })
        }
        MirrorCommand::Reverse { link, wait_ms } => {
            return reverse(&mut client, link.spec(), wait_ms).await;
        }
    };
    let resp = send(&mut client, &req).await?;
    check(resp.error_code, resp.error_message.as_deref(), what)?;
    print(&resp);
    Ok(())
}

async fn send(
    client: &mut crate::client::KafkaClient,
    req: &MirrorLinksRequest,
) -> anyhow::Result<MirrorLinksResponse> {
    let body = serde_json::to_vec(req)?;
    let resp = client
        .send_strata(
            STRATA_MIRROR_LINKS_API_KEY,
            STRATA_MIRROR_LINKS_VERSION,
            &body,
        )
        .await
        .context("the broker did not answer the mirror links request (is it Strata?)")?;
    serde_json::from_slice(&resp).context("decoding the mirror links response")
}

/// Before a promotion: asks every broker of the cluster, at once, for a final catch-up of the
/// mirror partitions it leads, so that partitions led by any broker hold the source's end. A
/// broker that cannot be reached (or a partition still behind) is reported, not fatal: the
/// promotion goes on at the end those partitions reached.
async fn catch_up_everywhere(
    client: &mut crate::client::KafkaClient,
    topics: &[String],
) -> anyhow::Result<()> {
    use kafka_protocol::messages::MetadataRequest;
    if topics.is_empty() {
        return Ok(());
    }
    let meta = client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 9)
        .await?;
    let asks = meta.brokers.iter().map(|b| {
        let addr = format!("{}:{}", b.host.as_str(), b.port);
        let req = MirrorLinksRequest::CatchUp {
            topics: topics.to_vec(),
        };
        async move {
            let result = async {
                let mut c = connect(&addr).await?;
                send(&mut c, &req).await
            }
            .await;
            (addr, result)
        }
    });
    for (addr, result) in futures::future::join_all(asks).await {
        match result {
            Ok(r) if r.error_code == 0 => {
                for p in r.behind {
                    eprintln!(
                        "warning: {}-{} is {} records behind the source after the final catch-up on {addr}",
                        p.topic, p.partition, p.records
                    );
                }
            }
            Ok(r) => eprintln!(
                "warning: no final catch-up on {addr}: {}",
                r.error_message
                    .unwrap_or_else(|| format!("error {}", r.error_code))
            ),
            Err(e) => eprintln!("warning: no final catch-up on {addr}: {e:#}"),
        }
    }
    Ok(())
}

/// Reverses, then waits until every reversed topic has left `reconciling` (each partition
/// reported its divergent tail) and prints the reports: one `divergent` line per partition
/// and a total.
async fn reverse(
    client: &mut crate::client::KafkaClient,
    spec: MirrorLinkSpec,
    wait_ms: u64,
) -> anyhow::Result<()> {
    let name = spec.name.clone();
    let resp = send(client, &MirrorLinksRequest::Reverse { spec }).await?;
    check(resp.error_code, resp.error_message.as_deref(), "reversing")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let resp = loop {
        let resp = send(client, &MirrorLinksRequest::Describe { name: name.clone() }).await?;
        check(
            resp.error_code,
            resp.error_message.as_deref(),
            "describing the link",
        )?;
        let pending = resp
            .topics
            .iter()
            .any(|t| t.state == MirrorTopicState::Reconciling);
        if !pending || std::time::Instant::now() >= deadline {
            break resp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    print(&resp);
    let total: i64 = resp.divergent_tails.iter().map(|d| d.tail.records()).sum();
    let pending: Vec<&str> = resp
        .topics
        .iter()
        .filter(|t| t.state == MirrorTopicState::Reconciling)
        .map(|t| t.topic.as_str())
        .collect();
    println!("divergent records total={total}");
    if !pending.is_empty() {
        println!("still reconciling (not every partition has reported yet; see `strata mirror describe {name}`): {pending:?}");
    }
    Ok(())
}

fn print(resp: &MirrorLinksResponse) {
    for l in &resp.links {
        let s = &l.spec;
        println!(
            "link {}\tstate={:?}\tsource={}\tsecurity.protocol={}\tinclude={:?}\texclude={:?}\ttopics={:?}\tsync_configs={}\tsync_group_offsets={}\tinterval_ms={}",
            s.name,
            l.state,
            s.bootstrap_servers,
            s.security.security_protocol,
            s.topics.include,
            s.topics.exclude,
            s.topics.literals,
            s.options.sync_configs,
            s.options.sync_group_offsets,
            s.options.interval_ms
        );
    }
    for t in &resp.topics {
        let state = match &t.state {
            MirrorTopicState::Mirroring => "mirroring".to_string(),
            MirrorTopicState::Promoted => "promoted".to_string(),
            MirrorTopicState::Failed(reason) => format!("failed ({reason})"),
            MirrorTopicState::Reconciling => "reconciling".to_string(),
        };
        println!(
            "topic {}\tlink={}\tpartitions={}\tstate={state}",
            t.topic, t.link, t.partitions
        );
    }
    for d in &resp.divergent_tails {
        println!(
            "divergent topic={}\tpartition={}\tfrom_offset={}\tend_offset={}\trecords={}\tbroker={}\tkept={}",
            d.topic,
            d.partition,
            d.tail.from_offset,
            d.tail.end_offset,
            d.tail.records(),
            d.tail.broker,
            if d.tail.kept.is_empty() { "-" } else { &d.tail.kept }
        );
    }
}
