//! Client quotas through the wire protocol against an in-process broker: AlterClientQuotas and
//! DescribeClientQuotas round trips (filters, defaults, removal, validate_only, per-entity
//! errors) that survive a restart, byte-rate throttling of produce and fetch, the request-time
//! quota, and cluster-wide tenant and topic limits (throttling, and the share a lone broker gets).

mod common;

use std::time::{Duration, Instant};

use common::{batch, kafka, TestBroker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, ApiVersionsRequest,
    DescribeClientQuotasRequest, FetchRequest, ProduceResponse,
};
use kafka_protocol::records::Compression;
use strata::client::KafkaClient;
use strata::protocol::str_bytes;

/// (entity type, name or None for the default).
type Entity = Vec<(&'static str, Option<&'static str>)>;

fn entry(entity: &Entity, ops: &[(&str, Option<f64>)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(str_bytes(*t))
                        .with_entity_name(n.map(str_bytes))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v)| match v {
                    Some(v) => OpData::default().with_key(str_bytes(*k)).with_value(*v),
                    None => OpData::default().with_key(str_bytes(*k)).with_remove(true),
                })
                .collect(),
        )
}

async fn alter(
    c: &mut KafkaClient,
    entries: Vec<EntryData>,
    validate_only: bool,
) -> AlterClientQuotasResponse {
    c.send(
        &AlterClientQuotasRequest::default()
            .with_entries(entries)
            .with_validate_only(validate_only),
        1,
    )
    .await
    .expect("alter client quotas")
}

/// Describes with (entity type, match type, match) components: sorted "entity: k=v,..." lines.
async fn describe(
    c: &mut KafkaClient,
    components: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> Result<Vec<String>, (i16, String)> {
    let req = DescribeClientQuotasRequest::default()
        .with_components(
            components
                .iter()
                .map(|(t, m, n)| {
                    ComponentData::default()
                        .with_entity_type(str_bytes(*t))
                        .with_match_type(*m)
                        .with_match(n.map(str_bytes))
                })
                .collect(),
        )
        .with_strict(strict);
    let resp = c.send(&req, 1).await.expect("describe client quotas");
    if resp.error_code != 0 {
        return Err((
            resp.error_code,
            resp.error_message
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ));
    }
    let mut lines: Vec<String> = resp
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let entity: Vec<String> = e
                .entity
                .iter()
                .map(|c| {
                    format!(
                        "{}={}",
                        &*c.entity_type,
                        c.entity_name.as_deref().unwrap_or("<default>")
                    )
                })
                .collect();
            let values: Vec<String> = e
                .values
                .iter()
                .map(|v| format!("{}={}", &*v.key, v.value))
                .collect();
            format!("{}: {}", entity.join(","), values.join(","))
        })
        .collect();
    lines.sort();
    Ok(lines)
}

