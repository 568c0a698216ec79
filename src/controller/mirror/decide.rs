//! Mirror link decisions: (image, request or observation) -> records, or why not.

use super::{LinkState, MirrorError, MirrorLinkSpec, MirrorTopicState, SourceSecurity};
use crate::controller::image::MetadataImage;
use crate::controller::records::MetadataRecord;
use crate::controller::{
    decide_create_partitions, decide_create_topic, decide_topic_configs, ConfigOp, ControllerError,
    NewTopic, TopicDefaults,
};

/// A topic as the source cluster's Metadata (and DescribeConfigs) showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopic {
    pub name: String,
    pub partitions: i32,
    /// The source's config overrides (only read when the link syncs configs).
    pub configs: Vec<(String, String)>,
}

fn invalid(spec: &MirrorLinkSpec, reason: impl Into<String>) -> ControllerError {
    MirrorError::InvalidLink {
        name: spec.name.clone(),
        reason: reason.into(),
    }
    .into()
}

pub(super) fn validate(spec: &MirrorLinkSpec) -> Result<(), ControllerError> {
    if spec.name.is_empty()
        || spec.name.len() > 249
        || !spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            spec,
            "a link name is 1 to 249 of ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    let servers: Vec<&str> = spec
        .bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() || servers.iter().any(|s| s.rsplit_once(':').is_none()) {
        return Err(invalid(
            spec,
            "bootstrap.servers must list host:port entries",
        ));
    }
    validate_security(spec, &spec.security)?;
    spec.topics.compile().map_err(|e| invalid(spec, e))?;
    if let Some(g) = &spec.options.group_include {
        regex::Regex::new(g).map_err(|e| invalid(spec, format!("invalid group regex: {e}")))?;
    }
    if spec.options.interval_ms < 100 {
        return Err(invalid(spec, "the interval must be at least 100 ms"));
    }
    Ok(())
}

fn validate_security(spec: &MirrorLinkSpec, s: &SourceSecurity) -> Result<(), ControllerError> {
    let (tls, sasl) = match s.security_protocol.as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            return Err(invalid(
                spec,
                format!(
                    "security.protocol '{other}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                ),
            ))
        }
    };
    if !tls && (s.ssl_truststore_location.is_some() || s.ssl_keystore_location.is_some()) {
        return Err(invalid(
            spec,
            "ssl.* settings need security.protocol SSL or SASL_SSL",
        ));
    }
    if sasl {
        let mechanism = s.sasl_mechanism.as_deref().unwrap_or("");
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism) {
            return Err(invalid(
                spec,
                format!(
                    "sasl.mechanism '{mechanism}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ),
            ));
        }
        if s.sasl_username.as_deref().unwrap_or("").is_empty() || s.credential.is_none() {
            return Err(invalid(
                spec,
                "SASL needs a username and a credential reference (file or env), never the password itself",
            ));
        }
    }
    Ok(())
}

/// Creates a link (active).
pub fn decide_create_link(
    image: &MetadataImage,
    spec: &MirrorLinkSpec,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate(spec)?;
    if image.mirrors.links.contains_key(&spec.name) {
        return Err(MirrorError::LinkExists(spec.name.clone()).into());
    }
    Ok(vec![MetadataRecord::MirrorLink { spec: spec.clone() }])
}

/// Replaces an existing link's settings (its state and topics stay).
pub fn decide_alter_link(
    image: &MetadataImage,
    spec: &MirrorLinkSpec,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate(spec)?;
    match image.mirrors.links.get(&spec.name) {
        None => Err(MirrorError::UnknownLink(spec.name.clone()).into()),
        Some(l) if l.spec == *spec => Ok(vec![]),
        Some(_) => Ok(vec![MetadataRecord::MirrorLink { spec: spec.clone() }]),
    }
}

/// Pauses or resumes a link.
pub fn decide_link_state(
    image: &MetadataImage,
    name: &str,
    state: LinkState,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    match image.mirrors.links.get(name) {
        None => Err(MirrorError::UnknownLink(name.into()).into()),
        Some(l) if l.state == state => Ok(vec![]),
        Some(_) => Ok(vec![MetadataRecord::MirrorLinkState {
            name: name.into(),
            state,
        }]),
    }
}

