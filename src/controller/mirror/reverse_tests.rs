use super::*;
use crate::controller::mirror::{decide_create_link, decide_failover, decide_mirror_topics};
use crate::controller::mirror::{LinkState, SourceTopic};
use crate::controller::{decide_create_topic, NewTopic, TopicDefaults};
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

/// One broker and the given local (non-mirror) topics.
fn image_with_topics(topics: &[(&str, i32)]) -> MetadataImage {
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
    for (name, partitions) in topics {
        let new = NewTopic {
            name: name.to_string(),
            num_partitions: *partitions,
            replication_factor: 1,
            assignments: vec![],
            configs: vec![],
        };
        let (_, records) = decide_create_topic(&image, &new, DEFAULTS).expect("topic");
        apply(&mut image, &records);
    }
    image
}

fn leader_epochs(image: &MetadataImage, topic: &str) -> Vec<i32> {
    image
        .topic_by_name(topic)
        .expect("topic")
        .partitions
        .values()
        .map(|p| p.leader_epoch.0)
        .collect()
}

fn tail(from: i64, end: i64) -> DivergentTail {
    DivergentTail {
        from_offset: from,
        end_offset: end,
        broker: 1,
        kept: if end > from {
            "kept".into()
        } else {
            String::new()
        },
    }
}

#[test]
fn reverse_turns_selected_local_topics_into_read_only_mirrors_under_a_new_epoch() {
    let mut image = image_with_topics(&[("orders", 2), ("other", 1), ("__consumer_offsets", 1)]);
    let before = leader_epochs(&image, "orders");
    let spec = MirrorLinkSpec::plaintext("back", "new-primary:9092", &["orders", "__.*"]);
    let (topics, records) = decide_reverse(&image, &spec).expect("reverse");
    apply(&mut image, &records);

    assert_eq!(topics, vec!["orders".to_string()], "internal topics never");
    assert_eq!(image.mirrors.links["back"].spec, spec);
    let m = image.mirrors.topic("orders").expect("a mirror topic now");
    assert_eq!(
        (m.link.as_str(), &m.state),
        ("back", &MirrorTopicState::Reconciling)
    );
    assert!(image.mirrors.refuses_produce("orders"));
    assert!(!image.mirrors.refuses_produce("other"));
    let after = leader_epochs(&image, "orders");
    assert_eq!(after, before.iter().map(|e| e + 1).collect::<Vec<_>>());
    assert_eq!(leader_epochs(&image, "other"), vec![0]);
}

#[test]
fn reverse_refuses_what_it_cannot_take_over() {
    let image = image_with_topics(&[("orders", 1)]);
    let none = MirrorLinkSpec::plaintext("back", "p:9092", &["missing.*"]);
    assert!(matches!(
        decide_reverse(&image, &none),
        Err(ControllerError::Mirror(MirrorError::NothingToReverse(_)))
    ));
    let bad = MirrorLinkSpec::plaintext("back", "no-port", &["orders"]);
    assert!(decide_reverse(&image, &bad).is_err());

    // A topic another link still mirrors is not this cluster's to reverse, and a link with
    // topics not yet promoted is in use.
    let mut image = image_with_topics(&[]);
    let dr = MirrorLinkSpec::plaintext("dr", "src:9092", &[".*"]);
    let r = decide_create_link(&image, &dr).unwrap();
    apply(&mut image, &r);
    let source = [SourceTopic {
        name: "orders".into(),
        partitions: 1,
        configs: vec![],
    }];
    let (_, r) = decide_mirror_topics(&image, "dr", "t", "s", &source, DEFAULTS).unwrap();
    apply(&mut image, &r);
    let other = MirrorLinkSpec::plaintext("back", "p:9092", &["orders"]);
    assert!(matches!(
        decide_reverse(&image, &other),
        Err(ControllerError::Mirror(MirrorError::NothingToReverse(_)))
    ));
    let same = MirrorLinkSpec::plaintext("dr", "p:9092", &["orders"]);
    assert!(matches!(
        decide_reverse(&image, &same),
        Err(ControllerError::Mirror(MirrorError::LinkInUse { .. }))
    ));
}

