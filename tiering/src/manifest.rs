//! The remote manifest of one partition: which remote segments exist, in which state, and the
//! remote log start offset. Kafka's `RemoteLogSegmentMetadata` / `RemoteLogSegmentState`, kept
//! as one object per partition (Neon's `IndexPart`, Redpanda's partition manifest).
//!
//! Object `{topic}-{topic_id}/{partition}/manifest.json`: the JSON encoding of
//! [`RemotePartitionManifest`], then a line `crc32:XXXXXXXX` (crc32fast of the JSON bytes, hex),
//! so a torn or foreign object is refused rather than misread.
//!
//! Invariants: segments are sorted by base offset; the `CopySegmentFinished` ones do not
//! overlap; only segments whose objects were all written (`CopySegmentFinished`) or are being
//! removed (`DeleteSegmentStarted`) appear — what the manifest does not name does not exist.
//! A `DeleteSegmentStarted` segment may overlap finished ones: remote compaction replaces
//! segments by rewritten ones with the same offsets in one manifest write, and keeps the old
//! entries (not served) until `delete_after_ms`, so that a reader holding the manifest from
//! before the swap can finish its read.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, TieringError};

pub const MANIFEST_VERSION: u32 = 1;

/// The life of a remote segment (Kafka `RemoteLogSegmentState`). `CopySegmentStarted` lives only
/// in the uploader's memory: until the manifest names a segment, its objects are orphans.
/// `DeleteSegmentFinished` is the entry's removal from the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteLogSegmentState {
    CopySegmentStarted,
    CopySegmentFinished,
    DeleteSegmentStarted,
    DeleteSegmentFinished,
}

/// One remote segment. Every field is fixed when the upload starts or finishes, so the object
/// keys built from them never change (STYLE 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLogSegmentMetadata {
    pub segment_id: Uuid,
    pub base_offset: i64,
    /// The last offset in the segment (inclusive).
    pub end_offset: i64,
    pub max_timestamp_ms: i64,
    /// The uploading leader's epoch.
    pub leader_epoch: i32,
    /// Size of the `.log` object.
    pub segment_bytes: u64,
    /// CRC-32C of the whole `.log` object as uploaded.
    pub log_crc32c: u32,
    pub index_bytes: u64,
    pub time_index_bytes: u64,
    pub has_snapshot: bool,
    /// Size of the `.txnindex` object; 0: the segment has no aborted transaction and no such
    /// object (also what manifests written before transaction indexes were uploaded load as).
    #[serde(default)]
    pub txn_index_bytes: u64,
    /// `(epoch, start offset)` of the leader epochs that wrote the segment.
    pub segment_leader_epochs: Vec<(i32, i64)>,
    pub state: RemoteLogSegmentState,
    pub uploaded_ms: i64,
    /// A segment replaced by remote compaction: its objects are deleted from this clock time
    /// on (0: at once, as retention's deletions are).
    #[serde(default)]
    pub delete_after_ms: i64,
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePartitionManifest {
    pub version: u32,
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// Nothing below it is served (retention and DeleteRecords move it forward).
    pub log_start_offset: i64,
    pub segments: Vec<RemoteLogSegmentMetadata>,
    /// Remote compaction: the end offset of the remote log at the last compaction pass
    /// (`None`: never compacted). Segments past it are the dirty part.
    #[serde(default)]
    pub compacted_end_offset: Option<i64>,
}

impl RemotePartitionManifest {
    pub fn empty(topic: &str, topic_id: Uuid, partition: i32) -> RemotePartitionManifest {
        RemotePartitionManifest {
            version: MANIFEST_VERSION,
            topic: topic.to_string(),
            topic_id,
            partition,
            log_start_offset: 0,
            segments: Vec::new(),
            compacted_end_offset: None,
        }
    }

    /// Segments that may be read: copied, not being deleted, not wholly below the start.
    pub fn live_segments(&self) -> impl Iterator<Item = &RemoteLogSegmentMetadata> {
        self.segments.iter().filter(move |s| {
            s.state == RemoteLogSegmentState::CopySegmentFinished
                && s.end_offset >= self.log_start_offset
        })
    }

