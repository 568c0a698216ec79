//! Follower fetchers: one task per leader broker copies every partition this broker follows
//! from it, with the Fetch API (replica id set, KIP-320 last fetched epoch), exactly as the
//! leader's log holds them.
//!
//! Each round sends one Fetch for a leader's partitions in an incremental fetch session
//! ([`super::fetch_session`]): the first names every partition, the next only those whose fetch
//! changed, so an idle follower's request is nearly empty; the leader long-polls it until new
//! records arrive and answers only partitions with news. Per partition, the response either carries records (appended with the
//! leader's offsets; the follower's next fetch offset tells the leader it has them), or a
//! diverging epoch (the follower's tail was never committed: truncate to where the epochs agree
//! and fetch again), or an error. Leadership changes arrive through the metadata image:
//! [`ReplicaFetcherManager::assign`] moves partitions between fetchers, so a stale fetch is
//! answered FENCED_LEADER_EPOCH or NOT_LEADER_OR_FOLLOWER and dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::StreamExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchTopic, ForgottenTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId as WireBrokerId, FetchRequest};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fetch_session::{is_session_error, FetchRequestData, FetchSessionHandler};
use super::hot_tail::{self, Trigger};
use super::throttle::ReplicationQuota;
use super::{Partition, PartitionError, ReplicationMetrics};
use crate::client::{ClientError, KafkaClient, SaslCredentials};
use crate::log::FlushPolicy;
use crate::model::{BrokerId, LeaderEpoch, Offset, TopicPartition};
use crate::net::Network;
use crate::protocol::fetch_session::PartitionFetch;
use crate::protocol::topic_name;

/// The Fetch version followers send: topic names, fetch sessions (v7+), KIP-320 diverging
/// epochs.
const FETCH_VERSION: i16 = 12;

#[derive(Debug, Clone)]
pub struct FetcherSettings {
    /// `replica.fetch.wait.max.ms`
    pub max_wait: Duration,
    /// `replica.fetch.max.bytes` (per partition)
    pub partition_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`
    pub response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`
    pub backoff: Duration,
    /// `follower.fetch.last.tiered.offset.enable`: an empty replica of a tiered topic starts
    /// after the remote log ([`hot_tail`]) rather than at the leader's log start.
    pub fetch_last_tiered_offset: bool,
    /// What this broker authenticates with when the inter-broker listener uses SASL
    /// (`sasl.mechanism.inter.broker.protocol` and the listener's `sasl.jaas.config`).
    pub sasl: Option<SaslCredentials>,
}

/// A partition to follow, at the leader epoch the image gave.
#[derive(Debug, Clone)]
pub struct FetchTarget {
    pub partition: Arc<Partition>,
    pub leader: BrokerId,
    pub leader_addr: String,
    pub leader_epoch: LeaderEpoch,
    /// Named in the topic's `follower.replication.throttled.replicas` for this broker.
    pub throttled: bool,
}

#[derive(Debug)]
struct Fetcher {
    addr: String,
    // Short sections: the fetch task copies it at the start of each round.
    targets: Arc<Mutex<HashMap<TopicPartition, FetchTarget>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

#[derive(Debug)]
pub struct ReplicaFetcherManager {
    local: BrokerId,
    net: Arc<dyn Network>,
    settings: FetcherSettings,
    // Short sections only; tasks are spawned, never awaited, under it.
    fetchers: Mutex<HashMap<BrokerId, Fetcher>>,
    /// Leaders whose connection broke or whose port refused this broker's fetcher, and when it
    /// last did: their process is likely gone (certainly, once the port refuses), though the
    /// controller may not have fenced them yet.
    unreachable: Mutex<HashMap<BrokerId, Instant>>,
    shutdown: CancellationToken,
    metrics: ReplicationMetrics,
    /// `follower.replication.throttled.rate` over the throttled replicas of every leader.
    // Short sections that never await.
    quota: Mutex<ReplicationQuota>,
}

impl ReplicaFetcherManager {
    pub fn new(
        local: BrokerId,
        net: Arc<dyn Network>,
        settings: FetcherSettings,
        shutdown: CancellationToken,
        metrics: ReplicationMetrics,
    ) -> Arc<ReplicaFetcherManager> {
        Arc::new(ReplicaFetcherManager {
            local,
            net,
            settings,
            fetchers: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashMap::new()),
            shutdown,
            metrics,
            quota: Mutex::new(ReplicationQuota::new(None, Instant::now())),
        })
    }

