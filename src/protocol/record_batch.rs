//! The record-batch header reader: Kafka's magic-2 `RecordBatch`, read without decoding records.
//!
//! A batch on the wire and on disk is a 61-byte header followed by the (possibly compressed)
//! records. All integers are big-endian.
//!
//! ```text
//! offset  size  field                   covered by CRC
//!      0     8  baseOffset              no   (the broker assigns it)
//!      8     4  batchLength             no   (bytes after this field)
//!     12     4  partitionLeaderEpoch    no   (the broker stamps it)
//!     16     1  magic (= 2)             no
//!     17     4  crc (CRC-32C)           -
//!     21     2  attributes              yes  (bits 0-2 compression, 3 timestamp type,
//!                                             4 transactional, 5 control, 6 delete horizon)
//!     23     4  lastOffsetDelta         yes
//!     27     8  baseTimestamp           yes
//!     35     8  maxTimestamp            yes
//!     43     8  producerId              yes
//!     51     2  producerEpoch           yes
//!     53     4  baseSequence            yes
//!     57     4  recordsCount            yes
//!     61     -  records                 yes
//! ```
//!
//! Because baseOffset and partitionLeaderEpoch sit outside the CRC, assigning offsets and
//! stamping the leader epoch never recomputes a checksum; stamping LogAppendTime does.

use thiserror::Error;

/// Size of the fixed batch header.
pub const HEADER_SIZE: usize = 61;
/// baseOffset + batchLength: the bytes before the length-counted part.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest legal `batchLength`.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_SIZE - LOG_OVERHEAD) as i32;
/// The only batch format Strata accepts.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
/// The header bytes before the magic byte (base offset, length, partition leader epoch): none
/// is CRC-covered, and they are all a leader rewrites in a CreateTime batch.
pub const UNCOVERED_PREFIX: usize = MAGIC_AT;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
pub const TRANSACTIONAL_BIT: i16 = 1 << 4;
pub const CONTROL_BIT: i16 = 1 << 5;

/// Why a byte range is not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("invalid batch length {length}")]
    InvalidLength { length: i32 },
    #[error("unsupported magic {magic}")]
    BadMagic { magic: i8 },
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("records count {count} inconsistent with lastOffsetDelta {last_offset_delta}")]
    InconsistentCount { count: i32, last_offset_delta: i32 },
}

