//! `LogValidator`: what a leader checks in a producer's batch, record by record, and how it
//! rewrites the batch, before [`UnifiedLog`](super::UnifiedLog) assigns offsets — Kafka's
//! `LogValidator`.
//!
//! # What is checked
//! - The batch as a whole (Kafka's `validateBatch` for client appends): a record count that
//!   matches the offset range, no control batch, a sequence with every producer id. These fail
//!   with INVALID_RECORD and no record list.
//! - Each record (Kafka's `validateRecord`): on a compacted topic (`cleanup.policy` contains
//!   `compact`) a key; on a CreateTime topic a timestamp within
//!   [now - `message.timestamp.before.max.ms`, now + `message.timestamp.after.max.ms`]
//!   (records without a timestamp, -1, are not checked); a batch claiming LogAppendTime is
//!   refused. In a compressed batch, the offset deltas must run 0, 1, 2, ...
//!
//! A batch with a bad record is refused whole, and the answer lists every bad record by its
//! index in the batch with Kafka's messages (KIP-467), so that a client fails exactly those
//! records when it sent one record per batch. INVALID_TIMESTAMP wins over INVALID_RECORD when
//! both occur, as in Kafka.
//!
//! # When the records are read
//! Reading records costs a decompression for a compressed batch, so it happens only when an
//! answer needs it: on compacted topics, when `message.timestamp.before.max.ms` is finite, when
//! the header's max timestamp is past the `after` bound (which is all the default bound needs:
//! every record's timestamp is at most the max), when the batch claims LogAppendTime, and when
//! the batch is recompressed. Otherwise the batch is appended as sent, byte for byte.
//!
//! # Recompression
//! With `compression.type` other than `producer`, a batch whose codec differs is rewritten:
//! its records part is decompressed and compressed with the topic's codec at its
//! `compression.<codec>.level`, the codec bits and length set, the CRC recomputed. Every record
//! byte (keys, values, headers, timestamp and offset deltas) and every other header field
//! (timestamps, producer id, epoch, base sequence, transactional flag) is kept. The work runs
//! through [`crate::runtime::block_in_place`], off the async reactor's other tasks.

use bytes::Bytes;

use super::{BrokerCompression, LogConfig, LogError, TimestampType};
use crate::protocol::compression::{self, Codec};
use crate::protocol::record_batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::protocol::records::{self, RecordInfo};

/// The most bytes a batch's records may inflate to. Larger than any batch a client can send
/// under `message.max.bytes` at a sane compression ratio; a bound against compression bombs.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// The Kafka error a rejected batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordErrorKind {
    InvalidRecord,
    InvalidTimestamp,
}

/// One bad record of a refused batch (KIP-467's `BatchIndexAndErrorMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The record's index in its batch, from 0.
    pub batch_index: i32,
    pub message: String,
}

/// A batch ready to append: the request's bytes, or a rewritten copy.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    pub bytes: Bytes,
    pub header: BatchHeader,
}

/// The checks that need no record: Kafka's `validateBatch` for a client's batch.
fn check_batch(h: &BatchHeader, tp: &str) -> Result<(), LogError> {
    let invalid = |reason: String| Err(LogError::InvalidRecord { reason });
    if h.records_count <= 0 {
        return invalid(format!(
            "Invalid reported count for record batch: {} in topic partition {tp}.",
            h.records_count
        ));
    }
    if h.records_count != h.last_offset_delta + 1 {
        return invalid(format!(
            "Inconsistent batch offset range [{}, {}] and count of records {} in topic partition {tp}.",
            h.base_offset,
            h.last_offset(),
            h.records_count
        ));
    }
    if h.is_control() {
        return invalid(format!(
            "Clients are not allowed to write control records in topic partition {tp}."
        ));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return invalid(format!(
            "Invalid sequence number {} in record batch with producerId {} in topic partition {tp}.",
            h.base_sequence, h.producer_id
        ));
    }
    Ok(())
}

/// The codec and level this topic stores `h` with, if that is not the batch's own.
fn recompress_to(h: &BatchHeader, cfg: &LogConfig) -> Result<Option<(Codec, i32)>, LogError> {
    let source = Codec::from_attributes(h.attributes).map_err(|e| LogError::CorruptBatch {
        position: 0,
        reason: e.to_string(),
    })?;
    let target = match cfg.compression {
        BrokerCompression::Producer => return Ok(None),
        BrokerCompression::Uncompressed => (Codec::None, 0),
        BrokerCompression::Gzip { level } => (Codec::Gzip, level),
        BrokerCompression::Snappy => (Codec::Snappy, 0),
        BrokerCompression::Lz4 { level } => (Codec::Lz4, level),
        BrokerCompression::Zstd { level } => (Codec::Zstd, level),
    };
    Ok((source != target.0).then_some(target))
}

/// Whether the timestamp checks need the records, or the header alone answers them.
fn timestamps_need_records(h: &BatchHeader, cfg: &LogConfig, now_ms: i64) -> bool {
    if h.is_log_append_time() {
        return true;
    }
    cfg.timestamp_type == TimestampType::CreateTime
        && (cfg.message_timestamp_before_max_ms != i64::MAX
            || (h.max_timestamp as i128 - now_ms as i128)
                > cfg.message_timestamp_after_max_ms as i128)
}

