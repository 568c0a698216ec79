//! The adaptive read-ahead policy of the [`ChunkCache`](crate::ChunkCache), as a pure function.
//!
//! Readers are tracked per object, up to [`MAX_READERS_PER_OBJECT`] of them
//! ([`ObjectReaders`]): two consumer groups replaying one partition from different offsets
//! read the same objects at different places, and each keeps its own window. A reader is the
//! chunk after the last one it read, and its window. A read that continues where a reader
//! stopped (the same last chunk again, or the next one) is that reader's sequential step: the
//! window doubles, up to `max_chunks`, and the chunks just past the read, as many as the
//! window, are fetched ahead. Any other read is a seek, or a reader not seen yet (it takes the
//! place of the least recently used reader once the object has its maximum): the window
//! starts at `initial_chunks` and nothing is fetched ahead (a random reader would only pay for
//! GETs it never uses), except at the start of an object, where a reader that moved into the
//! next segment begins.
//!
//! The window is kept full between reads: when a read-ahead GET completes, [`refill_range`]
//! names the chunks of the reader's window still to fetch, so the GETs in flight do not drain
//! while the consumer is between fetches. A reader moving on into the next object keeps its
//! window ([`continue_into_next_object`]).

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
    /// Whether the last read fetched ahead (sequential, or the start of an object): only then
    /// is the window refilled as read-ahead GETs complete.
    pub ahead: bool,
    /// The end of the chunks already asked for (read, or started ahead): a refill starts
    /// there, so while the reader stands still each chunk is fetched ahead at most once (a
    /// chunk evicted before it was read is left for the read itself).
    pub requested_to: u64,
}

impl ReadAheadState {
    /// Whether a read starting at chunk `first` continues this reader: it starts in the chunk
    /// the reader read last, or in the next one.
    pub fn is_continued_by(&self, first: u64) -> bool {
        self.next_chunk == first || self.next_chunk == first + 1
    }
}

/// How many readers of one object keep their own position and window.
pub const MAX_READERS_PER_OBJECT: usize = 4;

/// The readers of one object, least recently used first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectReaders(Vec<ReadAheadState>);

impl ObjectReaders {
    /// The reader that a read starting at chunk `first` continues
    /// ([`ReadAheadState::is_continued_by`]; the most recently used, if several are).
    pub fn continued_by(&self, first: u64) -> Option<usize> {
        self.0.iter().rposition(|s| s.is_continued_by(first))
    }

    pub fn get(&self, reader: usize) -> Option<ReadAheadState> {
        self.0.get(reader).copied()
    }

    /// Records `state` as reader `reader` (`None`: a new reader, which replaces the least
    /// recently used one when the object has its maximum), now the most recently used.
    pub fn put(&mut self, reader: Option<usize>, state: ReadAheadState) {
        match reader {
            Some(i) if i < self.0.len() => {
                self.0.remove(i);
            }
            _ if self.0.len() >= MAX_READERS_PER_OBJECT => {
                self.0.remove(0);
            }
            _ => {}
        }
        self.0.push(state);
    }

    /// The reader furthest into the object: the one that moves on into the next object first.
    pub fn furthest(&self) -> Option<ReadAheadState> {
        self.0.iter().max_by_key(|s| s.next_chunk).copied()
    }

