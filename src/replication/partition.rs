//! `Partition`: one partition's replica on this broker — its log, its role, its high watermark.
//!
//! The high watermark is the offset below which records are committed: visible to consumers and
//! safe to acknowledge with acks=all. On the leader it is the smallest end offset across the ISR
//! (see [`isr::high_watermark`]), where the leader's own end is its durable offset under group
//! commit (what an fsync has covered) and its log end offset under the interval flush policy.
//! A follower learns it from its leader's fetch responses. It only moves forward within a
//! leadership; a replicated partition checkpoints it, and starts from the checkpoint after a
//! restart rather than from its log end, whose tail may never have been committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

mod checks;

use super::delayed_fetch::FetchWakeups;
use super::isr::{self, FollowerState};
use crate::clock::SharedClock;
use crate::controller::PartitionRegistration;
use crate::log::remote::{RemoteLog, TieredPartition};
use crate::log::{
    checkpoint, FetchDataInfo, FlushPolicy, LogAppendInfo, LogError, PartitionLog, UnifiedLog,
};
use crate::model::{
    BrokerId, LeaderEpoch, Offset, ProducerEpoch, ProducerId, TopicId, TopicPartition,
};
use crate::protocol::control::EndTransactionMarker;
use checks::check_leader;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("broker {local} is not the leader of {tp} (leader {leader})")]
    NotLeader {
        tp: TopicPartition,
        local: BrokerId,
        leader: BrokerId,
    },
    #[error("{tp}: request epoch {requested} is older than the current leader epoch {current}")]
    FencedLeaderEpoch {
        tp: TopicPartition,
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("{tp}: request epoch {requested} is newer than the current leader epoch {current}")]
    UnknownLeaderEpoch {
        tp: TopicPartition,
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("{tp}: {isr} in-sync replicas, fewer than min.insync.replicas {min_isr}")]
    NotEnoughReplicas {
        tp: TopicPartition,
        isr: usize,
        min_isr: usize,
    },
    #[error("{tp}: written, but the ISR shrank to {isr}, below min.insync.replicas {min_isr}")]
    NotEnoughReplicasAfterAppend {
        tp: TopicPartition,
        isr: usize,
        min_isr: usize,
    },
    #[error("{tp}: broker {replica} is not a replica of this partition")]
    UnknownReplica {
        tp: TopicPartition,
        replica: BrokerId,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The leadership facts of a partition, as the metadata image last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: BrokerId,
    pub leader_epoch: LeaderEpoch,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub partition_epoch: i32,
}

impl From<&PartitionRegistration> for PartitionState {
    fn from(r: &PartitionRegistration) -> Self {
        PartitionState {
            leader: r.leader,
            leader_epoch: r.leader_epoch,
            replicas: r.replicas.clone(),
            isr: r.isr.clone(),
            partition_epoch: r.partition_epoch,
        }
    }
}

/// What a follower's fetch gets from the leader.
#[derive(Debug)]
pub struct FollowerFetch {
    /// When the follower's last fetched epoch ends earlier here (or is unknown): the epoch and
    /// its end offset on the leader; the follower truncates and fetches again. No records then.
    pub diverging: Option<(LeaderEpoch, Offset)>,
    pub records: bytes::Bytes,
    pub high_watermark: Offset,
    pub local_log_start_offset: Offset,
}

/// An ISR change this leader has asked the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub topic_id: TopicId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// The leader-only part of the state, with the partition state it belongs to.
#[derive(Debug)]
struct Replicas {
    state: PartitionState,
    followers: HashMap<BrokerId, FollowerState>,
    /// An ISR change sent to the controller and not yet seen in the image, with when it went.
    pending_isr: Option<(Vec<BrokerId>, i64)>,
}

impl Replicas {
    /// The ISR the high watermark must respect: the current one plus members being added
    /// (Kafka's "maximal ISR"), so a follower counted in sync by the controller has every
    /// committed record.
    fn maximal_isr(&self) -> Vec<BrokerId> {
        let mut isr = self.state.isr.clone();
        if let Some((pending, _)) = &self.pending_isr {
            isr.extend(pending.iter().filter(|b| !self.state.isr.contains(b)));
        }
        isr
    }
}

/// How long an ISR proposal may stay unanswered before it is sent again.
const ISR_PROPOSAL_RETRY_MS: i64 = 5_000;

