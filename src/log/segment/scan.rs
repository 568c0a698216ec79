//! Batch scans and reads over a segment file, without the log lock: recovery and lookups walk
//! headers with [`scan_batches`]; fetches copy whole, verified batches with [`read_batches`].

use bytes::Bytes;

use super::{SegmentFile, VERIFY_CRC_ON_READ};
use crate::log::Result;
use crate::protocol::record_batch::{validate_batch, BatchHeader, HEADER_SIZE};

/// Where a scan stopped.
#[derive(Debug)]
pub struct ScanEnd {
    /// Position after the last good batch.
    pub valid_end: u64,
    /// Why it stopped early, if it did: position and reason.
    pub error: Option<(u64, String)>,
}

/// Walks the batches of `file` in `[start, end)` in large chunks, calling `f(position, header,
/// whole batch bytes)` for each. With `verify`, each batch's CRC is checked; the scan stops at
/// the first bad or partial batch, at a batch whose base offset goes backwards, or when `f`
/// returns false.
pub fn scan_batches(
    file: &SegmentFile,
    start: u64,
    end: u64,
    verify: bool,
    chunk_bytes: usize,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> bool,
) -> Result<ScanEnd> {
    let mut pos = start;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    let mut prev_next_offset = i64::MIN;
    while pos < end {
        let remaining = end - pos;
        if remaining < HEADER_SIZE as u64 {
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, format!("{remaining} trailing bytes"))),
            });
        }
        let in_buf = |pos: u64, len: usize, buf: &Vec<u8>, bs: u64| {
            pos >= bs && pos + len as u64 <= bs + buf.len() as u64
        };
        if !in_buf(pos, HEADER_SIZE, &buf, buf_start) {
            let len = (chunk_bytes as u64).min(remaining) as usize;
            buf = file.read_at(pos, len)?;
            buf_start = pos;
        }
        let off = (pos - buf_start) as usize;
        let h = match BatchHeader::parse(&buf[off..]) {
            Ok(h) => h,
            Err(e) => {
                return Ok(ScanEnd {
                    valid_end: pos,
                    error: Some((pos, e.to_string())),
                })
            }
        };
        let size = h.total_size();
        if size as u64 > remaining {
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, format!("batch of {size} bytes runs past the end"))),
            });
        }
        if h.base_offset < prev_next_offset {
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, format!("offset {} goes backwards", h.base_offset))),
            });
        }
        if !in_buf(pos, size, &buf, buf_start) {
            let len = (chunk_bytes.max(size) as u64).min(remaining) as usize;
            buf = file.read_at(pos, len)?;
            buf_start = pos;
        }
        let off = (pos - buf_start) as usize;
        let batch = &buf[off..off + size];
        if verify {
            if let Err(e) = validate_batch(batch) {
                return Ok(ScanEnd {
                    valid_end: pos,
                    error: Some((pos, e.to_string())),
                });
            }
        }
        if !f(pos, &h, batch) {
            return Ok(ScanEnd {
                valid_end: pos,
                error: None,
            });
        }
        prev_next_offset = h.next_offset();
        pos += size as u64;
    }
    Ok(ScanEnd {
        valid_end: pos,
        error: None,
    })
}

/// What a read of one segment found.
#[derive(Debug)]
pub enum SegmentRead {
    /// Whole batches, the first containing the requested offset (possibly empty when limits
    /// cut the first batch).
    Data(Bytes),
    /// No batch in this segment reaches the requested offset.
    NotHere,
}

/// Copies whole batches from `file` starting at the batch that contains `offset`, searching
/// from `start_pos` (an index lookup), never beyond `end` (the segment size when the caller
/// looked). Runs without the log lock.
pub fn read_batches(
    file: &SegmentFile,
    start_pos: u64,
    end: u64,
    offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_batch: bool,
) -> Result<SegmentRead> {
    // Find the first batch whose last offset reaches `offset`; the index keeps this short.
    let mut found: Option<(u64, BatchHeader)> = None;
    let scan = scan_batches(file, start_pos, end, false, 16 * 1024, |pos, h, _| {
        if h.last_offset() >= offset {
            found = Some((pos, *h));
            false
        } else {
            true
        }
    })?;
    let Some((pos, first)) = found else {
        if let Some((p, reason)) = scan.error {
            return Err(file.corrupt(p, reason));
        }
        return Ok(SegmentRead::NotHere);
    };
    if first.last_offset() >= max_offset {
        return Ok(SegmentRead::Data(Bytes::new()));
    }
    let available = (end - pos) as usize;
    let first_size = first.total_size();
    let want = if first_size > max_bytes {
        if !min_one_batch {
            return Ok(SegmentRead::Data(Bytes::new()));
        }
        first_size
    } else {
        max_bytes.min(available)
    };
    let data = file.read_at(pos, want)?;
    // Keep whole batches below max_offset, verified. Corruption after the first batch ends
    // the read early (the good prefix is returned and the next read reports the error);
    // corruption in the first batch is the error.
    let mut cut = 0usize;
    let mut expected_min_offset = first.base_offset;
    let whole_segment_tail = (want as u64) == end - pos;
    while cut < data.len() {
        let rest = &data[cut..];
        let problem: Option<String> = match BatchHeader::parse(rest) {
            // A partial header at the end of the chunk is just the max_bytes cut.
            Err(_) if rest.len() < HEADER_SIZE && !whole_segment_tail => break,
            Err(e) => Some(e.to_string()),
            Ok(h) if h.total_size() > rest.len() => {
                if !whole_segment_tail {
                    break;
                }
                Some("batch runs past the segment end".to_string())
            }
            Ok(h) if h.base_offset < expected_min_offset => {
                Some("batch offsets go backwards".to_string())
            }
            Ok(h) if h.last_offset() >= max_offset => break,
            Ok(h) => {
                let verdict = if VERIFY_CRC_ON_READ {
                    validate_batch(&rest[..h.total_size()])
                        .err()
                        .map(|e| e.to_string())
                } else {
                    None
                };
                if verdict.is_none() {
                    expected_min_offset = h.next_offset();
                    cut += h.total_size();
                }
                verdict
            }
        };
        if let Some(reason) = problem {
            if cut == 0 {
                return Err(file.corrupt(pos, reason));
            }
            break;
        }
    }
    let mut bytes = Bytes::from(data);
    bytes.truncate(cut);
    Ok(SegmentRead::Data(bytes))
}
