//! The records of `__consumer_offsets`, in Kafka's own key and value schemas, so Kafka's tooling
//! (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`, `kafka-dump-log
//! --offsets-decoder`) reads a Strata offsets topic unchanged.
//!
//! Every key and value starts with an `int16` schema version; strings are `int16` length +
//! UTF-8, nullable strings use length -1, bytes are `int32` length + data, arrays `int32` count.
//! - key v0/v1 — offset commit: `group: string, topic: string, partition: int32`
//! - key v2 — group metadata: `group: string`
//! - offset commit value v3 (written): `offset: int64, leader_epoch: int32, metadata: string,
//!   commit_timestamp: int64`; v0..v2 are read too (v1 carries an `expire_timestamp`).
//! - group metadata value v3 (written): `protocol_type: string, generation: int32,
//!   protocol: nullable string, leader: nullable string, current_state_timestamp: int64,
//!   members: [member_id: string, group_instance_id: nullable string, client_id: string,
//!   client_host: string, rebalance_timeout: int32, session_timeout: int32,
//!   subscription: bytes, assignment: bytes]`; v0..v2 are read too.
//!
//! A null value is a tombstone: the offset was deleted or expired, or the group was deleted.
//! Records are written as uncompressed magic-2 batches.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use super::consumer::records::ConsumerRecord;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("record truncated reading {what}")]
    Truncated { what: &'static str },
    #[error("unsupported {what} schema version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("invalid UTF-8 in {what}")]
    Utf8 { what: &'static str },
    #[error("negative length {length} for {what}")]
    NegativeLength { what: &'static str, length: i32 },
    #[error("record batch: {0}")]
    Batch(String),
}

/// The committed position of one partition, as an offset commit value holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only in value v1 (set by old clients' retention_time); otherwise None.
    pub expire_timestamp_ms: Option<i64>,
}

/// One member as the group metadata value stores it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's state as the group metadata value stores it (after each completed rebalance).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state; -1 if unknown (values before v2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

/// A record key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OffsetsKey {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    GroupMetadata {
        group: String,
    },
    /// A consumer-group (KIP-848) record key, as encoded.
    Consumer(Bytes),
}

/// One record of `__consumer_offsets`: a key and a value or a tombstone (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetAndMetadata>,
    },
    GroupMetadata {
        group: String,
        value: Option<GroupMetadataValue>,
    },
    /// The records of consumer groups (KIP-848), key types 3..8: `group::consumer::records`.
    Consumer(ConsumerRecord),
}

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

impl OffsetsRecord {
    pub fn key(&self) -> OffsetsKey {
        match self {
            OffsetsRecord::OffsetCommit {
                group,
                topic,
                partition,
                ..
            } => OffsetsKey::OffsetCommit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
            },
            OffsetsRecord::GroupMetadata { group, .. } => OffsetsKey::GroupMetadata {
                group: group.clone(),
            },
            OffsetsRecord::Consumer(_) => OffsetsKey::Consumer(self.encode_key()),
        }
    }

    pub fn encode_key(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            OffsetsRecord::OffsetCommit {
                group,
                topic,
                partition,
                ..
            } => {
                buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            OffsetsRecord::GroupMetadata { group, .. } => {
                buf.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut buf, group);
            }
            OffsetsRecord::Consumer(r) => r.encode_key(&mut buf),
        }
        buf.freeze()
    }

    /// The value bytes, or None for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        match self {
            OffsetsRecord::OffsetCommit { value, .. } => {
                let v = value.as_ref()?;
                buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
                buf.put_i64(v.offset);
                buf.put_i32(v.leader_epoch);
                put_string(&mut buf, &v.metadata);
                buf.put_i64(v.commit_timestamp_ms);
            }
            OffsetsRecord::GroupMetadata { value, .. } => {
                let v = value.as_ref()?;
                buf.put_i16(GROUP_METADATA_VALUE_VERSION);
                put_string(&mut buf, &v.protocol_type);
                buf.put_i32(v.generation);
                put_nullable_string(&mut buf, v.protocol.as_deref());
                put_nullable_string(&mut buf, v.leader.as_deref());
                buf.put_i64(v.current_state_timestamp_ms);
                buf.put_i32(v.members.len() as i32);
                for m in &v.members {
                    put_string(&mut buf, &m.member_id);
                    put_nullable_string(&mut buf, m.group_instance_id.as_deref());
                    put_string(&mut buf, &m.client_id);
                    put_string(&mut buf, &m.client_host);
                    buf.put_i32(m.rebalance_timeout_ms);
                    buf.put_i32(m.session_timeout_ms);
                    put_bytes(&mut buf, &m.subscription);
                    put_bytes(&mut buf, &m.assignment);
                }
            }
            OffsetsRecord::Consumer(r) => return r.encode_value(),
        }
        Some(buf.freeze())
    }

    /// Decodes a key and value. `Ok(None)` for keys of record types this coordinator does not
    /// keep (share and streams groups, the consumer-group records derived from the metadata
    /// image), which a load skips.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<OffsetsRecord>, CodecError> {
        let mut k = key;
        let version = get_i16(&mut k, "key version")?;
        match version {
            0 | 1 => {
                let group = get_string(&mut k, "group")?;
                let topic = get_string(&mut k, "topic")?;
                let partition = get_i32(&mut k, "partition")?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Some(OffsetsRecord::OffsetCommit {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = get_string(&mut k, "group")?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Some(OffsetsRecord::GroupMetadata { group, value }))
            }
            3..=8 => Ok(ConsumerRecord::decode(version, k, value)?.map(OffsetsRecord::Consumer)),
            _ => Ok(None),
        }
    }
}

