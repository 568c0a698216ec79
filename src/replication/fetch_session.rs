//! Incremental fetch sessions (KIP-227) from the fetcher's side: Kafka's client
//! `FetchSessionHandler`, which a follower's fetcher keeps per leader.
//!
//! The first request is full: every partition, asking for a session (epoch 0). Once the leader
//! answers with a session id, each request carries that id and the next epoch, and names only
//! the partitions whose fetch changed since the last request (new ones, or a new fetch offset,
//! log start, leader epoch or last fetched epoch) and, as forgotten, those no longer wanted. An
//! idle follower therefore sends an empty request, and the leader answers only partitions with
//! news. Any trouble (a session error, a failed or abandoned request) makes the next request
//! full again, closing the old session; a leader that has no slot for a session answers session
//! id 0, and the fetcher keeps sending full requests, asking again each time.
//!
//! Pure: [`FetchSessionHandler::build`] decides the next request from what is wanted, and
//! [`FetchSessionHandler::handle_response`] / [`FetchSessionHandler::handle_error`] what the
//! answer means for the next one.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;

use crate::model::TopicPartition;
use crate::protocol::fetch_session::{
    FetchMetadata, PartitionFetch, INITIAL_EPOCH, INVALID_SESSION_ID,
};

/// What the next request sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequestData {
    pub metadata: FetchMetadata,
    /// Every partition (full), or the added and changed ones (incremental).
    pub to_send: Vec<(TopicPartition, PartitionFetch)>,
    /// Partitions the session should drop (incremental only).
    pub to_forget: Vec<TopicPartition>,
}

impl FetchRequestData {
    pub fn is_full(&self) -> bool {
        self.metadata.is_full()
    }
}

/// A fetcher's session with one broker.
#[derive(Debug, Clone)]
pub struct FetchSessionHandler {
    next: FetchMetadata,
    /// What the broker's session holds for each partition, as last sent.
    session: HashMap<TopicPartition, PartitionFetch>,
}

impl Default for FetchSessionHandler {
    fn default() -> Self {
        FetchSessionHandler {
            next: FetchMetadata::INITIAL,
            session: HashMap::new(),
        }
    }
}

impl FetchSessionHandler {
    /// The session id and epoch the next request carries.
    pub fn next_metadata(&self) -> FetchMetadata {
        self.next
    }

    /// The next request for `wanted` (each partition once); the session is assumed to hold
    /// `wanted` from now on.
    pub fn build(&mut self, wanted: Vec<(TopicPartition, PartitionFetch)>) -> FetchRequestData {
        let metadata = self.next;
        if metadata.is_full() {
            self.session = wanted.iter().cloned().collect();
            return FetchRequestData {
                metadata,
                to_send: wanted,
                to_forget: Vec::new(),
            };
        }
        let mut session = HashMap::with_capacity(wanted.len());
        let mut to_send = Vec::new();
        for (tp, fetch) in wanted {
            if self.session.get(&tp) != Some(&fetch) {
                to_send.push((tp.clone(), fetch));
            }
            session.insert(tp, fetch);
        }
        let mut to_forget: Vec<TopicPartition> = self
            .session
            .keys()
            .filter(|tp| !session.contains_key(*tp))
            .cloned()
            .collect();
        to_forget.sort();
        self.session = session;
        FetchRequestData {
            metadata,
            to_send,
            to_forget,
        }
    }

    /// Takes the answer's error code and session id; returns whether its partitions are to be
    /// used (false after a top-level error).
    pub fn handle_response(&mut self, error_code: i16, session_id: i32) -> bool {
        if error_code != 0 {
            self.next = match ResponseError::try_from_code(error_code) {
                Some(ResponseError::FetchSessionIdNotFound) => FetchMetadata::INITIAL,
                _ => self.next.next_close_existing(),
            };
            return false;
        }
        self.next = if session_id == INVALID_SESSION_ID {
            // No session was created, or the broker closed it: start over.
            FetchMetadata::INITIAL
        } else if self.next.is_full() {
            FetchMetadata {
                session_id,
                epoch: INITIAL_EPOCH,
            }
            .next_incremental()
        } else {
            self.next.next_incremental()
        };
        true
    }

