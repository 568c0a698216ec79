//! The records of `__transaction_state`, in Kafka's `TransactionLogKey` / `TransactionLogValue`
//! schemas, so Kafka's tooling (`kafka-dump-log --transaction-log-decoder`) reads them unchanged.
//!
//! - key: `int16` record type 0 (the transaction log), then `transactional_id: string`
//!   (`int16` length + UTF-8).
//! - value v0: `int16` version, then `producer_id: int64, producer_epoch: int16,
//!   transaction_timeout_ms: int32, transaction_status: int8, transaction_partitions: nullable
//!   [topic: string, partition_ids: [int32]], transaction_last_update_timestamp_ms: int64,
//!   transaction_start_timestamp_ms: int64`. Arrays are `int32` counts, null is -1. Kafka writes
//!   null partitions for the Empty state and an array (possibly empty) for every other.
//! - value v1, written as Kafka does for transaction version 2 clients: the same fields in the
//!   flexible encoding (compact strings and arrays, `unsigned varint` length + 1, null 0, a
//!   tagged-field section after each struct) with tagged fields `PreviousProducerId` (tag 0,
//!   int64), `NextProducerId` (tag 1, int64) and `ClientTransactionVersion` (tag 2, int16),
//!   each written only when it differs from its default (-1, -1, 0).
//!
//! A null value is a tombstone: the transactional id expired. Records are written as
//! uncompressed magic-2 batches with acks=all.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::state::{TxnMetadata, TxnState};
use crate::model::TopicPartition;

/// The coordinator record type of the transaction log's key (Kafka's `CoordinatorRecordType`).
const KEY_TYPE: i16 = 0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnLogError {
    #[error("transaction log record truncated reading {what}")]
    Truncated { what: &'static str },
    #[error("unknown transaction log {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("unknown transaction status {0}")]
    UnknownStatus(i8),
    #[error("invalid UTF-8 in {what}")]
    Utf8 { what: &'static str },
    #[error("record batch: {0}")]
    Batch(String),
}

/// One record of the transaction log: a transactional id and its metadata, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogRecord {
    pub transactional_id: String,
    /// None: the id expired and its state is removed.
    pub value: Option<TxnLogValue>,
}

/// What the log keeps of a transactional id (Kafka's `TransactionLogValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub client_version: i16,
}

impl TxnLogValue {
    pub fn of(m: &TxnMetadata) -> TxnLogValue {
        TxnLogValue {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            timeout_ms: m.timeout_ms,
            state: m.state,
            partitions: m.partitions.clone(),
            last_update_ms: m.last_update_ms,
            start_ms: m.start_ms,
            previous_producer_id: m.previous_producer_id,
            next_producer_id: m.next_producer_id,
            client_version: m.client_version,
        }
    }

    /// v1 for transaction version 2 clients (and whatever carries their fields), v0 otherwise,
    /// as Kafka chooses.
    fn version(&self) -> i16 {
        let tv2 = self.client_version >= super::metadata::TV2
            || self.previous_producer_id >= 0
            || self.next_producer_id >= 0;
        i16::from(tv2)
    }

    /// The tagged fields that differ from their defaults, by tag.
    fn tagged(&self) -> Vec<(u32, Vec<u8>)> {
        let mut tags = Vec::new();
        if self.previous_producer_id != -1 {
            tags.push((0, self.previous_producer_id.to_be_bytes().to_vec()));
        }
        if self.next_producer_id != -1 {
            tags.push((1, self.next_producer_id.to_be_bytes().to_vec()));
        }
        if self.client_version != 0 {
            tags.push((2, self.client_version.to_be_bytes().to_vec()));
        }
        tags
    }
}

impl TxnLogRecord {
    pub fn encode_key(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(KEY_TYPE);
        put_string(&mut buf, &self.transactional_id);
        buf.freeze()
    }

