//! The `strata` binary: `strata serve` runs a node; `strata topics ...` administers topics over
//! the Kafka protocol against any broker.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use strata::broker::Broker;
use strata::config::NodeConfig;
use strata::metrics::{serve_http, Metrics};
use strata::server::{serve_listeners, KafkaListener, ServerLimits};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A Kafka-compatible message broker with tiered object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        /// A TOML config file whose keys are Kafka's property names.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key: --set log.dirs=/srv/a (repeatable; wins over env and file).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Print the effective config and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Create, list, describe, alter and delete topics on any Kafka-protocol broker.
    Topics(strata::admin::TopicsArgs),
    /// List, describe (offsets and lag), reset offsets of, and delete consumer groups.
    Groups(strata::admin::groups::GroupsArgs),
    /// List, describe and abort transactions.
    Transactions(strata::admin::transactions::TransactionsArgs),
    /// Describe and alter client quotas (producer_byte_rate, consumer_byte_rate) by user and
    /// client id on any Kafka-protocol broker.
    Quotas(strata::admin::quotas::QuotasArgs),
    /// Mirror links (Strata only): create, alter, list, describe, pause, resume, promote,
    /// failover, delete.
    Mirror(strata::admin::mirror::MirrorArgs),
    /// Rebuild topics from the tiered-storage bucket into a fresh cluster (Strata only): same
    /// ids, partition counts, configs and offsets.
    Restore(strata::admin::restore::RestoreArgs),
    /// Create, delete and list SCRAM users on any Kafka-protocol broker.
    Users(strata::admin::users::UsersArgs),
    /// Create, list and delete ACLs (kafka-acls.sh's flags) on any Kafka-protocol broker.
    Acls(strata::admin::acls::AclsArgs),
    /// Write meta.properties (cluster id, node id) into every log dir, once, before the first
    /// start of a node of a multi-node cluster; with --add-scram, SCRAM credentials the first
    /// start creates (as kafka-storage format --add-scram).
    Format {
        #[arg(long)]
        cluster_id: String,
        /// MECHANISM=[name=USER,password=PASSWORD(,iterations=N)], repeatable.
        #[arg(long = "add-scram", value_name = "SPEC")]
        add_scram: Vec<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// The metadata quorum and the brokers, through any broker's Kafka port
    /// (--bootstrap-server, with --command-config) or a controller's RPC port (--controller).
    Cluster(strata::admin::cluster::ClusterArgs),
}