    /// The last offset held remotely, if any.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments
            .iter()
            .filter(|s| s.state == RemoteLogSegmentState::CopySegmentFinished)
            .map(|s| s.end_offset)
            .max()
    }

    /// The first offset readable remotely, if any.
    pub fn start_offset(&self) -> Option<i64> {
        self.live_segments()
            .next()
            .map(|s| s.base_offset.max(self.log_start_offset))
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_segments().map(|s| s.segment_bytes).sum()
    }

    /// The live segment holding `offset`.
    pub fn segment_for(&self, offset: i64) -> Option<&RemoteLogSegmentMetadata> {
        if offset < self.log_start_offset {
            return None;
        }
        self.live_segments()
            .find(|s| s.base_offset <= offset && offset <= s.end_offset)
    }

    /// The live segment after the one based at `base_offset`.
    pub fn next_segment(&self, base_offset: i64) -> Option<&RemoteLogSegmentMetadata> {
        self.live_segments().find(|s| s.base_offset > base_offset)
    }

    /// Records a finished copy. Idempotent: a segment already named is left as it is.
    pub fn add_copied(&mut self, mut meta: RemoteLogSegmentMetadata) {
        if self
            .segments
            .iter()
            .any(|s| s.segment_id == meta.segment_id)
        {
            return;
        }
        meta.state = RemoteLogSegmentState::CopySegmentFinished;
        let at = self
            .segments
            .partition_point(|s| s.base_offset < meta.base_offset);
        self.segments.insert(at, meta);
    }

    /// Marks segments as being deleted and moves the start offset past those that were live
    /// (one already being deleted, e.g. replaced by compaction, moves nothing).
    pub fn mark_deleting(&mut self, ids: &[Uuid]) {
        for s in &mut self.segments {
            if ids.contains(&s.segment_id) && s.state == RemoteLogSegmentState::CopySegmentFinished
            {
                s.state = RemoteLogSegmentState::DeleteSegmentStarted;
                self.log_start_offset = self.log_start_offset.max(s.end_offset + 1);
            }
        }
    }

    /// Remote compaction's swap: the finished segments `old` become `DeleteSegmentStarted`
    /// (their objects may go from `delete_after_ms` on) and `new`, which cover the same
    /// offsets, take their place. The start offset does not move.
    pub fn replace_compacted(
        &mut self,
        old: &[Uuid],
        new: Vec<RemoteLogSegmentMetadata>,
        delete_after_ms: i64,
        compacted_end_offset: i64,
    ) {
        for s in &mut self.segments {
            if old.contains(&s.segment_id) {
                s.state = RemoteLogSegmentState::DeleteSegmentStarted;
                s.delete_after_ms = delete_after_ms;
            }
        }
        for mut meta in new {
            meta.state = RemoteLogSegmentState::CopySegmentFinished;
            let at = self
                .segments
                .partition_point(|s| s.base_offset <= meta.base_offset);
            self.segments.insert(at, meta);
        }
        self.compacted_end_offset = Some(compacted_end_offset);
    }

    /// Drops the entries of deleted segments (`DeleteSegmentFinished`).
    pub fn remove(&mut self, ids: &[Uuid]) {
        self.segments.retain(|s| !ids.contains(&s.segment_id));
    }

    pub fn encode(&self) -> Bytes {
        encode_checked(self)
    }

    pub fn decode(key: &str, data: &[u8]) -> Result<RemotePartitionManifest> {
        let bad = |reason: String| TieringError::Manifest {
            key: key.to_string(),
            reason,
        };
        let m: RemotePartitionManifest = decode_checked(key, data)?;
        if m.version != MANIFEST_VERSION {
            return Err(bad(format!("unknown version {}", m.version)));
        }
        Ok(m)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn seg(base: i64, end: i64, bytes: u64, ts: i64) -> RemoteLogSegmentMetadata {
        RemoteLogSegmentMetadata {
            segment_id: Uuid::new_v4(),
            base_offset: base,
            end_offset: end,
            max_timestamp_ms: ts,
            leader_epoch: 0,
            segment_bytes: bytes,
            log_crc32c: 0,
            index_bytes: 0,
            time_index_bytes: 0,
            has_snapshot: false,
            txn_index_bytes: 0,
            segment_leader_epochs: vec![(0, base)],
            state: RemoteLogSegmentState::CopySegmentStarted,
            uploaded_ms: 0,
            delete_after_ms: 0,
        }
    }

    #[test]
    fn lifecycle_and_lookup() {
        let mut m = RemotePartitionManifest::empty("t", Uuid::nil(), 0);
        assert_eq!(m.end_offset(), None);
        let a = seg(0, 9, 100, 1);
        let b = seg(10, 19, 100, 2);
        m.add_copied(b.clone());
        m.add_copied(a.clone());
        m.add_copied(a.clone());
        assert_eq!(m.segments.len(), 2);
        assert_eq!(m.end_offset(), Some(19));
        assert_eq!(m.start_offset(), Some(0));
        assert_eq!(m.segment_for(12).map(|s| s.base_offset), Some(10));
        assert_eq!(m.segment_for(20), None);
        m.mark_deleting(&[a.segment_id]);
        assert_eq!(m.log_start_offset, 10);
        assert_eq!(m.segment_for(5), None);
        assert_eq!(m.start_offset(), Some(10));
        m.remove(&[a.segment_id]);
        assert_eq!(m.segments.len(), 1);
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let mut m = RemotePartitionManifest::empty("t", Uuid::new_v4(), 3);
        m.add_copied(seg(0, 9, 100, 1));
        let enc = m.encode();
        assert_eq!(RemotePartitionManifest::decode("k", &enc).ok(), Some(m));
        let mut bad = enc.to_vec();
        bad[10] ^= 1;
        assert!(RemotePartitionManifest::decode("k", &bad).is_err());
        assert!(RemotePartitionManifest::decode("k", &enc[..enc.len() / 2]).is_err());
    }

    #[test]
    fn a_manifest_from_before_transaction_indexes_loads() {
        let mut m = RemotePartitionManifest::empty("t", Uuid::new_v4(), 0);
        m.add_copied(seg(0, 9, 100, 1));
        let mut json = serde_json::to_value(&m).expect("json");
        let removed = json["segments"][0]
            .as_object_mut()
            .and_then(|o| o.remove("txn_index_bytes"));
        assert_eq!(removed, Some(serde_json::json!(0)));
        let body = serde_json::to_vec(&json).expect("bytes");
        let mut old = body.clone();
        old.extend_from_slice(format!("\ncrc32:{:08x}\n", crc32fast::hash(&body)).as_bytes());
        assert_eq!(RemotePartitionManifest::decode("k", &old).ok(), Some(m));
    }
}

/// A manifest object's bytes: pretty JSON, then a line with the CRC-32 of the JSON, so a torn
/// or altered object is told from a valid one.
pub(crate) fn encode_checked<T: serde::Serialize>(value: &T) -> Bytes {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(format!("\ncrc32:{crc:08x}\n").as_bytes());
    Bytes::from(body)
}

/// Reads what [`encode_checked`] wrote, refusing a missing or wrong checksum.
pub(crate) fn decode_checked<T: serde::de::DeserializeOwned>(key: &str, data: &[u8]) -> Result<T> {
    let bad = |reason: String| TieringError::Manifest {
        key: key.to_string(),
        reason,
    };
    let text = std::str::from_utf8(data).map_err(|e| bad(e.to_string()))?;
    let (body, tail) = text
        .rsplit_once("\ncrc32:")
        .ok_or_else(|| bad("no checksum line".into()))?;
    let want = u32::from_str_radix(tail.trim(), 16).map_err(|e| bad(e.to_string()))?;
    let got = crc32fast::hash(body.as_bytes());
    if want != got {
        return Err(bad(format!("checksum {got:08x}, expected {want:08x}")));
    }
    serde_json::from_str(body).map_err(|e| bad(e.to_string()))
}