const P: &str = "producer_byte_rate";
const C: &str = "consumer_byte_rate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_and_describe_round_trip_and_survive_a_restart() {
    let b = TestBroker::start(&[]).await;
    let mut c = b.client("admin").await;

    // Advertised once implemented.
    let versions = c
        .send(&ApiVersionsRequest::default(), 3)
        .await
        .expect("api versions");
    for key in [ApiKey::DescribeClientQuotas, ApiKey::AlterClientQuotas] {
        let v = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .expect("advertised");
        assert_eq!((v.min_version, v.max_version), (0, 1));
    }

    let app: Entity = vec![("client-id", Some("app"))];
    let default_client: Entity = vec![("client-id", None)];
    let anon_default_client: Entity = vec![("user", Some("ANONYMOUS")), ("client-id", None)];
    let default_user: Entity = vec![("user", None)];
    let resp = alter(
        &mut c,
        vec![
            entry(&app, &[(P, Some(1024.0)), (C, Some(2048.0))]),
            entry(&default_client, &[(P, Some(100.0))]),
            entry(&anon_default_client, &[(C, Some(4096.0))]),
            entry(&default_user, &[(P, Some(5000.0))]),
            // Refused one by one, each with its own error; the others still apply.
            entry(
                &vec![("client-id", Some("x"))],
                &[("controller_mutation_rate", Some(50.0))],
            ),
            entry(&vec![("client-id", Some("y"))], &[(P, Some(-1.0))]),
            entry(&vec![("client-id", Some("z"))], &[(P, Some(1.5))]),
            entry(
                &vec![("client-id", Some("w"))],
                &[(P, Some(1.0)), (P, None)],
            ),
            entry(
                &vec![("ip", Some("127.0.0.1"))],
                &[("connection_creation_rate", Some(1.0))],
            ),
            entry(&vec![("group", Some("g"))], &[(P, Some(1.0))]),
            entry(&vec![], &[(P, Some(1.0))]),
            entry(&vec![("client-id", Some(""))], &[(P, Some(1.0))]),
            entry(&vec![("client-id", Some("v"))], &[("bogus", Some(1.0))]),
        ],
        false,
    )
    .await;
    let codes: Vec<i16> = resp.entries.iter().map(|e| e.error_code).collect();
    let invalid = ResponseError::InvalidRequest.code();
    let unsupported = ResponseError::UnsupportedVersion.code();
    assert_eq!(
        codes,
        vec![
            0,
            0,
            0,
            0,
            invalid,
            invalid,
            invalid,
            invalid,
            invalid,
            unsupported,
            invalid,
            invalid,
            invalid
        ]
    );
    let message = resp.entries[4]
        .error_message
        .as_deref()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("controller_mutation_rate") && message.contains("not enforced"),
        "{message}"
    );
    // The response names each entity as the request did.
    assert_eq!(resp.entries[2].entity.len(), 2);
    assert_eq!(resp.entries[2].entity[1].entity_name, None);
    assert_eq!(
        resp.entries[0].entity[0].entity_name.as_deref(),
        Some("app")
    );

    // An entity named twice is refused both times and changes nothing.
    let resp = alter(
        &mut c,
        vec![
            entry(&app, &[(P, Some(1.0))]),
            entry(&app, &[(C, Some(1.0))]),
        ],
        false,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == invalid));

    // validate_only checks, answers, and writes nothing.
    let resp = alter(
        &mut c,
        vec![
            entry(&app, &[(P, None)]),
            entry(&vec![("client-id", Some("new"))], &[(P, Some(7.0))]),
        ],
        true,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == 0));
    let resp = alter(
        &mut c,
        vec![entry(&app, &[("controller_mutation_rate", Some(1.0))])],
        true,
    )
    .await;
    assert_eq!(resp.entries[0].error_code, invalid);

    let all = vec![
        "client-id=<default>: producer_byte_rate=100".to_string(),
        "client-id=app: consumer_byte_rate=2048,producer_byte_rate=1024".to_string(),
        "user=<default>: producer_byte_rate=5000".to_string(),
        "user=ANONYMOUS,client-id=<default>: consumer_byte_rate=4096".to_string(),
    ];
    assert_eq!(describe(&mut c, &[], false).await, Ok(all.clone()));
    assert_eq!(
        describe(&mut c, &[("client-id", 0, Some("app"))], false).await,
        Ok(vec![all[1].clone()])
    );
    assert_eq!(
        describe(&mut c, &[("client-id", 0, Some("nope"))], false).await,
        Ok(vec![])
    );
    assert_eq!(
        describe(&mut c, &[("client-id", 1, None)], false).await,
        Ok(vec![all[0].clone(), all[3].clone()])
    );
    assert_eq!(
        describe(&mut c, &[("client-id", 1, None)], true).await,
        Ok(vec![all[0].clone()])
    );
    assert_eq!(
        describe(&mut c, &[("client-id", 2, None)], true).await,
        Ok(vec![all[0].clone(), all[1].clone()])
    );
    assert_eq!(
        describe(&mut c, &[("user", 2, None)], false).await,
        Ok(vec![all[2].clone(), all[3].clone()])
    );
    assert_eq!(
        describe(
            &mut c,
            &[("user", 0, Some("ANONYMOUS")), ("client-id", 1, None)],
            true
        )
        .await,
        Ok(vec![all[3].clone()])
    );
    assert_eq!(
        describe(&mut c, &[("user", 1, None)], true).await,
        Ok(vec![all[2].clone()])
    );
    // Malformed filters are refused as a whole.
    assert_eq!(
        describe(&mut c, &[("user", 0, None)], false)
            .await
            .map_err(|e| e.0),
        Err(invalid)
    );
    assert_eq!(
        describe(&mut c, &[("user", 1, Some("a"))], false)
            .await
            .map_err(|e| e.0),
        Err(invalid)
    );
    assert_eq!(
        describe(&mut c, &[("user", 2, None), ("user", 2, None)], false)
            .await
            .map_err(|e| e.0),
        Err(invalid)
    );
    assert_eq!(
        describe(&mut c, &[("group", 2, None)], false)
            .await
            .map_err(|e| e.0),
        Err(unsupported)
    );
    assert_eq!(
        describe(&mut c, &[("user", 9, None)], false)
            .await
            .map_err(|e| e.0),
        Err(unsupported)
    );

    // Removal: one key of an entity, then the last key, which drops the entity. Removing what
    // is not there succeeds.
    let resp = alter(
        &mut c,
        vec![
            entry(&app, &[(C, None)]),
            entry(&default_user, &[(P, None)]),
            entry(&vec![("client-id", Some("ghost"))], &[(P, None)]),
        ],
        false,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == 0), "{resp:?}");
    let after = vec![
        "client-id=<default>: producer_byte_rate=100".to_string(),
        "client-id=app: producer_byte_rate=1024".to_string(),
        "user=ANONYMOUS,client-id=<default>: consumer_byte_rate=4096".to_string(),
    ];
    assert_eq!(describe(&mut c, &[], false).await, Ok(after.clone()));

    drop(c);
    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &[]).await;
    let mut c = b.client("admin").await;
    assert_eq!(describe(&mut c, &[], false).await, Ok(after));
    // And the restarted broker enforces what it replayed.
    let image = b.broker.image();
    assert_eq!(
        image
            .client_quotas
            .resolve("ANONYMOUS", "app", P)
            .map(|r| r.1),
        Some(1024.0)
    );
    assert_eq!(
        image
            .client_quotas
            .resolve("ANONYMOUS", "other", C)
            .map(|r| r.1),
        Some(4096.0)
    );
    b.stop().await;
}