/// Deletes a link once none of its topics is still read-only (promote or delete them first),
/// so that deleting a link never leaves a topic that nothing can write.
pub fn decide_delete_link(
    image: &MetadataImage,
    name: &str,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    if !image.mirrors.links.contains_key(name) {
        return Err(MirrorError::UnknownLink(name.into()).into());
    }
    let in_use: Vec<String> = image
        .mirrors
        .topics_of(name)
        .filter(|(_, t)| t.state != MirrorTopicState::Promoted)
        .map(|(n, _)| n.to_string())
        .collect();
    if !in_use.is_empty() {
        return Err(MirrorError::LinkInUse {
            link: name.into(),
            topics: in_use,
        }
        .into());
    }
    Ok(vec![MetadataRecord::RemoveMirrorLink { name: name.into() }])
}

/// Makes mirror topics writable at their current end. Promoting a promoted topic is a no-op.
pub fn decide_promote(
    image: &MetadataImage,
    topics: &[String],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let mut records = Vec::new();
    for name in topics {
        let t = image
            .mirrors
            .topic(name)
            .filter(|_| image.topic_by_name(name).is_some())
            .ok_or_else(|| MirrorError::NotMirrorTopic(name.clone()))?;
        if t.state != MirrorTopicState::Promoted {
            records.push(MetadataRecord::MirrorTopic {
                topic: name.clone(),
                link: t.link.clone(),
                state: MirrorTopicState::Promoted,
            });
        }
    }
    Ok(records)
}

/// Promotes every topic of a link (the source is lost or being retired).
pub fn decide_failover(
    image: &MetadataImage,
    link: &str,
) -> Result<(Vec<String>, Vec<MetadataRecord>), ControllerError> {
    if !image.mirrors.links.contains_key(link) {
        return Err(MirrorError::UnknownLink(link.into()).into());
    }
    let topics: Vec<String> = image
        .mirrors
        .topics_of(link)
        .filter(|(_, t)| t.state != MirrorTopicState::Promoted)
        .map(|(n, _)| n.to_string())
        .collect();
    let records = decide_promote(image, &topics)?;
    Ok((topics, records))
}

/// Producer ids are reserved in steps of this many, so that a source handing out ids one by
/// one costs a metadata record per step, not per id.
const PRODUCER_ID_RESERVE_STEP: i64 = 1000;

/// A link fetcher is about to append batches whose largest producer id is `max_producer_id`:
/// reserves the ids up to it (rounded up to a step) unless they already are. Both clusters
/// hand out ids from 0, so without it a producer on a promoted topic could get the id of a
/// source producer whose state (epoch, sequences) the mirror copied, and be refused.
pub fn decide_mirror_producer_ids(
    image: &MetadataImage,
    max_producer_id: i64,
) -> Vec<MetadataRecord> {
    if max_producer_id < image.mirrors.producer_ids_below {
        return vec![];
    }
    let next = (max_producer_id / PRODUCER_ID_RESERVE_STEP + 1) * PRODUCER_ID_RESERVE_STEP;
    vec![MetadataRecord::MirrorProducerIds {
        next_producer_id: next,
    }]
}

/// A mirror partition's fetcher found that the copy cannot stay exact: the topic stops
/// mirroring with the reason. Only a `Mirroring` topic changes (the first reason stays).
pub fn decide_mirror_topic_failed(
    image: &MetadataImage,
    topic: &str,
    reason: &str,
) -> Vec<MetadataRecord> {
    match image.mirrors.topic(topic) {
        Some(t) if t.state == MirrorTopicState::Mirroring => vec![MetadataRecord::MirrorTopic {
            topic: topic.into(),
            link: t.link.clone(),
            state: MirrorTopicState::Failed(reason.into()),
        }],
        _ => vec![],
    }
}