    fn quota(&self) -> MutexGuard<'_, ReplicationQuota> {
        self.quota.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `follower.replication.throttled.rate` (`None`: no limit).
    pub fn set_follower_throttle(&self, rate_bytes_per_s: Option<u64>) {
        self.quota().set_rate(rate_bytes_per_s, Instant::now());
    }

    fn unreachable_map(&self) -> MutexGuard<'_, HashMap<BrokerId, Instant>> {
        self.unreachable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leaders whose connection broke or whose port refused this broker's fetcher lately
    /// (within three fetch backoffs; a fetcher that keeps failing retries every backoff and
    /// renews the mark; a successful reconnect, tried 20 ms after a break, clears it). A refused
    /// connection means no process listens there: the broker is dead even if the controller
    /// has not fenced it yet, and Metadata reports its partitions leaderless meanwhile, so
    /// clients look for the new leader at their fast retry pace rather than retrying the dead
    /// one until their next full metadata refresh. Usually empty.
    pub fn unreachable_leaders(&self) -> Vec<BrokerId> {
        let window = self.settings.backoff * 3;
        self.unreachable_map()
            .iter()
            .filter(|(_, at)| at.elapsed() < window)
            .map(|(leader, _)| *leader)
            .collect()
    }

    fn set_unreachable(&self, leader: BrokerId, unreachable: bool) {
        let mut m = self.unreachable_map();
        if unreachable {
            if m.insert(leader, Instant::now()).is_none() {
                tracing::info!(%leader, "lost the connection to the leader; its partitions are reported leaderless until it answers again or is replaced");
            }
        } else {
            m.remove(&leader);
        }
    }

    fn fetchers(&self) -> MutexGuard<'_, HashMap<BrokerId, Fetcher>> {
        self.fetchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the fetchers follow exactly `targets`: partitions move to their leader's fetcher,
    /// fetchers left with nothing (or whose leader moved address) stop.
    pub fn assign(self: &Arc<Self>, targets: Vec<FetchTarget>) {
        let mut by_leader: HashMap<BrokerId, (String, HashMap<TopicPartition, FetchTarget>)> =
            HashMap::new();
        for t in targets {
            by_leader
                .entry(t.leader)
                .or_insert_with(|| (t.leader_addr.clone(), HashMap::new()))
                .1
                .insert(t.partition.tp.clone(), t);
        }
        let mut fetchers = self.fetchers();
        fetchers.retain(|leader, f| {
            let keep = by_leader
                .get(leader)
                .is_some_and(|(addr, _)| *addr == f.addr);
            if !keep {
                f.stop.cancel();
            }
            keep
        });
        for (leader, (addr, wanted)) in by_leader {
            let f = fetchers.entry(leader).or_insert_with(|| {
                let f = Fetcher {
                    addr: addr.clone(),
                    targets: Arc::new(Mutex::new(HashMap::new())),
                    wake: Arc::new(Notify::new()),
                    stop: self.shutdown.child_token(),
                };
                let task = FetchTask {
                    manager: self.clone(),
                    leader,
                    addr,
                    targets: f.targets.clone(),
                    wake: f.wake.clone(),
                    stop: f.stop.clone(),
                    started: Mutex::default(),
                };
                tokio::spawn(task.run());
                f
            });
            let changed = {
                let mut current = f.targets.lock().unwrap_or_else(|p| p.into_inner());
                let changed = current.len() != wanted.len()
                    || wanted.iter().any(|(tp, t)| {
                        current.get(tp).is_none_or(|c| {
                            c.leader_epoch != t.leader_epoch
                                || c.throttled != t.throttled
                                || !Arc::ptr_eq(&c.partition, &t.partition)
                        })
                    });
                if changed {
                    *current = wanted;
                }
                changed
            };
            if changed {
                f.wake.notify_one();
            }
        }
    }

    /// How many leaders this broker fetches from (tests and metrics).
    pub fn fetcher_count(&self) -> usize {
        self.fetchers().len()
    }
}

struct FetchTask {
    manager: Arc<ReplicaFetcherManager>,
    leader: BrokerId,
    addr: String,
    targets: Arc<Mutex<HashMap<TopicPartition, FetchTarget>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    /// The replicas (and leader epochs) whose start was settled before their first fetch
    /// ([`hot_tail`]). Short sections only; touched by this task alone.
    started: Mutex<HashMap<TopicPartition, (LeaderEpoch, Weak<Partition>)>>,
}

