//! The active controller's duties: what it commits on its own, from what it observes rather
//! than from a request. Each pass of [`Controller::run_duties`] (every [`DUTY_TICK`], and at
//! once when something is due) runs them in order:
//!
//! 1. the `metadata.version` feature level, written once by the first active controller;
//! 2. broker liveness ([`Controller::run_liveness`]): fence silent brokers, unfence
//!    heartbeating ones, drain those in controlled shutdown, and re-elect leaders accordingly
//!    (the rules in [`super::liveness`], the elections in [`super::elections`]);
//! 3. completing partition reassignments whose target replicas have all joined the ISR
//!    ([`super::reassignment`]): the ISR changes that make one due arrive as AlterPartition
//!    records, and each pass looks at the image they produced;
//! 4. preferred-leader rebalancing, every `leader.imbalance.check.interval.seconds` when
//!    `auto.leader.rebalance.enable` is set;
//! 5. the balancer ([`super::balancer`]): the next replica moves, a few in flight at a time,
//!    then the throttled replica lists of every move under way or just completed.
//!
//! Mirror links have their own duty task (`controller::mirror::duty`), which lists remote
//! source clusters and so must never hold up these steps.
//!
//! A new duty is one more step here: a pure `decide_*` from the image (and what this
//! controller observed) to records, committed with [`Controller::commit_as_active`], which
//! refuses rather than forwards when this node is no longer the active controller.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::balancer::{decide_balancer_moves_by_size, decide_move_throttles, move_throttles};
use super::elections::{decide_broker_liveness, decide_preferred_leaders};
use super::liveness::decide_fencing;
use super::node::Controller;
use super::reassignment::decide_complete_reassignments;
use super::records::MetadataRecord;
use super::ControllerError;

/// The `metadata.version` this build writes.
pub(crate) const METADATA_VERSION: u16 = 1;
/// How often the active controller looks at broker liveness.
const DUTY_TICK: Duration = Duration::from_millis(200);

impl Controller {
    pub(super) fn spawn_duties(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DUTY_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = self.duties_due.notified() => {}
                    () = self.shutdown.cancelled() => return,
                }
                if let Err(e) = self.run_duties().await {
                    tracing::debug!(error = %e, "controller duties");
                }
            }
        });
    }

    async fn run_duties(&self) -> Result<(), ControllerError> {
        let Some(term) = self.active_term() else {
            self.heartbeats().step_down();
            self.replica_sizes().clear();
            return Ok(());
        };
        let new_term = self
            .heartbeats()
            .begin_term(term, &self.image(), Instant::now());
        if new_term {
            *self.last_rebalance() = Some(Instant::now());
        }
        self.commit_as_active(|image| {
            let records = if image.metadata_version < METADATA_VERSION {
                vec![MetadataRecord::FeatureLevel {
                    name: "metadata.version".into(),
                    level: METADATA_VERSION,
                }]
            } else {
                vec![]
            };
            Ok(((), records))
        })
        .await?;
        self.run_liveness().await?;
        let (completed, _) = self
            .commit_as_active(|image| {
                let records = decide_complete_reassignments(image);
                Ok((records.len(), records))
            })
            .await?;
        if completed > 0 {
            self.reassignments_completed
                .fetch_add(completed as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(partitions = completed, "completed partition reassignments");
        }
        let rebalance_due = self.settings.auto_leader_rebalance
            && self
                .last_rebalance()
                .is_none_or(|t| t.elapsed() >= self.settings.leader_imbalance_check_interval);
        if rebalance_due {
            *self.last_rebalance() = Some(Instant::now());
            let draining = self.heartbeats().draining_brokers();
            let pct = self.settings.leader_imbalance_percent;
            self.commit_as_active(|image| {
                Ok(((), decide_preferred_leaders(image, pct, &draining)))
            })
            .await?;
        }
        let static_balancer = &self.settings.balancer;
        let (started, _) = self
            .commit_as_active(|image| {
                let config = static_balancer.effective(image);
                let sizes = self.replica_sizes().partition_sizes(image);
                let mut records = decide_balancer_moves_by_size(image, &config, &sizes).records;
                let started = records.len();
                records.extend(move_throttles(image, &records, &config));
                Ok((started, records))
            })
            .await?;
        if started > 0 {
            tracing::info!(partitions = started, "the balancer started reassignments");
        }
        self.commit_as_active(|image| {
            Ok((
                (),
                decide_move_throttles(image, &static_balancer.effective(image)),
            ))
        })
        .await?;
        Ok(())
    }

    /// Fences silent brokers, unfences heartbeating ones, drains those shutting down, and
    /// re-elects leaders accordingly.
    pub(super) async fn run_liveness(&self) -> Result<(), ControllerError> {
        let unclean = self.settings.unclean_leader_election;
        let (changed, _) = self
            .commit_as_active(|image| {
                let now = Instant::now();
                let decision = {
                    let mut heartbeats = self.heartbeats();
                    heartbeats.track_registrations(image, now);
                    (
                        decide_fencing(&heartbeats, image, now),
                        heartbeats.offline_replicas(),
                    )
                };
                let (decision, offline_replicas) = decision;
                let mut observed = decision.liveness();
                observed.offline_replicas = offline_replicas;
                let records = decide_broker_liveness(image, &observed, unclean);
                let changed =
                    (!records.is_empty()).then_some((decision.fence, observed, records.len()));
                Ok((changed, records))
            })
            .await?;
        // Logged once committed, not per attempt: these lines time a failover.
        if let Some((rules, observed, records)) = changed {
            for (broker_id, rule) in rules {
                tracing::info!(
                    broker_id = broker_id.0,
                    rule = rule.as_str(),
                    "fenced a broker"
                );
            }
            tracing::info!(fence = ?observed.fence, unfence = ?observed.unfence, draining = ?observed.draining, records, "broker liveness changed");
        }
        Ok(())
    }
}