fn decode_offset_value(mut v: &[u8]) -> Result<OffsetAndMetadata, CodecError> {
    let version = get_i16(&mut v, "offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            what: "offset commit value",
            version,
        });
    }
    let offset = get_i64(&mut v, "offset")?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut v, "leader_epoch")?
    } else {
        -1
    };
    let metadata = get_string(&mut v, "metadata")?;
    let commit_timestamp_ms = get_i64(&mut v, "commit_timestamp")?;
    let expire_timestamp_ms = if version == 1 {
        Some(get_i64(&mut v, "expire_timestamp")?)
    } else {
        None
    };
    Ok(OffsetAndMetadata {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn decode_group_value(mut v: &[u8]) -> Result<GroupMetadataValue, CodecError> {
    let version = get_i16(&mut v, "group value version")?;
    if !(0..=3).contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            what: "group metadata value",
            version,
        });
    }
    let protocol_type = get_string(&mut v, "protocol_type")?;
    let generation = get_i32(&mut v, "generation")?;
    let protocol = get_nullable_string(&mut v, "protocol")?;
    let leader = get_nullable_string(&mut v, "leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        get_i64(&mut v, "current_state_timestamp")?
    } else {
        -1
    };
    let count = get_i32(&mut v, "members count")?;
    if count < 0 {
        return Err(CodecError::NegativeLength {
            what: "members",
            length: count,
        });
    }
    // Bounded by the bytes present: every member takes at least 16 bytes.
    let mut members = Vec::with_capacity((count as usize).min(v.len() / 16));
    for _ in 0..count {
        let member_id = get_string(&mut v, "member_id")?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut v, "group_instance_id")?
        } else {
            None
        };
        let client_id = get_string(&mut v, "client_id")?;
        let client_host = get_string(&mut v, "client_host")?;
        let rebalance_timeout_ms = if version >= 1 {
            get_i32(&mut v, "rebalance_timeout")?
        } else {
            -1
        };
        let session_timeout_ms = get_i32(&mut v, "session_timeout")?;
        let subscription = get_bytes(&mut v, "subscription")?;
        let assignment = get_bytes(&mut v, "assignment")?;
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            // v0 has no rebalance timeout; Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Encodes `records` as one uncompressed magic-2 batch stamped with `timestamp_ms`; the log
/// assigns the offsets.
pub fn encode_batch(records: &[OffsetsRecord], timestamp_ms: i64) -> Result<Bytes, CodecError> {
    encode_batch_as(records, timestamp_ms, None)
}