    /// The value bytes, or None for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let v = self.value.as_ref()?;
        let version = v.version();
        let flexible = version >= 1;
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        buf.put_i64(v.producer_id);
        buf.put_i16(v.producer_epoch);
        buf.put_i32(v.timeout_ms);
        buf.put_i8(v.state.id());
        if v.state == TxnState::Empty {
            put_len(&mut buf, flexible, None);
        } else {
            let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
            for tp in &v.partitions {
                match topics.last_mut() {
                    Some((t, ps)) if *t == tp.topic => ps.push(tp.partition.0),
                    _ => topics.push((&tp.topic, vec![tp.partition.0])),
                }
            }
            put_len(&mut buf, flexible, Some(topics.len()));
            for (topic, partitions) in topics {
                if flexible {
                    put_len(&mut buf, true, Some(topic.len()));
                    buf.put_slice(topic.as_bytes());
                } else {
                    put_string(&mut buf, topic);
                }
                put_len(&mut buf, flexible, Some(partitions.len()));
                for p in partitions {
                    buf.put_i32(p);
                }
                if flexible {
                    put_varint(&mut buf, 0);
                }
            }
        }
        buf.put_i64(v.last_update_ms);
        buf.put_i64(v.start_ms);
        if flexible {
            let tags = v.tagged();
            put_varint(&mut buf, tags.len() as u32);
            for (tag, bytes) in tags {
                put_varint(&mut buf, tag);
                put_varint(&mut buf, bytes.len() as u32);
                buf.put_slice(&bytes);
            }
        }
        Some(buf.freeze())
    }

    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogRecord, TxnLogError> {
        let mut k = key;
        let key_type = get_i16(&mut k, "key type")?;
        if key_type != KEY_TYPE {
            return Err(TxnLogError::UnknownVersion {
                what: "key",
                version: key_type,
            });
        }
        let transactional_id = get_string(&mut k, "transactional id")?;
        let Some(mut v) = value else {
            return Ok(TxnLogRecord {
                transactional_id,
                value: None,
            });
        };
        let version = get_i16(&mut v, "value version")?;
        if !(0..=1).contains(&version) {
            return Err(TxnLogError::UnknownVersion {
                what: "value",
                version,
            });
        }
        let flexible = version >= 1;
        let producer_id = get_i64(&mut v, "producer id")?;
        let producer_epoch = get_i16(&mut v, "producer epoch")?;
        let timeout_ms = get_i32(&mut v, "timeout")?;
        let status = get_i8(&mut v, "status")?;
        let state = TxnState::from_id(status).ok_or(TxnLogError::UnknownStatus(status))?;
        let mut partitions = BTreeSet::new();
        let topics = get_len(&mut v, flexible, "partitions")?;
        for _ in 0..topics.unwrap_or(0) {
            let topic = if flexible {
                get_compact_string(&mut v, "topic")?
            } else {
                get_string(&mut v, "topic")?
            };
            let ids = get_len(&mut v, flexible, "partition ids")?.unwrap_or(0);
            for _ in 0..ids {
                partitions.insert(TopicPartition::new(
                    topic.clone(),
                    get_i32(&mut v, "partition")?,
                ));
            }
            if flexible {
                skip_tagged(&mut v)?;
            }
        }
        let last_update_ms = get_i64(&mut v, "last update timestamp")?;
        let start_ms = get_i64(&mut v, "start timestamp")?;
        let (mut previous_producer_id, mut next_producer_id, mut client_version) = (-1, -1, 0);
        if flexible {
            for _ in 0..get_varint(&mut v, "tagged fields")? {
                let tag = get_varint(&mut v, "tag")?;
                let size = get_varint(&mut v, "tag size")? as usize;
                need(v, size, "tagged field")?;
                let (mut field, rest) = v.split_at(size);
                v = rest;
                match tag {
                    0 => previous_producer_id = get_i64(&mut field, "previous producer id")?,
                    1 => next_producer_id = get_i64(&mut field, "next producer id")?,
                    2 => client_version = get_i16(&mut field, "client transaction version")?,
                    _ => {} // a field of a newer Kafka: skipped, as its schema allows
                }
            }
        }
        Ok(TxnLogRecord {
            transactional_id,
            value: Some(TxnLogValue {
                producer_id,
                producer_epoch,
                timeout_ms,
                state,
                partitions: if state == TxnState::Empty {
                    BTreeSet::new()
                } else {
                    partitions
                },
                last_update_ms,
                start_ms,
                previous_producer_id,
                next_producer_id,
                client_version,
            }),
        })
    }
}

/// One uncompressed magic-2 batch of `records`.
pub fn encode_batch(records: &[TxnLogRecord], timestamp_ms: i64) -> Result<Bytes, TxnLogError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
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
    .map_err(|e| TxnLogError::Batch(e.to_string()))?;
    Ok(buf.freeze())
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

/// An array or string length: `int32` (null -1), or in the flexible encoding an `unsigned
/// varint` of length + 1 (null 0).
fn put_len(buf: &mut BytesMut, flexible: bool, len: Option<usize>) {
    match (flexible, len) {
        (false, Some(n)) => buf.put_i32(n as i32),
        (false, None) => buf.put_i32(-1),
        (true, Some(n)) => put_varint(buf, n as u32 + 1),
        (true, None) => put_varint(buf, 0),
    }
}

fn put_varint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), TxnLogError> {
    if b.len() < n {
        Err(TxnLogError::Truncated { what })
    } else {
        Ok(())
    }
}

fn get_i8(b: &mut &[u8], what: &'static str) -> Result<i8, TxnLogError> {
    need(b, 1, what)?;
    Ok(b.get_i8())
}

