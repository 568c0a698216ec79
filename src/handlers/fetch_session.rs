//! Incremental fetch sessions (KIP-227), the broker's side: Kafka's `FetchSessionCache`,
//! `FetchSession` and `CachedPartition`.
//!
//! A fetcher that reads many partitions would otherwise send all of them, with their offsets,
//! in every request, and get all of them back in every response, even when nothing changed. A
//! session remembers, per partition, what the fetcher last asked ([`PartitionFetch`]) and what
//! it was last told (high watermark, last stable offset, log start offset). Then:
//!
//! - a **full** request (epoch 0) names every partition; after the read the broker creates a
//!   session from it, if the cache admits one, and answers with its id (0: no session). Epoch
//!   -1 is a full request that wants no session (**sessionless**). A full request naming a
//!   session closes that session.
//! - an **incremental** request (the session's epoch, which rises by one per request) names
//!   only partitions that are new or whose fetch changed, and in `forgotten_topics_data` the
//!   ones to drop. The broker reads every partition of the session, and answers only those with
//!   records, a changed high watermark, last stable offset or log start offset, an error, a
//!   diverging epoch or a preferred read replica; the others are left out. Partitions that got
//!   records move to the end of the session's order, so that a response's byte limit does not
//!   always favour the same partitions.
//! - errors: FETCH_SESSION_ID_NOT_FOUND (no such session, e.g. evicted),
//!   INVALID_FETCH_SESSION_EPOCH (a request at the wrong epoch: lost or repeated),
//!   FETCH_SESSION_TOPIC_ID_ERROR (a session created with topic ids, v13+, continued without
//!   them or the other way round). The fetcher answers each with a full request.
//!
//! # Bounds and eviction
//! The cache holds at most `max.incremental.fetch.session.cache.slots` sessions (1000). When
//! it is full, a new session takes a slot only by evicting one, as Kafka decides:
//! 1. the least recently used session, if it was unused for
//!    `min.incremental.fetch.session.eviction.ms` (stale);
//! 2. otherwise the least valuable session that may be evicted, if it is worth less than the
//!    new one. Value orders by privilege (a follower's session is privileged), then by size in
//!    partitions, so a session can only displace a smaller one, or a consumer's for a follower.
//!    A session younger than the eviction time is protected, except that a follower may evict
//!    a young consumer session (as of its last use).
//!
//! Otherwise the full request is answered without a session (id 0), and the fetcher keeps
//! sending full requests.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use kafka_protocol::messages::fetch_response::PartitionData;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::metrics::{counter, counter_vec, gauge, gauge_vec};
use crate::model::{PartitionIndex, TopicId};
use crate::protocol::fetch_session::{
    next_epoch, FetchMetadata, PartitionFetch, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID,
};

/// How a fetch names a topic: by id from Fetch v13, by name before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Id(TopicId),
    Name(String),
}

/// One partition as a fetch names it (Kafka's `TopicIdPartition`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchKey {
    pub topic: TopicRef,
    pub partition: PartitionIndex,
}

