//! The adaptive read-ahead policy of the [`ChunkCache`](crate::ChunkCache), as a pure function.
//!
//! A reader is tracked per object: the chunk after the last one it read, and its window. A read
//! that continues where the last one stopped (the same last chunk again, or the next one) is
//! sequential: the window doubles, up to `max_chunks`, and the chunks just past the read, as
//! many as the window, are fetched ahead. Any other read is a seek: the window falls back to
//! `initial_chunks` and nothing is fetched ahead (a random reader would only pay for GETs it
//! never uses), except at the start of an object, where a reader that moved into the next
//! segment begins.

use std::ops::Range;

/// Window bounds, from `remote.cache.readahead.chunks` (initial) and
/// `remote.fetch.read.ahead.max.chunks` (max).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadPolicy {
    pub initial_chunks: u64,
    pub max_chunks: u64,
}

/// What is remembered of one reader of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadState {
    /// The chunk after the last one read.
    pub next_chunk: u64,
    pub window_chunks: u64,
}

/// A read of chunks `first..=last` of an object of `total_chunks`, by a reader last seen in
/// `state` (`None`: not seen): the reader's new state and the chunks to fetch ahead.
pub fn decide_read_ahead(
    policy: ReadAheadPolicy,
    state: Option<ReadAheadState>,
    first: u64,
    last: u64,
    total_chunks: u64,
) -> (ReadAheadState, Range<u64>) {
    let max = policy.max_chunks.max(policy.initial_chunks);
    let sequential = state.filter(|s| s.next_chunk == first || s.next_chunk == first + 1);
    let window_chunks = match sequential {
        // Grows only when the reader crossed into a new chunk: many small reads inside one
        // chunk are one step, not many.
        Some(s) if last + 1 > s.next_chunk => s.window_chunks.saturating_mul(2).max(1).min(max),
        Some(s) => s.window_chunks,
        None => policy.initial_chunks,
    };
    let next = ReadAheadState {
        next_chunk: last + 1,
        window_chunks,
    };
    let ahead = if sequential.is_some() || first == 0 {
        let from = (last + 1).min(total_chunks);
        from..(from + window_chunks).min(total_chunks)
    } else {
        0..0
    };
    (next, ahead)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ReadAheadPolicy = ReadAheadPolicy {
        initial_chunks: 2,
        max_chunks: 16,
    };

    #[test]
    fn a_sequential_reader_widens_the_window_up_to_the_max() {
        let (mut s, ahead) = decide_read_ahead(P, None, 0, 0, 100);
        assert_eq!((s.window_chunks, ahead), (2, 1..3));
        let mut windows = vec![];
        for chunk in 1..8 {
            let (n, ahead) = decide_read_ahead(P, Some(s), chunk, chunk, 100);
            assert_eq!(
                ahead,
                chunk + 1..chunk + 1 + n.window_chunks,
                "chunk {chunk}"
            );
            windows.push(n.window_chunks);
            s = n;
        }
        assert_eq!(windows, vec![4, 8, 16, 16, 16, 16, 16]);
    }

    #[test]
    fn small_reads_inside_one_chunk_do_not_widen_it() {
        let s = ReadAheadState {
            next_chunk: 5,
            window_chunks: 4,
        };
        // The same chunk again (the reader's next batch starts in the chunk it just read).
        let (n, ahead) = decide_read_ahead(P, Some(s), 4, 4, 100);
        assert_eq!(n, s);
        assert_eq!(ahead, 5..9);
    }

    #[test]
    fn a_seek_resets_the_window_and_fetches_nothing_ahead() {
        let s = ReadAheadState {
            next_chunk: 9,
            window_chunks: 16,
        };
        let (n, ahead) = decide_read_ahead(P, Some(s), 40, 41, 100);
        assert_eq!(
            n,
            ReadAheadState {
                next_chunk: 42,
                window_chunks: 2
            }
        );
        assert!(ahead.is_empty());
        // Backwards is a seek too.
        let (n, ahead) = decide_read_ahead(P, Some(n), 3, 3, 100);
        assert_eq!(n.window_chunks, 2);
        assert!(ahead.is_empty());
        // An unknown reader away from the start fetches nothing ahead.
        assert!(decide_read_ahead(P, None, 7, 7, 100).1.is_empty());
    }

    #[test]
    fn read_ahead_stops_at_the_end_of_the_object() {
        let s = ReadAheadState {
            next_chunk: 8,
            window_chunks: 8,
        };
        assert_eq!(decide_read_ahead(P, Some(s), 8, 8, 10).1, 9..10);
        assert!(decide_read_ahead(P, Some(s), 8, 9, 10).1.is_empty());
    }

    #[test]
    fn no_read_ahead_when_disabled() {
        let off = ReadAheadPolicy {
            initial_chunks: 0,
            max_chunks: 0,
        };
        let (s, ahead) = decide_read_ahead(off, None, 0, 0, 10);
        assert!(ahead.is_empty());
        let (_, ahead) = decide_read_ahead(off, Some(s), 1, 1, 10);
        assert!(ahead.is_empty());
    }
}