fn get_i16(b: &mut &[u8], what: &'static str) -> Result<i16, TxnLogError> {
    need(b, 2, what)?;
    Ok(b.get_i16())
}

fn get_i32(b: &mut &[u8], what: &'static str) -> Result<i32, TxnLogError> {
    need(b, 4, what)?;
    Ok(b.get_i32())
}

fn get_i64(b: &mut &[u8], what: &'static str) -> Result<i64, TxnLogError> {
    need(b, 8, what)?;
    Ok(b.get_i64())
}

fn get_varint(b: &mut &[u8], what: &'static str) -> Result<u32, TxnLogError> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = get_i8(b, what)? as u8;
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(TxnLogError::Truncated { what })
}

fn take_utf8(b: &mut &[u8], n: usize, what: &'static str) -> Result<String, TxnLogError> {
    need(b, n, what)?;
    let s = std::str::from_utf8(&b[..n])
        .map_err(|_| TxnLogError::Utf8 { what })?
        .to_string();
    b.advance(n);
    Ok(s)
}

fn get_string(b: &mut &[u8], what: &'static str) -> Result<String, TxnLogError> {
    let n = get_i16(b, what)?;
    if n < 0 {
        return Err(TxnLogError::Truncated { what });
    }
    take_utf8(b, n as usize, what)
}

fn get_compact_string(b: &mut &[u8], what: &'static str) -> Result<String, TxnLogError> {
    let n = get_varint(b, what)?;
    if n == 0 {
        return Err(TxnLogError::Truncated { what });
    }
    take_utf8(b, n as usize - 1, what)
}

/// An array's length: `int32` (-1 null) in v0, compact `varint` (0 null) in flexible versions.
fn get_len(
    b: &mut &[u8],
    flexible: bool,
    what: &'static str,
) -> Result<Option<usize>, TxnLogError> {
    let n = if flexible {
        get_varint(b, what)? as i64 - 1
    } else {
        i64::from(get_i32(b, what)?)
    };
    if n < 0 {
        return Ok(None);
    }
    // Each element takes at least one byte: a larger count is a corrupt record, not an
    // allocation.
    need(b, n as usize, what)?;
    Ok(Some(n as usize))
}