/// What a round asks the fetch loop to do next.
enum Next {
    Continue,
    /// The leader and this broker disagree on who leads at which epoch: one of them has not
    /// applied the newest metadata yet, which takes milliseconds, so the round is retried
    /// after [`METADATA_LAG_RETRY`] rather than the full backoff (a new leader's high
    /// watermark waits on this fetch).
    RetrySoon,
    /// The connection to the leader was lost.
    Lost,
    BackOff,
}

/// How many new replicas' remote manifests a fetcher reads at once before their first fetch.
const START_CONCURRENCY: usize = 16;

/// How soon a round that met a leadership disagreement is retried (capped by the backoff).
const METADATA_LAG_RETRY: Duration = Duration::from_millis(20);

impl FetchTask {
    async fn run(self) {
        tracing::debug!(leader = %self.leader, addr = %self.addr, "replica fetcher started");
        let mut client: Option<KafkaClient> = None;
        let settings = self.manager.settings.clone();
        let mut last_lost: Option<Instant> = None;
        let mut session = FetchSessionHandler::default();
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            let mut round: Vec<FetchTarget> = self
                .targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            if round.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => continue,
                    () = self.stop.cancelled() => break,
                }
            }
            // Over the follower throttle: throttled partitions sit this round out.
            if round.iter().any(|t| t.throttled) {
                let exceeded = self.manager.quota().exceeded(Instant::now());
                if let Some(wait) = exceeded {
                    round.retain(|t| !t.throttled);
                    if round.is_empty() {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => continue,
                            () = self.wake.notified() => continue,
                            () = self.stop.cancelled() => break,
                        }
                    }
                }
            }
            // A change of partitions (a new leadership to follow) starts a new round at once:
            // the fetch in flight is abandoned with its connection, and a backoff cut short.
            let mut reassigned = false;
            let next = tokio::select! {
                next = self.round(&mut client, &mut session, &round, &settings) => next,
                () = self.wake.notified() => {
                    reassigned = true;
                    Next::Continue
                }
                () = self.stop.cancelled() => break,
            };
            if reassigned {
                client = None;
                // The leader may or may not have seen the abandoned request.
                session.handle_error();
                continue;
            }
            let pause = match next {
                Next::Continue => None,
                Next::RetrySoon => Some(settings.backoff.min(METADATA_LAG_RETRY)),
                // A lost connection is tried again at once (the first time in a backoff): a
                // leader whose process died refuses the new connection, and knowing that
                // before the backoff ends saves clients time. A process being killed may still
                // accept a connection for a few milliseconds, so the retry waits a moment.
                Next::Lost if last_lost.is_none_or(|t| t.elapsed() >= settings.backoff) => {
                    last_lost = Some(Instant::now());
                    Some(settings.backoff.min(METADATA_LAG_RETRY))
                }
                Next::Lost | Next::BackOff => Some(settings.backoff),
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.wake.notified() => {}
                    () = self.stop.cancelled() => break,
                }
            }
        }
        self.manager.set_unreachable(self.leader, false);
        tracing::debug!(leader = %self.leader, "replica fetcher stopped");
    }

    /// Connects to the leader, noting whether its port refused.
    async fn connect(&self) -> Result<KafkaClient, ClientError> {
        let result = KafkaClient::connect(
            &*self.manager.net,
            &self.addr,
            "strata-replica-fetcher",
            Duration::from_secs(2),
        )
        .await;
        let result = match (result, &self.manager.settings.sasl) {
            (Ok(mut client), Some(creds)) => match client.authenticate(creds).await {
                Ok(()) => Ok(client),
                Err(e) => {
                    // The leader is up but refuses this broker: a configuration problem (a
                    // wrong password, a missing credential) that an operator must see.
                    tracing::warn!(leader = %self.leader, error = %e, "the leader refused this broker's SASL authentication");
                    Err(e)
                }
            },
            (result, _) => result,
        };
        match &result {
            Ok(_) => self.manager.set_unreachable(self.leader, false),
            Err(ClientError::Connect { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                self.manager.set_unreachable(self.leader, true)
            }
            // A timeout or another error says nothing certain about the process.
            Err(_) => {}
        }
        result
    }

    async fn round(
        &self,
        client: &mut Option<KafkaClient>,
        session: &mut FetchSessionHandler,
        round: &[FetchTarget],
        settings: &FetcherSettings,
    ) -> Next {
        if client.is_none() {
            match self.connect().await {
                Ok(c) => *client = Some(c),
                Err(e) => {
                    tracing::debug!(leader = %self.leader, error = %e, "cannot reach the leader");
                    return Next::BackOff;
                }
            }
        }
        let Some(c) = client.as_mut() else {
            return Next::BackOff;
        };
        for t in round {
            let log = t.partition.log();
            if log.corrupt_batch().is_some() && log.reports_offline_for_repair() {
                let not_remote = super::repair::RemoteEnd::NotCovering;
                super::repair::repair_step(self.manager.local, &t.partition, not_remote).await;
            }
            if let Some(to) = super::repair::take_truncation(&t.partition) {
                if let Err(e) = blocking(&t.partition, move |p| p.truncate_to(to)).await {
                    tracing::error!(partition = %t.partition.tp, error = %e, "repair truncation failed");
                }
            }
        }
        let (ready, waiting) = self.start_new_replicas(round).await;
        if ready.is_empty() {
            return Next::BackOff;
        }
        let round = ready.as_slice();
        let data = session.build(
            round
                .iter()
                .map(|t| (t.partition.tp.clone(), wanted(t, settings)))
                .collect(),
        );
        let req = fetch_request(self.manager.local, &data, settings);
        let deadline = settings.max_wait + Duration::from_secs(10);
        let sent = tokio::time::timeout(deadline, c.send(&req, FETCH_VERSION)).await;
        let metrics = &self.manager.metrics;
        metrics
            .fetcher_request_bytes
            .inc_by(c.last_request_bytes() as u64);
        metrics
            .fetcher_response_bytes
            .inc_by(c.last_response_bytes() as u64);
        let kind = if data.is_full() {
            "full"
        } else {
            "incremental"
        };
        metrics.fetcher_requests.with_label_values(&[kind]).inc();
        let resp = match sent {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                log_client_error(self.leader, &e);
                *client = None;
                session.handle_error();
                return match e {
                    ClientError::Io { .. } => {
                        // Reported at once: clients ask for metadata within a millisecond of
                        // losing the same leader, before the reconnect below can tell. That
                        // reconnect, 20 ms later, clears it if the leader answers.
                        self.manager.set_unreachable(self.leader, true);
                        Next::Lost
                    }
                    _ => Next::BackOff,
                };
            }
            Err(_) => {
                tracing::warn!(leader = %self.leader, "fetch from the leader timed out");
                *client = None;
                session.handle_error();
                return Next::BackOff;
            }
        };
        if !session.handle_response(resp.error_code, resp.session_id) {
            if is_session_error(resp.error_code) {
                // The next request is full, which no session can refuse: send it at once.
                tracing::debug!(leader = %self.leader, code = resp.error_code, "fetch session lost");
                return Next::Continue;
            }
            tracing::warn!(leader = %self.leader, code = resp.error_code, "fetch refused");
            return Next::BackOff;
        }
        let by_tp: HashMap<(&str, i32), &FetchTarget> = round
            .iter()
            .map(|t| {
                (
                    (t.partition.tp.topic.as_str(), t.partition.tp.partition.0),
                    t,
                )
            })
            .collect();
        let mut next = if waiting {
            Next::BackOff
        } else {
            Next::Continue
        };
        for topic in &resp.responses {
            for data in &topic.partitions {
                let Some(target) = by_tp.get(&(topic.topic.0.as_str(), data.partition_index))
                else {
                    continue;
                };
                if !self.still_assigned(target) {
                    continue;
                }
                let bytes = data.records.as_ref().map_or(0, |r| r.len() as u64);
                if bytes > 0 {
                    let tp = &target.partition.tp;
                    metrics
                        .fetch_bytes
                        .with_label_values(&[tp.topic.as_str(), &tp.partition.0.to_string()])
                        .inc_by(bytes);
                }
                if target.throttled {
                    self.manager.quota().record(bytes, Instant::now());
                }
                if let Err(e) = self.apply(target, data).await {
                    tracing::debug!(partition = %target.partition.tp, leader = %self.leader, error = %e, "replica fetch");
                    let lagging_metadata = matches!(
                        ResponseError::try_from_code(data.error_code),
                        Some(
                            ResponseError::NotLeaderOrFollower
                                | ResponseError::UnknownLeaderEpoch
                                | ResponseError::FencedLeaderEpoch
                        )
                    );
                    next = match next {
                        Next::BackOff => Next::BackOff,
                        _ if lagging_metadata => Next::RetrySoon,
                        _ => Next::BackOff,
                    };
                }
            }
        }
        next
    }

    /// Before a replica's first fetch at a leader epoch: a new replica of a tiered partition
    /// starts after the remote log ([`hot_tail`]) rather than at offset 0. Returns the targets
    /// to fetch now, and whether one waits because its remote log could not be read (it is
    /// tried again next round). The manifests are read [`START_CONCURRENCY`] at a time, so a
    /// broker given many new replicas at once (a new topic, a replaced disk) does not keep
    /// them all from fetching for one round trip to the store each.
    async fn start_new_replicas(&self, round: &[FetchTarget]) -> (Vec<FetchTarget>, bool) {
        let settled = |t: &FetchTarget| {
            self.started_map()
                .get(&t.partition.tp)
                .is_some_and(|(epoch, p)| {
                    *epoch == t.leader_epoch
                        && p.upgrade().is_some_and(|p| Arc::ptr_eq(&p, &t.partition))
                })
        };
        let new: Vec<FetchTarget> = round.iter().filter(|t| !settled(t)).cloned().collect();
        let from_tiered = self.manager.settings.fetch_last_tiered_offset;
        let checks = futures::stream::iter(new)
            .map(|t: FetchTarget| async move {
                if from_tiered && hot_tail::starts_empty_on_tiered(&t.partition) {
                    let r = hot_tail::start_from_remote(&t.partition, Trigger::EmptyLog).await;
                    (t, r.map(|_| ()))
                } else {
                    (t, Ok(()))
                }
            })
            .buffer_unordered(START_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut waiting: Vec<TopicPartition> = Vec::new();
        for (t, r) in checks {
            match r {
                Ok(()) => {
                    self.started_map().insert(
                        t.partition.tp.clone(),
                        (t.leader_epoch, Arc::downgrade(&t.partition)),
                    );
                }
                Err(e) => {
                    tracing::warn!(partition = %t.partition.tp, error = %e, "cannot read the remote log to start the new replica; retrying");
                    waiting.push(t.partition.tp.clone());
                }
            }
        }
        let ready: Vec<FetchTarget> = round
            .iter()
            .filter(|t| !waiting.contains(&t.partition.tp))
            .cloned()
            .collect();
        // Bounded by the partitions this fetcher follows now (checked only when it may have
        // lost some, so an idle round costs no walk over them).
        let mut started = self.started_map();
        if started.len() > round.len() {
            let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            started.retain(|tp, _| targets.contains_key(tp));
        }
        drop(started);
        (ready, !waiting.is_empty())
    }

    fn started_map(
        &self,
    ) -> MutexGuard<'_, HashMap<TopicPartition, (LeaderEpoch, Weak<Partition>)>> {
        self.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn still_assigned(&self, target: &FetchTarget) -> bool {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&target.partition.tp)
            .is_some_and(|t| {
                t.leader_epoch == target.leader_epoch
                    && Arc::ptr_eq(&t.partition, &target.partition)
            })
    }

    async fn apply(&self, target: &FetchTarget, data: &PartitionData) -> Result<(), String> {
        apply_fetched(&target.partition, data).await
    }
}

