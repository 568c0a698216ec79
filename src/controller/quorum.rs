//! The openraft type configuration of the metadata quorum, what a log entry carries, and the
//! quorum's static membership (`controller.quorum.voters`).

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use super::records::MetadataRecord;
use super::ControllerError;

pub type NodeId = u64;

// openraft is built with `single-term-leader`: as in Raft and KRaft, a term has at most one
// leader (openraft's default lets several nodes lead one term, told apart by node id).

/// What one Raft log entry carries: records decided against the image at `expected_offset`.
///
/// Applying is a compare-and-set: if the image has moved past `expected_offset` (another
/// decision was committed first, or the decider's image was stale), the write is rejected as a
/// [`WriteOutcome::Conflict`] on every node alike, and the decider decides again on a newer
/// image. So a decision is only ever applied to the image it was made against, wherever it was
/// made (the active controller or a broker that forwards it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataWrite {
    /// `None` appends unconditionally.
    pub expected_offset: Option<u64>,
    pub records: Vec<MetadataRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Applied; the image is now at `offset`.
    Applied { offset: u64 },
    /// Rejected: the image was at `offset`, not the expected one.
    Conflict { offset: u64 },
}

openraft::declare_raft_types!(
    /// The metadata quorum's openraft types.
    pub TypeConfig:
        D = MetadataWrite,
        R = WriteOutcome,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Parses `controller.quorum.voters`: `id@host:port`, comma-separated.
pub fn parse_voters(s: &str) -> Result<BTreeMap<NodeId, BasicNode>, ControllerError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item.split_once('@').ok_or_else(|| {
            ControllerError::InvalidConfig(format!(
                "controller.quorum.voters: '{item}' is not id@host:port"
            ))
        })?;
        let id: NodeId = id.trim().parse().map_err(|_| {
            ControllerError::InvalidConfig(format!(
                "controller.quorum.voters: '{id}' is not a node id"
            ))
        })?;
        if !addr.contains(':') {
            return Err(ControllerError::InvalidConfig(format!(
                "controller.quorum.voters: '{addr}' has no port"
            )));
        }
        if out.insert(id, BasicNode::new(addr.trim())).is_some() {
            return Err(ControllerError::InvalidConfig(format!(
                "controller.quorum.voters: node {id} appears twice"
            )));
        }
    }
    if out.is_empty() {
        return Err(ControllerError::InvalidConfig(
            "controller.quorum.voters is empty".into(),
        ));
    }
    Ok(out)
}
