//! The `strata` binary: `strata serve` runs a node; `strata topics ...` administers topics over
//! the Kafka protocol against any broker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use strata::broker::Broker;
use strata::config::NodeConfig;
use strata::metrics::{serve_http, Metrics};
use strata::server::{serve, ServerLimits};

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
}

fn main() -> std::process::ExitCode {
    let filter = std::env::var("STRATA_LOG").unwrap_or_else(|_| "info".to_string());
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
        Command::Groups(args) => {
            runtime().and_then(|rt| rt.block_on(strata::admin::groups::run_groups(args)))
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

fn run_serve(config: Option<PathBuf>, sets: Vec<String>, print_config: bool) -> anyhow::Result<()> {
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
    if print_config {
        print!("{}", node.to_toml());
        return Ok(());
    }
    runtime()?.block_on(serve_node(node))
}

async fn serve_node(node: NodeConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let listener_cfg = node.kafka_listener()?;
    let addr = listener_cfg.socket_addr()?;
    // Bind before opening the logs so a port in use fails fast and clearly.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
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
        tokio::spawn(serve_http(http, ready.clone(), render, shutdown.clone()));
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
    ready.store(true, Ordering::Release);
    tracing::info!(node_id = %broker.node_id, cluster_id = %broker.cluster_id, %addr, "strata is serving");

    let server = tokio::spawn(serve(
        listener,
        broker.clone(),
        ServerLimits::from_config(&node),
        shutdown.clone(),
    ));
    wait_for_signal().await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    shutdown.cancel();
    let _ = server.await;
    tokio::task::block_in_place(|| broker.close()).context("flushing logs at shutdown")?;
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