#[test]
fn failback_reverses_over_the_same_link_once_its_topics_are_promoted() {
    let mut image = image_with_topics(&[]);
    let dr = MirrorLinkSpec::plaintext("dr", "src:9092", &[".*"]);
    let r = decide_create_link(&image, &dr).unwrap();
    apply(&mut image, &r);
    let source = [SourceTopic {
        name: "orders".into(),
        partitions: 2,
        configs: vec![],
    }];
    let (_, r) = decide_mirror_topics(&image, "dr", "t", "s", &source, DEFAULTS).unwrap();
    apply(&mut image, &r);
    let r = decide_failover(&image, "dr").unwrap().1;
    apply(&mut image, &r);
    apply(
        &mut image,
        &[MetadataRecord::MirrorLinkState {
            name: "dr".into(),
            state: LinkState::Paused,
        }],
    );

    let back = MirrorLinkSpec::plaintext("dr", "old-source:9092", &["orders"]);
    let (topics, records) = decide_reverse(&image, &back).expect("reverse");
    apply(&mut image, &records);
    assert_eq!(topics, vec!["orders".to_string()]);
    assert_eq!(
        image.mirrors.links["dr"].spec.bootstrap_servers,
        "old-source:9092"
    );
    assert_eq!(image.mirrors.links["dr"].state, LinkState::Active);
    assert_eq!(
        image.mirrors.topic("orders").unwrap().state,
        MirrorTopicState::Reconciling
    );
}

#[test]
fn each_partition_reports_its_tail_once_and_the_last_report_resumes_mirroring() {
    let mut image = image_with_topics(&[("orders", 2)]);
    let spec = MirrorLinkSpec::plaintext("back", "p:9092", &["orders"]);
    let r = decide_reverse(&image, &spec).unwrap().1;
    apply(&mut image, &r);

    let r = decide_divergent_tail(&image, "orders", 0, &tail(40, 45));
    assert_eq!(r.len(), 1, "reported, the other partition has not: {r:?}");
    apply(&mut image, &r);
    assert_eq!(
        image.mirrors.divergent_tail("orders", 0).unwrap().records(),
        5
    );
    assert_eq!(
        image.mirrors.topic("orders").unwrap().state,
        MirrorTopicState::Reconciling
    );
    // A restarted fetcher reports again: the first report stands.
    assert!(decide_divergent_tail(&image, "orders", 0, &tail(40, 40)).is_empty());

    let r = decide_divergent_tail(&image, "orders", 1, &tail(7, 7));
    apply(&mut image, &r);
    assert_eq!(
        image.mirrors.divergent_tail("orders", 1).unwrap().records(),
        0
    );
    assert_eq!(
        image.mirrors.topic("orders").unwrap().state,
        MirrorTopicState::Mirroring
    );
    assert!(decide_divergent_tail(&image, "orders", 1, &tail(0, 3)).is_empty());
    assert!(decide_divergent_tail(&image, "unknown", 0, &tail(0, 3)).is_empty());

    // Reversing again (a later failback) starts a new report; deleting the topic drops it.
    let r = decide_failover(&image, "back").unwrap().1;
    apply(&mut image, &r);
    let r = decide_reverse(&image, &spec).unwrap().1;
    apply(&mut image, &r);
    assert!(image.mirrors.divergent_tail("orders", 0).is_none());
}

#[test]
fn reverse_records_round_trip_and_older_images_load_without_tails() {
    let records = [
        MetadataRecord::MirrorTopic {
            topic: "t".into(),
            link: "back".into(),
            state: MirrorTopicState::Reconciling,
        },
        MetadataRecord::MirrorDivergentTail {
            topic: "t".into(),
            partition: 3,
            tail: tail(10, 12),
        },
    ];
    for r in records {
        let text = serde_json::to_string(&r).expect("encodes");
        assert_eq!(serde_json::from_str::<MetadataRecord>(&text).ok(), Some(r));
    }
    // A mirror image written before reverse existed has no `divergent_tails`.
    let old: super::super::MirrorImage =
        serde_json::from_str(r#"{"links":{},"topics":{}}"#).expect("old mirror image loads");
    assert!(old.divergent_tails.is_empty());
}

#[test]
fn producer_ids_seen_in_mirrored_data_are_never_handed_out() {
    use crate::controller::mirror::decide_mirror_producer_ids;
    let mut image = image_with_topics(&[]);
    let r = decide_mirror_producer_ids(&image, 0);
    assert_eq!(
        r,
        vec![MetadataRecord::MirrorProducerIds {
            next_producer_id: 1000
        }]
    );
    apply(&mut image, &r);
    assert_eq!(image.mirrors.producer_ids_below, 1000);
    assert!(
        image.next_producer_id >= 1000,
        "the next block starts past them"
    );
    assert!(decide_mirror_producer_ids(&image, 999).is_empty());
    let r = decide_mirror_producer_ids(&image, 4321);
    apply(&mut image, &r);
    assert_eq!(image.mirrors.producer_ids_below, 5000);
    assert_eq!(image.next_producer_id, 5000);
}
