//! The transaction state machine, pure: (state, request or tick) -> (state, records to write,
//! markers to send, replies). One [`TxnShard`] holds the transactional ids of one
//! `__transaction_state` partition; the shard task (`txn::shard`) writes the records, sends the
//! replies once they are committed, then sends the markers.
//!
//! A transactional id moves through Kafka's states:
//!
//! ```text
//! Empty --AddPartitions--> Ongoing --EndTxn--> PrepareCommit | PrepareAbort
//!   ^                                              | markers written on every partition
//!   +--InitProducerId-- CompleteCommit | CompleteAbort <-+
//! ```
//!
//! InitProducerId on an Ongoing transaction fences the producer: the epoch is bumped
//! (PrepareEpochFence, never written) and the transaction aborted with the new epoch, and the
//! caller is told CONCURRENT_TRANSACTIONS so that it retries once the abort completes. A
//! transaction open longer than its timeout is aborted the same way. Decisions are applied in
//! memory at once; the shard stops and reloads from the log if a write fails, so what was
//! decided but not written is forgotten with it.

use std::collections::BTreeMap;

use super::parked::{take_where, ParkedAdd, PARK_MAX_MS};
use super::records::{TxnLogRecord, TxnLogValue};
use crate::model::TopicPartition;

pub use super::metadata::{TxnConfig, TxnError, TxnMetadata, TxnState, TV2};

/// Identifies the caller waiting for a reply, assigned by the shard task.
pub type Waiter = u64;

