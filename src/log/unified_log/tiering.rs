//! What tiered storage needs of the local log: its sealed segments, and restarting it empty
//! after the end of the remote log.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock_ignoring_poison, UnifiedLog};
use crate::log::disk_pressure::UploadedSegment;
use crate::log::Result;
use crate::model::{LeaderEpoch, Offset};

/// A closed segment as tiered storage sees it: its files and what they hold. The files stay
/// while retention's guard holds the segment back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegmentInfo {
    pub base_offset: Offset,
    /// The last offset in the segment (inclusive).
    pub last_offset: Offset,
    pub max_timestamp_ms: i64,
    pub size_bytes: u64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// The producer-state snapshot taken when the segment rolled (`{next offset}.snapshot`), if
    /// it is still on disk.
    pub producer_snapshot_path: Option<PathBuf>,
    /// The segment's aborted-transaction index (`.txnindex`), if it has one.
    pub txn_index_path: Option<PathBuf>,
    /// Leader-epoch cache entries `(epoch, start offset)` covering the segment.
    pub leader_epochs: Vec<(LeaderEpoch, Offset)>,
}

/// Asked by the cleaner of a tiered compacted log, under the log's lock: the first offset it may
/// rewrite, or `None` to leave the log alone for now (the remote manifest is not loaded yet).
/// Segments below it are uploaded or being uploaded; rewriting them would merge an uploaded
/// segment with one that is not, which the remote log could then only hold twice.
pub type CleanerFloor = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

impl UnifiedLog {
    pub fn set_cleaner_floor(&self, floor: CleanerFloor) {
        self.lock().cleaner_floor = Some(floor);
    }

    /// The cleaner checkpoint: every offset below it was passed by a cleaner pass (the log
    /// start when no pass ran). Compacted tiered logs upload only segments below it.
    pub fn cleaner_checkpoint(&self) -> Offset {
        let st = self.lock();
        let start = st.local_log_start_offset;
        Offset(
            crate::log::checkpoint::read_offset(
                &self.dir(),
                crate::log::checkpoint::CLEANER_OFFSET_FILE,
            )
            .unwrap_or(start),
        )
    }

    /// The closed (rolled) non-empty segments, oldest first; never the active one.
    pub fn sealed_segments(&self) -> Vec<SealedSegmentInfo> {
        let st = self.lock();
        let closed = st.segments.len().saturating_sub(1);
        let epochs = st.epoch_cache.entries();
        st.segments
            .values()
            .take(closed)
            .filter(|seg| seg.size > 0)
            .map(|seg| {
                let (base, next) = (seg.base_offset, seg.next_offset);
                let first = epochs.iter().rposition(|&(_, o)| o <= base).unwrap_or(0);
                let leader_epochs = epochs
                    .iter()
                    .skip(first)
                    .filter(|&&(_, o)| o < next)
                    .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
                    .collect();
                let snapshot = crate::log::producer_state::snapshot_path(&self.dir(), next);
                let txn_index = crate::log::txn_index::txn_index_path(&self.dir(), base);
                SealedSegmentInfo {
                    base_offset: Offset(base),
                    last_offset: Offset(next - 1),
                    max_timestamp_ms: if seg.max_timestamp >= 0 {
                        seg.max_timestamp
                    } else {
                        seg.created_ms
                    },
                    size_bytes: seg.size,
                    log_path: seg.path().to_path_buf(),
                    index_path: crate::log::segment::index_path(&self.dir(), base),
                    time_index_path: crate::log::segment::time_index_path(&self.dir(), base),
                    producer_snapshot_path: snapshot.exists().then_some(snapshot),
                    txn_index_path: txn_index.exists().then_some(txn_index),
                    leader_epochs,
                }
            })
            .collect()
    }

    /// Deletes every segment and starts the log afresh, empty, at `offset` (Kafka's
    /// `truncateFullyAndStartAt`): a replica whose local data was lost resumes after the end of
    /// its remote log. Producer state and leader epochs start empty.
    pub fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<()> {
        let _serial = lock_ignoring_poison(&self.checkpoint_lock);
        let mut st = self.lock_open()?;
        let now = self.clock.now_ms();
        st.truncate_fully_and_start_at(offset.0, now)?;
        self.durable.store(offset.0, Ordering::SeqCst);
        Ok(())
    }

    /// [`truncate_fully_and_start_at`](Self::truncate_fully_and_start_at) for a replica whose
    /// local data was lost while the log below `offset` lives on in remote storage: the leader
    /// epochs and the producer state (a producer snapshot, as written at segment rolls) of that
    /// remote log carry on, so epochs stay right and an idempotent producer that resumes is
    /// recognised (retries deduplicated, gaps refused). A snapshot that does not decode is
    /// ignored with a warning: producers then start unknown, as after plain truncation.
    pub fn start_after_remote(
        &self,
        offset: Offset,
        leader_epochs: &[(LeaderEpoch, Offset)],
        producer_snapshot: Option<&[u8]>,
    ) -> Result<()> {
        let producers = producer_snapshot.and_then(|data| {
            let decoded = crate::log::producer_state::ProducerStateManager::decode(data);
            if decoded.is_none() {
                tracing::warn!(dir = %self.dir().display(), "remote producer snapshot does not decode; ignoring it");
            }
            decoded
        });
        let epochs: Vec<(i32, i64)> = leader_epochs.iter().map(|(e, o)| (e.0, o.0)).collect();
        let _serial = lock_ignoring_poison(&self.checkpoint_lock);
        let mut st = self.lock_open()?;
        let now = self.clock.now_ms();
        st.truncate_fully_and_start_at(offset.0, now)?;
        st.restore_state_below(offset.0, &epochs, producers)?;
        self.durable.store(offset.0, Ordering::SeqCst);
        Ok(())
    }

    /// The closed segments already in remote storage, oldest first: those retention's guard
    /// lets go, up to the first it holds back. Empty for a log that is not tiered (whatever its
    /// guard says: only data in remote storage may go for disk pressure).
    pub fn uploaded_segments(&self) -> Vec<UploadedSegment> {
        let (closed, guard) = {
            let st = self.lock();
            if !st.config.remote_storage_enable {
                return Vec::new();
            }
            let n = st.segments.len().saturating_sub(1);
            let closed: Vec<UploadedSegment> = st
                .segments
                .values()
                .take(n)
                .map(|seg| UploadedSegment {
                    base_offset: Offset(seg.base_offset),
                    next_offset: Offset(seg.next_offset),
                    size_bytes: seg.size,
                    max_timestamp_ms: if seg.max_timestamp >= 0 {
                        seg.max_timestamp
                    } else {
                        seg.created_ms
                    },
                })
                .collect();
            (closed, st.guard.clone())
        };
        let Some(guard) = guard else {
            return Vec::new();
        };
        // The guard reads the remote manifest: asked without the lock, as retention does.
        closed
            .into_iter()
            .take_while(|s| guard(s.base_offset, Offset(s.next_offset.0 - 1)))
            .collect()
    }

    /// Deletes the local copies of `segments` (from [`uploaded_segments`](Self::uploaded_segments),
    /// oldest first) and moves the local log start past them; stops at the first that is no
    /// longer the oldest closed segment (the log changed meanwhile). Returns segments deleted.
    pub fn delete_uploaded_segments(&self, segments: &[UploadedSegment]) -> Result<usize> {
        let mut st = self.lock_open()?;
        let mut expected = segments.iter();
        st.delete_oldest_while(|base, next| {
            expected
                .next()
                .is_some_and(|s| (s.base_offset.0, s.next_offset.0) == (base, next))
        })
    }
}
