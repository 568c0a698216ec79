//! Lookups by offset, epoch and timestamp: ListOffsets and OffsetForLeaderEpoch over the local
//! log.

use bytes::Bytes;

use super::UnifiedLog;
use crate::log::local_log::LocalLog;
use crate::log::segment::scan_batches;
use crate::log::{
    LogError, Result, TimestampAndOffset, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use crate::model::{LeaderEpoch, Offset};

impl UnifiedLog {
    /// The leader epoch that wrote `offset`, if the epoch cache still covers it.
    pub fn leader_epoch_for_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        Self::epoch_for_offset(&self.lock(), offset.0)
    }

    fn epoch_for_offset(st: &LocalLog, offset: i64) -> Option<LeaderEpoch> {
        st.epoch_cache
            .entries()
            .iter()
            .rev()
            .find(|&&(_, start)| start <= offset)
            .map(|&(e, _)| LeaderEpoch(e))
    }

    /// ListOffsets: `EARLIEST_TIMESTAMP`, `LATEST_TIMESTAMP`, `MAX_TIMESTAMP`, or the first
    /// offset whose timestamp is at or after `timestamp_ms` (None if there is none).
    pub fn fetch_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>> {
        let st = self.lock_open()?;
        let (lso, leo) = (st.local_log_start_offset, st.log_end_offset());
        match timestamp_ms {
            EARLIEST_TIMESTAMP => {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: -1,
                    offset: Offset(lso),
                    leader_epoch: Self::epoch_for_offset(&st, lso),
                }))
            }
            LATEST_TIMESTAMP => {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: -1,
                    offset: Offset(leo),
                    leader_epoch: st.epoch_cache.latest_epoch().map(LeaderEpoch),
                }))
            }
            MAX_TIMESTAMP => {
                let best = st
                    .segments
                    .values()
                    .filter(|s| s.size > 0 && s.next_offset > lso)
                    .max_by_key(|s| s.max_timestamp);
                return Ok(best.map(|s| TimestampAndOffset {
                    timestamp_ms: s.max_timestamp,
                    offset: Offset(s.offset_of_max_timestamp.max(lso)),
                    leader_epoch: Self::epoch_for_offset(&st, s.offset_of_max_timestamp),
                }));
            }
            t if t < 0 => return Ok(None),
            _ => {}
        }
        for seg in st.segments.values() {
            if seg.next_offset <= lso || seg.max_timestamp < timestamp_ms {
                continue;
            }
            let from = seg.time_index.lookup_before(timestamp_ms).max(lso);
            let pos = seg.lookup_position(from);
            let mut found: Option<(i64, i64)> = None;
            let mut decode_err: Option<String> = None;
            let end = scan_batches(&seg.file, pos, seg.size, true, 1 << 20, |_, h, bytes| {
                if h.last_offset() < lso || h.max_timestamp < timestamp_ms {
                    return true;
                }
                if h.is_log_append_time() {
                    found = Some((h.max_timestamp, h.base_offset.max(lso)));
                    return false;
                }
                let mut buf = Bytes::copy_from_slice(bytes);
                match kafka_protocol::records::RecordBatchDecoder::decode(&mut buf) {
                    Ok(set) => {
                        found = set
                            .records
                            .iter()
                            .find(|r| r.timestamp >= timestamp_ms && r.offset >= lso)
                            .map(|r| (r.timestamp, r.offset));
                    }
                    Err(e) => decode_err = Some(e.to_string()),
                }
                found.is_none() && decode_err.is_none()
            })?;
            if let Some(reason) = decode_err.or(end.error.map(|(_, r)| r)) {
                return Err(LogError::CorruptSegment {
                    path: seg.path().to_path_buf(),
                    position: end.valid_end,
                    reason,
                });
            }
            if let Some((ts, off)) = found {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: ts,
                    offset: Offset(off),
                    leader_epoch: Self::epoch_for_offset(&st, off),
                }));
            }
        }
        Ok(None)
    }

    /// The leader epoch of the newest entry in the epoch cache.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.lock().epoch_cache.latest_epoch().map(LeaderEpoch)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the end offset of that epoch.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let st = self.lock();
        let leo = st.log_end_offset();
        st.epoch_cache
            .end_offset_for(epoch.0, leo)
            .map(|(e, o)| (LeaderEpoch(e), Offset(o)))
    }

    /// The newest leader-epoch cache entry `(epoch, start offset)`.
    pub fn latest_epoch_entry(&self) -> Option<(LeaderEpoch, Offset)> {
        self.lock()
            .epoch_cache
            .entries()
            .last()
            .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
    }

    /// The leader-epoch cache entries `(epoch, start offset)`, oldest first.
    pub fn epoch_entries(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.lock()
            .epoch_cache
            .entries()
            .iter()
            .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
            .collect()
    }
}