#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: TopicId,
    /// The whole log: the local log and, on a broker with tiered storage, the remote part.
    log: PartitionLog,
    local: BrokerId,
    clock: SharedClock,
    // Short sections only: read or replace the state, never across I/O or `.await`.
    replicas: Mutex<Replicas>,
    high_watermark: AtomicI64,
    checkpointed_high_watermark: AtomicI64,
    min_insync_replicas: AtomicI64,
    /// Wakes the fetches long-polling this partition, and no others.
    fetch_wakeups: FetchWakeups,
    /// Bumped when this partition's high watermark or leadership changes; acks=all waits on it.
    commits: watch::Sender<u64>,
    /// The leader epoch of the last leader append with the offset of its first append, and the
    /// epoch of the last commit of such records, so that the first append and the first
    /// commit in a new epoch are logged once each (failover steps).
    appended_epoch: AtomicI32,
    epoch_first_offset: AtomicI64,
    committed_epoch: AtomicI32,
}

impl Partition {
    pub fn new(
        tp: TopicPartition,
        topic_id: TopicId,
        log: Arc<UnifiedLog>,
        local: BrokerId,
        state: PartitionState,
        min_insync_replicas: usize,
        clock: SharedClock,
    ) -> Partition {
        let leo = log.log_end_offset();
        // A lone replica's log is all committed once recovered. A replicated one may hold a
        // tail its leader never committed: start from the checkpoint and learn the rest.
        let hw = if state.replicas.len() <= 1 {
            leo
        } else {
            let checkpointed = checkpoint::read_offset(&log.dir(), checkpoint::HIGH_WATERMARK_FILE);
            Offset(
                checkpointed
                    .unwrap_or(0)
                    .clamp(log.local_log_start_offset().0, leo.0),
            )
        };
        let now = clock.monotonic_ms();
        let followers = followers_for(&state, local, now);
        Partition {
            tp,
            topic_id,
            log: PartitionLog::new(log),
            local,
            clock,
            replicas: Mutex::new(Replicas {
                state,
                followers,
                pending_isr: None,
            }),
            high_watermark: AtomicI64::new(hw.0),
            checkpointed_high_watermark: AtomicI64::new(hw.0),
            min_insync_replicas: AtomicI64::new(min_insync_replicas as i64),
            fetch_wakeups: FetchWakeups::default(),
            commits: watch::channel(0).0,
            appended_epoch: AtomicI32::new(LeaderEpoch::UNKNOWN.0),
            epoch_first_offset: AtomicI64::new(i64::MAX),
            committed_epoch: AtomicI32::new(LeaderEpoch::UNKNOWN.0),
        }
    }

    /// Pairs the partition's log with its remote part (tiered storage).
    pub fn with_remote_log(mut self, remote: RemoteLog) -> Partition {
        self.log = self.log.with_remote(remote);
        self
    }

    /// The local log.
    pub fn log(&self) -> &Arc<UnifiedLog> {
        self.log.local()
    }

    /// The whole log, local and remote: what fetch, ListOffsets and DeleteRecords read.
    pub fn log_view(&self) -> &PartitionLog {
        &self.log
    }

