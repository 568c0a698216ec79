//! Encoded responses as a list of byte chunks, so a Fetch response's record sets go to the
//! socket from the buffers the log read them into instead of being copied into one frame.
//!
//! [`FrameWriter`] is the buffer the protocol encoder writes into. Writes are appended to an
//! owned tail, except a slice of at least [`SHARED_MIN_BYTES`] that lies inside one of the
//! `shared` buffers it was given: that one is kept as a reference-counted view of the buffer
//! (`Bytes::slice_ref`), and the frame is written with vectored I/O.

// `ByteBufMut` extends `BufMut`, an `unsafe` trait: the impl below only delegates to a
// `BytesMut`.
#![allow(unsafe_code)]

use std::io::IoSlice;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Smaller slices are copied: below this, a copy costs less than another iovec.
pub(super) const SHARED_MIN_BYTES: usize = 16 * 1024;

/// At most this many chunks go to one `writev`.
const MAX_IOVECS: usize = 64;

/// One encoded response: its chunks, in order, make the frame (size prefix included).
#[derive(Debug, Clone, Default)]
pub(super) struct Frame {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Frame {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// Writes the whole frame, with as few syscalls as the writer allows.
    pub(super) async fn write_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        w: &mut W,
    ) -> std::io::Result<()> {
        if let [only] = self.chunks.as_slice() {
            return w.write_all(only).await;
        }
        let (mut idx, mut off) = (0usize, 0usize);
        while idx < self.chunks.len() {
            let first = &self.chunks[idx][off..];
            let slices: Vec<IoSlice<'_>> = std::iter::once(first)
                .chain(self.chunks[idx + 1..].iter().map(|c| &c[..]))
                .take(MAX_IOVECS)
                .map(IoSlice::new)
                .collect();
            let mut n = w.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let left = self.chunks[idx].len() - off;
                if n < left {
                    off += n;
                    n = 0;
                } else {
                    n -= left;
                    idx += 1;
                    off = 0;
                }
            }
        }
        Ok(())
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Frame {
        Frame {
            len: b.len(),
            chunks: vec![b],
        }
    }
}

enum Part {
    Owned(BytesMut),
    Shared(Bytes),
}

/// The encoder's buffer: see the module docs.
pub(super) struct FrameWriter<'a> {
    shared: &'a [Bytes],
    /// Where the next search of `shared` starts.
    next_shared: usize,
    /// Finished parts before `tail`.
    parts: Vec<Part>,
    /// Bytes in `parts`.
    parts_len: usize,
    tail: BytesMut,
}