/// Validates one batch a producer sent (`batch` is exactly the batch, its header `h`) and
/// returns what to append: the same bytes, or the batch recompressed. `tp` names the partition
/// in messages, as Kafka's do.
pub fn validate_leader_batch(
    batch: Bytes,
    h: BatchHeader,
    cfg: &LogConfig,
    now_ms: i64,
    tp: &str,
) -> Result<ValidBatch, LogError> {
    check_batch(&h, tp)?;
    let target = recompress_to(&h, cfg)?;
    let compacted = cfg.cleanup_policy.compacts();
    if target.is_none() && !compacted && !timestamps_need_records(&h, cfg, now_ms) {
        return Ok(ValidBatch {
            bytes: batch,
            header: h,
        });
    }
    crate::runtime::block_in_place(|| read_and_rewrite(batch, h, cfg, now_ms, tp, target))
}

fn read_and_rewrite(
    batch: Bytes,
    h: BatchHeader,
    cfg: &LogConfig,
    now_ms: i64,
    tp: &str,
    target: Option<(Codec, i32)>,
) -> Result<ValidBatch, LogError> {
    let corrupt = |reason: String| LogError::CorruptBatch {
        position: 0,
        reason,
    };
    let source = Codec::from_attributes(h.attributes).map_err(|e| corrupt(e.to_string()))?;
    let body = &batch[HEADER_SIZE..];
    let inflated;
    let records: &[u8] = if source == Codec::None {
        body
    } else {
        inflated = compression::decompress(source, body, MAX_DECOMPRESSED_BYTES)
            .map_err(|e| corrupt(e.to_string()))?;
        &inflated
    };
    let mut errors: Vec<(RecordErrorKind, RecordError)> = Vec::new();
    records::for_each_record(records, h.records_count, |index, r| {
        if let Some(e) = check_record(&h, &r, index, source, cfg, now_ms, tp) {
            errors.push(e);
        }
    })
    .map_err(|e| corrupt(e.to_string()))?;
    if !errors.is_empty() {
        return Err(rejected(errors));
    }
    let Some((codec, level)) = target else {
        return Ok(ValidBatch {
            bytes: batch,
            header: h,
        });
    };
    let packed =
        compression::compress(codec, level, records).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_SIZE + packed.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&packed);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = (h.attributes & !0x07) | codec.id();
    record_batch::set_covered_fields(&mut out, attributes, h.max_timestamp, h.base_sequence);
    let header = record_batch::validate_batch(&out)
        .map_err(|e| corrupt(format!("recompressed batch invalid: {e}")))?;
    Ok(ValidBatch {
        bytes: Bytes::from(out),
        header,
    })
}

/// Kafka's `validateRecord`: the key on a compacted topic, then the timestamp.
fn check_record(
    h: &BatchHeader,
    r: &RecordInfo,
    index: usize,
    source: Codec,
    cfg: &LogConfig,
    now_ms: i64,
    tp: &str,
) -> Option<(RecordErrorKind, RecordError)> {
    let error = |kind, message| {
        Some((
            kind,
            RecordError {
                batch_index: index as i32,
                message,
            },
        ))
    };
    let offset = h.base_offset.wrapping_add(r.offset_delta as i64);
    if source != Codec::None && r.offset_delta as i64 != index as i64 {
        return error(
            RecordErrorKind::InvalidRecord,
            format!(
                "Inner record with offset {offset} inside the compressed record batch does not have incremental offsets, expected offset is {} in topic partition {tp}.",
                h.base_offset.wrapping_add(index as i64)
            ),
        );
    }
    if cfg.cleanup_policy.compacts() && !r.has_key {
        return error(
            RecordErrorKind::InvalidRecord,
            format!("Compacted topic cannot accept message without key in topic partition {tp}."),
        );
    }
    let timestamp = h.base_timestamp.wrapping_add(r.timestamp_delta);
    if cfg.timestamp_type == TimestampType::CreateTime && timestamp != -1 {
        let diff = now_ms as i128 - timestamp as i128;
        if diff > cfg.message_timestamp_before_max_ms as i128
            || -diff > cfg.message_timestamp_after_max_ms as i128
        {
            return error(
                RecordErrorKind::InvalidTimestamp,
                format!(
                    "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{}, {}]",
                    now_ms.wrapping_sub(cfg.message_timestamp_before_max_ms),
                    now_ms.wrapping_add(cfg.message_timestamp_after_max_ms)
                ),
            );
        }
    } else if h.is_log_append_time() {
        return error(
            RecordErrorKind::InvalidTimestamp,
            format!(
                "Invalid timestamp type in message with offset {offset}. Producer should not set timestamp type to LogAppendTime."
            ),
        );
    }
    None
}

/// Kafka's `processRecordErrors`: one error for the batch, naming every bad record.
fn rejected(errors: Vec<(RecordErrorKind, RecordError)>) -> LogError {
    let timestamp = errors
        .iter()
        .any(|(k, _)| *k == RecordErrorKind::InvalidTimestamp);
    let record_errors: Vec<RecordError> = errors.into_iter().map(|(_, e)| e).collect();
    if timestamp {
        return LogError::RecordsRejected {
            kind: RecordErrorKind::InvalidTimestamp,
            message: "One or more records have been rejected due to invalid timestamp".into(),
            record_errors,
        };
    }
    let first: Vec<String> = record_errors
        .iter()
        .take(3)
        .map(|e| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                e.batch_index, e.message
            )
        })
        .collect();
    LogError::RecordsRejected {
        kind: RecordErrorKind::InvalidRecord,
        message: format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
            record_errors.len(),
            first.join(", ")
        ),
        record_errors,
    }
}

#[cfg(test)]
mod tests;
