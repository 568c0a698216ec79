//! Authorization end to end, through the wire protocol: a broker that requires ACLs refuses a
//! principal with Kafka's error codes until ACLs let it in, a DENY beats an ALLOW, and a
//! resource with any ACL is governed by its ACLs even with allow.everyone.if.no.acl.found
//! (KAFKA-14435).
//!
//! Clients here are `User:ANONYMOUS` (PLAINTEXT). The first ACLs come from a super user, as in
//! any Kafka cluster: the broker starts once with `super.users=User:ANONYMOUS` to grant
//! ANONYMOUS ALTER on the cluster, and is restarted without it, so every later check — ACL
//! administration included — is decided by ACLs read back from the metadata log. Each helper
//! takes the principal to grant, so tests for authenticated principals add a client, not code.

mod common;

use common::kafka::{create_topic, fetch, fetch_request, produce, records_of};
use common::{batch, TestBroker};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::protocol::{str_bytes, topic_name};

const ANONYMOUS: &str = "User:ANONYMOUS";

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const INVALID_REQUEST: i16 = 42;

// Kafka's wire codes.
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const ANY: i8 = 1;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const ALTER: i8 = 7;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn acl(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(str_bytes(name))
        .with_resource_pattern_type(pattern)
        .with_principal(str_bytes(principal))
        .with_host(str_bytes("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

/// Creates ACLs; returns each creation's error code.
async fn create_acls(c: &mut KafkaClient, acls: Vec<AclCreation>) -> Vec<i16> {
    let resp = c
        .send(&CreateAclsRequest::default().with_creations(acls), 3)
        .await
        .expect("create acls");
    resp.results.iter().map(|r| r.error_code).collect()
}

fn one_record(value: &str) -> bytes::Bytes {
    batch(
        &[(None, Some(value.to_string()), vec![])],
        Compression::None,
    )
}

async fn produce_code(c: &mut KafkaClient, topic: &str) -> i16 {
    produce(c, topic, 0, one_record("x"), 1).await.0
}

/// A fetch that would wait 5 s for data: a refused topic is answered at once.
async fn fetch_code(c: &mut KafkaClient, topic: &str) -> i16 {
    let start = std::time::Instant::now();
    let resp = fetch(c, &fetch_request(topic, 0, 0, 5_000, 1, 1 << 20)).await;
    let code = resp.responses[0].partitions[0].error_code;
    if code != 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(4),
            "a refused fetch waited"
        );
    }
    code
}

/// (name, error code) of each topic in a metadata answer; `None` asks for all topics.
async fn metadata(
    c: &mut KafkaClient,
    topics: Option<&[&str]>,
    auto_create: bool,
) -> Vec<(String, i16)> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(*t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(auto_create);
    let resp = c.send(&req, 12).await.expect("metadata");
    let mut out: Vec<(String, i16)> = resp
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.error_code,
            )
        })
        .collect();
    out.sort();
    out
}

async fn join_code(c: &mut KafkaClient, group: &str) -> i16 {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(str_bytes(""))
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(str_bytes("range"))
            .with_metadata(bytes::Bytes::new())]);
    c.send(&req, 3).await.expect("join").error_code
}

/// OffsetFetch (v7) of `topics`' partition 0: (topic, partition error) and the top-level
/// error, retried while the coordinator loads.
async fn offset_fetch_codes(
    c: &mut KafkaClient,
    group: &str,
    topics: &[&str],
) -> (Vec<(String, i16)>, i16) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(*t))
                        .with_partition_indexes(vec![0])
                })
                .collect(),
        ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let resp = c.send(&req, 7).await.expect("offset fetch");
        // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: loading.
        if matches!(resp.error_code, 14..=16) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        let codes = resp
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partitions[0].error_code))
            .collect();
        return (codes, resp.error_code);
    }
}

/// InitProducerId for an idempotent producer: (error, producer id).
async fn init_producer_id(c: &mut KafkaClient) -> (i16, i64) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = c.send(&req, 4).await.expect("init producer id");
    (resp.error_code, resp.producer_id.0)
}

async fn delete_topic_code(c: &mut KafkaClient, topic: &str) -> i16 {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(topic)])
        .with_timeout_ms(10_000);
    c.send(&req, 4).await.expect("delete topics").responses[0].error_code
}

