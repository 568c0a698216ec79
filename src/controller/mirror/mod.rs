//! Mirror links: a target cluster keeping byte-for-byte, offset-preserving copies of a source
//! cluster's topics.
//!
//! A link is metadata: a [`MirrorLinkSpec`] (where the source is, how to authenticate to it,
//! which topics to copy, what else to sync) and its [`LinkState`]. Each mirror topic is a
//! regular topic of this cluster plus a [`MirrorTopic`] entry naming its link and its
//! [`MirrorTopicState`]. Everything is decided purely from the image (`decide`) into
//! [`MetadataRecord`](super::MetadataRecord)s and folded into [`MirrorImage`].
//!
//! Who acts on it:
//! - the active controller's mirror duty ([`duty`]) lists the source's topics and creates or
//!   grows the selected mirror topics;
//! - the leader of each mirror partition runs a link fetcher (`replication::mirror`) that
//!   appends the source's batches at the source's offsets while the topic is `Mirroring`;
//! - the produce handler refuses client writes to a topic that is not `Promoted`.
//!
//! Failback (`decide_reverse`): after a failover, the old source's own topics become mirror
//! topics of the new primary in the `Reconciling` state. The link fetcher of each partition
//! finds where its log stops matching the new primary's (batch by batch, `reconcile`), keeps
//! the divergent tail in a file, reports it ([`DivergentTail`], one record per partition,
//! `decide_divergent_tail`) and truncates it; the topic is `Mirroring` once every partition
//! has reported.
//!
//! Secrets never enter the metadata log: a link names a [`CredentialRef`] (a file or an
//! environment variable) that each broker reads when it connects.

mod decide;
pub mod duty;
pub mod groups;
mod reverse;
pub mod selection;
pub mod source;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use decide::{
    decide_alter_link, decide_create_link, decide_delete_link, decide_failover, decide_link_state,
    decide_mirror_producer_ids, decide_mirror_topic_failed, decide_mirror_topics, decide_promote,
    SourceTopic,
};
pub use reverse::{decide_divergent_tail, decide_reverse};
pub use selection::TopicSelection;

use super::records::MetadataRecord;

/// Why a link change was refused; mapped to a Kafka error code at the handler edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    #[error("mirror link '{0}' already exists")]
    LinkExists(String),
    #[error("unknown mirror link '{0}'")]
    UnknownLink(String),
    #[error("invalid mirror link '{name}': {reason}")]
    InvalidLink { name: String, reason: String },
    #[error("topic '{0}' is not a mirror topic")]
    NotMirrorTopic(String),
    #[error("mirror link '{link}' still mirrors {topics:?}: promote or delete them first")]
    LinkInUse { link: String, topics: Vec<String> },
    #[error("the source cluster '{0}' is this cluster: a link never mirrors from itself")]
    SourceIsSelf(String),
    #[error("mirror link '{0}' selects no local topic that could be reversed (a topic must exist here and be no mirror topic, or a promoted one)")]
    NothingToReverse(String),
}

/// Where a link's secret is read from, by each broker, when it connects to the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialRef {
    /// A file holding the password (trailing newline ignored).
    File(String),
    /// An environment variable of the broker process holding the password.
    Env(String),
}

impl CredentialRef {
    /// Reads the secret. Errors name the reference, never the secret.
    pub fn read(&self) -> Result<String, String> {
        match self {
            CredentialRef::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read credential file {path}: {e}")),
            CredentialRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("credential environment variable {name} is not set")),
        }
    }
}

/// How the link connects to the source cluster (Kafka's client property names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSecurity {
    /// `security.protocol`: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[serde(default = "plaintext")]
    pub security_protocol: String,
    /// `ssl.truststore.location`: a PEM CA bundle on every target broker that the source's
    /// certificates must chain to (SSL, SASL_SSL).
    #[serde(default)]
    pub ssl_truststore_location: Option<String>,
    /// `ssl.keystore.location`: a PEM file with the client certificate chain and its key, for
    /// a source that requires client certificates.
    #[serde(default)]
    pub ssl_keystore_location: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// Where the password is; never the password.
    #[serde(default)]
    pub credential: Option<CredentialRef>,
}

fn plaintext() -> String {
    "PLAINTEXT".into()
}

impl Default for SourceSecurity {
    fn default() -> Self {
        SourceSecurity {
            security_protocol: plaintext(),
            ssl_truststore_location: None,
            ssl_keystore_location: None,
            sasl_mechanism: None,
            sasl_username: None,
            credential: None,
        }
    }
}

/// What a link syncs besides records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOptions {
    /// Copy the source topics' config overrides at creation and follow their changes.
    #[serde(default)]
    pub sync_configs: bool,
    /// Copy committed offsets of selected groups that have no active members here.
    #[serde(default)]
    pub sync_group_offsets: bool,
    /// Which groups (a regex over the group id); all when absent.
    #[serde(default)]
    pub group_include: Option<String>,
    /// How often the source's topics (and group offsets) are listed.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
}