/// A session's partition: what the fetcher last asked, and what it was last told.
#[derive(Debug, Clone)]
pub struct CachedPartition {
    pub key: FetchKey,
    pub fetch: PartitionFetch,
    /// -1 when the fetcher has not been told one, or was last told an error: the next answer
    /// for this partition is then always sent.
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl CachedPartition {
    fn new(key: FetchKey, fetch: PartitionFetch) -> CachedPartition {
        CachedPartition {
            key,
            fetch,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }

    /// Whether an incremental response must carry `data` for this partition; with `update`,
    /// records what the fetcher is now told.
    fn must_respond(&mut self, data: &PartitionData, update: bool) -> bool {
        let mut must = data.records.as_ref().is_some_and(|r| !r.is_empty());
        if self.high_watermark != data.high_watermark {
            must = true;
            if update {
                self.high_watermark = data.high_watermark;
            }
        }
        if self.last_stable_offset != data.last_stable_offset {
            must = true;
            if update {
                self.last_stable_offset = data.last_stable_offset;
            }
        }
        if self.log_start_offset != data.log_start_offset {
            must = true;
            if update {
                self.log_start_offset = data.log_start_offset;
            }
        }
        if data.preferred_read_replica.0 >= 0 {
            must = true;
        }
        if data.error_code != 0 {
            // Forget what was sent, so the first answer after the error clears is sent too.
            must = true;
            if update {
                self.high_watermark = -1;
            }
        }
        if data.diverging_epoch.epoch != -1 || data.diverging_epoch.end_offset != -1 {
            must = true;
        }
        must
    }
}

/// What one incremental request changed in its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionUpdate {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

/// One fetcher's session: its partitions in the order they are read, and its epoch.
#[derive(Debug, Clone)]
pub struct FetchSession {
    pub id: i32,
    /// A follower's session, which consumers cannot evict.
    pub privileged: bool,
    /// Created by a v13+ request (topics named by id); only such requests may continue it.
    pub uses_topic_ids: bool,
    /// The epoch the next request must carry.
    pub epoch: i32,
    partitions: Vec<CachedPartition>,
    index: HashMap<FetchKey, usize>,
    creation_ms: u64,
    last_used_ms: u64,
    /// The size, and whether it may be evicted, as of the last use (Kafka's evictable key).
    cached_size: usize,
    evictable_by_all: bool,
    evictable_by_privileged: bool,
}

impl FetchSession {
    fn new(
        id: i32,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<CachedPartition>,
        now_ms: u64,
    ) -> Self {
        let mut s = FetchSession {
            id,
            privileged,
            uses_topic_ids,
            epoch: next_epoch(INITIAL_EPOCH),
            partitions: Vec::new(),
            index: HashMap::new(),
            creation_ms: now_ms,
            last_used_ms: now_ms,
            cached_size: 0,
            evictable_by_all: false,
            evictable_by_privileged: false,
        };
        for p in partitions {
            if !s.index.contains_key(&p.key) {
                s.index.insert(p.key.clone(), s.partitions.len());
                s.partitions.push(p);
            }
        }
        s
    }

    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// The partitions to read, in order, with what the fetcher asks of each.
    pub fn partitions(&self) -> impl Iterator<Item = (&FetchKey, &PartitionFetch)> {
        self.partitions.iter().map(|p| (&p.key, &p.fetch))
    }

    /// Applies an incremental request: new partitions are appended, known ones take the new
    /// fetch, then forgotten ones are dropped (in Kafka's order, so a partition both sent and
    /// forgotten is dropped).
    pub fn update(
        &mut self,
        fetch: &[(FetchKey, PartitionFetch)],
        forgotten: &[FetchKey],
    ) -> SessionUpdate {
        let mut u = SessionUpdate::default();
        for (key, f) in fetch {
            match self.index.get(key) {
                Some(&i) => {
                    self.partitions[i].fetch = *f;
                    u.updated += 1;
                }
                None => {
                    self.index.insert(key.clone(), self.partitions.len());
                    self.partitions.push(CachedPartition::new(key.clone(), *f));
                    u.added += 1;
                }
            }
        }
        let before = self.partitions.len();
        if !forgotten.is_empty() {
            let forgotten: std::collections::HashSet<&FetchKey> = forgotten.iter().collect();
            self.partitions.retain(|p| !forgotten.contains(&p.key));
        }
        u.removed = before - self.partitions.len();
        if u.removed > 0 {
            self.reindex();
        }
        u
    }

    fn reindex(&mut self) {
        self.index = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (p.key.clone(), i))
            .collect();
    }

    /// Which of `read` (the session's partitions, as read, in session order) an incremental
    /// response carries. With `update`, the session records what the fetcher is told and the
    /// partitions that got records move to the end of the order.
    fn select(&mut self, read: &[(&FetchKey, &PartitionData)], update: bool) -> Vec<bool> {
        let mut include = Vec::with_capacity(read.len());
        let mut moved = Vec::new();
        for (key, data) in read {
            let Some(&i) = self.index.get(*key) else {
                // Not in the session any more (a concurrent request changed it): send it.
                include.push(true);
                continue;
            };
            include.push(self.partitions[i].must_respond(data, update));
            if update && data.records.as_ref().is_some_and(|r| !r.is_empty()) {
                moved.push(i);
            }
        }
        if !moved.is_empty() {
            // The moved ones go last, in the order they were answered.
            let mut slots: Vec<Option<CachedPartition>> = std::mem::take(&mut self.partitions)
                .into_iter()
                .map(Some)
                .collect();
            let last: Vec<CachedPartition> =
                moved.iter().filter_map(|&i| slots[i].take()).collect();
            self.partitions = slots.into_iter().flatten().chain(last).collect();
            self.reindex();
        }
        include
    }

    /// Kafka's `EvictableKey`: (privileged, size, id), least valuable first.
    fn evictable_key(&self) -> (bool, usize, i32) {
        (self.privileged, self.cached_size, self.id)
    }
}

/// Why a request cannot continue its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchSessionError {
    #[error("fetch session {session_id} not found")]
    IdNotFound { session_id: i32 },
    #[error("fetch session {session_id} expects epoch {expected}, the request carries {got}")]
    InvalidEpoch {
        session_id: i32,
        expected: i32,
        got: i32,
    },
    #[error("fetch session {session_id} was created {} topic ids", if *.uses_topic_ids { "with" } else { "without" })]
    TopicIdMismatch {
        session_id: i32,
        uses_topic_ids: bool,
    },
}