impl<'a> FrameWriter<'a> {
    pub(super) fn new(shared: &'a [Bytes]) -> FrameWriter<'a> {
        FrameWriter {
            shared,
            next_shared: 0,
            parts: Vec::new(),
            parts_len: 0,
            tail: BytesMut::with_capacity(256),
        }
    }

    /// The shared buffer that `src` lies inside, as a view of it. The search starts after the
    /// last match: the encoder writes record sets in the order they were collected, so with
    /// many partitions each lookup is one comparison.
    fn shared_view(&mut self, src: &[u8]) -> Option<Bytes> {
        if src.len() < SHARED_MIN_BYTES || self.shared.is_empty() {
            return None;
        }
        let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        let n = self.shared.len();
        let found = (0..n).map(|i| (self.next_shared + i) % n).find(|&i| {
            let b = &self.shared[i];
            let b_start = b.as_ptr() as usize;
            b_start <= start && end <= b_start + b.len()
        })?;
        self.next_shared = (found + 1) % n;
        Some(self.shared[found].slice_ref(src))
    }

    /// Turns everything into one owned buffer, for the rare edit of bytes already written
    /// (a gap filled after a shared part). Correct in every case, never zero-copy.
    fn flatten(&mut self) {
        if self.parts.is_empty() {
            return;
        }
        let mut all = BytesMut::with_capacity(self.parts_len + self.tail.len());
        for p in self.parts.drain(..) {
            match p {
                Part::Owned(b) => all.extend_from_slice(&b),
                Part::Shared(b) => all.extend_from_slice(&b),
            }
        }
        all.extend_from_slice(&self.tail);
        self.tail = all;
        self.parts_len = 0;
    }

    /// The finished frame. The first four bytes written are overwritten with the size of
    /// what follows them (Kafka's size prefix).
    pub(super) fn finish_with_size_prefix(mut self) -> Frame {
        let total = self.parts_len + self.tail.len();
        debug_assert!(total >= 4);
        let size = ((total - 4) as i32).to_be_bytes();
        self.range(0..4).copy_from_slice(&size);
        let mut chunks = Vec::with_capacity(self.parts.len() + 1);
        for p in self.parts {
            match p {
                Part::Owned(b) => chunks.push(b.freeze()),
                Part::Shared(b) => chunks.push(b),
            }
        }
        if !self.tail.is_empty() {
            chunks.push(self.tail.freeze());
        }
        Frame { chunks, len: total }
    }
}

// SAFETY: every method delegates to the owned tail, a `BytesMut`, whose `BufMut` contract
// holds; `put_slice` only appends whole parts before it.
unsafe impl BufMut for FrameWriter<'_> {
    fn remaining_mut(&self) -> usize {
        self.tail.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is the tail's.
        unsafe { self.tail.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared_view(src) {
            Some(view) => {
                if !self.tail.is_empty() {
                    let owned = self.tail.split();
                    self.parts_len += owned.len();
                    self.parts.push(Part::Owned(owned));
                }
                self.parts_len += view.len();
                self.parts.push(Part::Shared(view));
            }
            None => self.tail.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for FrameWriter<'_> {
    fn offset(&self) -> usize {
        self.parts_len + self.tail.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.parts_len {
            self.flatten();
        }
        self.tail.resize(offset - self.parts_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        // The size prefix is the one edit made in the common case, and the first part is
        // always owned: edit it in place.
        let in_first =
            matches!(self.parts.first(), Some(Part::Owned(first)) if r.end <= first.len());
        if !in_first && r.start < self.parts_len {
            self.flatten();
        }
        match self.parts.first_mut() {
            Some(Part::Owned(first)) if in_first => return &mut first[r],
            _ => {}
        }
        let base = self.parts_len;
        &mut self.tail[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(shared: &[Bytes], write: impl FnOnce(&mut FrameWriter<'_>)) -> Frame {
        let mut w = FrameWriter::new(shared);
        w.put_i32(0);
        write(&mut w);
        w.finish_with_size_prefix()
    }

    #[test]
    fn large_slices_of_shared_buffers_are_not_copied() {
        let records = Bytes::from(vec![7u8; 64 * 1024]);
        let frame = encode(std::slice::from_ref(&records), |w| {
            w.put_i16(3);
            w.put_slice(&records[100..40_000]);
            w.put_u8(9);
        });
        assert_eq!(frame.chunks().len(), 3);
        assert_eq!(frame.chunks()[1].as_ptr(), records[100..].as_ptr());
        let mut want = (2 + 39_900 + 1i32).to_be_bytes().to_vec();
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&records[100..40_000]);
        want.push(9);
        assert_eq!(frame.to_vec(), want);
        assert_eq!(frame.len(), want.len());
    }

    #[test]
    fn record_sets_are_found_in_any_order() {
        let sets: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 20_000])).collect();
        let frame = encode(&sets, |w| {
            for i in [0, 1, 2, 4, 3] {
                w.put_slice(&sets[i]);
            }
        });
        // The size prefix, then each set as its own shared chunk.
        assert_eq!(frame.chunks().len(), 6);
        for (chunk, i) in frame.chunks()[1..].iter().zip([0, 1, 2, 4, 3]) {
            assert_eq!(chunk.as_ptr(), sets[i].as_ptr());
        }
    }

    #[test]
    fn small_slices_and_foreign_buffers_are_copied() {
        let records = Bytes::from(vec![1u8; 64 * 1024]);
        let other = vec![2u8; 32 * 1024];
        let frame = encode(std::slice::from_ref(&records), |w| {
            w.put_slice(&records[..SHARED_MIN_BYTES - 1]);
            w.put_slice(&other);
        });
        assert_eq!(frame.chunks().len(), 1);
        assert_eq!(frame.len(), 4 + SHARED_MIN_BYTES - 1 + other.len());
    }

    #[test]
    fn a_gap_filled_after_a_shared_part_lands_where_it_was_left() {
        let records = Bytes::from(vec![5u8; 20_000]);
        let frame = encode(std::slice::from_ref(&records), |w| {
            let gap = w.put_gap(2);
            w.put_slice(&records);
            w.gap_buf(gap).copy_from_slice(&[0xAB, 0xCD]);
        });
        let bytes = frame.to_vec();
        assert_eq!(&bytes[..4], &(2 + 20_000i32).to_be_bytes());
        assert_eq!(&bytes[4..6], &[0xAB, 0xCD]);
        assert_eq!(&bytes[6..], &records[..]);
    }

    #[tokio::test]
    async fn a_chunked_frame_is_written_whole_through_short_writes() {
        let records = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let frame = encode(std::slice::from_ref(&records), |w| {
            for i in 0..5 {
                w.put_u8(i);
                w.put_slice(&records[i as usize * 30_000..(i as usize + 1) * 30_000]);
            }
        });
        assert!(frame.chunks().len() > 5);
        // A pipe smaller than the frame forces partial vectored writes.
        let (mut tx, mut rx) = tokio::io::duplex(4096);
        let want = frame.to_vec();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut got)
                .await
                .unwrap();
            got
        });
        frame.write_to(&mut tx).await.unwrap();
        drop(tx);
        assert_eq!(reader.await.unwrap(), want);
    }
}