#[derive(Debug, Clone)]
pub enum TxnRequest {
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        /// KIP-360: the id and epoch the producer had, or -1/-1.
        producer_id: i64,
        producer_epoch: i16,
        /// A fresh producer id the handler obtained beforehand, used for a new transactional
        /// id or when the epoch space of the current one is exhausted (the decision must stay
        /// pure, and taking an id is a round trip to the controller).
        fresh_producer_id: i64,
    },
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        /// KIP-890 verification by a partition leader: check membership, change nothing.
        verify_only: bool,
        /// The transaction version of the client: 2 when a partition leader adds the partition
        /// for a transaction version 2 producer (Produce v12+, TxnOffsetCommit v5+).
        client_version: i16,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        /// EndTxn v5 (transaction version 2): the epoch is bumped at every transaction's end.
        bump_epoch: bool,
        /// A fresh producer id for when this end exhausts the epochs of the current one
        /// (transaction version 2), or -1: the handler takes one only when the producer's epoch
        /// says it may be needed.
        fresh_producer_id: i64,
    },
    /// Every partition's marker of this transaction is written.
    MarkersWritten {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
    },
    Describe {
        transactional_ids: Vec<String>,
    },
    List {
        states: Vec<String>,
        producer_ids: Vec<i64>,
        /// Only ids whose transaction started longer ago than this (ListTransactions v1,
        /// Kafka's `DurationFilter`), -1 for all.
        min_duration_ms: i64,
        pattern: Option<regex::Regex>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResponse {
    InitProducerId(Result<(i64, i16), TxnError>),
    AddPartitions(Result<(), TxnError>),
    /// Per partition of a verification: in the transaction or not.
    Verify(Result<Vec<(TopicPartition, bool)>, TxnError>),
    EndTxn(Result<(i64, i16), TxnError>),
    Done,
    /// Each asked id with its state, None when unknown here.
    Describe(Vec<(String, Option<TxnMetadata>)>),
    List(Vec<TxnMetadata>),
}

/// Markers to write on `partitions` for a transaction that is prepared to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug, Default)]
pub struct Decision {
    pub records: Vec<TxnLogRecord>,
    /// Started once `records` are committed.
    pub markers: Vec<MarkerJob>,
    pub replies: Vec<(Waiter, TxnResponse)>,
    /// Transactions this decision aborted because they passed their timeout.
    pub timed_out: u64,
    /// Transactions this decision completed, by outcome.
    pub committed: u64,
    pub aborted: u64,
}

impl Decision {
    fn reply(waiter: Waiter, r: TxnResponse) -> Decision {
        Decision {
            replies: vec![(waiter, r)],
            ..Decision::default()
        }
    }
}

/// The transactional ids of one `__transaction_state` partition.
#[derive(Debug)]
pub struct TxnShard {
    pub config: TxnConfig,
    pub txns: BTreeMap<String, TxnMetadata>,
    /// AddPartitionsToTxn requests waiting for their previous transaction to complete.
    parked: Vec<ParkedAdd>,
}

fn record(m: &TxnMetadata) -> TxnLogRecord {
    TxnLogRecord {
        transactional_id: m.transactional_id.clone(),
        value: Some(TxnLogValue::of(m)),
    }
}

impl TxnShard {
    pub fn new(config: TxnConfig) -> TxnShard {
        TxnShard {
            config,
            txns: BTreeMap::new(),
            parked: Vec::new(),
        }
    }

    /// Folds one record of the log into the state (loading).
    pub fn replay(&mut self, r: TxnLogRecord) {
        match r.value {
            None => {
                self.txns.remove(&r.transactional_id);
            }
            Some(v) => {
                self.txns.insert(
                    r.transactional_id.clone(),
                    TxnMetadata {
                        transactional_id: r.transactional_id,
                        producer_id: v.producer_id,
                        producer_epoch: v.producer_epoch,
                        last_producer_epoch: -1,
                        timeout_ms: v.timeout_ms,
                        state: v.state,
                        partitions: v.partitions,
                        start_ms: v.start_ms,
                        last_update_ms: v.last_update_ms,
                        previous_producer_id: v.previous_producer_id,
                        next_producer_id: v.next_producer_id,
                        client_version: v.client_version,
                    },
                );
            }
        }
    }

    /// After a load: the markers of every transaction that was prepared but not completed are
    /// sent again (writing a marker twice is harmless to the partition).
    pub fn recover(&self) -> Decision {
        let markers = self
            .txns
            .values()
            .filter_map(|m| match m.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => Some(MarkerJob {
                    transactional_id: m.transactional_id.clone(),
                    producer_id: m.producer_id,
                    producer_epoch: m.producer_epoch,
                    commit: m.state == TxnState::PrepareCommit,
                    partitions: m.partitions.iter().cloned().collect(),
                }),
                _ => None,
            })
            .collect();
        Decision {
            markers,
            ..Decision::default()
        }
    }

    pub fn handle(&mut self, waiter: Waiter, request: TxnRequest, now_ms: i64) -> Decision {
        match request {
            TxnRequest::InitProducerId {
                transactional_id,
                timeout_ms,
                producer_id,
                producer_epoch,
                fresh_producer_id,
            } => self.init_producer_id(
                waiter,
                transactional_id,
                timeout_ms,
                (producer_id, producer_epoch),
                fresh_producer_id,
                now_ms,
            ),
            TxnRequest::AddPartitions {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                verify_only,
                client_version,
            } => {
                if verify_only {
                    let r = self.verify(&transactional_id, producer_id, producer_epoch, partitions);
                    return Decision::reply(waiter, TxnResponse::Verify(r));
                }
                self.add_partitions(
                    waiter,
                    &transactional_id,
                    (producer_id, producer_epoch),
                    partitions,
                    client_version,
                    now_ms,
                )
            }
            TxnRequest::EndTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                bump_epoch,
                fresh_producer_id,
            } => {
                let producer = (producer_id, producer_epoch);
                if bump_epoch {
                    let r = self.end_txn_v2(
                        &transactional_id,
                        producer,
                        commit,
                        fresh_producer_id,
                        now_ms,
                    );
                    let (mut d, answer) = match r {
                        Ok((d, answer)) => (d, Ok(answer)),
                        Err(e) => (Decision::default(), Err(e)),
                    };
                    d.replies.push((waiter, TxnResponse::EndTxn(answer)));
                    return d;
                }
                self.end_txn(waiter, &transactional_id, producer, commit, now_ms)
            }
            TxnRequest::MarkersWritten {
                transactional_id,
                producer_id,
                producer_epoch,
            } => {
                let mut d = self.complete(&transactional_id, producer_id, producer_epoch, now_ms);
                d.replies.push((waiter, TxnResponse::Done));
                d
            }
            TxnRequest::Describe { transactional_ids } => {
                let found = transactional_ids
                    .into_iter()
                    .map(|id| {
                        let m = self.txns.get(&id).cloned();
                        (id, m)
                    })
                    .collect();
                Decision::reply(waiter, TxnResponse::Describe(found))
            }
            TxnRequest::List {
                states,
                producer_ids,
                min_duration_ms,
                pattern,
            } => {
                let listed = self
                    .txns
                    .values()
                    .filter(|m| states.is_empty() || states.iter().any(|s| s == m.state.name()))
                    .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
                    // Kafka's test, in every state: the start of the current or last
                    // transaction (-1 for none since InitProducerId, which always passes).
                    .filter(|m| min_duration_ms < 0 || now_ms - m.start_ms > min_duration_ms)
                    .filter(|m| {
                        pattern
                            .as_ref()
                            .is_none_or(|p| p.is_match(&m.transactional_id))
                    })
                    .cloned()
                    .collect();
                Decision::reply(waiter, TxnResponse::List(listed))
            }
        }
    }

    fn init_producer_id(
        &mut self,
        waiter: Waiter,
        transactional_id: String,
        timeout_ms: i32,
        (producer_id, producer_epoch): (i64, i16),
        fresh_producer_id: i64,
        now_ms: i64,
    ) -> Decision {
        let reply = |r| Decision::reply(waiter, TxnResponse::InitProducerId(r));
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return reply(Err(TxnError::InvalidTransactionTimeout));
        }
        let Some(m) = self.txns.get_mut(&transactional_id) else {
            let m = TxnMetadata::new(
                transactional_id.clone(),
                fresh_producer_id,
                timeout_ms,
                now_ms,
            );
            let d = Decision {
                records: vec![record(&m)],
                replies: vec![(waiter, TxnResponse::InitProducerId(Ok((m.producer_id, 0))))],
                ..Decision::default()
            };
            self.txns.insert(transactional_id, m);
            return d;
        };
        if producer_id >= 0 {
            // KIP-360: the producer says which id and epoch it had. A retry of a bump that
            // already happened gets the current epoch; anything else older is a zombie.
            let current = producer_id == m.producer_id && producer_epoch == m.producer_epoch;
            let retried = producer_id == m.producer_id
                && producer_epoch == m.last_producer_epoch
                && m.state == TxnState::Empty;
            if retried {
                return reply(Ok((m.producer_id, m.producer_epoch)));
            }
            if !current {
                return reply(Err(TxnError::ProducerFenced));
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                reply(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                // Fence the producer that owns the open transaction, abort it with the bumped
                // epoch, and have the caller retry once the abort is complete.
                let mut d = self.fence_and_abort(&transactional_id, now_ms);
                d.replies.push((
                    waiter,
                    TxnResponse::InitProducerId(Err(TxnError::ConcurrentTransactions)),
                ));
                d
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                m.last_producer_epoch = m.producer_epoch;
                // Past the epoch space the id is replaced, as Kafka does.
                if m.producer_epoch >= i16::MAX - 1 {
                    m.producer_id = fresh_producer_id;
                    m.producer_epoch = 0;
                    m.last_producer_epoch = -1;
                } else {
                    m.producer_epoch += 1;
                }
                m.timeout_ms = timeout_ms;
                m.state = TxnState::Empty;
                m.partitions.clear();
                m.start_ms = -1;
                m.last_update_ms = now_ms;
                Decision {
                    records: vec![record(m)],
                    replies: vec![(
                        waiter,
                        TxnResponse::InitProducerId(Ok((m.producer_id, m.producer_epoch))),
                    )],
                    ..Decision::default()
                }
            }
        }
    }

    /// The current producer of `transactional_id`, or why the caller is not it.
    fn owned(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&mut TxnMetadata, TxnError> {
        let m = self
            .txns
            .get_mut(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(m)
    }

    fn add_partitions(
        &mut self,
        waiter: Waiter,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        partitions: Vec<TopicPartition>,
        client_version: i16,
        now_ms: i64,
    ) -> Decision {
        let reply = |r| Decision::reply(waiter, TxnResponse::AddPartitions(r));
        let m = match self.owned(transactional_id, producer_id, producer_epoch) {
            Ok(m) => m,
            Err(e) => return reply(Err(e)),
        };
        match m.state {
            // The previous transaction is writing its markers: decided when it completes.
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.parked.push(ParkedAdd {
                    waiter,
                    transactional_id: transactional_id.to_string(),
                    producer: (producer_id, producer_epoch),
                    partitions,
                    client_version,
                    deadline_ms: now_ms + PARK_MAX_MS,
                });
                return Decision::default();
            }
            TxnState::PrepareEpochFence => return reply(Err(TxnError::ConcurrentTransactions)),
            TxnState::Dead => return reply(Err(TxnError::InvalidTxnState)),
            TxnState::Ongoing if partitions.iter().all(|p| m.partitions.contains(p)) => {
                return reply(Ok(()))
            }
            _ => {}
        }
        if m.state != TxnState::Ongoing {
            m.start_ms = now_ms;
            m.partitions.clear();
        }
        m.client_version = m.client_version.max(client_version);
        m.state = TxnState::Ongoing;
        m.partitions.extend(partitions);
        m.last_update_ms = now_ms;
        Decision {
            records: vec![record(m)],
            replies: vec![(waiter, TxnResponse::AddPartitions(Ok(())))],
            ..Decision::default()
        }
    }

    fn verify(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, bool)>, TxnError> {
        let m = self.owned(transactional_id, producer_id, producer_epoch)?;
        if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(TxnError::ConcurrentTransactions); // as Kafka: the leader retries
        }
        let ongoing = m.state == TxnState::Ongoing;
        Ok(partitions
            .into_iter()
            .map(|p| {
                let inside = ongoing && m.partitions.contains(&p);
                (p, inside)
            })
            .collect())
    }

    /// EndTxn below v5: the epoch stays.
    fn end_txn(
        &mut self,
        waiter: Waiter,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        now_ms: i64,
    ) -> Decision {
        let reply = |r| Decision::reply(waiter, TxnResponse::EndTxn(r));
        let wanted = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        let m = match self.owned(transactional_id, producer_id, producer_epoch) {
            Ok(m) => m,
            Err(e) => return reply(Err(e)),
        };
        match m.state {
            TxnState::Ongoing => {}
            s if s == wanted => return reply(Ok((m.producer_id, m.producer_epoch))),
            TxnState::PrepareCommit if commit => {
                return reply(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::PrepareAbort if !commit => {
                return reply(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::PrepareEpochFence => return reply(Err(TxnError::ProducerFenced)),
            _ => return reply(Err(TxnError::InvalidTxnState)),
        }
        let mut d = Self::prepare(m, commit, now_ms);
        d.replies.push((
            waiter,
            TxnResponse::EndTxn(Ok((m.producer_id, m.producer_epoch))),
        ));
        d
    }

    /// Ongoing -> PrepareCommit/PrepareAbort: the record, and the markers to send after it.
    fn prepare(m: &mut TxnMetadata, commit: bool, now_ms: i64) -> Decision {
        m.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        m.last_update_ms = now_ms;
        Decision {
            records: vec![record(m)],
            markers: vec![MarkerJob {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit,
                partitions: m.partitions.iter().cloned().collect(),
            }],
            ..Decision::default()
        }
    }

    /// Bumps the epoch of an Ongoing transaction (fencing its producer) and aborts it.
    fn fence_and_abort(&mut self, transactional_id: &str, now_ms: i64) -> Decision {
        let Some(m) = self.txns.get_mut(transactional_id) else {
            return Decision::default();
        };
        m.state = TxnState::PrepareEpochFence;
        if m.producer_epoch < i16::MAX {
            m.last_producer_epoch = m.producer_epoch;
            m.producer_epoch += 1;
        }
        Self::prepare(m, false, now_ms)
    }

    /// Every marker is written: PrepareCommit/PrepareAbort -> CompleteCommit/CompleteAbort.
    fn complete(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Decision {
        let Some(m) = self.txns.get_mut(transactional_id) else {
            return Decision::default();
        };
        if m.producer_id != producer_id || m.producer_epoch != producer_epoch {
            return Decision::default();
        }
        let (state, committed) = match m.state {
            TxnState::PrepareCommit => (TxnState::CompleteCommit, true),
            TxnState::PrepareAbort => (TxnState::CompleteAbort, false),
            _ => return Decision::default(),
        };
        m.state = state;
        m.partitions.clear();
        m.last_update_ms = now_ms;
        if m.next_producer_id >= 0 {
            // Transaction version 2 spent the epochs of the id: the producer goes on with the
            // next one, as the EndTxn answer told it.
            m.previous_producer_id = m.producer_id;
            m.producer_id = m.next_producer_id;
            m.producer_epoch = 0;
            m.next_producer_id = -1;
        }
        let mut d = Decision {
            records: vec![record(m)],
            committed: u64::from(committed),
            aborted: u64::from(!committed),
            ..Decision::default()
        };
        for p in take_where(&mut self.parked, |p| p.transactional_id == transactional_id) {
            let next = self.add_partitions(
                p.waiter,
                &p.transactional_id,
                p.producer,
                p.partitions,
                p.client_version,
                now_ms,
            );
            d.records.extend(next.records);
            d.replies.extend(next.replies);
        }
        d
    }

    /// Aborts transactions past their timeout (fencing their producers) and removes
    /// transactional ids idle past `transactional.id.expiration.ms`.
    pub fn tick(&mut self, now_ms: i64) -> Decision {
        let mut d = Decision::default();
        for p in take_where(&mut self.parked, |p| p.deadline_ms <= now_ms) {
            d.replies.push((
                p.waiter,
                TxnResponse::AddPartitions(Err(TxnError::ConcurrentTransactions)),
            ));
        }
        let timed_out: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                m.state == TxnState::Ongoing
                    && m.start_ms >= 0
                    && now_ms - m.start_ms > i64::from(m.timeout_ms)
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for id in timed_out {
            let aborted = self.fence_and_abort(&id, now_ms);
            d.records.extend(aborted.records);
            d.markers.extend(aborted.markers);
            d.timed_out += 1;
        }
        let expired: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                matches!(
                    m.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && now_ms - m.last_update_ms > self.config.id_expiration_ms
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for id in expired {
            self.txns.remove(&id);
            d.records.push(TxnLogRecord {
                transactional_id: id,
                value: None,
            });
        }
        d
    }

    /// When [`tick`](Self::tick) next has something to do, if ever.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.txns
            .values()
            .filter_map(|m| match m.state {
                TxnState::Ongoing if m.start_ms >= 0 => {
                    Some(m.start_ms + i64::from(m.timeout_ms) + 1)
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => Some(
                    m.last_update_ms
                        .saturating_add(self.config.id_expiration_ms)
                        + 1,
                ),
                _ => None,
            })
            .chain(self.parked.iter().map(|p| p.deadline_ms))
            .min()
    }

    /// Open transactions and the start of the oldest, for the metrics.
    pub fn open_summary(&self) -> (usize, Option<i64>) {
        let open = self.txns.values().filter(|m| m.state.is_open());
        let count = open.clone().count();
        let oldest = open.filter(|m| m.start_ms >= 0).map(|m| m.start_ms).min();
        (count, oldest)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[path = "end_txn_v2.rs"]
mod end_txn_v2;