fn default_interval_ms() -> u64 {
    5_000
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            sync_configs: false,
            sync_group_offsets: false,
            group_include: None,
            interval_ms: default_interval_ms(),
        }
    }
}

/// A mirror link as created or altered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorLinkSpec {
    pub name: String,
    /// `bootstrap.servers` of the source cluster, comma separated `host:port`s.
    pub bootstrap_servers: String,
    #[serde(default)]
    pub security: SourceSecurity,
    #[serde(default)]
    pub topics: TopicSelection,
    #[serde(default)]
    pub options: LinkOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    #[default]
    Active,
    /// No fetching and no new mirror topics; mirror topics stay read-only.
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum MirrorTopicState {
    /// Copied from the source; clients may read, not write.
    Mirroring,
    /// Detached from the source and writable, continuing at the offsets it reached.
    Promoted,
    /// Mirroring stopped because the copy could not stay exact (source truncated, topic
    /// recreated); read-only until promoted or deleted.
    Failed(String),
    /// A local topic turned into a mirror of the cluster that took over from it (`reverse`):
    /// read-only; each partition drops and reports the tail the new primary never had, then
    /// mirrors. The topic becomes `Mirroring` once every partition has reported.
    Reconciling,
}

/// What a reversed partition held that the new primary never had: offsets
/// `[from_offset, end_offset)`, removed from the log and kept, as record batches in Kafka's
/// log format, in the file `kept` on the broker that led the partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivergentTail {
    pub from_offset: i64,
    pub end_offset: i64,
    /// The broker that kept the file.
    pub broker: i32,
    /// Empty when nothing diverged.
    pub kept: String,
}

impl DivergentTail {
    /// Offsets removed: records and transaction markers.
    pub fn records(&self) -> i64 {
        self.end_offset - self.from_offset
    }
}

/// One mirror topic's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorTopic {
    pub link: String,
    pub state: MirrorTopicState,
}

/// A link in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorLink {
    pub spec: MirrorLinkSpec,
    pub state: LinkState,
}

/// The image's part for mirror links, keyed by link name and topic name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorImage {
    pub links: BTreeMap<String, MirrorLink>,
    pub topics: BTreeMap<String, MirrorTopic>,
    /// Per reversed topic and partition: the divergent tail it reported (`reverse`).
    #[serde(default)]
    pub divergent_tails: BTreeMap<String, BTreeMap<i32, DivergentTail>>,
    /// Producer ids below this appear in mirrored data and are never handed out here.
    #[serde(default)]
    pub producer_ids_below: i64,
}

impl MirrorImage {
    /// The mirror entry of a topic, if it is (or was) one.
    pub fn topic(&self, name: &str) -> Option<&MirrorTopic> {
        self.topics.get(name)
    }

    /// Whether clients may not produce to `topic`: every mirror topic until promoted.
    pub fn refuses_produce(&self, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.state != MirrorTopicState::Promoted)
    }

    /// The topics of `link`, in name order.
    pub fn topics_of<'a>(
        &'a self,
        link: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a MirrorTopic)> {
        self.topics
            .iter()
            .filter(move |(_, t)| t.link == link)
            .map(|(n, t)| (n.as_str(), t))
    }

    /// Folds a mirror record; others are not this part's.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::MirrorLink { spec } => {
                let state = self
                    .links
                    .get(&spec.name)
                    .map(|l| l.state)
                    .unwrap_or_default();
                self.links.insert(
                    spec.name.clone(),
                    MirrorLink {
                        spec: spec.clone(),
                        state,
                    },
                );
            }
            MetadataRecord::MirrorLinkState { name, state } => {
                if let Some(l) = self.links.get_mut(name) {
                    l.state = *state;
                }
            }
            MetadataRecord::RemoveMirrorLink { name } => {
                self.links.remove(name);
            }
            MetadataRecord::MirrorTopic { topic, link, state } => {
                // A new reversal starts a new report.
                if *state == MirrorTopicState::Reconciling {
                    self.divergent_tails.remove(topic);
                }
                self.topics.insert(
                    topic.clone(),
                    MirrorTopic {
                        link: link.clone(),
                        state: state.clone(),
                    },
                );
            }
            MetadataRecord::MirrorProducerIds { next_producer_id } => {
                self.producer_ids_below = self.producer_ids_below.max(*next_producer_id);
            }
            MetadataRecord::MirrorDivergentTail {
                topic,
                partition,
                tail,
            } => {
                self.divergent_tails
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, tail.clone());
            }
            _ => {}
        }
    }

    /// The divergent tail a reversed partition reported, if it did.
    pub fn divergent_tail(&self, topic: &str, partition: i32) -> Option<&DivergentTail> {
        self.divergent_tails.get(topic)?.get(&partition)
    }

    /// A deleted topic is no longer a mirror topic (a new topic of that name starts afresh).
    pub fn topic_deleted(&mut self, name: &str) {
        self.topics.remove(name);
        self.divergent_tails.remove(name);
    }
}