    /// Records that the reader now at `next_chunk` asked for the chunks before `requested_to`.
    pub fn note_requested(&mut self, next_chunk: u64, requested_to: u64) {
        if let Some(s) = self.0.iter_mut().rev().find(|s| s.next_chunk == next_chunk) {
            s.requested_to = s.requested_to.max(requested_to);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = ReadAheadState> + '_ {
        self.0.iter().copied()
    }
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
    let sequential = state.filter(|s| s.is_continued_by(first));
    let window_chunks = match sequential {
        // Grows only when the reader crossed into a new chunk: many small reads inside one
        // chunk are one step, not many.
        Some(s) if last + 1 > s.next_chunk => s.window_chunks.saturating_mul(2).max(1).min(max),
        Some(s) => s.window_chunks,
        None => policy.initial_chunks,
    };
    let reads_ahead = sequential.is_some() || first == 0;
    let next = ReadAheadState {
        next_chunk: last + 1,
        window_chunks,
        ahead: reads_ahead && window_chunks > 0,
        requested_to: sequential.map_or(last + 1, |s| s.requested_to.max(last + 1)),
    };
    let ahead = if reads_ahead {
        let from = (last + 1).min(total_chunks);
        from..(from + window_chunks).min(total_chunks)
    } else {
        0..0
    };
    (next, ahead)
}

/// The chunks of a reader's window ahead of it, in an object of `total_chunks`: what a
/// completed read-ahead GET tops up (those cached or in flight are skipped by the caller).
/// Empty for a reader that is not reading ahead.
pub fn refill_range(state: ReadAheadState, total_chunks: u64) -> Range<u64> {
    if !state.ahead {
        return 0..0;
    }
    let from = state.next_chunk.max(state.requested_to).min(total_chunks);
    from..(state.next_chunk + state.window_chunks)
        .min(total_chunks)
        .max(from)
}

/// The state of a sequential reader of one object that is moving on into the next one: it
/// starts there at chunk 0 with the window it had, so the first read of the new object is a
/// sequential step and read-ahead does not start over from the initial window.
pub fn continue_into_next_object(
    policy: ReadAheadPolicy,
    previous: Option<ReadAheadState>,
) -> ReadAheadState {
    let window_chunks = previous
        .filter(|s| s.ahead)
        .map_or(policy.initial_chunks, |s| s.window_chunks)
        .min(policy.max_chunks.max(policy.initial_chunks));
    ReadAheadState {
        next_chunk: 0,
        window_chunks,
        ahead: window_chunks > 0,
        requested_to: 0,
    }
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
            ahead: true,
            requested_to: 9,
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
            ahead: true,
            requested_to: 0,
        };
        let (n, ahead) = decide_read_ahead(P, Some(s), 40, 41, 100);
        assert_eq!(
            n,
            ReadAheadState {
                next_chunk: 42,
                window_chunks: 2,
                ahead: false,
                requested_to: 42,
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
            ahead: true,
            requested_to: 0,
        };
        assert_eq!(decide_read_ahead(P, Some(s), 8, 8, 10).1, 9..10);
        assert!(decide_read_ahead(P, Some(s), 8, 9, 10).1.is_empty());
    }

    #[test]
    fn readers_of_one_object_are_told_apart_by_where_they_read() {
        let at = |next_chunk| ReadAheadState {
            next_chunk,
            window_chunks: 2,
            ahead: true,
            requested_to: next_chunk,
        };
        let mut readers = ObjectReaders::default();
        readers.put(None, at(5));
        readers.put(None, at(30));
        // A read from the chunk a reader stopped at, or the one before it, continues it.
        assert_eq!(readers.continued_by(5), Some(0));
        assert_eq!(readers.continued_by(4), Some(0));
        assert_eq!(readers.continued_by(29), Some(1));
        assert_eq!(readers.continued_by(6), None);
        // The reader used moves to the most recent place; the bound drops the least recent.
        readers.put(Some(0), at(6));
        for next in [50, 60, 70] {
            readers.put(None, at(next));
        }
        let nexts: Vec<u64> = readers.iter().map(|r| r.next_chunk).collect();
        assert_eq!(nexts, vec![6, 50, 60, 70]);
        assert_eq!(readers.furthest().map(|r| r.next_chunk), Some(70));
        readers.note_requested(60, 64);
        readers.note_requested(60, 62);
        assert_eq!(readers.get(2).map(|r| r.requested_to), Some(64));
        assert_eq!(readers.get(1).map(|r| r.requested_to), Some(50));
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

    #[test]
    fn the_window_is_refilled_only_for_a_reader_reading_ahead() {
        let (s, _) = decide_read_ahead(P, None, 0, 0, 100);
        assert_eq!(refill_range(s, 100), 1..3);
        let (s, _) = decide_read_ahead(P, Some(s), 1, 1, 100);
        assert_eq!(refill_range(s, 100), 2..6);
        assert_eq!(refill_range(s, 4), 2..4, "stops at the end of the object");
        // What was asked for already is not asked for again while the reader stands still.
        let asked = ReadAheadState {
            requested_to: 5,
            ..s
        };
        assert_eq!(refill_range(asked, 100), 5..6);
        let asked = ReadAheadState {
            requested_to: 9,
            ..s
        };
        assert!(refill_range(asked, 100).is_empty());
        // After a seek nothing is refilled: a random reader pays for no GETs it never uses.
        let (s, _) = decide_read_ahead(P, Some(s), 50, 50, 100);
        assert!(refill_range(s, 100).is_empty());
    }

    #[test]
    fn a_reader_moving_into_the_next_object_keeps_its_window() {
        let s = ReadAheadState {
            next_chunk: 64,
            window_chunks: 16,
            ahead: true,
            requested_to: 0,
        };
        let n = continue_into_next_object(P, Some(s));
        assert_eq!((n.next_chunk, n.window_chunks, n.ahead), (0, 16, true));
        // Its first read there is a sequential step at the full window.
        let (n, ahead) = decide_read_ahead(P, Some(n), 0, 0, 100);
        assert_eq!((n.window_chunks, ahead), (16, 1..17));
        // Unknown or seeking readers start from the initial window.
        assert_eq!(continue_into_next_object(P, None).window_chunks, 2);
        let seek = ReadAheadState { ahead: false, ..s };
        assert_eq!(continue_into_next_object(P, Some(seek)).window_chunks, 2);
    }
}