    fn lock(&self) -> MutexGuard<'_, Replicas> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> PartitionState {
        self.lock().state.clone()
    }

    /// Takes the partition state from a new image. Becoming leader (or leader at a new epoch)
    /// starts a fresh view of the followers; losing leadership wakes every acks=all waiter,
    /// which then answers NOT_LEADER_OR_FOLLOWER.
    pub fn update_state(&self, state: PartitionState, min_insync_replicas: usize) {
        self.min_insync_replicas
            .store(min_insync_replicas as i64, Ordering::Relaxed);
        let leads = state.leader == self.local;
        let leadership_changed;
        {
            let mut r = self.lock();
            if r.state == state {
                return;
            }
            leadership_changed =
                r.state.leader != state.leader || r.state.leader_epoch != state.leader_epoch;
            let new_leadership = leads
                && (r.state.leader != self.local || r.state.leader_epoch != state.leader_epoch);
            if new_leadership {
                r.followers = followers_for(&state, self.local, self.clock.monotonic_ms());
                r.pending_isr = None;
            } else if !leads {
                r.followers.clear();
                r.pending_isr = None;
            } else if r.state.partition_epoch != state.partition_epoch {
                // The controller answered (or another change won): propose afresh from here.
                r.pending_isr = None;
                for b in &state.replicas {
                    if *b != self.local && !r.followers.contains_key(b) {
                        r.followers
                            .insert(*b, FollowerState::new(self.clock.monotonic_ms()));
                    }
                }
            }
            if leadership_changed && state.replicas.len() > 1 {
                tracing::info!(
                    partition = %self.tp,
                    leader = state.leader.0,
                    leader_epoch = state.leader_epoch.0,
                    isr = ?state.isr.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "partition leadership changed"
                );
            }
            r.state = state;
        }
        if leads {
            self.advance_high_watermark();
        }
        self.commits.send_modify(|v| *v += 1);
        // Waiting fetches read again: a former leader's answer NOT_LEADER_OR_FOLLOWER at once.
        self.fetch_wakeups.reset();
    }

    /// What wakes the fetches waiting on this partition (see [`super::delayed_fetch`]).
    pub fn fetch_wakeups(&self) -> &FetchWakeups {
        &self.fetch_wakeups
    }

    pub fn is_leader(&self) -> bool {
        self.lock().state.leader == self.local
    }

    /// More than one replica: followers fetch from the leader.
    pub fn is_replicated(&self) -> bool {
        self.lock().state.replicas.len() > 1
    }

    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire))
    }

    fn min_isr(&self) -> usize {
        self.min_insync_replicas.load(Ordering::Relaxed).max(1) as usize
    }

    /// Checks that this broker leads the partition at `epoch` (-1: any epoch).
    pub fn check_leader(&self, epoch: LeaderEpoch) -> Result<PartitionState, PartitionError> {
        let state = self.state();
        check_leader(&self.tp, self.local, &state, epoch)?;
        Ok(state)
    }

    /// Appends a producer's batches at the current leader epoch, which it returns for
    /// [`Partition::wait_committed`]. `acks == -1` requires `min.insync.replicas` in the ISR.
    pub fn append_as_leader(
        &self,
        records: bytes::Bytes,
        acks: i16,
    ) -> Result<(LogAppendInfo, LeaderEpoch), PartitionError> {
        self.append_as_leader_with(records, acks, None)
    }

    /// [`Partition::append_as_leader`] with a KIP-890 verification guard
    /// (`UnifiedLog::append_as_leader_with`).
    pub fn append_as_leader_with(
        &self,
        records: bytes::Bytes,
        acks: i16,
        verification: Option<crate::log::VerificationGuard>,
    ) -> Result<(LogAppendInfo, LeaderEpoch), PartitionError> {
        let state = self.check_leader(LeaderEpoch::UNKNOWN)?;
        let min_isr = self.min_isr();
        if acks == -1 && state.isr.len() < min_isr {
            return Err(PartitionError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr: state.isr.len(),
                min_isr,
            });
        }
        let info = self
            .log()
            .append_as_leader_with(records, state.leader_epoch, verification)?;
        if state.replicas.len() > 1 {
            self.fetch_wakeups.appended();
            let epoch = state.leader_epoch.0;
            if self.appended_epoch.load(Ordering::Acquire) != epoch {
                self.epoch_first_offset
                    .store(info.first_offset.0, Ordering::Release);
                self.appended_epoch.store(epoch, Ordering::Release);
                tracing::info!(
                    partition = %self.tp,
                    leader_epoch = epoch,
                    base_offset = info.first_offset.0,
                    "first append in a new leader epoch"
                );
            }
        }
        if !self.waits_for_fsync() {
            self.advance_high_watermark();
        }
        Ok((info, state.leader_epoch))
    }

    /// The last stable offset: below both the high watermark and the first offset of any open
    /// transaction. read_committed consumers read up to it.
    pub fn last_stable_offset(&self) -> Offset {
        let hw = self.high_watermark();
        self.log().first_unstable_offset().map_or(hw, |f| f.min(hw))
    }

    /// Appends the marker that ends `producer_id`'s transaction, as leader (WriteTxnMarkers,
    /// or the transaction coordinator in process), and returns the leader epoch to wait on with
    /// acks=-1, as Kafka writes markers. Read_committed fetches waiting here are woken: the
    /// last stable offset may have moved.
    pub fn append_txn_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        marker: EndTransactionMarker,
    ) -> Result<(LogAppendInfo, LeaderEpoch), PartitionError> {
        let state = self.check_leader(LeaderEpoch::UNKNOWN)?;
        let min_isr = self.min_isr();
        if state.isr.len() < min_isr {
            return Err(PartitionError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr: state.isr.len(),
                min_isr,
            });
        }
        let info = self.log().append_txn_marker(
            producer_id,
            producer_epoch,
            marker,
            state.leader_epoch,
        )?;
        if state.replicas.len() > 1 {
            self.fetch_wakeups.appended();
        }
        self.fetch_wakeups.high_watermark_advanced();
        if !self.waits_for_fsync() {
            self.advance_high_watermark();
        }
        Ok((info, state.leader_epoch))
    }

    /// [`append_txn_marker`](Self::append_txn_marker), answered once the marker is committed
    /// (every ISR member has it): what the transaction coordinator calls for a partition this
    /// broker leads.
    pub async fn write_txn_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        marker: EndTransactionMarker,
    ) -> Result<LogAppendInfo, PartitionError> {
        let (info, epoch) = self.append_txn_marker(producer_id, producer_epoch, marker)?;
        self.wait_committed(info.last_offset.next(), -1, epoch)
            .await?;
        Ok(info)
    }

    fn waits_for_fsync(&self) -> bool {
        self.log().flush_policy() == FlushPolicy::GroupCommit
    }

    /// Resolves once what the leader appended below `end_offset` at `leader_epoch` is
    /// acknowledged as `acks` asks: durable on the leader (acks=1 or 0: after the group-commit
    /// fsync, or at once under the interval policy), or committed (acks=-1: below the high
    /// watermark, every ISR member has it, and the ISR still has `min.insync.replicas`).
    /// Losing the leadership meanwhile is NOT_LEADER_OR_FOLLOWER: the records may be truncated.
    pub async fn wait_committed(
        &self,
        end_offset: Offset,
        acks: i16,
        leader_epoch: LeaderEpoch,
    ) -> Result<(), PartitionError> {
        let mut changes = self.commits.subscribe();
        if self.waits_for_fsync() {
            self.log().wait_durable(end_offset).await?;
        }
        self.advance_high_watermark();
        if acks != -1 {
            return Ok(());
        }
        loop {
            changes.borrow_and_update();
            let state = self.state();
            if state.leader != self.local || state.leader_epoch != leader_epoch {
                return Err(PartitionError::NotLeader {
                    tp: self.tp.clone(),
                    local: self.local,
                    leader: state.leader,
                });
            }
            if self.high_watermark() >= end_offset {
                let min_isr = self.min_isr();
                if state.isr.len() < min_isr {
                    return Err(PartitionError::NotEnoughReplicasAfterAppend {
                        tp: self.tp.clone(),
                        isr: state.isr.len(),
                        min_isr,
                    });
                }
                return Ok(());
            }
            if changes.changed().await.is_err() {
                return Err(PartitionError::NotLeader {
                    tp: self.tp.clone(),
                    local: self.local,
                    leader: state.leader,
                });
            }
        }
    }

    /// The leader's own committed end: durable under group commit, else its log end.
    fn leader_end(&self) -> Offset {
        if self.waits_for_fsync() {
            self.log().durable_offset()
        } else {
            self.log().log_end_offset()
        }
    }

    /// On the leader, moves the high watermark to what every ISR member now holds, waking
    /// long-polling fetches and acks=all waiters. Followers learn theirs from the leader.
    pub fn advance_high_watermark(&self) {
        let leader_end = self.leader_end();
        let (candidate, epoch, replicated) = {
            let r = self.lock();
            if r.state.leader != self.local {
                return;
            }
            let candidate = isr::high_watermark(
                self.high_watermark(),
                leader_end,
                self.local,
                &r.maximal_isr(),
                &r.followers,
            );
            (candidate, r.state.leader_epoch, r.state.replicas.len() > 1)
        };
        // The first commit of records appended in this epoch (the high watermark may move
        // earlier, over records of the previous leader, once followers report their ends).
        if self.raise_high_watermark(candidate)
            && replicated
            && self.appended_epoch.load(Ordering::Acquire) == epoch.0
            && candidate.0 > self.epoch_first_offset.load(Ordering::Acquire)
            && self.committed_epoch.swap(epoch.0, Ordering::Relaxed) != epoch.0
        {
            tracing::info!(
                partition = %self.tp,
                leader_epoch = epoch.0,
                high_watermark = candidate.0,
                "first commit in a new leader epoch"
            );
        }
    }

    /// Raises the high watermark to `candidate`; whether it moved.
    fn raise_high_watermark(&self, candidate: Offset) -> bool {
        let previous = self.high_watermark.fetch_max(candidate.0, Ordering::AcqRel);
        if candidate.0 > previous {
            self.fetch_wakeups.high_watermark_advanced();
            self.commits.send_modify(|v| *v += 1);
            true
        } else {
            false
        }
    }

    /// Reads committed batches for a consumer, from `offset`, up to `max_bytes`.
    pub fn read_committed(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo, PartitionError> {
        Ok(self
            .log()
            .read(offset, max_bytes, self.high_watermark(), min_one_batch)?)
    }

    /// Serves a follower's fetch on the leader: checks the leadership and the follower's last
    /// fetched epoch (KIP-320: a follower whose log diverged is told where to truncate), records
    /// the follower's progress, advances the high watermark, and reads from `fetch_offset` up
    /// to the log end (followers copy uncommitted records too).
    pub fn fetch_for_follower(
        &self,
        replica: BrokerId,
        fetch_offset: Offset,
        current_leader_epoch: LeaderEpoch,
        last_fetched_epoch: Option<LeaderEpoch>,
        max_bytes: usize,
    ) -> Result<FollowerFetch, PartitionError> {
        let state = self.check_leader(current_leader_epoch)?;
        if replica == self.local || !state.replicas.contains(&replica) {
            return Err(PartitionError::UnknownReplica {
                tp: self.tp.clone(),
                replica,
            });
        }
        let local_log_start_offset = self.log().local_log_start_offset();
        let leo = self.log().log_end_offset();
        // Below the log start no epoch can be checked: the follower starts over (at the log
        // start, or after the remote log of a tiered partition).
        if fetch_offset < local_log_start_offset {
            return Err(PartitionError::Log(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: local_log_start_offset,
                log_end_offset: leo,
            }));
        }
        if let Some(epoch) = last_fetched_epoch {
            let diverging = match self.log().end_offset_for_epoch(epoch) {
                Some((e, end)) if e == epoch && end >= fetch_offset => None,
                Some((e, end)) => Some((e, end.min(fetch_offset))),
                // Older than anything this log still knows: start over at its beginning.
                None => Some((LeaderEpoch::UNKNOWN, local_log_start_offset)),
            };
            if diverging.is_some() {
                return Ok(FollowerFetch {
                    diverging,
                    records: bytes::Bytes::new(),
                    high_watermark: self.high_watermark(),
                    local_log_start_offset,
                });
            }
        }
        if fetch_offset > leo {
            return Err(PartitionError::Log(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: local_log_start_offset,
                log_end_offset: leo,
            }));
        }
        let now = self.clock.monotonic_ms();
        {
            let mut r = self.lock();
            let f = r
                .followers
                .entry(replica)
                .or_insert_with(|| FollowerState::new(now));
            *f = f.on_fetch(fetch_offset, leo, now);
        }
        self.advance_high_watermark();
        let log = self.log();
        let read = log.read(fetch_offset, max_bytes, leo, true);
        let info = read.inspect_err(|e| log.read_failed(fetch_offset, e))?;
        Ok(FollowerFetch {
            diverging: None,
            records: info.records,
            high_watermark: self.high_watermark(),
            local_log_start_offset,
        })
    }

    /// On the leader: the ISR change due now (laggards out, caught-up followers in), marked as
    /// pending so it is proposed once; `None` when nothing is due or a proposal is in flight.
    pub fn propose_isr_change(&self, lag_max_ms: i64) -> Option<IsrProposal> {
        let now = self.clock.monotonic_ms();
        let hw = self.high_watermark();
        let latest_epoch = self.log().latest_epoch_entry();
        let leo = self.log().log_end_offset();
        let mut r = self.lock();
        if r.state.leader != self.local || r.state.replicas.len() <= 1 {
            return None;
        }
        // Nothing written in this leadership yet: it would start at the log end.
        let epoch_start = latest_epoch
            .filter(|(e, _)| *e == r.state.leader_epoch)
            .map_or(leo, |(_, start)| start);
        if let Some((_, sent)) = &r.pending_isr {
            if now - sent < ISR_PROPOSAL_RETRY_MS {
                return None;
            }
        }
        let shrunk = isr::shrink_isr(&r.state.isr, self.local, &r.followers, now, lag_max_ms);
        let base = shrunk.clone().unwrap_or_else(|| r.state.isr.clone());
        let expanded = isr::expand_isr(&r.state.replicas, &base, &r.followers, hw, epoch_start);
        let new_isr = expanded.or(shrunk)?;
        r.pending_isr = Some((new_isr.clone(), now));
        Some(IsrProposal {
            topic_id: self.topic_id,
            leader_epoch: r.state.leader_epoch,
            partition_epoch: r.state.partition_epoch,
            new_isr,
        })
    }

    /// The controller refused or never answered a proposal: allow another.
    pub fn isr_proposal_failed(&self) {
        self.lock().pending_isr = None;
    }

    /// On the leader of a mirror topic: appends batches copied from the source cluster at the
    /// source's offsets, stamped with this leader's epoch (`UnifiedLog::append_as_mirror`), wakes followers and moves the
    /// high watermark as a producer's append does. Under `log.flush.policy=fsync` the caller
    /// awaits durability and calls [`advance_high_watermark`](Self::advance_high_watermark).
    pub fn append_as_mirror(&self, records: bytes::Bytes) -> Result<LogAppendInfo, PartitionError> {
        let state = self.check_leader(LeaderEpoch::UNKNOWN)?;
        let info = self.log().append_as_mirror(records, state.leader_epoch)?;
        self.fetch_wakeups.appended();
        self.advance_high_watermark();
        Ok(info)
    }

    /// On a follower: appends what the leader sent (offsets as the leader assigned them) and
    /// takes the leader's high watermark, capped at the local log end.
    pub fn append_as_follower(
        &self,
        records: bytes::Bytes,
        leader_high_watermark: Offset,
    ) -> Result<Option<LogAppendInfo>, PartitionError> {
        let info = if records.is_empty() {
            None
        } else {
            Some(self.log().append_as_follower(records)?)
        };
        self.take_leader_high_watermark(leader_high_watermark);
        Ok(info)
    }

    fn take_leader_high_watermark(&self, leader_high_watermark: Offset) {
        let hw = leader_high_watermark.min(self.log().log_end_offset());
        let _ = self.raise_high_watermark(hw);
    }

    /// On a follower: removes every record at or after `offset` (a diverged tail).
    pub fn truncate_to(&self, offset: Offset) -> Result<(), PartitionError> {
        self.log().truncate_to(offset)?;
        self.clamp_high_watermark();
        self.fetch_wakeups.reset();
        Ok(())
    }

    /// On a follower: `restart` leaves the local log empty at `offset` (after the remote log, or
    /// at the leader's log start when it fell behind it).
    pub fn restart_log_at(
        &self,
        offset: Offset,
        restart: impl FnOnce(&UnifiedLog) -> Result<(), LogError>,
    ) -> Result<(), PartitionError> {
        restart(self.log())?;
        self.high_watermark.store(offset.0, Ordering::Release);
        self.fetch_wakeups.reset();
        Ok(())
    }

    /// Truncations below the high watermark (DeleteRecords past it) are refused by the caller;
    /// after a truncation the high watermark is clamped to the new end.
    pub fn clamp_high_watermark(&self) {
        let leo = self.log().log_end_offset();
        self.high_watermark.fetch_min(leo.0, Ordering::AcqRel);
    }

    /// Writes the high watermark checkpoint of a replicated partition if it moved.
    pub fn checkpoint_high_watermark(&self) -> Result<(), PartitionError> {
        let hw = self.high_watermark().0;
        if !self.is_replicated() || self.checkpointed_high_watermark.load(Ordering::Relaxed) == hw {
            return Ok(());
        }
        checkpoint::write_offset(&self.log().dir(), checkpoint::HIGH_WATERMARK_FILE, hw)?;
        self.checkpointed_high_watermark
            .store(hw, Ordering::Relaxed);
        Ok(())
    }
}

/// What tiering needs of a replica: its names, its local log and its leadership facts.
impl TieredPartition for Partition {
    fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    fn topic_id(&self) -> TopicId {
        self.topic_id
    }

    fn local_log(&self) -> &Arc<UnifiedLog> {
        self.log()
    }

    fn is_leader(&self) -> bool {
        Partition::is_leader(self)
    }

    fn leader_epoch(&self) -> LeaderEpoch {
        self.state().leader_epoch
    }

    fn high_watermark(&self) -> Offset {
        Partition::high_watermark(self)
    }

    fn last_stable_offset(&self) -> Offset {
        Partition::last_stable_offset(self)
    }

    fn local_log_restarted(&self) {
        self.advance_high_watermark();
    }
}

fn followers_for(
    state: &PartitionState,
    local: BrokerId,
    now_ms: i64,
) -> HashMap<BrokerId, FollowerState> {
    if state.leader != local {
        return HashMap::new();
    }
    state
        .replicas
        .iter()
        .filter(|b| **b != local)
        .map(|b| (*b, FollowerState::new(now_ms)))
        .collect()
}
