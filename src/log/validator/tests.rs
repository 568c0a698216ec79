use super::*;
use crate::log::CleanupPolicy;
use crate::protocol::record_batch::{build_batch, validate_batch, KeyValue};

const NOW: i64 = 1_800_000_000_000;

fn batch(base_timestamp: i64, records: &[KeyValue<'_>]) -> (Bytes, BatchHeader) {
    let b = build_batch(0, base_timestamp, None, records);
    let h = validate_batch(&b).expect("valid");
    (Bytes::from(b), h)
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

fn rejection(r: Result<ValidBatch, LogError>) -> (RecordErrorKind, Vec<i32>, String) {
    match r {
        Err(LogError::RecordsRejected {
            kind,
            record_errors,
            message,
        }) => (
            kind,
            record_errors.iter().map(|e| e.batch_index).collect(),
            message,
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_plain_batch_is_appended_as_sent() {
    let (b, h) = batch(NOW, &[(None, Some(&b"v"[..])); 3]);
    let v = validate_leader_batch(b.clone(), h, &LogConfig::default(), NOW, "t-0").expect("ok");
    assert_eq!(v.bytes, b);
}

#[test]
fn keyless_records_on_a_compacted_topic_are_named() {
    let recs: Vec<KeyValue<'_>> = (0..5)
        .map(|i| {
            (
                if i % 2 == 1 { None } else { Some(&b"k"[..]) },
                Some(&b"v"[..]),
            )
        })
        .collect();
    let (b, h) = batch(NOW, &recs);
    let (kind, indexes, message) = rejection(validate_leader_batch(b, h, &compacted(), NOW, "t-0"));
    assert_eq!(kind, RecordErrorKind::InvalidRecord);
    assert_eq!(indexes, [1, 3]);
    assert!(
        message.starts_with("One or more records have been rejected due to 2 record errors"),
        "{message}"
    );
    assert!(message
        .contains("Compacted topic cannot accept message without key in topic partition t-0."));
}

#[test]
fn timestamps_outside_the_bounds_are_invalid() {
    let cfg = LogConfig {
        message_timestamp_before_max_ms: 60_000,
        ..LogConfig::default()
    };
    // Deltas 0, 1, 2 from the base: only the middle one is in range.
    let (b, h) = batch(NOW - 60_001, &[(None, Some(&b"v"[..])); 2]);
    let (kind, indexes, _) = rejection(validate_leader_batch(b, h, &cfg, NOW, "t-0"));
    assert_eq!(
        (kind, indexes),
        (RecordErrorKind::InvalidTimestamp, vec![0])
    );
    let future = NOW + LogConfig::default().message_timestamp_after_max_ms + 1;
    let (b, h) = batch(future - 1, &[(None, Some(&b"v"[..])); 3]);
    let (kind, indexes, message) = rejection(validate_leader_batch(
        b,
        h,
        &LogConfig::default(),
        NOW,
        "t-0",
    ));
    assert_eq!(
        (kind, indexes),
        (RecordErrorKind::InvalidTimestamp, vec![1, 2])
    );
    assert_eq!(
        message,
        "One or more records have been rejected due to invalid timestamp"
    );
    // LogAppendTime topics take any timestamp: the broker's replaces it.
    let lat = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let (b, h) = batch(future, &[(None, Some(&b"v"[..]))]);
    assert!(validate_leader_batch(b, h, &lat, NOW, "t-0").is_ok());
}

#[test]
fn batch_level_errors_are_invalid_record() {
    let (b, _) = batch(NOW, &[(None, Some(&b"v"[..])); 2]);
    let mut v = b.to_vec();
    v[23..27].copy_from_slice(&5i32.to_be_bytes()); // lastOffsetDelta
    record_batch::refresh_crc(&mut v);
    let h = validate_batch(&v).expect("crc fixed");
    assert!(matches!(
        validate_leader_batch(Bytes::from(v), h, &LogConfig::default(), NOW, "t-0"),
        Err(LogError::InvalidRecord { .. })
    ));
}

#[test]
fn recompression_keeps_every_record_byte() {
    let recs: Vec<KeyValue<'_>> = (0..50)
        .map(|_| (Some(&b"key"[..]), Some(&b"value value value"[..])))
        .collect();
    let (b, h) = batch(NOW, &recs);
    for (compression, codec) in [
        (BrokerCompression::Gzip { level: 9 }, Codec::Gzip),
        (BrokerCompression::Snappy, Codec::Snappy),
        (BrokerCompression::Lz4 { level: 9 }, Codec::Lz4),
        (BrokerCompression::Zstd { level: 3 }, Codec::Zstd),
    ] {
        let cfg = LogConfig {
            compression,
            ..LogConfig::default()
        };
        let v = validate_leader_batch(b.clone(), h, &cfg, NOW, "t-0").expect("ok");
        assert_eq!(Codec::from_attributes(v.header.attributes), Ok(codec));
        assert!(v.bytes.len() < b.len(), "{codec} did not shrink the batch");
        let inflated =
            compression::decompress(codec, &v.bytes[HEADER_SIZE..], 1 << 20).expect("inflate");
        assert_eq!(&inflated[..], &b[HEADER_SIZE..]);
        assert_eq!(
            (v.header.max_timestamp, v.header.records_count),
            (h.max_timestamp, h.records_count)
        );
        // And back to uncompressed: the original bytes exactly.
        let back = LogConfig {
            compression: BrokerCompression::Uncompressed,
            ..LogConfig::default()
        };
        let u = validate_leader_batch(v.bytes.clone(), v.header, &back, NOW, "t-0").expect("ok");
        assert_eq!(u.bytes, b);
    }
}

#[test]
fn a_batch_already_in_the_topic_codec_is_kept() {
    let (b, h) = batch(NOW, &[(None, Some(&b"v"[..]))]);
    let cfg = LogConfig {
        compression: BrokerCompression::Uncompressed,
        ..LogConfig::default()
    };
    assert_eq!(
        validate_leader_batch(b.clone(), h, &cfg, NOW, "t-0")
            .expect("ok")
            .bytes,
        b
    );
}