/// The decoded 61-byte header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`, checking only what the header alone can show:
    /// enough bytes for a header, a sane length and magic 2. It does not need the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_SIZE {
            // Report the length problem before the truncation when the prefix shows it.
            if buf.len() >= LOG_OVERHEAD {
                let length = be_i32(buf, LENGTH_AT);
                if length < MIN_BATCH_LENGTH {
                    return Err(BatchError::InvalidLength { length });
                }
            }
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_AT),
            batch_length: be_i32(buf, LENGTH_AT),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: u32::from_be_bytes([
                buf[CRC_AT],
                buf[CRC_AT + 1],
                buf[CRC_AT + 2],
                buf[CRC_AT + 3],
            ]),
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, PRODUCER_ID_AT),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(buf, BASE_SEQUENCE_AT),
            records_count: be_i32(buf, RECORDS_COUNT_AT),
        };
        if h.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength {
                length: h.batch_length,
            });
        }
        if h.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { magic: h.magic });
        }
        if h.last_offset_delta < 0
            || h.records_count < 0
            || h.records_count as i64 > h.last_offset_delta as i64 + 1
        {
            return Err(BatchError::InconsistentCount {
                count: h.records_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        Ok(h)
    }

    /// The whole batch's size in bytes, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The last sequence number of the batch (sequences wrap at i32::MAX as Kafka's do).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// CRC-32C of the CRC-covered part of a whole batch (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Full validation of one whole batch (exactly `batch.len()` bytes): header sanity, exact
/// length and CRC-32C.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.total_size() != batch.len() {
        return Err(BatchError::Truncated {
            needed: h.total_size(),
            available: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(BatchError::CrcMismatch {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Walks the batches of a buffer by their headers. Yields `(position, header)` or the first
/// error (after which it stops); a partial trailing batch is an error `Truncated`.
/// Does not check CRCs: callers that need them call [`validate_batch`] on the slice.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(usize, BatchHeader), (usize, BatchError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match BatchHeader::parse(rest) {
            Ok(h) if h.total_size() <= rest.len() => {
                let at = self.pos;
                self.pos += h.total_size();
                Some(Ok((at, h)))
            }
            Ok(h) => {
                self.failed = true;
                Some(Err((
                    self.pos,
                    BatchError::Truncated {
                        needed: h.total_size(),
                        available: rest.len(),
                    },
                )))
            }
            Err(e) => {
                self.failed = true;
                Some(Err((self.pos, e)))
            }
        }
    }
}

/// Rewrites baseOffset (not CRC-covered).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites partitionLeaderEpoch (not CRC-covered).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps LogAppendTime: sets the timestamp-type bit and maxTimestamp, then recomputes the CRC
/// (both fields are covered). `batch` must be one whole batch.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    refresh_crc(batch);
}

/// Overwrites CRC-covered header fields the cleaner must preserve across a re-encode, then
/// recomputes the CRC.
pub fn set_covered_fields(
    batch: &mut [u8],
    attributes: i16,
    max_timestamp: i64,
    base_sequence: i32,
) {
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
    refresh_crc(batch);
}

/// Recomputes and stores the CRC of one whole batch.
pub fn refresh_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record's key and value for [`build_batch`]; `None` is null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed batch of simple records; for tests, benches and tools.
///
/// Each `(key, value)` becomes one record with offset delta and timestamp delta = its index.
pub fn build_batch(
    base_offset: i64,
    base_timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    records: &[KeyValue<'_>],
) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }
    let mut body = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut rec = vec![0u8]; // attributes
        varint(&mut rec, i as i64); // timestamp delta
        varint(&mut rec, i as i64); // offset delta
        match k {
            Some(k) => {
                varint(&mut rec, k.len() as i64);
                rec.extend_from_slice(k);
            }
            None => varint(&mut rec, -1),
        }
        match v {
            Some(v) => {
                varint(&mut rec, v.len() as i64);
                rec.extend_from_slice(v);
            }
            None => varint(&mut rec, -1),
        }
        varint(&mut rec, 0); // headers
        varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let n = records.len().max(1) as i32;
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let mut b = Vec::with_capacity(HEADER_SIZE + body.len());
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0u8; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&(base_timestamp + n as i64 - 1).to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    refresh_crc(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn build_and_validate() {
        let b = build_batch(
            5,
            1000,
            Some((7, 1, 10)),
            &[(Some(&b"k"[..]), Some(&b"v"[..])); 3],
        );
        let h = validate_batch(&b).expect("valid");
        assert_eq!(h.base_offset, 5);
        assert_eq!(h.last_offset(), 7);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.max_timestamp, 1002);
    }

    #[test]
    fn decodes_with_kafka_protocol() {
        let b = build_batch(
            0,
            1000,
            None,
            &[(Some(&b"k1"[..]), Some(&b"v1"[..])), (None, None)],
        );
        let mut bytes = bytes::Bytes::from(b);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("ok");
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(set.records[1].value, None);
        assert_eq!(set.records[1].offset, 1);
    }

    #[test]
    fn rewrites_keep_crc_valid() {
        let mut b = build_batch(0, 1000, None, &[(None, Some(&b"v"[..]))]);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 3);
        let h = validate_batch(&b).expect("offset and epoch are outside the CRC");
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 3));
        set_log_append_time(&mut b, 99);
        let h = validate_batch(&b).expect("crc recomputed");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn detects_corruption() {
        let b = build_batch(0, 1000, None, &[(None, Some(&b"value"[..]))]);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            let r = validate_batch(&c);
            // Bytes outside the CRC (offset, epoch) may change without detection; anything
            // else must be caught.
            if !(0..8).contains(&i) && !(12..16).contains(&i) {
                assert!(r.is_err(), "flip at byte {i} undetected");
            }
        }
    }

    #[test]
    fn iterates_and_reports_truncation() {
        let mut buf = build_batch(0, 1, None, &[(None, Some(&b"a"[..]))]);
        buf.extend(build_batch(1, 1, None, &[(None, Some(&b"b"[..])); 2]));
        let full = buf.len();
        buf.extend(&build_batch(3, 1, None, &[(None, Some(&b"c"[..]))])[..20]);
        let items: Vec<_> = BatchIter::new(&buf).collect();
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
        let mut it = BatchIter::new(&buf);
        while let Some(Ok(_)) = it.next() {}
        assert!(it.position() <= full);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            for (pos, h) in BatchIter::new(&data).flatten() {
                let _ = validate_batch(&data[pos..pos + h.total_size()]);
            }
        }

        #[test]
        fn roundtrip(base in 0i64..1<<40, ts in 0i64..1<<41, n in 1usize..20, len in 0usize..64) {
            let v = vec![7u8; len];
            let recs: Vec<KeyValue<'_>> = (0..n).map(|_| (None, Some(&v[..]))).collect();
            let b = build_batch(base, ts, None, &recs);
            let h = validate_batch(&b).expect("valid");
            prop_assert_eq!(h.base_offset, base);
            prop_assert_eq!(h.records_count as usize, n);
            prop_assert_eq!(h.total_size(), b.len());
        }
    }
}
