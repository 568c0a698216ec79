//! DescribeQuorum: the metadata quorum as the active controller sees it — its leader, epoch
//! (the Raft term), high watermark, and each voter's and observer's (learner's) log end offset
//! with the times it last fetched and was last caught up. Any node answers: one that is not
//! the active controller asks it over the controller RPC, as a KRaft broker forwards it.
//!
//! Offsets are Raft log indexes + 1 (the next entry), as Kafka counts them; the high watermark
//! is the applied, hence committed, offset.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId as WireBrokerId, DescribeQuorumRequest, DescribeQuorumResponse, ResponseKind,
};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::controller::network::{QuorumDescription, ReplicaDescription};
use crate::controller::ControllerError;
use crate::protocol::{str_bytes, topic_name};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// The one topic partition the request may name, as in KRaft.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(ctx: RequestContext, req: DescribeQuorumRequest) -> Reply {
    let version = ctx.version();
    // Authorization: DESCRIBE on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Describe) {
        return Reply::Now(ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_error_code(code).with_error_message((version >= 2).then(|| str_bytes(message(code))))));
    }
    let names_the_metadata_partition = matches!(
        req.topics.as_slice(),
        [t] if t.topic_name.0.as_str() == METADATA_TOPIC
            && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0)
    );
    if !names_the_metadata_partition {
        // Kafka's answer, until it serves more than one Raft partition.
        return Reply::Now(ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default().with_error_code(ResponseError::InvalidRequest.code()),
        ));
    }
    Reply::later(async move {
        let resp = match ctx.apis.controller.describe_active().await {
            Ok(d) => describe_quorum_response(&d, version),
            Err(e) => not_leader_response(&e, version),
        };
        ResponseKind::DescribeQuorum(resp)
    })
}

fn replica_state(r: &ReplicaDescription) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(WireBrokerId(r.node_id as i32))
        .with_log_end_offset(r.log_end_offset.map_or(-1, |o| o as i64))
        .with_last_fetch_timestamp(r.last_fetch_ms.unwrap_or(-1))
        .with_last_caught_up_timestamp(r.last_caught_up_ms.unwrap_or(-1))
}

/// The response for `d` (the active controller's description) at `version`: fields that
/// `version` lacks are left at their defaults (the encoder refuses anything else).
pub fn describe_quorum_response(d: &QuorumDescription, version: i16) -> DescribeQuorumResponse {
    let (voters, observers): (Vec<_>, Vec<_>) = d.replicas.iter().partition(|r| r.voter);
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(WireBrokerId(d.leader.map_or(-1, |l| l as i32)))
        .with_leader_epoch(d.term as i32)
        .with_high_watermark(d.high_watermark.map_or(-1, |h| h as i64))
        .with_current_voters(voters.into_iter().map(replica_state).collect())
        .with_observers(observers.into_iter().map(replica_state).collect());
    let resp = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![partition])]);
    if version < 2 {
        return resp;
    }
    let nodes = d
        .voters
        .iter()
        .filter_map(|(id, addr)| {
            let (host, port) = addr.rsplit_once(':')?;
            Some(
                Node::default()
                    .with_node_id(WireBrokerId(*id as i32))
                    .with_listeners(vec![Listener::default()
                        .with_name(str_bytes("CONTROLLER"))
                        .with_host(str_bytes(host))
                        .with_port(port.parse().ok()?)]),
            )
        })
        .collect();
    resp.with_nodes(nodes)
}

fn not_leader_response(e: &ControllerError, version: i16) -> DescribeQuorumResponse {
    let mut partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(WireBrokerId(-1))
        .with_error_code(ResponseError::NotLeaderOrFollower.code());
    if version >= 2 {
        partition = partition.with_error_message(Some(str_bytes(e.to_string())));
    }
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![partition])])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn description() -> QuorumDescription {
        let replica = |node_id, voter, leo| ReplicaDescription {
            node_id,
            voter,
            log_end_offset: leo,
            last_fetch_ms: leo.map(|_| 1_700_000_000_000),
            last_caught_up_ms: leo.map(|_| 1_700_000_000_000),
        };
        QuorumDescription {
            node_id: 2,
            leader: Some(2),
            term: 7,
            last_applied: Some(41),
            voters: vec![
                (1, "127.0.0.1:9093".into()),
                (2, "127.0.0.2:9093".into()),
                (3, "127.0.0.3:9093".into()),
            ],
            learners: vec![(4, "127.0.0.4:9093".into())],
            image_offset: 41,
            metadata_version: 1,
            brokers: vec![],
            log_end_offset: Some(43),
            high_watermark: Some(42),
            replicas: vec![
                replica(1, true, Some(43)),
                replica(2, true, Some(43)),
                replica(3, true, None),
                replica(4, false, Some(40)),
            ],
        }
    }

    #[test]
    fn every_version_encodes_and_round_trips() {
        for version in VERSIONS.min..=VERSIONS.max {
            let resp = describe_quorum_response(&description(), version);
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, version).expect("encode");
            let back = DescribeQuorumResponse::decode(&mut buf.freeze(), version).expect("decode");
            let p = &back.topics[0].partitions[0];
            assert_eq!((p.leader_id.0, p.leader_epoch, p.high_watermark), (2, 7, 42));
            let voters: Vec<_> = p.current_voters.iter().map(|r| (r.replica_id.0, r.log_end_offset)).collect();
            assert_eq!(voters, vec![(1, 43), (2, 43), (3, -1)]);
            assert_eq!(p.observers.len(), 1);
            assert_eq!(p.observers[0].replica_id.0, 4);
            let fetch = p.current_voters[0].last_fetch_timestamp;
            assert_eq!(fetch, if version >= 1 { 1_700_000_000_000 } else { -1 });
            assert_eq!(back.nodes.len(), if version >= 2 { 3 } else { 0 });
            let err = not_leader_response(&ControllerError::NotController { leader: None }, version);
            let mut buf = bytes::BytesMut::new();
            err.encode(&mut buf, version).expect("encode the error");
        }
    }
}