/// DescribeAcls selecting every ACL (the protocol crate's defaults filter on empty strings).
fn describe_all() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
}

fn strict() -> Vec<(&'static str, &'static str)> {
    vec![
        ("allow.everyone.if.no.acl.found", "false"),
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "1"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_decide_what_a_principal_may_do() {
    // A super user sets up the topics and grants ANONYMOUS the administration of ACLs.
    let mut admin_sets = strict();
    admin_sets.push(("super.users", ANONYMOUS));
    let broker = TestBroker::start(&admin_sets).await;
    let mut c = broker.client("acl-admin").await;
    create_topic(&mut c, "orders.eu", 1, &[]).await;
    create_topic(&mut c, "secret", 1, &[]).await;
    assert_eq!(
        produce(&mut c, "secret", 0, one_record("s"), 1).await,
        (0, 0)
    );
    assert_eq!(
        create_acls(
            &mut c,
            vec![acl(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                ANONYMOUS,
                ALTER,
                ALLOW
            )]
        )
        .await,
        vec![0]
    );
    drop(c);
    let dir = broker.stop().await;

    // The same broker without super users: only ACLs decide.
    let broker = TestBroker::start_in(dir, &strict()).await;
    let mut c = broker.client("acl-client").await;
    assert_eq!(
        produce_code(&mut c, "orders.eu").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        fetch_code(&mut c, "secret").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        metadata(&mut c, None, false).await,
        vec![],
        "all topics: filtered"
    );
    assert_eq!(
        metadata(&mut c, Some(&["secret"]), false).await,
        vec![("secret".into(), TOPIC_AUTHORIZATION_FAILED)]
    );
    assert_eq!(
        metadata(&mut c, Some(&["new-topic"]), true).await,
        vec![("new-topic".into(), TOPIC_AUTHORIZATION_FAILED)],
        "no CREATE: not auto-created"
    );
    let image = broker.broker.apis.image();
    assert!(
        image.topic_by_name("new-topic").is_none(),
        "a refused metadata request creates nothing"
    );
    assert_eq!(join_code(&mut c, "g").await, GROUP_AUTHORIZATION_FAILED);
    assert_eq!(
        delete_topic_code(&mut c, "secret").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    assert_eq!(
        init_producer_id(&mut c).await.0,
        CLUSTER_AUTHORIZATION_FAILED
    );
    let idempotent = common::idempotent_batch(
        &[(None, Some("i".into()), vec![])],
        Compression::None,
        1000,
        0,
        0,
    );
    assert_eq!(
        produce(&mut c, "orders.eu", 0, idempotent, 1).await.0,
        CLUSTER_AUTHORIZATION_FAILED
    );
    let cluster = c
        .send(&DescribeClusterRequest::default(), 0)
        .await
        .expect("describe cluster");
    assert_eq!(
        cluster.error_code, 0,
        "ALTER on the cluster implies DESCRIBE"
    );

    // ALTER on the cluster lets ANONYMOUS manage ACLs: a prefix grants the orders.* topics.
    let grants = vec![
        acl(TOPIC, "orders.", PREFIXED, ANONYMOUS, WRITE, ALLOW),
        acl(TOPIC, "orders.", PREFIXED, ANONYMOUS, READ, ALLOW),
        acl(GROUP, "g", LITERAL, ANONYMOUS, READ, ALLOW),
    ];
    assert_eq!(create_acls(&mut c, grants).await, vec![0, 0, 0]);
    assert_eq!(
        produce(&mut c, "orders.eu", 0, one_record("first"), 1).await,
        (0, 0)
    );
    let fetched = fetch(&mut c, &fetch_request("orders.eu", 0, 0, 0, 1, 1 << 20)).await;
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    let values: Vec<_> = records_of(&fetched)
        .into_iter()
        .map(|r| r.value.expect("value"))
        .collect();
    assert_eq!(values, vec![bytes::Bytes::from("first")]);
    assert_eq!(
        metadata(&mut c, None, false).await,
        vec![("orders.eu".into(), 0)],
        "READ implies DESCRIBE"
    );
    assert_eq!(
        fetch_code(&mut c, "secret").await,
        TOPIC_AUTHORIZATION_FAILED,
        "the prefix does not cover it"
    );
    // READ on the group implies DESCRIBE, which FindCoordinator needs; then the member joins.
    let found = c
        .send(
            &FindCoordinatorRequest::default().with_key(str_bytes("g")),
            3,
        )
        .await
        .expect("find coordinator");
    assert_eq!(found.error_code, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut joined = join_code(&mut c, "g").await;
    // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: the new offsets
    // topic is still getting its leader and loading.
    while matches!(joined, 14..=16) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        joined = join_code(&mut c, "g").await;
    }
    assert_eq!(joined, 0);
    assert_eq!(
        join_code(&mut c, "other-group").await,
        GROUP_AUTHORIZATION_FAILED
    );

    // Authorized operations (Metadata v8+): READ, WRITE and the DESCRIBE they imply.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("orders.eu")))
        ]))
        .with_include_topic_authorized_operations(true);
    let resp = c.send(&req, 12).await.expect("metadata");
    let expected = (1 << READ) | (1 << WRITE) | (1 << 8/* DESCRIBE */);
    assert_eq!(resp.topics[0].topic_authorized_operations, expected);

    // Offsets of a named topic without DESCRIBE are refused per partition, the others answered.
    let (codes, error) = offset_fetch_codes(&mut c, "g", &["orders.eu", "secret"]).await;
    assert_eq!(error, 0);
    assert_eq!(
        codes,
        vec![
            ("orders.eu".into(), 0),
            ("secret".into(), TOPIC_AUTHORIZATION_FAILED)
        ]
    );
    let (_, error) = offset_fetch_codes(&mut c, "other-group", &["orders.eu"]).await;
    assert_eq!(error, GROUP_AUTHORIZATION_FAILED);
    // OffsetDelete needs DELETE on the group, which READ does not give.
    let delete_offsets = OffsetDeleteRequest::default().with_group_id(GroupId(str_bytes("g"))).with_topics(vec![
        kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
            .with_name(topic_name("orders.eu"))
            .with_partitions(vec![kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()]),
    ]);
    let resp = c.send(&delete_offsets, 0).await.expect("offset delete");
    assert_eq!(resp.error_code, GROUP_AUTHORIZATION_FAILED);

    // A standalone consumer's group: OffsetCommit needs READ on the group and on each topic,
    // OffsetDelete DELETE on the group and READ on each topic.
    let grants = vec![
        acl(GROUP, "solo", LITERAL, ANONYMOUS, READ, ALLOW),
        acl(
            GROUP, "solo", LITERAL, ANONYMOUS, 6, /* DELETE */
            ALLOW,
        ),
    ];
    assert_eq!(create_acls(&mut c, grants).await, vec![0, 0]);
    let commit = |topic: &str| {
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(vec![
            kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(1),
        ])
    };
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes("solo")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str_bytes(""))
        .with_topics(vec![commit("orders.eu"), commit("secret")]);
    let resp = c.send(&req, 7).await.expect("offset commit");
    let codes: Vec<i16> = resp
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(codes, vec![0, TOPIC_AUTHORIZATION_FAILED]);
    let delete = |topic: &str| {
        kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()])
    };
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(str_bytes("solo")))
        .with_topics(vec![delete("orders.eu"), delete("secret")]);
    let resp = c.send(&req, 0).await.expect("offset delete");
    assert_eq!(resp.error_code, 0);
    let codes: Vec<(String, i16)> = resp
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("orders.eu".into(), 0),
            ("secret".into(), TOPIC_AUTHORIZATION_FAILED)
        ]
    );

    // A DENY beats the ALLOW, for its operation only; deleting it restores the ALLOW.
    assert_eq!(
        create_acls(
            &mut c,
            vec![acl(TOPIC, "orders.eu", LITERAL, ANONYMOUS, WRITE, DENY)]
        )
        .await,
        vec![0]
    );
    assert_eq!(
        produce_code(&mut c, "orders.eu").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(fetch_code(&mut c, "orders.eu").await, 0);
    let delete = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(ANY)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(DENY)]);
    let deleted = c.send(&delete, 3).await.expect("delete acls");
    let matched = &deleted.filter_results[0];
    assert_eq!((matched.error_code, matched.matching_acls.len()), (0, 1));
    assert_eq!(matched.matching_acls[0].resource_name.as_str(), "orders.eu");
    assert_eq!(
        produce(&mut c, "orders.eu", 0, one_record("second"), 1).await,
        (0, 1)
    );
    // WRITE on some topic now: an idempotent producer gets an id and appends.
    let (code, producer_id) = init_producer_id(&mut c).await;
    assert_eq!(code, 0);
    let idempotent = common::idempotent_batch(
        &[(None, Some("i".into()), vec![])],
        Compression::None,
        producer_id,
        0,
        0,
    );
    assert_eq!(produce(&mut c, "orders.eu", 0, idempotent, 1).await, (0, 2));

    // Denials are counted per principal, operation, resource type and result.
    let metrics = broker.broker.render_metrics();
    let denied_writes = metrics
        .lines()
        .find(|l| {
            l.starts_with("strata_authorization_total{")
                && l.contains("principal=\"User:ANONYMOUS\"")
                && l.contains("operation=\"WRITE\"")
                && l.contains("result=\"denied\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(denied_writes, Some(2), "{metrics}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_for_anyone_closes_a_resource_that_allow_everyone_left_open() {
    let broker = TestBroker::start(&[("allow.everyone.if.no.acl.found", "true")]).await;
    let mut c = broker.client("acl-14435").await;
    create_topic(&mut c, "open", 1, &[]).await;
    create_topic(&mut c, "pinned", 1, &[]).await;
    assert_eq!(
        create_acls(
            &mut c,
            vec![acl(TOPIC, "pinned", LITERAL, "User:alice", WRITE, ALLOW)]
        )
        .await,
        vec![0]
    );
    assert_eq!(produce(&mut c, "open", 0, one_record("o"), 1).await, (0, 0));
    assert_eq!(
        produce_code(&mut c, "pinned").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    // Reading is governed too: the ACL is for another principal and another operation.
    assert_eq!(
        fetch_code(&mut c, "pinned").await,
        TOPIC_AUTHORIZATION_FAILED
    );

    // Malformed bindings and filters are INVALID_REQUEST; nothing is created.
    let bad = vec![
        acl(TOPIC, "t", 2 /* MATCH */, "User:alice", READ, ALLOW),
        acl(TOPIC, "t", LITERAL, "alice", READ, ALLOW),
        acl(TOPIC, "", LITERAL, "User:alice", READ, ALLOW),
        acl(ANY, "t", LITERAL, "User:alice", READ, ALLOW),
    ];
    assert_eq!(create_acls(&mut c, bad).await, vec![INVALID_REQUEST; 4]);
    let unknown_op = describe_all()
        .with_pattern_type_filter(ANY)
        .with_operation(99)
        .with_permission_type(ANY);
    assert_eq!(
        c.send(&unknown_op, 3).await.expect("describe").error_code,
        INVALID_REQUEST
    );
    let all = describe_all()
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let described = c.send(&all, 3).await.expect("describe");
    assert_eq!(described.resources.len(), 1);
    assert_eq!(described.resources[0].resource_name.as_str(), "pinned");

    // Creating an existing ACL again succeeds and adds nothing.
    let again = acl(TOPIC, "pinned", LITERAL, "User:alice", WRITE, ALLOW);
    assert_eq!(
        create_acls(&mut c, vec![again.clone(), again]).await,
        vec![0, 0]
    );
    let described = c.send(&all, 3).await.expect("describe");
    assert_eq!(described.resources[0].acls.len(), 1);

    // A filter with an unknown field is INVALID_REQUEST on its own; the other filters apply.
    let unknown = DeleteAclsFilter::default()
        .with_resource_type_filter(0)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(ANY)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let nothing = unknown.clone().with_resource_type_filter(GROUP);
    let deleted = c
        .send(
            &DeleteAclsRequest::default().with_filters(vec![unknown, nothing]),
            3,
        )
        .await
        .expect("delete acls");
    let results: Vec<(i16, usize)> = deleted
        .filter_results
        .iter()
        .map(|f| (f.error_code, f.matching_acls.len()))
        .collect();
    assert_eq!(results, vec![(INVALID_REQUEST, 0), (0, 0)]);
    assert_eq!(
        c.send(&all, 3).await.expect("describe").resources.len(),
        1,
        "nothing deleted"
    );

    // An ACL on the cluster for someone else closes ACL administration to ANONYMOUS.
    assert_eq!(
        create_acls(
            &mut c,
            vec![acl(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                "User:alice",
                ALTER,
                ALLOW
            )]
        )
        .await,
        vec![0]
    );
    assert_eq!(
        create_acls(
            &mut c,
            vec![acl(TOPIC, "open", LITERAL, ANONYMOUS, READ, DENY)]
        )
        .await,
        vec![CLUSTER_AUTHORIZATION_FAILED]
    );
    assert_eq!(
        c.send(&all, 3).await.expect("describe").error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    broker.stop().await;
}

/// `strata acls` round trip: what `create` writes, `list` shows and `delete` removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acls_command_creates_lists_and_deletes() {
    use strata::admin::acls::{execute, AclsArgs, AclsCommand, EntryArgs, ResourceArgs};
    let broker = TestBroker::start(&[]).await;
    let run = |command| {
        execute(AclsArgs {
            bootstrap_server: broker.bootstrap(),
            command_config: None,
            command,
        })
    };
    let orders = ResourceArgs {
        topic: vec!["orders.".into()],
        resource_pattern_type: Some("prefixed".into()),
        ..Default::default()
    };
    let entry = EntryArgs {
        allow_principal: vec!["User:alice".into()],
        deny_principal: vec!["User:mallory".into()],
        operation: vec!["Read".into(), "IdempotentWrite".into()],
        ..Default::default()
    };
    let created = run(AclsCommand::Create {
        resource: orders.clone(),
        entry,
    })
    .await
    .expect("create");
    assert_eq!(created.len(), 4, "{created:?}");
    let listed = run(AclsCommand::List {
        resource: ResourceArgs::default(),
        principal: None,
    })
    .await
    .expect("list");
    assert_eq!(
        listed,
        vec![
            "TOPIC:PREFIXED:orders.\tUser:alice\t*\tIDEMPOTENT_WRITE\tALLOW",
            "TOPIC:PREFIXED:orders.\tUser:alice\t*\tREAD\tALLOW",
            "TOPIC:PREFIXED:orders.\tUser:mallory\t*\tIDEMPOTENT_WRITE\tDENY",
            "TOPIC:PREFIXED:orders.\tUser:mallory\t*\tREAD\tDENY",
        ]
    );
    // MATCH: the prefixed ACLs cover orders.eu.
    let matching = ResourceArgs {
        topic: vec!["orders.eu".into()],
        resource_pattern_type: Some("match".into()),
        ..Default::default()
    };
    let matched = run(AclsCommand::List {
        resource: matching,
        principal: Some("User:alice".into()),
    })
    .await
    .expect("list");
    assert_eq!(matched.len(), 2, "{matched:?}");
    let deny_only = EntryArgs {
        deny_principal: vec!["User:mallory".into()],
        ..Default::default()
    };
    let deleted = run(AclsCommand::Delete {
        resource: orders,
        entry: deny_only,
    })
    .await
    .expect("delete");
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(
        deleted.iter().all(|l| l.contains("User:mallory")),
        "{deleted:?}"
    );
    let left = run(AclsCommand::List {
        resource: ResourceArgs::default(),
        principal: None,
    })
    .await
    .expect("list");
    assert!(
        left.iter().all(|l| l.contains("User:alice")) && left.len() == 2,
        "{left:?}"
    );
    let bad = EntryArgs {
        allow_principal: vec!["User:a".into()],
        operation: vec!["Reed".into()],
        ..Default::default()
    };
    let err = run(AclsCommand::Create {
        resource: ResourceArgs {
            cluster: true,
            ..Default::default()
        },
        entry: bad,
    })
    .await;
    assert!(err.is_err());
    broker.stop().await;
}

/// The reassignment, election, log-dir and unregister APIs need ALTER or DESCRIBE on the
/// cluster; without them each is refused with CLUSTER_AUTHORIZATION_FAILED and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_partitions_needs_the_cluster() {
    let mut admin_sets = strict();
    admin_sets.push(("super.users", ANONYMOUS));
    let broker = TestBroker::start(&admin_sets).await;
    let mut c = broker.client("acl-admin").await;
    create_topic(&mut c, "moving", 1, &[]).await;
    drop(c);
    let dir = broker.stop().await;

    let broker = TestBroker::start_in(dir, &strict()).await;
    let mut c = broker.client("acl-client").await;
    let reassign = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        alter_partition_reassignments_request::ReassignableTopic::default()
            .with_name(topic_name("moving"))
            .with_partitions(vec![
                alter_partition_reassignments_request::ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(1)])),
            ]),
    ]);
    let r = c.send(&reassign, 1).await.expect("reassign");
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let r = c
        .send(
            &ListPartitionReassignmentsRequest::default().with_topics(None),
            0,
        )
        .await
        .expect("list");
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let elect = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
        elect_leaders_request::TopicPartitions::default()
            .with_topic(topic_name("moving"))
            .with_partitions(vec![0]),
    ]));
    let r = c.send(&elect, 2).await.expect("elect");
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(
        r.replica_election_results[0].partition_result[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    let r = c
        .send(&DescribeLogDirsRequest::default().with_topics(None), 4)
        .await
        .expect("log dirs");
    assert_eq!(
        (r.error_code, r.results.len()),
        (CLUSTER_AUTHORIZATION_FAILED, 0)
    );
    let data_dir = broker.dir.path().join("data");
    let move_dir = AlterReplicaLogDirsRequest::default().with_dirs(vec![
        alter_replica_log_dirs_request::AlterReplicaLogDir::default()
            .with_path(str_bytes(data_dir.display().to_string()))
            .with_topics(vec![
                alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                    .with_name(topic_name("moving"))
                    .with_partitions(vec![0]),
            ]),
    ]);
    let r = c.send(&move_dir, 2).await.expect("alter log dirs");
    assert_eq!(
        r.results[0].partitions[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    let r = c
        .send(
            &UnregisterBrokerRequest::default().with_broker_id(BrokerId(1)),
            0,
        )
        .await
        .expect("unregister");
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let image = broker.broker.apis.image();
    assert!(image.brokers.contains_key(&strata::model::BrokerId(1)));
    let p = &image.topic_by_name("moving").expect("topic").partitions;
    assert!(p.values().all(|p| !p.is_reassigning()));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_verification_from_brokers_needs_only_cluster_action() {
    const CLUSTER_ACTION: i8 = 9;
    const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    const NOT_COORDINATOR: i16 = 16;
    let mut admin_sets = strict();
    admin_sets.push(("super.users", ANONYMOUS));
    let broker = TestBroker::start(&admin_sets).await;
    let mut c = broker.client("acl-admin").await;
    create_topic(&mut c, "verified", 1, &[]).await;
    drop(c);
    let dir = broker.stop().await;

    let broker = TestBroker::start_in(dir, &strict()).await;
    let mut c = broker.client("acl-client").await;
    let topics = || {
        vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(topic_name("verified"))
                .with_partitions(vec![0]),
        ]
    };
    let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(str_bytes("tv")))
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(0)
            .with_verify_only(true)
            .with_topics(topics()),
    ]);
    let r = c.send(&verify, 4).await.expect("verify");
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
    drop(c);
    let dir = broker.stop().await;

    // ClusterAction on the cluster, and nothing on the transactional id or the topic.
    let mut admin_sets = strict();
    admin_sets.push(("super.users", ANONYMOUS));
    let broker = TestBroker::start_in(dir, &admin_sets).await;
    let mut c = broker.client("acl-admin").await;
    let grant = acl(
        CLUSTER,
        "kafka-cluster",
        LITERAL,
        ANONYMOUS,
        CLUSTER_ACTION,
        ALLOW,
    );
    assert_eq!(create_acls(&mut c, vec![grant]).await, vec![0]);
    drop(c);
    let dir = broker.stop().await;
    let broker = TestBroker::start_in(dir, &strict()).await;
    let mut c = broker.client("acl-client").await;
    // As in Kafka, a broker's verification is not refused for the transactional id or the
    // topic: it reaches the coordinator (which this broker is not yet: no transaction state).
    let r = c.send(&verify, 4).await.expect("verify");
    assert_eq!(r.error_code, 0);
    let code =
        r.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, NOT_COORDINATOR);
    // A producer's AddPartitionsToTxn (v3) still needs WRITE on its transactional id.
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(str_bytes("tv")))
        .with_v3_and_below_producer_id(ProducerId(7))
        .with_v3_and_below_producer_epoch(0)
        .with_v3_and_below_topics(topics());
    let r = c.send(&add, 3).await.expect("add");
    let code = r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    broker.stop().await;
}