async fn produce(c: &mut KafkaClient, topic: &str, kb: usize) -> ProduceResponse {
    let value = "x".repeat(kb * 1024);
    let records = batch(&[(None, Some(value), vec![])], Compression::None);
    let resp = kafka::produce_response(c, topic, 0, records, 1).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    resp
}

fn fetch_request(topic: &str) -> FetchRequest {
    kafka::fetch_request(topic, 0, 0, 0, 1, 1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_over_their_quota_are_throttled_and_muted() {
    // 2 samples of 1 s: a new client's allowance is one second of its quota.
    let b = TestBroker::start(&[
        ("quota.window.num", "2"),
        ("quota.window.size.seconds", "1"),
    ])
    .await;
    let mut admin = b.client("admin").await;
    kafka::create_topic(&mut admin, "q", 1, &[]).await;
    let resp = alter(
        &mut admin,
        vec![
            entry(&vec![("client-id", Some("slow"))], &[(P, Some(50_000.0))]),
            entry(&vec![("client-id", Some("reader"))], &[(C, Some(50_000.0))]),
        ],
        false,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == 0));

    // Within the allowance: no throttle.
    let mut slow = b.client("slow").await;
    assert_eq!(produce(&mut slow, "q", 10).await.throttle_time_ms, 0);
    // 100 kB more against 50 kB/s over a 1 s window: about 1.2 s over, capped at the 2 s window.
    let throttled = produce(&mut slow, "q", 100).await;
    assert!(
        (1000..=2000).contains(&throttled.throttle_time_ms),
        "throttle {} ms",
        throttled.throttle_time_ms
    );
    // The data was appended all the same: throttling delays, it does not refuse.
    assert_eq!(throttled.responses[0].partition_responses[0].base_offset, 1);
    // The connection is muted meanwhile: the next request is answered only after the throttle.
    let sent = Instant::now();
    let next = produce(&mut slow, "q", 1).await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(throttled.throttle_time_ms as u64 - 100),
        "answered after {waited:?}, throttle was {} ms",
        throttled.throttle_time_ms
    );
    assert_eq!(next.responses[0].partition_responses[0].base_offset, 2);
    // Another client id has no quota and no wait.
    let mut other = b.client("other").await;
    for _ in 0..3 {
        assert_eq!(produce(&mut other, "q", 100).await.throttle_time_ms, 0);
    }

    // Fetch: a consumer under a quota gets at most its window's worth (50 kB) per response;
    // once over its rate it gets an empty, throttled response instead of the records. It
    // fetches in a session (KIP-227), which a throttled response continues unchanged.
    kafka::create_topic(&mut admin, "r", 1, &[]).await;
    for _ in 0..40 {
        produce(&mut other, "r", 5).await;
    }
    let mut reader = b.client("reader").await;
    let first = kafka::fetch(&mut reader, &fetch_request("r").with_session_epoch(0)).await;
    assert_eq!(first.throttle_time_ms, 0);
    let session_id = first.session_id;
    assert!(session_id > 0, "no fetch session");
    let bytes: usize = first.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!((20 * 1024..=50_000).contains(&bytes), "{bytes}");
    // The session reads from offset 0 again (the request names no partition).
    let in_session = |epoch: i32| {
        FetchRequest::default()
            .with_min_bytes(1)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
    };
    let second = kafka::fetch(&mut reader, &in_session(1)).await;
    assert!(second.throttle_time_ms > 0, "the reader was not throttled");
    assert!(
        second.responses.is_empty(),
        "a throttled fetch carries no data"
    );
    assert_eq!((second.error_code, second.session_id), (0, session_id));
    // The session goes on at the next epoch (throttled again or not).
    let third = kafka::fetch(&mut reader, &in_session(2)).await;
    assert_eq!((third.error_code, third.session_id), (0, session_id));
    if third.throttle_time_ms == 0 {
        // Unthrottled, it answers the records the throttled response held back.
        assert_eq!(third.responses[0].partitions[0].partition_index, 0);
        assert!(third.responses[0].partitions[0]
            .records
            .as_ref()
            .is_some_and(|r| !r.is_empty()));
    }
    // A client id without a consumer quota reads freely.
    let r = kafka::fetch(&mut other, &fetch_request("q")).await;
    assert_eq!(r.throttle_time_ms, 0);
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|r| r.len() > 300 * 1024));

    let text = b.broker.render_metrics();
    for kind in ["produce", "fetch"] {
        let line = format!("strata_quota_throttled_responses_total{{kind=\"{kind}\"}} ");
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 1.0, "{kind}: {n}\n{text}");
    }
    b.stop().await;
}

