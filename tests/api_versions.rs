//! Every API at every version it advertises: each request is sent to a broker at that version
//! and the answer decoded at that version. A response field that a handler sets but that the
//! version lacks makes the encoder fail and the connection close; here it fails the test.
//! Where the answer carries data (produce offsets, fetched records, listed offsets, metadata),
//! the content is checked too.

mod common;
#[path = "api_versions/txn.rs"]
mod txn;

use std::time::Duration;

use common::{batch, decode, TestBroker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::handlers::supported_apis;
use strata::protocol::{str_bytes, topic_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "versions";

async fn connect(broker: &TestBroker) -> KafkaClient {
    KafkaClient::connect(
        strata::net::tokio_network().as_ref(),
        &broker.bootstrap(),
        "api-versions-test",
        Duration::from_secs(10),
    )
    .await
    .expect("connect")
}

async fn send<R: Request>(client: &mut KafkaClient, req: &R, version: i16) -> R::Response {
    client.send(req, version).await.unwrap_or_else(|e| {
        panic!(
            "{:?} v{version}: {e}",
            ApiKey::try_from(R::KEY).expect("key")
        )
    })
}

fn s(v: &str) -> StrBytes {
    str_bytes(v)
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// One batch of `n` records `"{tag}-{i}"`.
fn records(tag: &str, n: usize) -> bytes::Bytes {
    let values: Vec<_> = (0..n)
        .map(|i| (None, Some(format!("{tag}-{i}")), vec![]))
        .collect();
    batch(&values, Compression::None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_answers_at_every_advertised_version() {
    // The transactional produce below plays the coordinator's part itself (WriteTxnMarkers),
    // so the broker does not verify it with the coordinator, which knows no such producer.
    let unverified = ("transaction.partition.verification.enable", "false");
    let broker = TestBroker::start(&[unverified]).await;
    let mut c = connect(&broker).await;
    let created = send(
        &mut c,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name(TOPIC))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        7,
    )
    .await;
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;

    let mut tested = Vec::new();
    for &(key, range) in supported_apis() {
        for v in range.min..=range.max {
            exercise(&mut c, key, v, topic_id).await;
            tested.push((key, v));
        }
    }
    // Produce v0-v2 are advertised but go through the refusal path, tested below.
    assert!(
        tested.len() > 150,
        "only {} (api, version) pairs",
        tested.len()
    );
    broker.stop().await;
}

/// Sends `key` at version `v` and checks what the answer says.
async fn exercise(c: &mut KafkaClient, key: ApiKey, v: i16, topic_id: uuid::Uuid) {
    if txn::exercise(c, key, v).await {
        return;
    }
    match key {
        ApiKey::Produce if v < 3 => {} // see `retired_produce_versions_are_refused_per_partition`
        ApiKey::Produce => {
            let data = produce_request::TopicProduceData::default().with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records(&format!("p{v}"), 2))),
            ]);
            let data = if v >= 13 {
                data.with_topic_id(topic_id)
            } else {
                data.with_name(topic_name(TOPIC))
            };
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![data]);
            let resp = send(c, &req, v).await;
            let p = &resp.responses[0].partition_responses[0];
            assert_eq!((p.index, p.error_code), (0, 0), "Produce v{v}: {p:?}");
            assert!(p.base_offset >= 0, "Produce v{v}: {p:?}");
        }
        ApiKey::Fetch => {
            let topic = fetch_request::FetchTopic::default().with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20),
            ]);
            let topic = if v >= 13 {
                topic.with_topic_id(topic_id)
            } else {
                topic.with_topic(topic_name(TOPIC))
            };
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![topic]);
            let req = if v < 15 {
                req.with_replica_id(BrokerId(-1))
            } else {
                req
            };
            let resp = send(c, &req, v).await;
            let p = &resp.responses[0].partitions[0];
            assert_eq!(p.error_code, 0, "Fetch v{v}");
            let values: Vec<_> = decode(p.records.clone().unwrap_or_default())
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf-8"))
                .collect();
            // Produce v3.. ran first: its first batch opens the log.
            assert_eq!(
                values.get(..2),
                Some(&["p3-0".to_string(), "p3-1".to_string()][..]),
                "Fetch v{v}"
            );
        }
        ApiKey::ListOffsets => {
            // Earliest, latest, max timestamp, earliest local, latest tiered (as the version allows).
            let specials: &[i64] = match v {
                ..=6 => &[-2, -1],
                7 => &[-2, -1, -3],
                8 => &[-2, -1, -3, -4],
                _ => &[-2, -1, -3, -4, -5],
            };
            for &ts in specials {
                let req = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(ts),
                        ])]);
                let req = if v >= 10 {
                    req.with_timeout_ms(5_000)
                } else {
                    req
                };
                let resp = send(c, &req, v).await;
                let p = &resp.topics[0].partitions[0];
                assert_eq!(p.error_code, 0, "ListOffsets v{v} ts {ts}");
                match ts {
                    -2 | -4 => assert_eq!(p.offset, 0, "ListOffsets v{v} ts {ts}"),
                    -1 => assert!(
                        p.offset >= 2,
                        "ListOffsets v{v}: the high watermark after produce, {p:?}"
                    ),
                    // The topic is not tiered: nothing in remote storage.
                    -5 => assert_eq!(p.offset, -1, "ListOffsets v{v} latest tiered"),
                    _ => assert!(p.offset >= 0, "ListOffsets v{v} max timestamp: {p:?}"),
                }
            }
        }
        ApiKey::Metadata => {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(topic_name(TOPIC)))]))
                .with_include_topic_authorized_operations(v >= 8)
                .with_include_cluster_authorized_operations((8..=10).contains(&v));
            let resp = send(c, &req, v).await;
            // No ACL names the topic or the cluster and nothing authenticates: every operation
            // each supports (Kafka's bit fields for full access).
            if v >= 8 {
                assert_eq!(
                    resp.topics[0].topic_authorized_operations, 3576,
                    "Metadata v{v}"
                );
            }
            if (8..=10).contains(&v) {
                assert_eq!(resp.cluster_authorized_operations, 8096, "Metadata v{v}");
            }
            assert_eq!(resp.brokers.len(), 1, "Metadata v{v}");
            let t = &resp.topics[0];
            assert_eq!(
                (t.error_code, t.name.as_ref().map(|n| n.0.to_string())),
                (0, Some(TOPIC.to_string())),
                "Metadata v{v}"
            );
            assert_eq!(t.partitions.len(), 1, "Metadata v{v}");
            if v >= 10 {
                assert_eq!(t.topic_id, topic_id, "Metadata v{v}");
            }
        }
        ApiKey::OffsetCommit => {
            let req = OffsetCommitRequest::default()
                .with_group_id(group("offsets"))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(i64::from(v)),
                        ]),
                ]);
            let req = if v <= 4 {
                req.with_retention_time_ms(-1)
            } else {
                req
            };
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.topics[0].partitions[0].error_code, 0,
                "OffsetCommit v{v}"
            );
        }
        ApiKey::OffsetFetch => {
            let resp = if v < 8 {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group("offsets"))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ]));
                let resp = send(c, &req, v).await;
                resp.topics[0].partitions[0].committed_offset
            } else {
                let req = OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group("offsets"))
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(topic_name(TOPIC))
                                .with_partition_indexes(vec![0]),
                        ])),
                ]);
                let resp = send(c, &req, v).await;
                resp.groups[0].topics[0].partitions[0].committed_offset
            };
            // OffsetCommit ran before, up to its newest version.
            assert_eq!(resp, 9, "OffsetFetch v{v}");
        }
        ApiKey::FindCoordinator => {
            let req = if v < 4 {
                FindCoordinatorRequest::default().with_key(s("offsets"))
            } else {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("offsets")])
            };
            let resp = send(c, &req, v).await;
            let (code, node) = if v < 4 {
                (resp.error_code, resp.node_id)
            } else {
                (
                    resp.coordinators[0].error_code,
                    resp.coordinators[0].node_id,
                )
            };
            // COORDINATOR_NOT_AVAILABLE while the offsets topic is created is a fine answer too.
            assert!(
                code == 0 && node.0 >= 0 || code == 15,
                "FindCoordinator v{v}: {resp:?}"
            );
        }
        ApiKey::JoinGroup => {
            let req = JoinGroupRequest::default()
                .with_group_id(group(&format!("join-{v}")))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))]);
            let req = if v >= 1 {
                req.with_rebalance_timeout_ms(10_000)
            } else {
                req
            };
            send(c, &req, v).await;
        }
        ApiKey::Heartbeat => {
            let resp = send(
                c,
                &HeartbeatRequest::default()
                    .with_group_id(group("none"))
                    .with_member_id(s("m")),
                v,
            )
            .await;
            assert_ne!(resp.error_code, 0, "Heartbeat v{v} of an unknown member");
        }
        ApiKey::LeaveGroup => {
            let req = LeaveGroupRequest::default().with_group_id(group("none"));
            let req = if v < 3 {
                req.with_member_id(s("m"))
            } else {
                req.with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("m"))
                ])
            };
            send(c, &req, v).await;
        }
        ApiKey::SyncGroup => {
            let resp = send(
                c,
                &SyncGroupRequest::default()
                    .with_group_id(group("none"))
                    .with_member_id(s("m")),
                v,
            )
            .await;
            assert_ne!(resp.error_code, 0, "SyncGroup v{v} of an unknown member");
        }
        ApiKey::DescribeGroups => {
            let resp = send(
                c,
                &DescribeGroupsRequest::default().with_groups(vec![group("offsets")]),
                v,
            )
            .await;
            assert_eq!(resp.groups.len(), 1, "DescribeGroups v{v}");
        }
        ApiKey::ListGroups => {
            let resp = send(c, &ListGroupsRequest::default(), v).await;
            assert_eq!(resp.error_code, 0, "ListGroups v{v}");
        }
        ApiKey::ApiVersions => {
            let req = if v >= 3 {
                ApiVersionsRequest::default()
                    .with_client_software_name(s("test"))
                    .with_client_software_version(s("1"))
            } else {
                ApiVersionsRequest::default()
            };
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0);
            assert_eq!(
                resp.api_keys.len(),
                supported_apis().len(),
                "ApiVersions v{v}"
            );
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(topic_name(&format!("created-{v}")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]);
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.topics[0].error_code, 0,
                "CreateTopics v{v}: {:?}",
                resp.topics[0].error_message
            );
        }
        ApiKey::DeleteTopics => {
            let name = format!("created-{}", v + 1);
            let req = if v < 6 {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
            } else {
                DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic_name(&name)))])
            };
            let resp = send(c, &req.with_timeout_ms(10_000), v).await;
            assert_eq!(resp.responses[0].error_code, 0, "DeleteTopics v{v}");
        }
        ApiKey::DeleteRecords => {
            let req = DeleteRecordsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                    ])]);
            let resp = send(c, &req, v).await;
            let p = &resp.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.low_watermark),
                (0, 0),
                "DeleteRecords v{v}"
            );
        }
        ApiKey::InitProducerId => {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000);
            let req = if v >= 3 {
                req.with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
            } else {
                req
            };
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "InitProducerId v{v}");
            assert!(resp.producer_id.0 >= 0, "InitProducerId v{v}");
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name(TOPIC))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(0),
                    ]),
            ]);
            let req = if v >= 3 {
                req.with_replica_id(BrokerId(-1))
            } else {
                req
            };
            let resp = send(c, &req, v).await;
            let p = &resp.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.leader_epoch),
                (0, 0),
                "OffsetForLeaderEpoch v{v}"
            );
            assert!(p.end_offset >= 2, "OffsetForLeaderEpoch v{v}: {p:?}");
        }
        ApiKey::DescribeConfigs => {
            let req = DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(TOPIC))
                    .with_configuration_keys(Some(vec![s("cleanup.policy")])),
            ]);
            let resp = send(c, &req, v).await;
            let r = &resp.results[0];
            assert_eq!(r.error_code, 0, "DescribeConfigs v{v}");
            assert_eq!(r.configs.len(), 1, "DescribeConfigs v{v}");
            assert_eq!(
                r.configs[0].value.as_ref().map(|v| v.to_string()),
                Some("delete".to_string())
            );
        }
        ApiKey::AlterConfigs => {
            let req = AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(TOPIC))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("86400000")))]),
            ]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.responses[0].error_code, 0, "AlterConfigs v{v}");
        }
        ApiKey::CreatePartitions => {
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(true)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_count(2)
                        .with_assignments(None),
                ]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.results[0].error_code, 0, "CreatePartitions v{v}");
        }
        ApiKey::DeleteGroups => {
            let resp = send(
                c,
                &DeleteGroupsRequest::default().with_groups_names(vec![group("never-created")]),
                v,
            )
            .await;
            assert_eq!(
                resp.results[0].error_code, 69,
                "DeleteGroups v{v}: GROUP_ID_NOT_FOUND"
            );
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(TOPIC))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s("86400000"))),
                    ]),
            ]);
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.responses[0].error_code, 0,
                "IncrementalAlterConfigs v{v}"
            );
        }
        ApiKey::OffsetDelete => {
            let req = OffsetDeleteRequest::default()
                .with_group_id(group("never-created"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]);
            send(c, &req, v).await;
        }
        ApiKey::DescribeClientQuotas => {
            let resp = send(c, &DescribeClientQuotasRequest::default(), v).await;
            assert_eq!(resp.error_code, 0, "DescribeClientQuotas v{v}");
        }
        ApiKey::AlterClientQuotas => {
            let req = AlterClientQuotasRequest::default()
                .with_validate_only(true)
                .with_entries(vec![alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s("user"))
                        .with_entity_name(Some(s("u")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(s("producer_byte_rate"))
                        .with_value(1000.0)])]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.entries[0].error_code, 0, "AlterClientQuotas v{v}");
        }
        ApiKey::SaslHandshake => {
            // A PLAINTEXT listener: Kafka's answer, ILLEGAL_SASL_STATE (tests/sasl.rs covers
            // SASL listeners at every version).
            let req = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 34, "SaslHandshake v{v}");
        }
        ApiKey::SaslAuthenticate => {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(b"\0u\0p".to_vec().into());
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 34, "SaslAuthenticate v{v}");
        }
        ApiKey::AlterUserScramCredentials => {
            let upsert = alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                .with_name(s("apiv"))
                .with_mechanism(1)
                .with_iterations(4096)
                .with_salt(b"salt".to_vec().into())
                .with_salted_password(vec![7u8; 32].into());
            let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.results.len(), 1, "AlterUserScramCredentials v{v}");
            assert_eq!(
                resp.results[0].error_code, 0,
                "AlterUserScramCredentials v{v}"
            );
        }
        ApiKey::DescribeUserScramCredentials => {
            let req = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                describe_user_scram_credentials_request::UserName::default().with_name(s("nobody")),
            ]));
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.results[0].error_code, 91,
                "DescribeUserScramCredentials v{v}"
            );
        }
        ApiKey::DescribeQuorum => {
            let req = DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic_name("__cluster_metadata"))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0)
                    ]),
            ]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "DescribeQuorum v{v}");
            assert_eq!(
                resp.topics[0].partitions[0].current_voters.len(),
                1,
                "DescribeQuorum v{v}"
            );
        }
        ApiKey::DescribeCluster => {
            let req = if v >= 1 {
                DescribeClusterRequest::default().with_endpoint_type(1)
            } else {
                DescribeClusterRequest::default()
            };
            let req = req.with_include_cluster_authorized_operations(true);
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.cluster_authorized_operations, 8096,
                "DescribeCluster v{v}"
            );
            assert_eq!(
                (resp.error_code, resp.brokers.len()),
                (0, 1),
                "DescribeCluster v{v}"
            );
        }
        ApiKey::DescribeTopicPartitions => {
            let req = DescribeTopicPartitionsRequest::default()
                .with_response_partition_limit(1)
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(topic_name(TOPIC)),
                ]);
            let resp = send(c, &req, v).await;
            let t = &resp.topics[0];
            assert_eq!(
                (t.error_code, t.topic_id, t.partitions.len()),
                (0, topic_id, 1),
                "DescribeTopicPartitions v{v}"
            );
            assert_eq!(
                t.partitions[0].leader_id.0, 1,
                "DescribeTopicPartitions v{v}: this broker leads"
            );
            assert_eq!(
                t.topic_authorized_operations, 3576,
                "DescribeTopicPartitions v{v}"
            );
        }
        // ACLs on topics nothing else here uses (an ACL on `versions` would close it: a resource
        // with any ACL is governed by its ACLs). Each version creates one, and DeleteAcls at
        // version v removes the one created at v.
        ApiKey::CreateAcls => {
            let req = CreateAclsRequest::default().with_creations(vec![
                create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&format!("acl-test-v{v}")))
                    .with_resource_pattern_type(4)
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(3)
                    .with_permission_type(3),
            ]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.results.len(), 1, "CreateAcls v{v}");
            assert_eq!(resp.results[0].error_code, 0, "CreateAcls v{v}");
        }
        ApiKey::DescribeAcls => {
            let req = DescribeAclsRequest::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(None)
                .with_host_filter(None)
                .with_pattern_type_filter(1)
                .with_principal_filter(Some(s("User:alice")))
                .with_operation(1)
                .with_permission_type(1);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "DescribeAcls v{v}");
            let names: Vec<&str> = resp
                .resources
                .iter()
                .map(|r| r.resource_name.as_str())
                .collect();
            assert_eq!(
                names,
                ["acl-test-v1", "acl-test-v2", "acl-test-v3"],
                "DescribeAcls v{v}"
            );
            let r = &resp.resources[0];
            assert_eq!(
                (r.resource_type, r.pattern_type, r.acls.len()),
                (2, 4, 1),
                "DescribeAcls v{v}"
            );
            let a = &r.acls[0];
            assert_eq!(
                (
                    a.principal.as_str(),
                    a.host.as_str(),
                    a.operation,
                    a.permission_type
                ),
                ("User:alice", "*", 3, 3),
                "DescribeAcls v{v}"
            );
        }
        ApiKey::DeleteAcls => {
            let req = DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(s(&format!("acl-test-v{v}"))))
                    .with_pattern_type_filter(4)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_operation(1)
                    .with_permission_type(1),
            ]);
            let resp = send(c, &req, v).await;
            let f = &resp.filter_results[0];
            assert_eq!(
                (f.error_code, f.matching_acls.len()),
                (0, 1),
                "DeleteAcls v{v}"
            );
            let m = &f.matching_acls[0];
            assert_eq!(
                (
                    m.resource_name.to_string(),
                    m.principal.as_str(),
                    m.operation
                ),
                (format!("acl-test-v{v}"), "User:alice", 3),
                "DeleteAcls v{v}"
            );
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let joined = consumer_join(c, &format!("cg-{v}"), v).await;
            assert_eq!(
                joined.error_code, 0,
                "ConsumerGroupHeartbeat v{v}: {joined:?}"
            );
            assert!(
                joined.member_epoch >= 1,
                "ConsumerGroupHeartbeat v{v}: {joined:?}"
            );
            assert_eq!(joined.heartbeat_interval_ms, 5000);
            let a = joined.assignment.expect("an assignment on joining");
            assert_eq!(a.topic_partitions.len(), 1, "ConsumerGroupHeartbeat v{v}");
            assert_eq!(
                (
                    a.topic_partitions[0].topic_id,
                    a.topic_partitions[0].partitions.clone()
                ),
                (topic_id, vec![0])
            );
            // A stale epoch is fenced; leaving answers epoch -1.
            let member = joined.member_id.clone().expect("member id");
            let fenced = send(
                c,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group(&format!("cg-{v}")))
                    .with_member_id(member.clone())
                    .with_member_epoch(joined.member_epoch + 1),
                v,
            )
            .await;
            assert_eq!(fenced.error_code, 110, "FENCED_MEMBER_EPOCH");
            let left = send(
                c,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group(&format!("cg-{v}")))
                    .with_member_id(member)
                    .with_member_epoch(-1),
                v,
            )
            .await;
            assert_eq!((left.error_code, left.member_epoch), (0, -1));
        }
        ApiKey::ConsumerGroupDescribe => {
            let id = format!("cgd-{v}");
            let joined = consumer_join(c, &id, 1).await;
            assert_eq!(joined.error_code, 0, "{joined:?}");
            let resp = send(
                c,
                &ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![group(&id), group("none")]),
                v,
            )
            .await;
            let g = &resp.groups[0];
            assert_eq!(g.error_code, 0, "ConsumerGroupDescribe v{v}: {g:?}");
            assert_eq!(g.assignor_name.as_str(), "uniform");
            assert_eq!(g.members.len(), 1);
            let m = &g.members[0];
            assert_eq!(m.member_epoch, joined.member_epoch);
            assert_eq!(m.subscribed_topic_names, vec![topic_name(TOPIC)]);
            assert_eq!(
                m.assignment.topic_partitions[0].topic_name,
                topic_name(TOPIC)
            );
            assert_eq!(m.target_assignment.topic_partitions[0].partitions, vec![0]);
            assert_eq!(m.member_type, if v >= 1 { 1 } else { -1 });
            assert_eq!(resp.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");
        }
        ApiKey::DescribeProducers => {
            // An idempotent producer appends, then shows up with its epoch and last sequence.
            let init = send(
                c,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await;
            assert_eq!(init.error_code, 0, "InitProducerId for DescribeProducers");
            let (pid, epoch) = (init.producer_id, init.producer_epoch);
            let values: Vec<common::TestRecord> = (0..3)
                .map(|i| (None, Some(format!("dp{v}-{i}")), vec![]))
                .collect();
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic_name(TOPIC))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(common::idempotent_batch(
                                &values,
                                Compression::None,
                                pid.0,
                                epoch,
                                0,
                            ))),
                    ])]);
            let produced = send(c, &req, 9).await;
            assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
            let req = DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic_name(TOPIC))
                    .with_partition_indexes(vec![0, 7]),
                describe_producers_request::TopicRequest::default()
                    .with_name(topic_name("no-such-topic"))
                    .with_partition_indexes(vec![0]),
            ]);
            let resp = send(c, &req, v).await;
            let p = &resp.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "DescribeProducers v{v}: {p:?}");
            let mine = p
                .active_producers
                .iter()
                .find(|s| s.producer_id == pid)
                .unwrap_or_else(|| panic!("DescribeProducers v{v}: {pid:?} missing from {p:?}"));
            assert_eq!(
                (
                    mine.producer_epoch,
                    mine.last_sequence,
                    mine.coordinator_epoch,
                    mine.current_txn_start_offset
                ),
                (epoch as i32, 2, -1, -1),
                "DescribeProducers v{v}"
            );
            // The batch's max timestamp, or the append time when that is later (see
            // docs/protocol.md).
            assert!(
                mine.last_timestamp >= 1_700_000_000_002,
                "DescribeProducers v{v}"
            );
            let unknown = ResponseError::UnknownTopicOrPartition.code();
            assert_eq!(resp.topics[0].partitions[1].error_code, unknown);
            assert_eq!(resp.topics[1].partitions[0].error_code, unknown);
        }
        ApiKey::WriteTxnMarkers => {
            // A transactional batch keeps the last stable offset back until its marker.
            let init = send(
                c,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await;
            assert_eq!(init.error_code, 0, "InitProducerId for WriteTxnMarkers");
            let (pid, epoch) = (init.producer_id, init.producer_epoch);
            let mut b = strata::protocol::record_batch::build_batch(
                0,
                1_700_000_000_000,
                Some((pid.0, epoch, 0)),
                &[(None, Some(&b"in a transaction"[..]))],
            );
            strata::protocol::record_batch::set_covered_fields(
                &mut b,
                strata::protocol::record_batch::TRANSACTIONAL_BIT,
                1_700_000_000_000,
                0,
            );
            let req = ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(s("wtm"))))
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic_name(TOPIC))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(bytes::Bytes::from(b))),
                    ])]);
            let produced = send(c, &req, 9).await;
            let first = &produced.responses[0].partition_responses[0];
            assert_eq!(first.error_code, 0, "transactional produce: {first:?}");
            let txn_start = first.base_offset;
            let latest = |isolation_level: i8| {
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_isolation_level(isolation_level)
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1),
                        ])])
            };
            let lso = send(c, &latest(1), 5).await.topics[0].partitions[0].offset;
            let hw = send(c, &latest(0), 5).await.topics[0].partitions[0].offset;
            assert_eq!(
                (lso, hw),
                (txn_start, txn_start + 1),
                "WriteTxnMarkers v{v}"
            );
            let req = WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(pid)
                    .with_producer_epoch(epoch)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(1)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![0]),
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(topic_name("no-such-topic"))
                            .with_partition_indexes(vec![0]),
                    ]),
            ]);
            let resp = send(c, &req, v).await;
            let m = &resp.markers[0];
            assert_eq!(m.producer_id, pid, "WriteTxnMarkers v{v}");
            assert_eq!(
                m.topics[0].partitions[0].error_code, 0,
                "WriteTxnMarkers v{v}: {m:?}"
            );
            assert_eq!(
                m.topics[1].partitions[0].error_code,
                ResponseError::UnknownTopicOrPartition.code()
            );
            // The abort marker took one offset; the LSO is the high watermark again.
            let lso = send(c, &latest(1), 5).await.topics[0].partitions[0].offset;
            assert_eq!(lso, txn_start + 2, "WriteTxnMarkers v{v}");
        }
        ApiKey::AlterPartitionReassignments => {
            let partition = |index: i32, replicas: Option<Vec<i32>>| {
                alter_partition_reassignments_request::ReassignablePartition::default()
                    .with_partition_index(index)
                    .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
            };
            let req = AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_allow_replication_factor_change(v == 0)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![
                            // Already its replicas: nothing to do.
                            partition(0, Some(vec![1])),
                            // Cancels nothing.
                            partition(0, None),
                        ]),
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic_name("absent"))
                        .with_partitions(vec![partition(0, Some(vec![1]))]),
                ]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "AlterPartitionReassignments v{v}");
            let codes: Vec<Vec<i16>> = resp
                .responses
                .iter()
                .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
                .collect();
            assert_eq!(
                codes,
                vec![
                    vec![0, ResponseError::InvalidReplicaAssignment.code()],
                    vec![ResponseError::UnknownTopicOrPartition.code()]
                ],
                "AlterPartitionReassignments v{v}: the same partition twice is refused"
            );
            // Unknown broker, and (v1) a replication factor change not allowed.
            let req = AlterPartitionReassignmentsRequest::default()
                .with_allow_replication_factor_change(v == 0)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![partition(0, Some(vec![1, 7]))]),
                ]);
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.responses[0].partitions[0].error_code,
                ResponseError::InvalidReplicaAssignment.code(),
                "AlterPartitionReassignments v{v}"
            );
            let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![partition(0, None)]),
            ]);
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.responses[0].partitions[0].error_code,
                ResponseError::NoReassignmentInProgress.code(),
                "AlterPartitionReassignments v{v}"
            );
        }
        ApiKey::ListPartitionReassignments => {
            let all = ListPartitionReassignmentsRequest::default().with_topics(None);
            let resp = send(c, &all, v).await;
            assert_eq!(
                (resp.error_code, resp.topics.len()),
                (0, 0),
                "ListPartitionReassignments v{v}"
            );
        }
        ApiKey::ElectLeaders => {
            let req = ElectLeadersRequest::default()
                .with_timeout_ms(10_000)
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(topic_name(TOPIC))
                        .with_partitions(vec![0, 9]),
                ]));
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "ElectLeaders v{v}");
            let codes: Vec<i16> = resp.replica_election_results[0]
                .partition_result
                .iter()
                .map(|p| p.error_code)
                .collect();
            assert_eq!(
                codes,
                vec![
                    ResponseError::ElectionNotNeeded.code(),
                    ResponseError::UnknownTopicOrPartition.code()
                ],
                "ElectLeaders v{v}"
            );
            if v >= 1 {
                // Every partition: those that needed no election are left out.
                let req = ElectLeadersRequest::default().with_election_type(1);
                let resp = send(c, &req, v).await;
                assert_eq!(
                    (resp.error_code, resp.replica_election_results.len()),
                    (0, 0),
                    "ElectLeaders v{v}"
                );
            }
        }
        ApiKey::DescribeLogDirs => {
            let all = DescribeLogDirsRequest::default().with_topics(None);
            let resp = send(c, &all, v).await;
            assert_eq!(resp.results.len(), 1, "DescribeLogDirs v{v}");
            let dir = &resp.results[0];
            assert_eq!(dir.error_code, 0, "DescribeLogDirs v{v}");
            let topic = dir
                .topics
                .iter()
                .find(|t| t.name.0.as_str() == TOPIC)
                .unwrap_or_else(|| panic!("DescribeLogDirs v{v}: no {TOPIC} in {dir:?}"));
            let p = &topic.partitions[0];
            assert_eq!(
                (p.partition_index, p.offset_lag, p.is_future_key),
                (0, 0, false),
                "DescribeLogDirs v{v}"
            );
            assert!(p.partition_size > 0, "DescribeLogDirs v{v}: {p:?}");
            if v >= 4 {
                assert!(dir.total_bytes >= dir.usable_bytes && dir.usable_bytes > 0);
            }
            // Asked for one partition that is not here: the directory, without it.
            let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(topic_name(TOPIC))
                    .with_partitions(vec![5]),
            ]));
            let resp = send(c, &req, v).await;
            assert!(resp.results[0].topics.is_empty(), "DescribeLogDirs v{v}");
        }
        ApiKey::AlterReplicaLogDirs => {
            let dirs = send(c, &DescribeLogDirsRequest::default().with_topics(None), 4).await;
            let here = dirs.results[0].log_dir.clone();
            let dir = |path: &str, partitions: Vec<i32>| {
                alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                    .with_path(StrBytes::from_string(path.to_string()))
                    .with_topics(vec![
                        alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partitions(partitions),
                    ])
            };
            // Its own dir (already there), a partition not here yet, a dir not in log.dirs.
            let req = AlterReplicaLogDirsRequest::default().with_dirs(vec![
                dir(here.as_str(), vec![0, 5]),
                dir("/nonexistent/strata-log-dir", vec![1]),
            ]);
            let resp = send(c, &req, v).await;
            let codes: Vec<(i32, i16)> = resp
                .results
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.error_code))
                })
                .collect();
            assert_eq!(
                codes,
                vec![
                    (0, 0),
                    (1, ResponseError::LogDirNotFound.code()),
                    (5, ResponseError::ReplicaNotAvailable.code()),
                ],
                "AlterReplicaLogDirs v{v}"
            );
        }
        ApiKey::UnregisterBroker => {
            let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(99));
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.error_code,
                ResponseError::BrokerIdNotRegistered.code(),
                "UnregisterBroker v{v}"
            );
            // This broker is running (unfenced) and holds replicas: refused.
            let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(1));
            let resp = send(c, &req, v).await;
            assert_eq!(
                resp.error_code,
                ResponseError::InvalidRequest.code(),
                "UnregisterBroker v{v}"
            );
        }
        other => panic!("{other:?} is advertised but this test does not exercise it: add it"),
    }
}

