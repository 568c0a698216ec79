//! Control batches: the end-of-transaction markers a partition leader appends for the
//! transaction coordinator (Kafka's `EndTransactionMarker`).
//!
//! A control batch has the transactional and control attribute bits set, the producer's id and
//! epoch, base sequence -1, and one uncompressed record:
//! ```text
//! key:   i16 version (0) | i16 type (0 abort, 1 commit)
//! value: i16 version (0) | i32 coordinator_epoch
//! ```
//! Clients may not write control batches (`log::validator` refuses them); only the leader's
//! marker path and followers copying their leader put them in a log.

use super::record_batch::{
    build_batch, set_covered_fields, BatchHeader, CONTROL_BIT, HEADER_SIZE, TRANSACTIONAL_BIT,
};

/// How a transaction ended (Kafka's `TransactionResult`; the control record type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionResult {
    Abort,
    Commit,
}

impl TransactionResult {
    pub fn control_type(self) -> i16 {
        match self {
            TransactionResult::Abort => 0,
            TransactionResult::Commit => 1,
        }
    }
}

/// One end-of-transaction marker as it is written in a control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTransactionMarker {
    pub result: TransactionResult,
    pub coordinator_epoch: i32,
}

/// Builds the control batch that ends `producer_id`'s transaction (offset 0: the leader
/// assigns the real one when it appends).
pub fn build_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTransactionMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.result.control_type().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut batch = build_batch(
        0,
        timestamp_ms,
        Some((producer_id, producer_epoch, -1)),
        &[(Some(&key[..]), Some(&value[..]))],
    );
    set_covered_fields(
        &mut batch,
        TRANSACTIONAL_BIT | CONTROL_BIT,
        timestamp_ms,
        -1,
    );
    batch
}

fn varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// The marker in a whole control batch, or `None` if `batch` is not a readable marker (a
/// control batch of another type, or a compressed one, which Kafka never writes).
pub fn parse_marker(batch: &[u8]) -> Option<EndTransactionMarker> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let mut at = HEADER_SIZE;
    let _record_len = varint(batch, &mut at)?;
    at += 1; // record attributes
    let _timestamp_delta = varint(batch, &mut at)?;
    let _offset_delta = varint(batch, &mut at)?;
    let key_len = usize::try_from(varint(batch, &mut at)?).ok()?;
    let key = batch.get(at..at + key_len)?;
    at += key_len;
    if key_len < 4 {
        return None;
    }
    let result = match i16::from_be_bytes([key[2], key[3]]) {
        0 => TransactionResult::Abort,
        1 => TransactionResult::Commit,
        _ => return None,
    };
    let value_len = usize::try_from(varint(batch, &mut at)?).ok()?;
    let value = batch.get(at..at + value_len)?;
    if value_len < 6 {
        return None;
    }
    Some(EndTransactionMarker {
        result,
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::validate_batch;

    #[test]
    fn marker_round_trip() {
        for result in [TransactionResult::Abort, TransactionResult::Commit] {
            let marker = EndTransactionMarker {
                result,
                coordinator_epoch: 7,
            };
            let b = build_marker_batch(42, 3, marker, 1000);
            let h = validate_batch(&b).expect("valid CRC");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(h.records_count, 1);
            assert_eq!(parse_marker(&b), Some(marker));
        }
        let data = build_batch(0, 0, Some((1, 0, 0)), &[(None, Some(&b"v"[..]))]);
        assert_eq!(parse_marker(&data), None);
    }
}
