//! Record batches as clients write them (magic 2), and a partition log read back batch by batch.

// Each test binary that includes this file uses only some of it.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata::log::UnifiedLog;
use strata::model::Offset;
use strata::protocol::record_batch::{BatchHeader, BatchIter};

/// Record `i` of a batch from a producer without idempotence, no headers.
pub(crate) fn record(
    i: usize,
    timestamp_ms: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        // The encoder starts a new batch wherever offset - sequence changes; -1 (no sequence)
        // is where a non-idempotent batch starts.
        sequence: -1 + i as i32,
        timestamp: timestamp_ms,
        key,
        value,
        headers: Default::default(),
    }
}

/// Encodes `records` as magic-2 batches (one, when their offsets and sequences run together).
pub(crate) fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.freeze()
}

/// Every batch of `log` from its start offset to its end, in order: its header and its bytes.
pub(crate) fn log_batches(log: &UnifiedLog) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut next = log.local_log_start_offset();
    loop {
        let r = log
            .read(next, 1 << 20, Offset(i64::MAX), true)
            .expect("read");
        if r.records.is_empty() {
            return out;
        }
        for item in BatchIter::new(&r.records) {
            let (pos, h) = item.expect("whole batch");
            next = Offset(h.next_offset());
            out.push((h, r.records.slice(pos..pos + h.total_size())));
        }
    }
}