/// A transactional producer's batch of offset commits (TxnOffsetCommit): `(producer id, epoch,
/// base sequence)`, or a plain batch for None.
pub fn encode_batch_as(
    records: &[OffsetsRecord],
    timestamp_ms: i64,
    producer: Option<(i64, i16, i32)>,
) -> Result<Bytes, CodecError> {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if producer.is_some() {
                base_sequence.wrapping_add(i as i32)
            } else {
                -1
            },
            timestamp: timestamp_ms,
            key: Some(r.encode_key()),
            value: r.encode_value(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| CodecError::Batch(e.to_string()))?;
    Ok(buf.freeze())
}

/// Decodes concatenated record batches into `(offset, record)` pairs, skipping control records
/// and keys of record types not kept here. A record whose key or value does not decode is an
/// error: the caller decides whether to skip it.
pub fn decode_batches(mut bytes: Bytes) -> Result<Vec<(i64, OffsetsRecord)>, CodecError> {
    let mut out = Vec::new();
    while bytes.has_remaining() {
        // A read may end with a partial batch; stop there.
        if bytes.len() < 12 {
            break;
        }
        let batch_len = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if batch_len < 0 || bytes.len() < 12 + batch_len as usize {
            break;
        }
        let set =
            RecordBatchDecoder::decode(&mut bytes).map_err(|e| CodecError::Batch(e.to_string()))?;
        for r in set.records {
            if r.control {
                continue;
            }
            let Some(key) = r.key.as_deref() else {
                continue;
            };
            if let Some(rec) = OffsetsRecord::decode(key, r.value.as_deref())? {
                out.push((r.offset, rec));
            }
        }
    }
    Ok(out)
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn need(buf: &[u8], n: usize, what: &'static str) -> Result<(), CodecError> {
    if buf.len() < n {
        Err(CodecError::Truncated { what })
    } else {
        Ok(())
    }
}

fn get_i16(buf: &mut &[u8], what: &'static str) -> Result<i16, CodecError> {
    need(buf, 2, what)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8], what: &'static str) -> Result<i32, CodecError> {
    need(buf, 4, what)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8], what: &'static str) -> Result<i64, CodecError> {
    need(buf, 8, what)?;
    Ok(buf.get_i64())
}

fn get_nullable_string(buf: &mut &[u8], what: &'static str) -> Result<Option<String>, CodecError> {
    let len = get_i16(buf, what)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(buf, len, what)?;
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|_| CodecError::Utf8 { what })?
        .to_string();
    buf.advance(len);
    Ok(Some(s))
}

fn get_string(buf: &mut &[u8], what: &'static str) -> Result<String, CodecError> {
    // Kafka writes non-nullable strings; a null here reads as empty.
    Ok(get_nullable_string(buf, what)?.unwrap_or_default())
}