/// How a fetch request is served (Kafka's `FetchContext`).
#[derive(Debug, Clone)]
pub enum FetchContext {
    /// Read the request's partitions, answer all, no session.
    Sessionless,
    /// Read the request's partitions, answer all, and try to create a session from them.
    Full {
        privileged: bool,
        uses_topic_ids: bool,
    },
    /// Read the session's partitions (already updated from the request), answer the changed.
    Incremental {
        session_id: i32,
        partitions: Vec<(FetchKey, PartitionFetch)>,
    },
    /// Answer the error alone.
    Error(FetchSessionError),
}

impl FetchContext {
    /// The label of this kind of context in metrics.
    fn label(&self) -> &'static str {
        match self {
            FetchContext::Sessionless => "sessionless",
            FetchContext::Full { .. } => "full",
            FetchContext::Incremental { .. } => "incremental",
            FetchContext::Error(_) => "error",
        }
    }

    /// The session id a throttled (empty) response carries: the session continues, a full
    /// request gets none (Kafka's `getThrottledResponse`).
    pub fn throttled_session_id(&self) -> i32 {
        match self {
            FetchContext::Incremental { session_id, .. } => *session_id,
            _ => INVALID_SESSION_ID,
        }
    }
}

/// What the cache decides for a response: the session id to send and which partitions go in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub session_id: i32,
    pub include: Vec<bool>,
}

