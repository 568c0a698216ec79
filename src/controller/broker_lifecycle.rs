//! The broker's side of liveness: heartbeats to the active controller (Kafka's
//! `BrokerLifecycleManager`). The controller's side, which fences brokers that stop
//! heartbeating, is [`super::liveness`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::clock::SharedClock;
use crate::log::LogManager;
use crate::model::BrokerId;
use crate::quota::SharedQuotas;

/// Heartbeats to the active controller every `broker.heartbeat.interval.ms`, and at once when
/// Raft names a new one: a new active controller knows no sessions and fences brokers it has not
/// heard from within its election grace. Each heartbeat reports this broker's rates under
/// cluster-wide quota limits and installs the shares the answer brings, and the partitions it
/// holds in offline log dirs, which the controller moves leaderships and ISR membership away
/// from; every `strata.balancer.size.report.interval.ms`, and at once to a new active controller, it also reports
/// the local log size of each replica, which the controller's balancer weighs
/// (`super::replica_sizes`). Runs until `shutdown`.
pub fn spawn_heartbeats(
    controller: Arc<Controller>,
    node_id: BrokerId,
    incarnation: uuid::Uuid,
    quotas: Arc<SharedQuotas>,
    logs: Arc<LogManager>,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let every = controller.settings().broker_heartbeat_interval;
        let sizes_every = controller.settings().replica_sizes_interval;
        let mut was_fenced = false;
        // The controller and when it last had this broker's sizes.
        let mut sizes_sent: Option<(Option<u64>, Instant)> = None;
        loop {
            let leader = controller.leader_id();
            let usage = quotas.usage(clock.now_ms());
            let sizes_due =
                sizes_sent.is_none_or(|(to, at)| to != leader || at.elapsed() >= sizes_every);
            let sizes = sizes_due.then(|| logs.replica_sizes());
            let heartbeat = controller
                .heartbeat_with_quota_usage(
                    node_id,
                    incarnation,
                    usage,
                    logs.offline_partitions(),
                    sizes,
                )
                .await
                .map(|answer| {
                    if let Some(shares) = answer.quota_shares {
                        quotas.set_shares(shares);
                    }
                    answer.fenced
                });
            if heartbeat.is_ok() && sizes_due {
                sizes_sent = Some((leader, Instant::now()));
            }
            if let Ok(fenced) = heartbeat {
                if fenced != was_fenced {
                    tracing::info!(fenced, "broker fencing changed");
                }
                was_fenced = fenced;
            }
            // Fenced brokers heartbeat faster so they are unfenced soon after they return; a
            // failed heartbeat (no active controller, or a new one) is retried soon, so a newly
            // elected controller hears from this broker within its election grace.
            let wait = match heartbeat {
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat to the active controller failed");
                    (every / 5).max(Duration::from_millis(20))
                }
                Ok(_) if was_fenced => every / 4,
                Ok(_) => every,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = controller.leader_changed(leader) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}