/// The value of a `kind`-labelled quota counter in the broker's metrics.
fn throttled_count(b: &TestBroker, kind: &str) -> f64 {
    let text = b.broker.render_metrics();
    let line = format!("strata_quota_throttled_responses_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sends Metadata requests back to back for `span`; (requests answered, largest throttle).
async fn hammer_metadata(c: &mut KafkaClient, span: Duration) -> (usize, i32) {
    let start = Instant::now();
    let (mut n, mut max_throttle) = (0, 0);
    while start.elapsed() < span {
        let resp: kafka_protocol::messages::MetadataResponse = c
            .send(&kafka_protocol::messages::MetadataRequest::default(), 12)
            .await
            .expect("metadata");
        max_throttle = max_throttle.max(resp.throttle_time_ms);
        n += 1;
    }
    (n, max_throttle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_percentage_throttles_a_client_that_hammers_cheap_requests() {
    let b = TestBroker::start(&[
        ("quota.window.num", "2"),
        ("quota.window.size.seconds", "1"),
    ])
    .await;
    let mut admin = b.client("admin").await;
    // A fraction of a percent is a Double, as in Kafka.
    let resp = alter(
        &mut admin,
        vec![entry(
            &vec![("client-id", Some("busy"))],
            &[("request_percentage", Some(0.5))],
        )],
        false,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == 0), "{resp:?}");
    assert_eq!(
        describe(&mut admin, &[("client-id", 0, Some("busy"))], false).await,
        Ok(vec!["client-id=busy: request_percentage=0.5".to_string()])
    );

    // Without a quota, the same loop for the same time.
    let mut free = b.client("free").await;
    let (free_n, free_throttle) = hammer_metadata(&mut free, Duration::from_millis(1500)).await;
    assert_eq!(free_throttle, 0);
    // 0.5 % of a thread is 5 ms of handler time a second: a client that asks for more is told
    // to wait, and its connection is muted meanwhile, so it gets far fewer answers.
    let mut busy = b.client("busy").await;
    let (busy_n, busy_throttle) = hammer_metadata(&mut busy, Duration::from_millis(1500)).await;
    assert!(busy_throttle > 0, "no throttle after {busy_n} requests");
    assert!(
        busy_n * 3 < free_n,
        "throttled client got {busy_n} answers, unthrottled {free_n}"
    );
    assert!(throttled_count(&b, "request") >= 1.0);
    let text = b.broker.render_metrics();
    let spent: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("strata_quota_request_time_seconds_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(spent > 0.0, "{text}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_tenant_and_topic_limits_throttle_on_a_lone_broker() {
    let b = TestBroker::start(&[
        ("quota.window.num", "2"),
        ("quota.window.size.seconds", "1"),
    ])
    .await;
    let mut admin = b.client("admin").await;
    kafka::create_topic(
        &mut admin,
        "limited",
        1,
        &[("strata.producer.byte.rate", "50000")],
    )
    .await;
    kafka::create_topic(&mut admin, "open", 1, &[]).await;
    let resp = alter(
        &mut admin,
        vec![entry(
            &vec![("client-id", Some("tenant"))],
            &[("strata.cluster.producer_byte_rate", Some(50_000.0))],
        )],
        false,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == 0), "{resp:?}");

    // The topic's limit throttles a client with no quota of its own, on that topic only.
    let mut anyone = b.client("anyone").await;
    assert_eq!(
        produce(&mut anyone, "limited", 10).await.throttle_time_ms,
        0
    );
    let over = produce(&mut anyone, "limited", 100).await;
    assert!(
        (1000..=2000).contains(&over.throttle_time_ms),
        "throttle {} ms",
        over.throttle_time_ms
    );
    let mut other = b.client("other").await;
    for _ in 0..3 {
        assert_eq!(produce(&mut other, "open", 100).await.throttle_time_ms, 0);
    }
    // The tenant's limit follows it to any topic.
    let mut tenant = b.client("tenant").await;
    assert_eq!(produce(&mut tenant, "open", 10).await.throttle_time_ms, 0);
    assert!(produce(&mut tenant, "open", 100).await.throttle_time_ms > 0);
    assert!(throttled_count(&b, "topic_produce") >= 1.0);
    assert!(throttled_count(&b, "cluster_produce") >= 1.0);

    // A topic's consumer limit: a response carries at most the window's worth, and the next
    // fetch is answered empty with a throttle.
    kafka::create_topic(
        &mut admin,
        "read-limited",
        1,
        &[("strata.consumer.byte.rate", "50000")],
    )
    .await;
    for _ in 0..40 {
        produce(&mut other, "read-limited", 5).await;
    }
    let mut reader = b.client("reader").await;
    let first = kafka::fetch(&mut reader, &fetch_request("read-limited")).await;
    assert_eq!(first.throttle_time_ms, 0);
    let bytes: usize = first.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!((20 * 1024..=50_000).contains(&bytes), "{bytes}");
    let second = kafka::fetch(&mut reader, &fetch_request("read-limited")).await;
    assert!(second.throttle_time_ms > 0, "the reader was not throttled");
    assert!(
        second.responses.is_empty(),
        "a throttled fetch carries no data"
    );
    assert!(throttled_count(&b, "topic_fetch") >= 1.0);

    // A user entity is a tenant too (every client is ANONYMOUS without authentication).
    let resp = alter(
        &mut admin,
        vec![entry(
            &vec![("user", Some("ANONYMOUS"))],
            &[("strata.cluster.producer_byte_rate", Some(50_000.0))],
        )],
        false,
    )
    .await;
    assert!(resp.entries.iter().all(|e| e.error_code == 0), "{resp:?}");
    let mut someone = b.client("someone").await;
    assert_eq!(produce(&mut someone, "open", 10).await.throttle_time_ms, 0);
    assert!(produce(&mut someone, "open", 100).await.throttle_time_ms > 0);

    // The heartbeat reports both and brings back this broker's shares: all of each limit, as
    // it is the only broker.
    let shared = b.broker.apis.quotas.shared.clone();
    let topic_key = strata::quota::SharedQuotaKey {
        direction: strata::quota::SharedDirection::Produce,
        entity: strata::quota::SharedEntity::Topic("limited".into()),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.share(&topic_key).is_none() {
        assert!(Instant::now() < deadline, "no share arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let share = shared.share(&topic_key).expect("share");
    assert!((share - 50_000.0).abs() < 1e-6, "{share}");
    b.stop().await;
}
