use super::*;
use crate::controller::mirror::{CredentialRef, MirrorTopic};
use crate::model::BrokerId;

const DEFAULTS: TopicDefaults = TopicDefaults {
    num_partitions: 1,
    replication_factor: 1,
};

fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
    for r in records {
        image.apply(image.offset + 1, r);
    }
}

fn image_with_link(include: &[&str]) -> MetadataImage {
    let mut image = MetadataImage::default();
    apply(
        &mut image,
        &[MetadataRecord::RegisterBroker {
            broker_id: BrokerId(1),
            incarnation: uuid::Uuid::nil(),
            host: "h".into(),
            port: 1,
            rack: None,
            endpoints: vec![],
        }],
    );
    let records = decide_create_link(
        &image,
        &MirrorLinkSpec::plaintext("dr", "src:9092", include),
    )
    .expect("valid link");
    apply(&mut image, &records);
    image
}

fn source(name: &str, partitions: i32) -> SourceTopic {
    SourceTopic {
        name: name.into(),
        partitions,
        configs: vec![("retention.ms".into(), "1000".into())],
    }
}

fn sync(image: &mut MetadataImage, topics: &[SourceTopic]) -> Vec<String> {
    let (conflicts, records) =
        decide_mirror_topics(image, "dr", "target", "source", topics, DEFAULTS).expect("decide");
    apply(image, &records);
    conflicts
}

#[test]
fn selected_topics_become_mirror_topics_with_the_source_partition_count() {
    let mut image = image_with_link(&["orders.*"]);
    sync(&mut image, &[source("orders", 3), source("other", 1)]);
    assert_eq!(
        image
            .topic_by_name("orders")
            .expect("created")
            .partitions
            .len(),
        3
    );
    assert!(image.topic_by_name("other").is_none());
    assert_eq!(
        image.mirrors.topic("orders"),
        Some(&MirrorTopic {
            link: "dr".into(),
            state: MirrorTopicState::Mirroring
        })
    );
    assert!(image.mirrors.refuses_produce("orders"));
    assert!(!image.mirrors.refuses_produce("other"));
    // Configs are copied only when the link syncs them.
    assert!(image
        .topic_by_name("orders")
        .unwrap()
        .config
        .overrides
        .is_empty());
    // A second pass with nothing new writes nothing; partition additions are followed.
    let (_, again) = decide_mirror_topics(
        &image,
        "dr",
        "target",
        "source",
        &[source("orders", 3)],
        DEFAULTS,
    )
    .unwrap();
    assert!(again.is_empty());
    sync(&mut image, &[source("orders", 5)]);
    assert_eq!(image.topic_by_name("orders").unwrap().partitions.len(), 5);
}

#[test]
fn config_sync_copies_known_configs_and_follows_changes() {
    let mut image = image_with_link(&["t"]);
    let mut spec = image.mirrors.links["dr"].spec.clone();
    spec.options.sync_configs = true;
    let records = decide_alter_link(&image, &spec).unwrap();
    apply(&mut image, &records);
    let mut t = source("t", 1);
    t.configs.push(("confluent.only.thing".into(), "x".into()));
    sync(&mut image, &[t.clone()]);
    let overrides = &image.topic_by_name("t").unwrap().config.overrides;
    assert_eq!(
        overrides.get("retention.ms").map(String::as_str),
        Some("1000")
    );
    assert!(!overrides.contains_key("confluent.only.thing"));
    t.configs = vec![("retention.ms".into(), "2000".into())];
    sync(&mut image, &[t]);
    let overrides = &image.topic_by_name("t").unwrap().config.overrides;
    assert_eq!(
        overrides.get("retention.ms").map(String::as_str),
        Some("2000")
    );
}

#[test]
fn a_local_topic_of_the_same_name_is_a_conflict_not_taken_over() {
    let mut image = image_with_link(&[".*"]);
    let (_, records) = decide_create_topic(
        &image,
        &NewTopic {
            name: "local".into(),
            num_partitions: 1,
            replication_factor: 1,
            assignments: vec![],
            configs: vec![],
        },
        DEFAULTS,
    )
    .unwrap();
    apply(&mut image, &records);
    assert_eq!(
        sync(&mut image, &[source("local", 4)]),
        vec!["local".to_string()]
    );
    assert!(image.mirrors.topic("local").is_none());
    assert_eq!(image.topic_by_name("local").unwrap().partitions.len(), 1);
}

#[test]
fn a_link_never_mirrors_its_own_cluster_and_a_paused_link_creates_nothing() {
    let mut image = image_with_link(&[".*"]);
    let err = decide_mirror_topics(&image, "dr", "same", "same", &[source("t", 1)], DEFAULTS)
        .unwrap_err();
    assert!(matches!(
        err,
        ControllerError::Mirror(MirrorError::SourceIsSelf(_))
    ));
    let records = decide_link_state(&image, "dr", LinkState::Paused).unwrap();
    apply(&mut image, &records);
    assert_eq!(sync(&mut image, &[source("t", 1)]), Vec::<String>::new());
    assert!(image.topic_by_name("t").is_none());
    assert!(decide_link_state(&image, "dr", LinkState::Paused)
        .unwrap()
        .is_empty());
}