/// What the mirror duty commits after listing the source: the selected topics that are
/// missing here are created as mirror topics (same name and partition count, the source's
/// configs when the link syncs them); mirror topics follow the source's partition additions
/// and (with config sync) config changes. A local topic of the same name that is not this
/// link's mirror is left alone and named in the returned conflicts.
pub fn decide_mirror_topics(
    image: &MetadataImage,
    link: &str,
    own_cluster_id: &str,
    source_cluster_id: &str,
    source: &[SourceTopic],
    defaults: TopicDefaults,
) -> Result<(Vec<String>, Vec<MetadataRecord>), ControllerError> {
    let l = image
        .mirrors
        .links
        .get(link)
        .ok_or_else(|| MirrorError::UnknownLink(link.into()))?;
    if source_cluster_id == own_cluster_id {
        return Err(MirrorError::SourceIsSelf(source_cluster_id.into()).into());
    }
    if l.state == LinkState::Paused {
        return Ok((vec![], vec![]));
    }
    let selection = l.spec.topics.compile().map_err(|e| invalid(&l.spec, e))?;
    let sync_configs = l.spec.options.sync_configs;
    let mut conflicts = Vec::new();
    let mut records = Vec::new();
    // Creations are decided one after another against an image that includes the earlier
    // ones, so placement rotates as it would for separate requests.
    let mut scratch = image.clone();
    for s in source.iter().filter(|s| selection.selects(&s.name)) {
        let configs: Vec<(String, String)> = if sync_configs {
            syncable(&s.configs)
        } else {
            vec![]
        };
        let decided = match (
            scratch.topic_by_name(&s.name),
            scratch.mirrors.topic(&s.name),
        ) {
            (None, _) => {
                let new = NewTopic {
                    name: s.name.clone(),
                    num_partitions: s.partitions,
                    replication_factor: -1,
                    assignments: vec![],
                    configs: configs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                };
                let (_, mut r) = decide_create_topic(&scratch, &new, defaults)?;
                r.push(MetadataRecord::MirrorTopic {
                    topic: s.name.clone(),
                    link: link.into(),
                    state: MirrorTopicState::Mirroring,
                });
                r
            }
            (Some(t), Some(m)) if m.link == link && m.state == MirrorTopicState::Mirroring => {
                let mut r = Vec::new();
                if s.partitions > t.partitions.len() as i32 {
                    r.extend(decide_create_partitions(
                        &scratch,
                        &s.name,
                        s.partitions,
                        None,
                    )?);
                }
                if sync_configs {
                    let ops = config_ops(&t.config.overrides, &configs);
                    if !ops.is_empty() {
                        r.extend(decide_topic_configs(&scratch, &s.name, &ops)?);
                    }
                }
                r
            }
            (Some(_), Some(m)) if m.link == link => vec![],
            (Some(_), _) => {
                conflicts.push(s.name.clone());
                vec![]
            }
        };
        for r in &decided {
            scratch.apply(scratch.offset + 1, r);
        }
        records.extend(decided);
    }
    Ok((conflicts, records))
}

/// The source configs this cluster knows and accepts; others (a source-only setting) are
/// skipped rather than failing the whole topic.
fn syncable(configs: &[(String, String)]) -> Vec<(String, String)> {
    configs
        .iter()
        .filter(|(k, _)| crate::config::defs::topic_key(k).is_some())
        .filter(|(k, v)| crate::config::TopicConfig::validate(k, v).is_ok())
        .cloned()
        .collect()
}

fn config_ops(
    local: &std::collections::BTreeMap<String, String>,
    source: &[(String, String)],
) -> Vec<ConfigOp> {
    let mut ops: Vec<ConfigOp> = source
        .iter()
        .filter(|(k, v)| local.get(k) != Some(v))
        .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
        .collect();
    ops.extend(
        local
            .keys()
            .filter(|k| !source.iter().any(|(sk, _)| sk == *k))
            .map(|k| ConfigOp::Delete(k.clone())),
    );
    ops
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
impl MirrorLinkSpec {
    /// A plaintext link selecting topics by the given include regexes.
    pub fn plaintext(name: &str, bootstrap_servers: &str, include: &[&str]) -> MirrorLinkSpec {
        MirrorLinkSpec {
            name: name.into(),
            bootstrap_servers: bootstrap_servers.into(),
            security: SourceSecurity {
                security_protocol: "PLAINTEXT".into(),
                ..Default::default()
            },
            topics: super::TopicSelection {
                include: include.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            options: Default::default(),
        }
    }
}
