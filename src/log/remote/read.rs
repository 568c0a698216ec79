//! Reads from the remote log: batches at an offset, and lookups by timestamp, through the
//! [`ChunkCache`](strata_tiering::ChunkCache). Every batch served is CRC-32C checked again.

use bytes::{Bytes, BytesMut};
use strata_tiering::{
    PartitionPath, RemoteLogSegmentMetadata, RemotePartitionManifest, SegmentFileKind,
};

use super::{PartitionRef, RemoteLogError, RemoteLogManager};
use crate::log::txn_index::{self, AbortedTxn};
use crate::log::TimestampAndOffset;
use crate::model::{LeaderEpoch, Offset, TopicPartition};
use crate::protocol::record_batch::{validate_batch, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};

impl RemoteLogManager {
    /// Reads batches at `offset` below `max_offset` from the remote log: `None` when the remote
    /// log does not hold `offset`. At most `remote.fetch.max.bytes`, from one remote segment.
    pub(in crate::log) async fn read(
        &self,
        p: PartitionRef<'_>,
        offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<Option<Bytes>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(None);
        };
        // An offset between two remote segments (a local segment the cleaner emptied was
        // never uploaded) is read from the next one.
        let Some(mut seg) = m
            .segment_for(offset.0)
            .or_else(|| m.next_segment(offset.0))
            .cloned()
        else {
            return Ok(None);
        };
        let path = p.path();
        let limit = max_bytes.min(self.config.fetch_max_bytes);
        let hw = max_offset.0;
        let mut out = BytesMut::new();
        loop {
            let log_key = path.segment_key(&seg, SegmentFileKind::Log);
            let pos = self.index_position(p, &path, &seg, offset.0).await?;
            let mut reader = SegmentReader::new(self, p, &log_key, &seg, pos);
            while let Some((batch_pos, batch)) =
                reader.next_batch(limit.saturating_sub(out.len())).await?
            {
                let h = parse_header(p.tp, &log_key, batch_pos, &batch)?;
                if h.last_offset() < offset.0 {
                    continue;
                }
                if h.base_offset >= hw {
                    break;
                }
                let fits = out.len() + batch.len() <= limit;
                if !fits && !(out.is_empty() && min_one_batch) {
                    break;
                }
                out.extend_from_slice(&batch);
                if out.len() >= limit {
                    break;
                }
            }
            let next = reader
                .at_end()
                .then(|| m.next_segment(seg.base_offset))
                .flatten();
            // A compacted segment may hold nothing at or after `offset` (its records were
            // shadowed by later ones): the read goes on in the next segment rather than
            // answering empty, which would hold the reader at `offset` for ever.
            match next {
                Some(next) if out.is_empty() && next.base_offset < hw => seg = next.clone(),
                Some(next) => {
                    let key = path.segment_key(next, SegmentFileKind::Log);
                    self.cache
                        .prefetch_next_object(&key, next.segment_bytes, &log_key);
                    break;
                }
                None if out.is_empty() && reader.at_end() => {
                    // Past the last remote record: the local log continues.
                    return Ok(None);
                }
                None => break,
            }
        }
        self.metrics.remote_fetch_bytes.inc_by(out.len() as u64);
        Ok(Some(out.freeze()))
    }

    /// Fetches into the cache the bytes a [`read`](Self::read) at `offset` would start with
    /// (at most `max_bytes` and `remote.fetch.max.bytes`), without moving the cache's notion of
    /// where the reader is.
    pub(in crate::log) async fn warm(
        &self,
        p: PartitionRef<'_>,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<(), RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(());
        };
        let Some(seg) = m.segment_for(offset.0).cloned() else {
            return Ok(());
        };
        let path = p.path();
        let key = path.segment_key(&seg, SegmentFileKind::Log);
        let pos = self.index_position(p, &path, &seg, offset.0).await?;
        let len = max_bytes.min(self.config.fetch_max_bytes) as u64;
        let end = pos
            .saturating_add(len.max(MIN_SPAN_BYTES))
            .min(seg.segment_bytes);
        self.cache
            .warm(&key, seg.segment_bytes, pos..end)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: p.tp.clone(),
                source,
            })
    }

    /// The aborted transactions of the remote segments' transaction indexes that overlap
    /// `[fetch_offset, upper_bound_offset)`, for a read_committed read of the remote part
    /// (Kafka's `RemoteLogManager.collectAbortedTransactions`). A transaction's marker may lie
    /// in any later segment, so the search goes on through the segments that have an index
    /// (the others cost nothing) until an entry's last stable offset reaches the bound: no
    /// transaction aborted after it can start below the bound. The caller adds the local log's.
    pub(in crate::log) async fn collect_aborted_txns(
        &self,
        p: PartitionRef<'_>,
        fetch_offset: Offset,
        upper_bound_offset: Offset,
    ) -> Result<Vec<AbortedTxn>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(Vec::new());
        };
        let path = p.path();
        let with_index: Vec<RemoteLogSegmentMetadata> = m
            .live_segments()
            .filter(|s| s.end_offset >= fetch_offset.0 && s.txn_index_bytes > 0)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for seg in with_index {
            let key = path.segment_key(&seg, SegmentFileKind::TransactionIndex);
            let data = self
                .cache
                .read(&key, seg.txn_index_bytes, 0..seg.txn_index_bytes)
                .await
                .map_err(|source| RemoteLogError::Storage {
                    tp: p.tp.clone(),
                    source,
                })?;
            for t in txn_index::decode_entries(&data) {
                if t.last_offset >= fetch_offset.0 && t.first_offset < upper_bound_offset.0 {
                    out.push(t);
                }
                if t.last_stable_offset >= upper_bound_offset.0 {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// ListOffsets by time over the remote part: the first record at or after `timestamp_ms` in
    /// the remote segments below the local log start, or `None` to look locally.
    pub(in crate::log) async fn offset_for_timestamp(
        &self,
        p: PartitionRef<'_>,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(None);
        };
        let local_start = p.log.local_log_start_offset().0;
        let path = p.path();
        let candidates: Vec<RemoteLogSegmentMetadata> = m
            .live_segments()
            .filter(|s| s.base_offset < local_start && s.max_timestamp_ms >= timestamp_ms)
            .cloned()
            .collect();
        for seg in candidates {
            if let Some(found) = self
                .find_timestamp_in(p, &m, &path, &seg, timestamp_ms)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP` (-3, KIP-734) over the remote part: the first record with
    /// the greatest timestamp among the remote segments below the local log start, or `None`.
    /// The caller compares it with the local log's.
    pub(in crate::log) async fn max_timestamp(
        &self,
        p: PartitionRef<'_>,
    ) -> Result<Option<TimestampAndOffset>, RemoteLogError> {
        let Some(m) = self.manifest_of(p).await? else {
            return Ok(None);
        };
        let local_start = p.log.local_log_start_offset().0;
        // The first of the segments with the greatest timestamp (`max_by_key` keeps the last).
        let best = m
            .live_segments()
            .filter(|s| s.base_offset < local_start)
            .fold(None::<&RemoteLogSegmentMetadata>, |best, s| match best {
                Some(b) if b.max_timestamp_ms >= s.max_timestamp_ms => Some(b),
                _ => Some(s),
            })
            .cloned();
        let Some(seg) = best else {
            return Ok(None);
        };
        let path = p.path();
        self.find_timestamp_in(p, &m, &path, &seg, seg.max_timestamp_ms)
            .await
    }

    /// The first record of remote segment `seg` at or after `timestamp_ms` (and at or after
    /// the remote log start).
    async fn find_timestamp_in(
        &self,
        p: PartitionRef<'_>,
        m: &RemotePartitionManifest,
        path: &PartitionPath,
        seg: &RemoteLogSegmentMetadata,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, RemoteLogError> {
        let log_key = path.segment_key(seg, SegmentFileKind::Log);
        let start = m.log_start_offset.max(seg.base_offset);
        let pos = self.index_position(p, path, seg, start).await?;
        let mut reader = SegmentReader::new(self, p, &log_key, seg, pos);
        while let Some((batch_pos, batch)) = reader.next_batch(1 << 20).await? {
            let h = parse_header(p.tp, &log_key, batch_pos, &batch)?;
            if h.last_offset() < start || h.max_timestamp < timestamp_ms {
                continue;
            }
            let epoch = Some(LeaderEpoch(h.partition_leader_epoch));
            if h.is_log_append_time() {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: h.max_timestamp,
                    offset: Offset(h.base_offset.max(start)),
                    leader_epoch: epoch,
                }));
            }
            let mut buf = batch.clone();
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).map_err(|e| {
                    RemoteLogError::CorruptBatch {
                        tp: p.tp.clone(),
                        segment: log_key.clone(),
                        position: batch_pos,
                        reason: e.to_string(),
                    }
                })?;
            if let Some(r) = set
                .records
                .iter()
                .find(|r| r.timestamp >= timestamp_ms && r.offset >= start)
            {
                return Ok(Some(TimestampAndOffset {
                    timestamp_ms: r.timestamp,
                    offset: Offset(r.offset),
                    leader_epoch: epoch,
                }));
            }
        }
        Ok(None)
    }

    /// The byte position in the `.log` object to start reading for `offset`, from the remote
    /// offset index (8-byte entries: relative offset, position, both big-endian u32).
    async fn index_position(
        &self,
        p: PartitionRef<'_>,
        path: &PartitionPath,
        seg: &RemoteLogSegmentMetadata,
        offset: i64,
    ) -> Result<u64, RemoteLogError> {
        if seg.index_bytes < 8 || offset <= seg.base_offset {
            return Ok(0);
        }
        let key = path.segment_key(seg, SegmentFileKind::OffsetIndex);
        let index = self
            .cache
            .read(&key, seg.index_bytes, 0..seg.index_bytes)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: p.tp.clone(),
                source,
            })?;
        let rel = (offset - seg.base_offset).min(u32::MAX as i64) as u32;
        let entries = index.len() / 8;
        let entry = |i: usize| {
            let b = &index[i * 8..i * 8 + 8];
            (
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            )
        };
        // The greatest entry at or below the target.
        let (mut lo, mut hi) = (0usize, entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry(mid).0 <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(if lo == 0 { 0 } else { entry(lo - 1).1 as u64 })
    }
}

fn parse_header(
    tp: &TopicPartition,
    key: &str,
    pos: u64,
    batch: &[u8],
) -> Result<BatchHeader, RemoteLogError> {
    // Paired check: the CRC was verified when the batch was appended; verify it again now
    // that it came back from object storage. A mismatch is never served.
    validate_batch(batch).map_err(|e| RemoteLogError::CorruptBatch {
        tp: tp.clone(),
        segment: key.to_string(),
        position: pos,
        reason: e.to_string(),
    })
}

/// Walks whole batches of a remote `.log` object from a position, reading through the cache in
/// spans.
struct SegmentReader<'a> {
    rlm: &'a RemoteLogManager,
    tp: TopicPartition,
    key: &'a str,
    size: u64,
    /// Object position of `buf[0]`.
    buf_pos: u64,
    buf: Bytes,
    /// Object position of the next batch.
    pos: u64,
}

/// The least a span read asks for, so skipping the few batches before the target (at most
/// `index.interval.bytes` apart) costs one read.
const MIN_SPAN_BYTES: u64 = 64 * 1024;

impl<'a> SegmentReader<'a> {
    fn new(
        rlm: &'a RemoteLogManager,
        p: PartitionRef<'_>,
        key: &'a str,
        seg: &RemoteLogSegmentMetadata,
        pos: u64,
    ) -> Self {
        SegmentReader {
            rlm,
            tp: p.tp.clone(),
            key,
            size: seg.segment_bytes,
            buf_pos: pos,
            buf: Bytes::new(),
            pos,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.size
    }

    /// Makes `[self.pos, self.pos + need)` available in `buf`, reading at least `want` bytes.
    async fn ensure(&mut self, need: u64, want: u64) -> Result<(), RemoteLogError> {
        let have_end = self.buf_pos + self.buf.len() as u64;
        if self.pos >= self.buf_pos && self.pos + need <= have_end {
            return Ok(());
        }
        let end = (self.pos + need.max(want).max(MIN_SPAN_BYTES)).min(self.size);
        if self.pos + need > end {
            return Err(RemoteLogError::CorruptBatch {
                tp: self.tp.clone(),
                segment: self.key.to_string(),
                position: self.pos,
                reason: format!(
                    "batch of {need} bytes runs past the end of a {}-byte segment",
                    self.size
                ),
            });
        }
        let data = self
            .rlm
            .cache
            .read(self.key, self.size, self.pos..end)
            .await
            .map_err(|source| RemoteLogError::Storage {
                tp: self.tp.clone(),
                source,
            })?;
        self.buf = data;
        self.buf_pos = self.pos;
        Ok(())
    }

    /// The next whole batch and its position, or `None` at the end of the segment.
    async fn next_batch(&mut self, want: usize) -> Result<Option<(u64, Bytes)>, RemoteLogError> {
        if self.at_end() {
            return Ok(None);
        }
        self.ensure(LOG_OVERHEAD as u64, want as u64).await?;
        let at = (self.pos - self.buf_pos) as usize;
        let len_bytes = &self.buf[at + 8..at + 12];
        let length = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(RemoteLogError::CorruptBatch {
                tp: self.tp.clone(),
                segment: self.key.to_string(),
                position: self.pos,
                reason: format!("batch length {length}"),
            });
        }
        let total = LOG_OVERHEAD as u64 + length as u64;
        self.ensure(total, want as u64).await?;
        let at = (self.pos - self.buf_pos) as usize;
        let batch = self.buf.slice(at..at + total as usize);
        let pos = self.pos;
        self.pos += total;
        Ok(Some((pos, batch)))
    }
}