    /// The request failed or was abandoned, so whether the broker saw it is unknown: the next
    /// request is full and replaces the session.
    pub fn handle_error(&mut self) {
        self.next = self.next.next_close_existing();
    }
}

/// Whether a top-level fetch error is the session's (answered by a full request at once)
/// rather than the broker's.
pub fn is_session_error(error_code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(error_code),
        Some(
            ResponseError::FetchSessionIdNotFound
                | ResponseError::InvalidFetchSessionEpoch
                | ResponseError::FetchSessionTopicIdError
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LeaderEpoch, Offset};

    fn at(offset: i64) -> PartitionFetch {
        PartitionFetch {
            fetch_offset: Offset(offset),
            log_start_offset: Offset(0),
            max_bytes: 1 << 20,
            current_leader_epoch: LeaderEpoch(1),
            last_fetched_epoch: LeaderEpoch(1),
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn full_once_then_only_changes() {
        let mut h = FetchSessionHandler::default();
        let wanted = vec![(tp(0), at(5)), (tp(1), at(7))];
        let first = h.build(wanted.clone());
        assert_eq!(first.metadata, FetchMetadata::INITIAL);
        assert_eq!(first.to_send, wanted);
        assert!(h.handle_response(0, 42));
        assert_eq!(
            h.next_metadata(),
            FetchMetadata {
                session_id: 42,
                epoch: 1
            }
        );

        // Idle: nothing to send.
        let idle = h.build(wanted.clone());
        assert_eq!(
            (
                idle.metadata.epoch,
                idle.to_send.len(),
                idle.to_forget.len()
            ),
            (1, 0, 0)
        );
        assert!(h.handle_response(0, 42));

        // t-1 moved, t-2 joined, t-0 left.
        let next = h.build(vec![(tp(1), at(9)), (tp(2), at(0))]);
        assert_eq!(
            next.metadata,
            FetchMetadata {
                session_id: 42,
                epoch: 2
            }
        );
        assert_eq!(next.to_send, vec![(tp(1), at(9)), (tp(2), at(0))]);
        assert_eq!(next.to_forget, vec![tp(0)]);
        assert!(h.handle_response(0, 42));
        assert_eq!(h.next_metadata().epoch, 3);
    }

    #[test]
    fn trouble_means_a_full_request() {
        let mut h = FetchSessionHandler::default();
        let wanted = vec![(tp(0), at(5))];
        h.build(wanted.clone());
        assert!(h.handle_response(0, 42));
        h.build(wanted.clone());
        // A lost request: the next one closes the session and asks for a new one.
        h.handle_error();
        let full = h.build(wanted.clone());
        assert_eq!(
            full.metadata,
            FetchMetadata {
                session_id: 42,
                epoch: 0
            }
        );
        assert_eq!(full.to_send, wanted);
        assert!(h.handle_response(0, 43));

        // A wrong epoch: close and start over; an unknown session: start over.
        h.build(wanted.clone());
        assert!(!h.handle_response(ResponseError::InvalidFetchSessionEpoch.code(), 0));
        assert_eq!(
            h.next_metadata(),
            FetchMetadata {
                session_id: 43,
                epoch: 0
            }
        );
        h.build(wanted.clone());
        assert!(h.handle_response(0, 44));
        h.build(wanted.clone());
        assert!(!h.handle_response(ResponseError::FetchSessionIdNotFound.code(), 0));
        assert_eq!(h.next_metadata(), FetchMetadata::INITIAL);
        assert!(is_session_error(
            ResponseError::FetchSessionIdNotFound.code()
        ));
        assert!(!is_session_error(ResponseError::NotLeaderOrFollower.code()));

        // No slot for a session: full requests go on.
        h.build(wanted.clone());
        assert!(h.handle_response(0, 0));
        assert_eq!(h.next_metadata(), FetchMetadata::INITIAL);
        assert!(h.build(wanted.clone()).is_full());
    }
}