/// Acts on one partition's part of a leader's Fetch response on the follower: appends the
/// records and takes the high watermark, or truncates to where a diverging epoch says the logs
/// agree, or restarts the log where the leader's starts (out of range), or after the remote log
/// (moved to tiered storage, see [`hot_tail`]). Any other error is returned, and the fetcher
/// backs off.
pub async fn apply_fetched(p: &Arc<Partition>, data: &PartitionData) -> Result<(), String> {
    let leader_hw = Offset(data.high_watermark);
    match ResponseError::try_from_code(data.error_code) {
        None => {
            if data.diverging_epoch.epoch != -1 || data.diverging_epoch.end_offset != -1 {
                let (epoch, end) = (
                    LeaderEpoch(data.diverging_epoch.epoch),
                    Offset(data.diverging_epoch.end_offset),
                );
                let to = match p.log().end_offset_for_epoch(epoch) {
                    Some((_, local_end)) => local_end.min(end),
                    None => end,
                };
                tracing::info!(partition = %p.tp, %epoch, leader_end = %end, truncate_to = %to, "log diverged from the leader's; truncating");
                return blocking(p, move |p| p.truncate_to(to)).await;
            }
            let records = data.records.clone().unwrap_or_default();
            let appended = p
                .append_as_follower(records, leader_hw)
                .map_err(|e| e.to_string())?;
            if let Some(info) = appended {
                if p.log().flush_policy() == FlushPolicy::GroupCommit {
                    // Durable before the next fetch, which is what tells the leader this
                    // replica has the records: the high watermark (and so an acks=all
                    // acknowledgement) then only passes what the ISR holds on disk, and a
                    // power loss of every replica cannot elect one that lacks it.
                    let end = info.last_offset.next();
                    if let Err(e) = p.log().wait_durable(end).await {
                        tracing::error!(error = %e, "follower flush failed");
                        return Err(e.to_string());
                    }
                }
            }
            Ok(())
        }
        Some(ResponseError::OffsetOutOfRange) => {
            let leo = p.log().log_end_offset();
            let leader_start = Offset(data.log_start_offset);
            if leo < leader_start {
                tracing::info!(partition = %p.tp, local_end = %leo, %leader_start, "behind the leader's log start; starting over there");
                blocking(p, move |p| {
                    p.restart_log_at(leader_start, |log| {
                        log.truncate_fully_and_start_at(leader_start)
                    })
                })
                .await
            } else {
                // Ahead of the leader without an epoch to tell where: keep what is committed.
                let to = p.high_watermark().max(leader_hw.min(leo));
                tracing::info!(partition = %p.tp, local_end = %leo, truncate_to = %to, "ahead of the leader; truncating");
                blocking(p, move |p| p.truncate_to(to)).await
            }
        }
        Some(ResponseError::OffsetMovedToTieredStorage) => {
            hot_tail::start_from_remote(p, Trigger::LeaderMovedToTieredStorage)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Some(e) => Err(format!("the leader answered {e:?}")),
    }
}

/// Runs a truncation on the blocking pool: it deletes files and fsyncs the log (under the
/// log's lock, so that no append or read sees it half done), which must not stall a reactor
/// thread and every connection on it.
async fn blocking(
    p: &Arc<Partition>,
    truncate: impl FnOnce(&Partition) -> Result<(), PartitionError> + Send + 'static,
) -> Result<(), String> {
    let p = Arc::clone(p);
    match tokio::task::spawn_blocking(move || truncate(&p)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("truncation task failed: {e}")),
    }
}

