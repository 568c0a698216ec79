//! The mirror duty: on the active controller, for each active link every
//! `options.interval_ms`, list the source's topics and commit what
//! [`decide_mirror_topics`](super::decide_mirror_topics) decides (new mirror topics, partition
//! additions, config changes).
//!
//! It runs as its own task rather than as a step of `Controller::run_duties`, because it waits
//! on remote clusters: a slow or unreachable source must not delay fencing or elections.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{decide_mirror_topics, groups, source, LinkState};
use crate::client::InterBrokerNet;
use crate::controller::node::Controller;
use crate::controller::TopicDefaults;
use crate::net::Network;

/// How often the duty looks for links that are due.
const TICK: Duration = Duration::from_millis(500);

impl Controller {
    /// Starts the mirror duty. `cluster_id` is this cluster's, so that a link whose source is
    /// this very cluster is refused (loop prevention); `net` reaches the source clusters.
    pub fn spawn_mirror_duty(
        self: Arc<Self>,
        cluster_id: String,
        defaults: TopicDefaults,
        net: Arc<dyn Network>,
        local: InterBrokerNet,
    ) {
        tokio::spawn(async move {
            let mut last_sync: BTreeMap<String, Instant> = BTreeMap::new();
            let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
            // Group offsets already written here, per link, so unchanged ones are not rewritten.
            let mut synced: BTreeMap<String, groups::GroupOffsets> = BTreeMap::new();
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = self.shutdown.cancelled() => return,
                }
                if self.active_term().is_none() {
                    last_sync.clear();
                    continue;
                }
                let image = self.image();
                last_sync.retain(|name, _| image.mirrors.links.contains_key(name));
                synced.retain(|name, _| image.mirrors.links.contains_key(name));
                for (name, link) in &image.mirrors.links {
                    let interval = Duration::from_millis(link.spec.options.interval_ms);
                    if link.state == LinkState::Paused
                        || last_sync.get(name).is_some_and(|t| t.elapsed() < interval)
                    {
                        continue;
                    }
                    last_sync.insert(name.clone(), Instant::now());
                    let listed = async {
                        let mut client = source::connect_any(&net, &link.spec).await?;
                        source::list_topics(&mut client, link.spec.options.sync_configs).await
                    };
                    let (source_cluster_id, topics) = match tokio::time::timeout(
                        interval.max(Duration::from_secs(10)),
                        listed,
                    )
                    .await
                    {
                        Ok(Ok(listed)) => listed,
                        Ok(Err(e)) => {
                            tracing::warn!(link = %name, error = %e, "cannot list the source cluster's topics");
                            continue;
                        }
                        Err(_) => {
                            tracing::warn!(link = %name, "listing the source cluster's topics timed out");
                            continue;
                        }
                    };
                    let committed = self
                        .commit_as_active(|image| {
                            decide_mirror_topics(
                                image,
                                name,
                                &cluster_id,
                                &source_cluster_id,
                                &topics,
                                defaults,
                            )
                        })
                        .await;
                    match committed {
                        Ok((conflicts, _)) => {
                            for topic in conflicts {
                                if reported.insert((name.clone(), topic.clone())) {
                                    tracing::warn!(link = %name, %topic, "a local topic of the same name exists and is not this link's mirror; not mirrored");
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(link = %name, error = %e, "mirror topics not updated")
                        }
                    }
                    if link.spec.options.sync_group_offsets {
                        let written = synced.entry(name.clone()).or_default();
                        let image = self.image();
                        let sync = async {
                            let offsets = groups::source_offsets(&net, &link.spec, &image).await?;
                            groups::write_offsets(&local, &image, &offsets, written).await
                        };
                        match tokio::time::timeout(interval.max(Duration::from_secs(10)), sync)
                            .await
                        {
                            Ok(Ok(n)) if n > 0 => {
                                tracing::debug!(link = %name, offsets = n, "group offsets synced")
                            }
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(link = %name, error = %e, "group offsets not synced")
                            }
                            Err(_) => tracing::warn!(link = %name, "group offset sync timed out"),
                        }
                    }
                }
            }
        });
    }
}