/// The cache's settings (Kafka's property names).
#[derive(Debug, Clone, Copy)]
pub struct FetchSessionCacheConfig {
    /// `max.incremental.fetch.session.cache.slots`
    pub max_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`
    pub eviction_ms: u64,
}

impl Default for FetchSessionCacheConfig {
    fn default() -> Self {
        FetchSessionCacheConfig {
            max_slots: 1000,
            eviction_ms: 120_000,
        }
    }
}

/// Every session: the pure state and decisions, without locks or metrics.
#[derive(Debug)]
pub struct Sessions {
    config: FetchSessionCacheConfig,
    by_id: HashMap<i32, FetchSession>,
    num_partitions: usize,
    /// Sessions of followers (privileged).
    followers: usize,
    evictions: u64,
}

impl Sessions {
    pub fn new(config: FetchSessionCacheConfig) -> Sessions {
        Sessions {
            config,
            by_id: HashMap::new(),
            num_partitions: 0,
            followers: 0,
            evictions: 0,
        }
    }

    pub fn get(&self, id: i32) -> Option<&FetchSession> {
        self.by_id.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Partitions across all sessions, as of each one's last use.
    pub fn num_partitions(&self) -> usize {
        self.num_partitions
    }

    /// Sessions evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Decides how to serve a request, changing its session as an incremental request says
    /// (Kafka's `FetchManager.newContext`).
    pub fn new_context(
        &mut self,
        meta: FetchMetadata,
        privileged: bool,
        uses_topic_ids: bool,
        fetch: &[(FetchKey, PartitionFetch)],
        forgotten: &[FetchKey],
        now_ms: u64,
    ) -> FetchContext {
        if meta.is_full() {
            if meta.session_id != INVALID_SESSION_ID {
                self.remove(meta.session_id);
            }
            return if meta.epoch == FINAL_EPOCH {
                FetchContext::Sessionless
            } else {
                FetchContext::Full {
                    privileged,
                    uses_topic_ids,
                }
            };
        }
        let session_id = meta.session_id;
        let Some(session) = self.by_id.get_mut(&session_id) else {
            return FetchContext::Error(FetchSessionError::IdNotFound { session_id });
        };
        if session.epoch != meta.epoch {
            let expected = session.epoch;
            return FetchContext::Error(FetchSessionError::InvalidEpoch {
                session_id,
                expected,
                got: meta.epoch,
            });
        }
        if session.uses_topic_ids != uses_topic_ids {
            let uses_topic_ids = session.uses_topic_ids;
            return FetchContext::Error(FetchSessionError::TopicIdMismatch {
                session_id,
                uses_topic_ids,
            });
        }
        session.update(fetch, forgotten);
        if session.is_empty() {
            self.remove(session_id);
            return FetchContext::Sessionless;
        }
        session.epoch = next_epoch(session.epoch);
        let partitions = session.partitions().map(|(k, f)| (k.clone(), *f)).collect();
        self.touch(session_id, now_ms);
        FetchContext::Incremental {
            session_id,
            partitions,
        }
    }

    /// Decides the response to `read` (the partitions read for `ctx`, in order, with what was
    /// asked of each). With `commit`, a full request's session is created and an incremental
    /// one records what it is told; without, nothing changes (the size a quota would count).
    pub fn select(
        &mut self,
        ctx: &FetchContext,
        read: &[(&FetchKey, &PartitionFetch, &PartitionData)],
        commit: bool,
        now_ms: u64,
    ) -> Selection {
        let all = || vec![true; read.len()];
        match ctx {
            FetchContext::Sessionless | FetchContext::Error(_) => Selection {
                session_id: INVALID_SESSION_ID,
                include: all(),
            },
            FetchContext::Full {
                privileged,
                uses_topic_ids,
            } => {
                let session_id = if commit {
                    let partitions = read
                        .iter()
                        .map(|(key, fetch, data)| {
                            let mut p = CachedPartition::new((*key).clone(), **fetch);
                            p.must_respond(data, true);
                            p
                        })
                        .collect();
                    self.maybe_create(*privileged, *uses_topic_ids, partitions, now_ms)
                } else {
                    INVALID_SESSION_ID
                };
                Selection {
                    session_id,
                    include: all(),
                }
            }
            FetchContext::Incremental { session_id, .. } => {
                let include = match self.by_id.get_mut(session_id) {
                    Some(s) => s.select(
                        &read.iter().map(|(k, _, d)| (*k, *d)).collect::<Vec<_>>(),
                        commit,
                    ),
                    // Evicted meanwhile: the answer is still valid with everything in it.
                    None => all(),
                };
                Selection {
                    session_id: *session_id,
                    include,
                }
            }
        }
    }

    /// Creates a session if there is a free slot or one can be evicted (Kafka's
    /// `maybeCreateSession`); returns its id, or 0.
    fn maybe_create(
        &mut self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<CachedPartition>,
        now_ms: u64,
    ) -> i32 {
        if partitions.is_empty() {
            return INVALID_SESSION_ID;
        }
        let size = partitions.len();
        if self.by_id.len() >= self.config.max_slots && !self.try_evict(privileged, size, now_ms) {
            return INVALID_SESSION_ID;
        }
        let id = self.new_session_id();
        self.followers += usize::from(privileged);
        self.by_id.insert(
            id,
            FetchSession::new(id, privileged, uses_topic_ids, partitions, now_ms),
        );
        self.touch(id, now_ms);
        id
    }

    fn new_session_id(&self) -> i32 {
        loop {
            let id = rand::random::<i32>();
            if id > 0 && !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// Evicts one session to make room for a new one of `size` partitions, if Kafka's rules
    /// allow (see the module docs).
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: u64) -> bool {
        let Some(lru) = self.by_id.values().min_by_key(|s| (s.last_used_ms, s.id)) else {
            return false;
        };
        if now_ms.saturating_sub(lru.last_used_ms) > self.config.eviction_ms {
            let id = lru.id;
            self.evict(id);
            return true;
        }
        let candidate = self
            .by_id
            .values()
            .filter(|s| {
                if privileged {
                    s.evictable_by_privileged
                } else {
                    s.evictable_by_all
                }
            })
            .min_by_key(|s| s.evictable_key());
        match candidate {
            Some(c) if (privileged, size, 0) >= c.evictable_key() => {
                let id = c.id;
                self.evict(id);
                true
            }
            _ => false,
        }
    }

    fn evict(&mut self, id: i32) {
        if self.remove(id).is_some() {
            self.evictions += 1;
        }
    }

    fn remove(&mut self, id: i32) -> Option<FetchSession> {
        let s = self.by_id.remove(&id)?;
        self.num_partitions -= s.cached_size;
        self.followers -= usize::from(s.privileged);
        Some(s)
    }

    /// Marks a session used now, and recomputes its eviction key (Kafka's `touch`).
    fn touch(&mut self, id: i32, now_ms: u64) {
        let eviction_ms = self.config.eviction_ms;
        let Some(s) = self.by_id.get_mut(&id) else {
            return;
        };
        self.num_partitions = self.num_partitions - s.cached_size + s.partitions.len();
        s.cached_size = s.partitions.len();
        s.last_used_ms = now_ms;
        let old = now_ms.saturating_sub(s.creation_ms) > eviction_ms;
        s.evictable_by_privileged = !s.privileged || old;
        s.evictable_by_all = old;
    }
}

/// The cache `KafkaApis` holds: [`Sessions`] behind a lock, and its metrics.
#[derive(Debug)]
pub struct FetchSessionCache {
    // Short sections that never await: opening a request's context and choosing its answer.
    sessions: Mutex<Sessions>,
    metrics: FetchSessionMetrics,
}

impl FetchSessionCache {
    pub fn new(config: FetchSessionCacheConfig, metrics: FetchSessionMetrics) -> FetchSessionCache {
        FetchSessionCache {
            sessions: Mutex::new(Sessions::new(config)),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`Sessions::new_context`]; counts the request by its kind of context.
    pub fn new_context(
        &self,
        meta: FetchMetadata,
        follower: bool,
        uses_topic_ids: bool,
        fetch: &[(FetchKey, PartitionFetch)],
        forgotten: &[FetchKey],
        now_ms: u64,
    ) -> FetchContext {
        let mut s = self.lock();
        let ctx = s.new_context(meta, follower, uses_topic_ids, fetch, forgotten, now_ms);
        self.metrics.record(&s);
        let kind = if follower { "follower" } else { "consumer" };
        self.metrics
            .requests
            .with_label_values(&[kind, ctx.label()])
            .inc();
        ctx
    }

    /// See [`Sessions::select`].
    pub fn select(
        &self,
        ctx: &FetchContext,
        read: &[(&FetchKey, &PartitionFetch, &PartitionData)],
        commit: bool,
        now_ms: u64,
    ) -> Selection {
        let mut s = self.lock();
        let selection = s.select(ctx, read, commit, now_ms);
        if commit {
            self.metrics.record(&s);
        }
        selection
    }
}

/// The cache's metrics (Kafka's `FetchSessionCache` MBean: NumIncrementalFetchSessions,
/// NumIncrementalFetchPartitionsCached, IncrementalFetchSessionEvictionsPerSec), and fetch
/// requests by how they were served.
#[derive(Debug, Clone)]
pub struct FetchSessionMetrics {
    pub sessions: IntGaugeVec,
    pub partitions: IntGauge,
    pub evictions: IntCounter,
    pub requests: IntCounterVec,
}

impl FetchSessionMetrics {
    pub fn new(r: &Registry) -> FetchSessionMetrics {
        FetchSessionMetrics {
            sessions: gauge_vec(r, "strata_fetch_session_cache_sessions", "Incremental fetch sessions in the cache, by kind (consumer, follower).", &["kind"]),
            partitions: gauge(r, "strata_fetch_session_cache_partitions", "Partitions across all incremental fetch sessions."),
            evictions: counter(r, "strata_fetch_session_cache_evictions_total", "Incremental fetch sessions evicted to make room for new ones."),
            requests: counter_vec(
                r,
                "strata_fetch_requests_total",
                "Fetch requests by fetcher kind (consumer, follower) and how they were served (sessionless, full, incremental, error).",
                &["kind", "context"],
            ),
        }
    }

    fn record(&self, s: &Sessions) {
        self.sessions
            .with_label_values(&["follower"])
            .set(s.followers as i64);
        self.sessions
            .with_label_values(&["consumer"])
            .set((s.len() - s.followers) as i64);
        self.partitions.set(s.num_partitions as i64);
        let counted = self.evictions.get();
        if s.evictions > counted {
            self.evictions.inc_by(s.evictions - counted);
        }
    }
}

#[cfg(test)]
mod tests;
