//! Object keys. Every part is fixed when the topic or the remote segment is created (topic id,
//! partition, base offset, the uploading leader's epoch, a fresh segment UUID), so keys never
//! change when leadership moves, and two uploads of one segment never collide.
//!
//! ```text
//! {topic}-{topic_id}/{partition}/manifest.json
//! {topic}-{topic_id}/{partition}/{base_offset:020}-{leader_epoch}-{segment_uuid}.log
//!                                                                        .index
//!                                                                        .timeindex
//!                                                                        .snapshot
//!                                                                        .epochs
//!                                                                        .txnindex (if any abort)
//! ```
//! (under the store's own prefix: `s3://bucket/{prefix}/...` or the local directory).

use uuid::Uuid;

use crate::manifest::RemoteLogSegmentMetadata;

/// The file kinds of a remote segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFileKind {
    Log,
    OffsetIndex,
    TimeIndex,
    ProducerSnapshot,
    LeaderEpochCheckpoint,
    /// The segment's aborted transactions, uploaded only when it has some.
    TransactionIndex,
}

impl SegmentFileKind {
    pub const ALL: [SegmentFileKind; 6] = [
        SegmentFileKind::Log,
        SegmentFileKind::OffsetIndex,
        SegmentFileKind::TimeIndex,
        SegmentFileKind::ProducerSnapshot,
        SegmentFileKind::LeaderEpochCheckpoint,
        SegmentFileKind::TransactionIndex,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            SegmentFileKind::Log => "log",
            SegmentFileKind::OffsetIndex => "index",
            SegmentFileKind::TimeIndex => "timeindex",
            SegmentFileKind::ProducerSnapshot => "snapshot",
            SegmentFileKind::LeaderEpochCheckpoint => "epochs",
            SegmentFileKind::TransactionIndex => "txnindex",
        }
    }
}

/// Identifies a partition in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionPath {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl PartitionPath {
    pub fn new(topic: &str, topic_id: Uuid, partition: i32) -> PartitionPath {
        PartitionPath {
            topic: topic.to_string(),
            topic_id,
            partition,
        }
    }

    /// `{topic}-{topic_id}/`: everything of the topic.
    pub fn topic_prefix(&self) -> String {
        format!("{}-{}/", self.topic, self.topic_id)
    }

    /// `{topic}-{topic_id}/{partition}/`
    pub fn prefix(&self) -> String {
        format!("{}{}/", self.topic_prefix(), self.partition)
    }

    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.prefix())
    }

    pub fn segment_key(&self, meta: &RemoteLogSegmentMetadata, kind: SegmentFileKind) -> String {
        segment_key(
            &self.prefix(),
            meta.base_offset,
            meta.leader_epoch,
            meta.segment_id,
            kind,
        )
    }
}

pub fn segment_key(
    prefix: &str,
    base_offset: i64,
    leader_epoch: i32,
    segment_id: Uuid,
    kind: SegmentFileKind,
) -> String {
    format!(
        "{prefix}{base_offset:020}-{leader_epoch}-{segment_id}.{}",
        kind.extension()
    )
}

/// The segment UUID in a segment object key, if it is one.
pub fn parse_segment_id(key: &str) -> Option<Uuid> {
    let name = key.rsplit('/').next()?;
    let (stem, _ext) = name.rsplit_once('.')?;
    // The UUID is the last 36 characters of the stem.
    let id = stem.get(stem.len().checked_sub(36)?..)?;
    Uuid::parse_str(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_parse_back() {
        let p = PartitionPath::new("orders", Uuid::nil(), 2);
        let id = Uuid::new_v4();
        let k = segment_key(&p.prefix(), 42, 7, id, SegmentFileKind::TimeIndex);
        assert_eq!(
            k,
            format!(
                "orders-{}/2/00000000000000000042-7-{id}.timeindex",
                Uuid::nil()
            )
        );
        assert_eq!(parse_segment_id(&k), Some(id));
        assert_eq!(parse_segment_id(&p.manifest_key()), None);
    }
}