fn main() -> std::process::ExitCode {
    strata::keep_large_blocks();
    let mut filter = std::env::var("STRATA_LOG").unwrap_or_else(|_| "info".to_string());
    // openraft narrates every vote and append at info; keep its warnings unless asked.
    if !filter.contains("openraft") {
        filter.push_str(",openraft=warn");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            sets,
            print_config,
        } => run_serve(config, sets, print_config),
        Command::Format {
            add_scram,
            cluster_id,
            config,
            sets,
        } => run_format(cluster_id, config, sets, add_scram),
        Command::Cluster(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::cluster::run_cluster(args)))
        }
        Command::Groups(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::groups::run_groups(args)))
        }
        Command::Transactions(args) => runtime()
            .and_then(|rt| rt.block_on(strata::admin::transactions::run_transactions(args))),
        Command::Acls(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::acls::run_acls(args)))
        }
        Command::Quotas(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::quotas::run_quotas(args)))
        }
        Command::Mirror(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::mirror::run_mirror(args)))
        }
        Command::Restore(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::restore::run_restore(args)))
        }
        Command::Users(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::users::run_users(args)))
        }
        Command::Topics(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::run_topics(args)))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn load_config(config: Option<PathBuf>, sets: Vec<String>) -> anyhow::Result<NodeConfig> {
    let sets = sets
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("--set {s}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("STRATA_"))
        .collect();
    let node = NodeConfig::load(config.as_deref(), &env, &sets).context("invalid config")?;
    for w in &node.warnings {
        tracing::warn!("{w}");
    }
    Ok(node)
}

fn run_format(
    cluster_id: String,
    config: Option<PathBuf>,
    sets: Vec<String>,
    add_scram: Vec<String>,
) -> anyhow::Result<()> {
    let node = load_config(config, sets)?;
    let specs = add_scram
        .iter()
        .map(|s| {
            strata::sasl::scram::BootstrapCredential::parse(s)
                .map_err(|e| anyhow::anyhow!("--add-scram: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dirs = strata::broker::format_log_dirs(&node, &cluster_id)?;
    if !specs.is_empty() {
        let path = strata::broker::write_bootstrap_scram(&node, &specs)?;
        println!(
            "wrote {} SCRAM credential(s) for the first start to {}",
            specs.len(),
            path.display()
        );
    }
    for dir in dirs {
        println!(
            "formatted {} (cluster {cluster_id}, node {})",
            dir.display(),
            node.node_id()
        );
    }
    Ok(())
}

fn run_serve(config: Option<PathBuf>, sets: Vec<String>, print_config: bool) -> anyhow::Result<()> {
    let node = load_config(config, sets)?;
    if print_config {
        print!("{}", node.to_toml());
        return Ok(());
    }
    runtime()?.block_on(serve_node(node))
}

async fn serve_node(node: NodeConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // Bind before opening the logs so a port in use fails fast and clearly.
    let mut listeners = Vec::new();
    for l in node.kafka_listeners()? {
        let addr = l.bind.socket_addr()?;
        let socket = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (listener {})", l.info.name))?;
        tracing::info!(listener = %l.info.name, protocol = %l.info.security_protocol, %addr, advertised = %format!("{}:{}", l.advertised.host, l.advertised.port), "listening");
        listeners.push(
            KafkaListener::new(&node, &l, strata::net::tokio_acceptor(socket))?
                .with_sasl(&node)
                .await?,
        );
    }
    let metrics = Arc::new(Metrics::new());
    let broker_slot: Arc<OnceLock<Arc<Broker>>> = Arc::new(OnceLock::new());
    if let Some(http_addr) = node.http_listener()? {
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("cannot listen on {http_addr} (http.listener)"))?;
        let (metrics, slot) = (metrics.clone(), broker_slot.clone());
        let render = move || {
            let (metrics, slot) = (metrics.clone(), slot.clone());
            async move {
                match slot.get() {
                    Some(b) => {
                        let b = b.clone();
                        tokio::task::spawn_blocking(move || b.render_metrics())
                            .await
                            .unwrap_or_default()
                    }
                    None => metrics.render(),
                }
            }
        };
        // Not ready until the broker is in the slot, then as the broker says.
        let slot = broker_slot.clone();
        let ready = move || match slot.get() {
            Some(b) => b.readiness(),
            None => Err("starting".to_string()),
        };
        tokio::spawn(serve_http(http, ready, render, shutdown.clone()));
    }
    let broker: Arc<Broker> = Broker::start(
        node.clone(),
        strata::clock::system(),
        metrics,
        shutdown.clone(),
    )
    .await
    .context("starting the broker")?;
    let _ = broker_slot.set(broker.clone());
    tracing::info!(node_id = %broker.node_id, cluster_id = %broker.cluster_id, "strata is serving");

    let server = tokio::spawn(serve_listeners(
        listeners,
        broker.apis.clone(),
        broker.metrics.server.clone(),
        ServerLimits::from_config(&node),
        shutdown.clone(),
    ));
    wait_for_signal().await;
    if let Err(e) = broker.controlled_shutdown().await {
        tracing::warn!(error = %e, "controlled shutdown did not finish; stopping anyway");
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    shutdown.cancel();
    let _ = server.await;
    strata::runtime::block_in_place(|| broker.close()).context("flushing logs at shutdown")?;
    broker.stop_controller().await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
