//! The records inside a magic-2 batch, read just far enough to validate them: each record's
//! timestamp and offset deltas and whether it has a key. Values and headers are skipped by the
//! record's length, never copied.
//!
//! A record (all varints zigzag-encoded, as Kafka's `DefaultRecord`):
//!
//! ```text
//! length          varint   bytes after this field
//! attributes      int8     unused
//! timestampDelta  varlong  from the batch's baseTimestamp
//! offsetDelta     varint   from the batch's baseOffset
//! keyLength       varint   -1 for a null key
//! key             bytes
//! valueLength     varint   -1 for a null value
//! value           bytes
//! headers         varint count, then per header: keyLength, key, valueLength, value
//! ```

/// What validation needs of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub has_key: bool,
}

/// Why the records of a batch cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("record {index} is malformed: {reason}")]
    Malformed { index: usize, reason: &'static str },
    #[error("the batch declares {declared} records but holds {found}")]
    CountMismatch { declared: i32, found: usize },
}

/// Reads a zigzag varint (at most 10 bytes) at `*at`, advancing it.
fn varlong(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        raw |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Calls `f(index, record)` for each of the `declared` records in `records` (the uncompressed
/// records part of a batch). The records must fill `records` exactly, as Kafka requires.
pub fn for_each_record(
    records: &[u8],
    declared: i32,
    mut f: impl FnMut(usize, RecordInfo),
) -> Result<(), RecordsError> {
    let mut at = 0usize;
    let mut index = 0usize;
    while at < records.len() {
        let malformed = |reason| RecordsError::Malformed { index, reason };
        if index as i64 >= declared as i64 {
            return Err(RecordsError::CountMismatch {
                declared,
                found: index + 1,
            });
        }
        let length = varlong(records, &mut at).ok_or(malformed("bad length"))?;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&end| end <= records.len())
            .ok_or(malformed("length past the end of the batch"))?;
        let body = &records[..end];
        let mut p = at + 1; // attributes
        let timestamp_delta = varlong(body, &mut p).ok_or(malformed("bad timestamp delta"))?;
        let offset_delta = varlong(body, &mut p)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or(malformed("bad offset delta"))?;
        let key_length = varlong(body, &mut p).ok_or(malformed("bad key length"))?;
        if key_length < -1 || (key_length >= 0 && p as i64 + key_length > end as i64) {
            return Err(malformed("key past the end of the record"));
        }
        if p > end {
            return Err(malformed("truncated record"));
        }
        f(
            index,
            RecordInfo {
                timestamp_delta,
                offset_delta,
                has_key: key_length >= 0,
            },
        );
        at = end;
        index += 1;
    }
    if index as i64 != declared as i64 {
        return Err(RecordsError::CountMismatch {
            declared,
            found: index,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::{build_batch, HEADER_SIZE};
    use proptest::prelude::*;

    #[test]
    fn reads_keys_and_deltas() {
        let b = build_batch(
            0,
            1000,
            None,
            &[
                (Some(&b"k"[..]), Some(&b"v"[..])),
                (None, Some(&b"w"[..])),
                (Some(&b""[..]), None),
            ],
        );
        let mut seen = Vec::new();
        for_each_record(&b[HEADER_SIZE..], 3, |i, r| seen.push((i, r))).expect("valid");
        let keys: Vec<bool> = seen.iter().map(|(_, r)| r.has_key).collect();
        assert_eq!(keys, [true, false, true]);
        let deltas: Vec<(i64, i32)> = seen
            .iter()
            .map(|(_, r)| (r.timestamp_delta, r.offset_delta))
            .collect();
        assert_eq!(deltas, [(0, 0), (1, 1), (2, 2)]);
    }

    #[test]
    fn counts_must_match() {
        let b = build_batch(0, 1000, None, &[(None, Some(&b"v"[..])); 2]);
        assert!(matches!(
            for_each_record(&b[HEADER_SIZE..], 3, |_, _| {}),
            Err(RecordsError::CountMismatch {
                declared: 3,
                found: 2
            })
        ));
        assert!(for_each_record(&b[HEADER_SIZE..], 1, |_, _| {}).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), n in 0i32..20) {
            let _ = for_each_record(&data, n, |_, _| {});
        }
    }
}