fn skip_tagged(b: &mut &[u8]) -> Result<(), TxnLogError> {
    let n = get_varint(b, "tagged fields")?;
    for _ in 0..n {
        get_varint(b, "tag")?;
        let size = get_varint(b, "tag size")? as usize;
        need(b, size, "tagged field")?;
        b.advance(size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(state: TxnState, partitions: &[(&str, i32)]) -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: 0,
        }
    }

    /// The bytes Kafka's generated `TransactionLogKey`/`TransactionLogValue` v0 write, laid out
    /// field by field from the JSON schemas.
    #[test]
    fn key_and_value_match_kafkas_schema_bytes() {
        let r = TxnLogRecord {
            transactional_id: "tx".into(),
            value: Some(value(TxnState::Ongoing, &[("a", 0), ("a", 2), ("b", 1)])),
        };
        assert_eq!(&r.encode_key()[..], &[0, 0, 0, 2, b't', b'x']);
        let mut want = vec![0u8, 0]; // value version 0
        want.extend(1000i64.to_be_bytes());
        want.extend(3i16.to_be_bytes());
        want.extend(60_000i32.to_be_bytes());
        want.push(1); // Ongoing
        want.extend(2i32.to_be_bytes()); // two topics
        want.extend([0, 1, b'a']);
        want.extend(2i32.to_be_bytes());
        want.extend(0i32.to_be_bytes());
        want.extend(2i32.to_be_bytes());
        want.extend([0, 1, b'b']);
        want.extend(1i32.to_be_bytes());
        want.extend(1i32.to_be_bytes());
        want.extend(1_700_000_000_123i64.to_be_bytes());
        want.extend(1_700_000_000_000i64.to_be_bytes());
        assert_eq!(&r.encode_value().unwrap()[..], &want[..]);
    }

    #[test]
    fn empty_state_writes_null_partitions_and_complete_an_empty_array() {
        let empty = TxnLogRecord {
            transactional_id: "t".into(),
            value: Some(value(TxnState::Empty, &[])),
        }
        .encode_value()
        .unwrap();
        // version(2) + pid(8) + epoch(2) + timeout(4) + status(1), then the array count.
        assert_eq!(&empty[17..21], &(-1i32).to_be_bytes());
        assert_eq!(empty[16], 0);
        let complete = TxnLogRecord {
            transactional_id: "t".into(),
            value: Some(value(TxnState::CompleteCommit, &[])),
        }
        .encode_value()
        .unwrap();
        assert_eq!(&complete[17..21], &0i32.to_be_bytes());
        assert_eq!(complete[16], 4);
    }

    #[test]
    fn records_round_trip_and_tombstones_decode() {
        for state in TxnState::ALL {
            let parts: &[(&str, i32)] = if state == TxnState::Empty {
                &[]
            } else {
                &[("x", 1), ("y", 7)]
            };
            let r = TxnLogRecord {
                transactional_id: "id-é".into(),
                value: Some(value(state, parts)),
            };
            let back = TxnLogRecord::decode(&r.encode_key(), r.encode_value().as_deref()).unwrap();
            assert_eq!(back, r, "{state:?}");
        }
        let tomb = TxnLogRecord {
            transactional_id: "gone".into(),
            value: None,
        };
        assert_eq!(tomb.encode_value(), None);
        assert_eq!(
            TxnLogRecord::decode(&tomb.encode_key(), None).unwrap(),
            tomb
        );
    }

    /// A flexible v1 value as Kafka writes it for transaction version 2 clients.
    #[test]
    fn value_v1_is_read_with_its_tagged_fields() {
        let mut v = vec![0u8, 1];
        v.extend(7i64.to_be_bytes());
        v.extend(1i16.to_be_bytes());
        v.extend(1000i32.to_be_bytes());
        v.push(2); // PrepareCommit
        v.push(2); // one topic (compact: n + 1)
        v.extend([2, b't']); // compact string "t"
        v.push(2); // one partition id
        v.extend(5i32.to_be_bytes());
        v.push(0); // the topic entry's tagged fields
        v.extend(11i64.to_be_bytes());
        v.extend(10i64.to_be_bytes());
        v.extend([2, 0, 8]); // two tags: PreviousProducerId ...
        v.extend(6i64.to_be_bytes());
        v.extend([2, 2, 0, 2]); // ... and ClientTransactionVersion = 2
        let r = TxnLogRecord::decode(&[0, 0, 0, 1, b'a'], Some(&v)).unwrap();
        let got = r.value.unwrap();
        assert_eq!(got.state, TxnState::PrepareCommit);
        assert_eq!(got.producer_id, 7);
        assert_eq!(
            got.partitions.into_iter().collect::<Vec<_>>(),
            vec![TopicPartition::new("t", 5)]
        );
        assert_eq!((got.last_update_ms, got.start_ms), (11, 10));
        assert_eq!(
            (
                got.previous_producer_id,
                got.next_producer_id,
                got.client_version
            ),
            (6, -1, 2)
        );
        // Written back, it is the same bytes.
        let back = TxnLogRecord {
            transactional_id: "a".into(),
            value: Some(TxnLogValue {
                partitions: [TopicPartition::new("t", 5)].into(),
                ..got
            }),
        };
        assert_eq!(back.encode_value().unwrap().as_ref(), &v[..]);
    }

    #[test]
    fn a_transaction_version_2_value_round_trips_as_v1_and_others_stay_v0() {
        let mut v = value(TxnState::PrepareAbort, &[("a", 0), ("a", 2), ("bb", 1)]);
        let v0 = TxnLogRecord {
            transactional_id: "x".into(),
            value: Some(v.clone()),
        };
        assert_eq!(&v0.encode_value().unwrap()[..2], &[0, 0]);
        v.client_version = 2;
        v.next_producer_id = 77;
        let r = TxnLogRecord {
            transactional_id: "x".into(),
            value: Some(v),
        };
        let bytes = r.encode_value().unwrap();
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(
            TxnLogRecord::decode(&r.encode_key(), Some(&bytes)).unwrap(),
            r
        );
        let empty = TxnLogRecord {
            transactional_id: "x".into(),
            value: Some(TxnLogValue {
                client_version: 2,
                ..value(TxnState::Empty, &[])
            }),
        };
        let bytes = empty.encode_value().unwrap();
        assert_eq!(
            TxnLogRecord::decode(&empty.encode_key(), Some(&bytes)).unwrap(),
            empty
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(TxnLogRecord::decode(&[0, 1, 0, 0], None).is_err());
        assert!(TxnLogRecord::decode(&[0, 0, 0, 9, b'a'], None).is_err());
        assert!(TxnLogRecord::decode(&[0, 0, 0, 0], Some(&[0, 0, 1])).is_err());
        let mut huge = vec![0u8, 0];
        huge.extend(1i64.to_be_bytes());
        huge.extend(0i16.to_be_bytes());
        huge.extend(1i32.to_be_bytes());
        huge.push(1);
        huge.extend(i32::MAX.to_be_bytes());
        assert!(TxnLogRecord::decode(&[0, 0, 0, 0], Some(&huge)).is_err());
        assert!(TxnLogRecord::decode(
            &[0, 0, 0, 0],
            Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99])
        )
        .is_err());
    }
}