/// A consumer-protocol member joins `group_id` subscribed to [`TOPIC`], waiting out the
/// coordinator's load.
async fn consumer_join(
    c: &mut KafkaClient,
    group_id: &str,
    v: i16,
) -> ConsumerGroupHeartbeatResponse {
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(&uuid::Uuid::new_v4().to_string()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![topic_name(TOPIC)]))
        .with_topic_partitions(Some(vec![]));
    for _ in 0..100 {
        let resp = send(c, &req, v).await;
        if resp.error_code != 14 && resp.error_code != 15 {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the coordinator of {group_id} never loaded")
}

/// Produce v0-v2 are advertised, as Kafka 4.x does, and answered UNSUPPORTED_VERSION for every
/// partition; nothing is appended. With acks=0 the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_produce_versions_are_refused_per_partition() {
    let broker = TestBroker::start(&[("auto.create.topics.enable", "true")]).await;
    for version in 0..=2i16 {
        let mut conn = tokio::net::TcpStream::connect(broker.addr)
            .await
            .expect("connect");
        let mut frame = Vec::new();
        frame.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&77i32.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        frame.extend_from_slice(&1i16.to_be_bytes()); // acks
        frame.extend_from_slice(&5000i32.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend_from_slice(&(TOPIC.len() as i16).to_be_bytes());
        frame.extend_from_slice(TOPIC.as_bytes());
        frame.extend_from_slice(&2i32.to_be_bytes());
        for p in [0i32, 5] {
            frame.extend_from_slice(&p.to_be_bytes());
            frame.extend_from_slice(&4i32.to_be_bytes());
            frame.extend_from_slice(b"junk");
        }
        conn.write_all(&(frame.len() as i32).to_be_bytes())
            .await
            .expect("write");
        conn.write_all(&frame).await.expect("write");
        let size = conn.read_i32().await.expect("a response") as usize;
        let mut body = vec![0u8; size];
        conn.read_exact(&mut body).await.expect("read");
        let mut b = bytes::Bytes::from(body);
        use bytes::Buf;
        assert_eq!(b.get_i32(), 77, "correlation id");
        assert_eq!(b.get_i32(), 1, "one topic");
        let len = b.get_i16() as usize;
        assert_eq!(&b.split_to(len)[..], TOPIC.as_bytes());
        assert_eq!(b.get_i32(), 2, "two partitions");
        for p in [0, 5] {
            assert_eq!(b.get_i32(), p);
            assert_eq!(b.get_i16(), 35, "UNSUPPORTED_VERSION");
            assert_eq!(b.get_i64(), -1);
            if version >= 2 {
                assert_eq!(b.get_i64(), -1);
            }
        }
        if version >= 1 {
            assert_eq!(b.get_i32(), 0, "throttle time");
        }
        assert_eq!(b.remaining(), 0, "v{version}: nothing after the response");
    }
    // Nothing was appended, and the topic was not even created.
    let mut c = connect(&broker).await;
    let meta = send(
        &mut c,
        &MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(topic_name(TOPIC)))]))
            .with_allow_auto_topic_creation(false),
        12,
    )
    .await;
    assert_eq!(meta.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    broker.stop().await;
}