#[test]
fn promote_failover_and_delete_follow_the_topic_states() {
    let mut image = image_with_link(&[".*"]);
    sync(&mut image, &[source("a", 1), source("b", 1)]);
    assert!(matches!(
        decide_delete_link(&image, "dr"),
        Err(ControllerError::Mirror(MirrorError::LinkInUse { .. }))
    ));
    let records = decide_promote(&image, &["a".into()]).unwrap();
    apply(&mut image, &records);
    assert!(!image.mirrors.refuses_produce("a"));
    assert!(decide_promote(&image, &["a".into()]).unwrap().is_empty());
    assert!(decide_promote(&image, &["nope".into()]).is_err());
    // A failure keeps its first reason and only hits a mirroring topic.
    let records = decide_mirror_topic_failed(&image, "b", "source truncated");
    apply(&mut image, &records);
    assert!(decide_mirror_topic_failed(&image, "b", "other").is_empty());
    assert!(decide_mirror_topic_failed(&image, "a", "other").is_empty());
    assert!(image.mirrors.refuses_produce("b"));
    let (topics, records) = decide_failover(&image, "dr").unwrap();
    assert_eq!(topics, vec!["b".to_string()]);
    apply(&mut image, &records);
    let records = decide_delete_link(&image, "dr").unwrap();
    apply(&mut image, &records);
    assert!(image.mirrors.links.is_empty());
    // A deleted topic loses its mirror entry.
    let id = image.topic_by_name("a").unwrap().topic_id;
    apply(&mut image, &[MetadataRecord::RemoveTopic { topic_id: id }]);
    assert!(image.mirrors.topic("a").is_none());
}

#[test]
fn invalid_links_are_refused_with_the_reason() {
    let image = MetadataImage::default();
    let mut spec = MirrorLinkSpec::plaintext("dr", "src", &[]);
    assert!(decide_create_link(&image, &spec).is_err(), "no port");
    spec.bootstrap_servers = "src:9092".into();
    spec.topics.include = vec!["(".into()];
    assert!(decide_create_link(&image, &spec).is_err(), "bad regex");
    spec.topics.include = vec![];
    spec.security.ssl_truststore_location = Some("/ca.pem".into());
    let err = decide_create_link(&image, &spec).unwrap_err().to_string();
    assert!(err.contains("need security.protocol SSL"), "{err}");
    spec.security.security_protocol = "SSL".into();
    assert!(decide_create_link(&image, &spec).is_ok());
    spec.security.security_protocol = "SASL_SSL".into();
    assert!(
        decide_create_link(&image, &spec).is_err(),
        "SASL_SSL without a mechanism"
    );
    spec.security.ssl_truststore_location = None;
    spec.security.security_protocol = "GSSAPI".into();
    assert!(decide_create_link(&image, &spec).is_err());
    spec.security.security_protocol = "SASL_PLAINTEXT".into();
    spec.security.sasl_mechanism = Some("PLAIN".into());
    spec.security.sasl_username = Some("u".into());
    let err = decide_create_link(&image, &spec).unwrap_err().to_string();
    assert!(err.contains("credential reference"), "{err}");
    spec.security.credential = Some(CredentialRef::Env("SRC_PASSWORD".into()));
    let records = decide_create_link(&image, &spec).unwrap();
    assert_eq!(records.len(), 1);
    let mut image = image;
    apply(&mut image, &records);
    assert!(matches!(
        decide_create_link(&image, &spec),
        Err(ControllerError::Mirror(MirrorError::LinkExists(_)))
    ));
    assert!(decide_alter_link(&image, &spec).unwrap().is_empty());
}

#[test]
fn records_of_older_logs_load_and_new_records_round_trip() {
    // An image serialized before mirror links existed has no `mirrors` field.
    let old = serde_json::to_value(MetadataImage::default()).unwrap();
    let mut old = old.as_object().unwrap().clone();
    old.remove("mirrors");
    let image: MetadataImage = serde_json::from_value(old.into()).expect("old image loads");
    assert!(image.mirrors.links.is_empty());
    // A link record with only the required fields takes the defaults.
    let r: MetadataRecord = serde_json::from_str(
        r#"{"type":"mirror_link","spec":{"name":"dr","bootstrap_servers":"s:1"}}"#,
    )
    .unwrap();
    match r {
        MetadataRecord::MirrorLink { spec } => {
            assert_eq!(spec.security.security_protocol, "PLAINTEXT");
            assert_eq!(spec.options.interval_ms, 5000);
        }
        other => panic!("{other:?}"),
    }
    let failed = MetadataRecord::MirrorTopic {
        topic: "t".into(),
        link: "dr".into(),
        state: MirrorTopicState::Failed("why".into()),
    };
    let text = serde_json::to_string(&failed).unwrap();
    assert_eq!(
        serde_json::from_str::<MetadataRecord>(&text).unwrap(),
        failed
    );
}