fn get_bytes(buf: &mut &[u8], what: &'static str) -> Result<Bytes, CodecError> {
    let len = get_i32(buf, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    need(buf, len, what)?;
    let b = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_group() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp_ms: 1_700_000_000_000,
            members: vec![MemberMetadata {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        }
    }

    #[test]
    fn round_trip_through_a_batch() {
        let records = vec![
            OffsetsRecord::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetAndMetadata {
                    offset: 42,
                    leader_epoch: 5,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 1234,
                    expire_timestamp_ms: None,
                }),
            },
            OffsetsRecord::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            OffsetsRecord::GroupMetadata {
                group: "g".into(),
                value: Some(sample_group()),
            },
            OffsetsRecord::GroupMetadata {
                group: "gone".into(),
                value: None,
            },
        ];
        let batch = encode_batch(&records, 99).unwrap();
        let decoded = decode_batches(batch).unwrap();
        let got: Vec<OffsetsRecord> = decoded.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, records);
    }

    /// Bytes written out by hand from Kafka's OffsetCommitKey (v1) / OffsetCommitValue (v1, with
    /// expire timestamp) and GroupMetadataKey (v2) / GroupMetadataValue (v1) schemas.
    #[test]
    fn decodes_hand_built_kafka_schema_bytes() {
        let key: Vec<u8> = [
            &[0, 1][..], // key version 1
            &[0, 2],
            b"g1", // group
            &[0, 3],
            b"top",        // topic
            &[0, 0, 0, 9], // partition
        ]
        .concat();
        let value: Vec<u8> = [
            &[0, 1][..],                 // value version 1
            &[0, 0, 0, 0, 0, 0, 0, 100], // offset
            &[0, 0],                     // metadata ""
            &[0, 0, 0, 0, 0, 0, 0, 7],   // commit timestamp
            &[0, 0, 0, 0, 0, 0, 0, 8],   // expire timestamp
        ]
        .concat();
        let r = OffsetsRecord::decode(&key, Some(&value)).unwrap().unwrap();
        assert_eq!(
            r,
            OffsetsRecord::OffsetCommit {
                group: "g1".into(),
                topic: "top".into(),
                partition: 9,
                value: Some(OffsetAndMetadata {
                    offset: 100,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 7,
                    expire_timestamp_ms: Some(8),
                })
            }
        );

        let gkey: Vec<u8> = [&[0, 2][..], &[0, 2], b"g1"].concat();
        let gvalue: Vec<u8> = [
            &[0, 1][..], // value version 1
            &[0, 8],
            b"consumer",   // protocol_type
            &[0, 0, 0, 3], // generation
            &[0, 5],
            b"range", // protocol
            &[0, 1],
            b"m",          // leader
            &[0, 0, 0, 1], // one member
            &[0, 1],
            b"m", // member_id
            &[0, 1],
            b"c", // client_id
            &[0, 2],
            b"/h",               // client_host
            &[0, 0, 0x75, 0x30], // rebalance_timeout 30000
            &[0, 0, 0x27, 0x10], // session_timeout 10000
            &[0, 0, 0, 1],
            b"s", // subscription
            &[0, 0, 0, 2],
            b"as", // assignment
        ]
        .concat();
        let g = OffsetsRecord::decode(&gkey, Some(&gvalue))
            .unwrap()
            .unwrap();
        let OffsetsRecord::GroupMetadata {
            group,
            value: Some(v),
        } = g
        else {
            panic!("not group metadata")
        };
        assert_eq!(group, "g1");
        assert_eq!(v.generation, 3);
        assert_eq!(v.protocol.as_deref(), Some("range"));
        assert_eq!(v.leader.as_deref(), Some("m"));
        assert_eq!(v.current_state_timestamp_ms, -1);
        assert_eq!(v.members.len(), 1);
        assert_eq!(v.members[0].rebalance_timeout_ms, 30_000);
        assert_eq!(v.members[0].session_timeout_ms, 10_000);
        assert_eq!(&v.members[0].assignment[..], b"as");

        // Our v3 encoding, byte for byte, as Kafka's GroupMetadataValue v3 lays it out.
        let ours = OffsetsRecord::GroupMetadata {
            group: "g1".into(),
            value: Some(GroupMetadataValue {
                protocol_type: "consumer".into(),
                generation: 3,
                protocol: None,
                leader: None,
                current_state_timestamp_ms: 5,
                members: vec![],
            }),
        };
        let expected: Vec<u8> = [
            &[0, 3][..],
            &[0, 8],
            b"consumer",
            &[0, 0, 0, 3],
            &[0xff, 0xff],
            &[0xff, 0xff],
            &[0, 0, 0, 0, 0, 0, 0, 5],
            &[0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(&ours.encode_value().unwrap()[..], &expected[..]);
        assert_eq!(&ours.encode_key()[..], &gkey[..]);
    }

    #[test]
    fn unknown_key_versions_are_skipped() {
        assert_eq!(
            OffsetsRecord::decode(&[0, 9, 0, 0], Some(b"x")).unwrap(),
            None
        );
        assert!(OffsetsRecord::decode(&[0], None).is_err());
    }

    proptest! {
        #[test]
        fn offset_commit_round_trip(group in ".{0,20}", topic in "[a-z]{1,10}", partition in 0i32..1000,
                                    offset in any::<i64>(), epoch in any::<i32>(), metadata in ".{0,30}", ts in any::<i64>()) {
            let r = OffsetsRecord::OffsetCommit {
                group, topic, partition,
                value: Some(OffsetAndMetadata { offset, leader_epoch: epoch, metadata, commit_timestamp_ms: ts, expire_timestamp_ms: None }),
            };
            let back = OffsetsRecord::decode(&r.encode_key(), r.encode_value().as_deref()).unwrap().unwrap();
            prop_assert_eq!(back, r);
        }

        #[test]
        fn random_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..64),
                                    value in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = OffsetsRecord::decode(&key, Some(&value));
        }
    }
}