fn log_client_error(leader: BrokerId, e: &ClientError) {
    match e {
        ClientError::Connect { .. } | ClientError::Io { .. } | ClientError::Timeout { .. } => {
            tracing::debug!(%leader, error = %e, "lost the connection to the leader")
        }
        ClientError::Protocol { .. } => tracing::warn!(%leader, error = %e, "bad fetch response"),
    }
}

/// What this follower asks of `t`'s leader now.
fn wanted(t: &FetchTarget, settings: &FetcherSettings) -> PartitionFetch {
    let log = t.partition.log();
    PartitionFetch {
        fetch_offset: log.log_end_offset(),
        log_start_offset: log.local_log_start_offset(),
        max_bytes: settings.partition_max_bytes,
        current_leader_epoch: t.leader_epoch,
        last_fetched_epoch: log.latest_epoch().unwrap_or(LeaderEpoch::UNKNOWN),
    }
}

fn fetch_request(
    local: BrokerId,
    data: &FetchRequestData,
    settings: &FetcherSettings,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (tp, fetch) in &data.to_send {
        let i = *at.entry(tp.topic.as_str()).or_insert_with(|| {
            topics.push(FetchTopic::default().with_topic(topic_name(tp.topic.clone())));
            topics.len() - 1
        });
        topics[i].partitions.push(fetch.to_wire(tp.partition.0));
    }
    let mut forgotten: Vec<ForgottenTopic> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for tp in &data.to_forget {
        let i = *at.entry(tp.topic.as_str()).or_insert_with(|| {
            forgotten.push(ForgottenTopic::default().with_topic(topic_name(tp.topic.clone())));
            forgotten.len() - 1
        });
        forgotten[i].partitions.push(tp.partition.0);
    }
    FetchRequest::default()
        .with_replica_id(WireBrokerId(local.0))
        .with_max_wait_ms(settings.max_wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(settings.response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(data.metadata.session_id)
        .with_session_epoch(data.metadata.epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}
