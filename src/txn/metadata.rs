//! What the coordinator keeps of a transactional id (Kafka's `TransactionMetadata`), its states
//! and the errors its requests get; the transitions are in [`super::state`].

use std::collections::BTreeSet;

use crate::model::TopicPartition;

/// Kafka's `TransactionState`, with its ids in the transaction log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions answer, and filters match.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// A transaction is open from its first partition until its markers are all written.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TxnState::Ongoing
                | TxnState::PrepareCommit
                | TxnState::PrepareAbort
                | TxnState::PrepareEpochFence
        )
    }
}

/// Why a transactional request is refused; mapped to Kafka codes in `handlers::errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the transaction timeout is above transaction.max.timeout.ms or not positive")]
    InvalidTransactionTimeout,
    #[error("the producer id does not belong to this transactional id")]
    InvalidProducerIdMapping,
    #[error("a newer producer with the same transactional id has fenced this one")]
    ProducerFenced,
    #[error("the transaction is completing; retry")]
    ConcurrentTransactions,
    #[error("the request does not fit the transaction's state")]
    InvalidTxnState,
}

/// What the coordinator keeps of one transactional id (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so that a retried request that already succeeded is
    /// recognised; -1 when unknown (after a load).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current transaction began (its first partition), -1 when none is open.
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// Transaction version 2: the producer id before the last change of id (an epoch
    /// overflow), so that a retried EndTxn from before the change is recognised; -1 if none.
    pub previous_producer_id: i64,
    /// Transaction version 2: the producer id to move to when the transaction being completed
    /// exhausted the epochs of the current one; -1 if none.
    pub next_producer_id: i64,
    /// The transaction version of the client's last transaction (Kafka's
    /// `ClientTransactionVersion`): 2 when it ended with EndTxn v5+ or was begun by a partition
    /// leader (Produce v12+), which bumps the epoch at every end; 0 otherwise.
    pub client_version: i16,
}

/// The first transaction version whose transactions end with an epoch bump (KIP-890 part 2).
pub const TV2: i16 = 2;

impl TxnMetadata {
    /// A transactional id's state before its first transaction.
    pub fn new(
        transactional_id: String,
        producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
    ) -> TxnMetadata {
        TxnMetadata {
            transactional_id,
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: 0,
        }
    }

    /// Whether the epochs of the producer id are spent (Kafka's `isEpochExhausted`): the last
    /// one is kept for the coordinator to fence with.
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= i16::MAX - 1
    }
}

/// Limits from the node config.
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3_600_000,
        }
    }
}
