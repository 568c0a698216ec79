//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-219): byte-rate and request-time limits per user
//! and client id, per broker as in Kafka, and Strata's cluster-wide limits per tenant and per
//! topic.
//!
//! # Layout
//! - this file: quota entities and their default forms, the quotas the metadata image holds
//!   ([`ClientQuotas`]), which entity applies to a client (Kafka's precedence), validation of
//!   AlterClientQuotas and the filters of DescribeClientQuotas;
//! - [`rate`]: Kafka's sampled rate and the throttle time a rate over its bound earns;
//! - [`manager`]: [`ClientQuotaManager`], the per-client rates of one quota kind (produce,
//!   fetch, request time) on this broker and the throttle decisions;
//! - [`shared`]: [`SharedQuotas`], this broker's rates and shares of the cluster-wide limits.
//!
//! Quotas are cluster metadata: AlterClientQuotas goes through the controller, which writes
//! `ClientQuota` records; every broker enforces what its image holds. Kafka's keys
//! (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`) are per broker: a client
//! talking to three brokers may use its quota on each. The `strata.cluster.*` keys hold for the
//! tenant's total over all brokers (see [`shared`]).
//!
//! Kafka's `controller_mutation_rate` is refused by AlterClientQuotas rather than stored and
//! silently ignored.

pub mod manager;
mod metrics;
pub mod rate;
pub mod shared;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use manager::{ClientQuotaManager, QuotaKind};
pub use metrics::QuotaMetrics;
pub use rate::QuotaWindow;
pub use shared::{
    QuotaShare, QuotaUsage, SharedDirection, SharedEntity, SharedQuotaKey, SharedQuotas,
};

/// Entity type names on the wire.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// Quota keys.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
/// The tenant's produce bytes/s over every broker together (Strata's, not Kafka's).
pub const CLUSTER_PRODUCER_BYTE_RATE: &str = "strata.cluster.producer_byte_rate";
/// The tenant's fetch bytes/s over every broker together (Strata's, not Kafka's).
pub const CLUSTER_CONSUMER_BYTE_RATE: &str = "strata.cluster.consumer_byte_rate";
/// Topic configs: bytes/s into and out of a topic over every broker together.
pub const TOPIC_PRODUCER_BYTE_RATE: &str = "strata.producer.byte.rate";
pub const TOPIC_CONSUMER_BYTE_RATE: &str = "strata.consumer.byte.rate";

/// The user principal of a connection without authentication: Kafka's `User:ANONYMOUS`, whose
/// name is what a user quota entity matches.
pub const ANONYMOUS_USER: &str = "ANONYMOUS";

/// One component of a quota entity: a name, or the default for that entity type (a null name
/// on the wire).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_string()),
        }
    }

    pub fn as_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// Who a quota applies to: a user, a client id, or a client id of a user, each by name or as
/// the default. At least one of the two is present.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientQuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

impl ClientQuotaEntity {
    /// Builds an entity from AlterClientQuotas' (entity type, entity name) pairs, with Kafka's
    /// checks: not empty, no type twice, no empty name, known types only.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<ClientQuotaEntity, QuotaError> {
        let mut entity = ClientQuotaEntity {
            user: None,
            client_id: None,
        };
        let mut any = false;
        for (entity_type, name) in components {
            any = true;
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => return Err(QuotaError::IpQuotasUnsupported),
                other => return Err(QuotaError::UnknownEntityType(other.to_string())),
            };
            if slot.is_some() {
                return Err(QuotaError::InvalidEntity(format!(
                    "duplicate entity entry {entity_type}"
                )));
            }
            if name == Some("") {
                return Err(QuotaError::InvalidEntity(format!(
                    "empty {entity_type} not supported"
                )));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if !any {
            return Err(QuotaError::InvalidEntity(
                "invalid empty client quota entity".into(),
            ));
        }
        Ok(entity)
    }

    /// The (entity type, entity name) pairs on the wire, user first.
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        if let Some(u) = &self.user {
            out.push((USER, u.as_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.as_wire()));
        }
        out
    }

    fn has(&self, entity_type: &str) -> bool {
        match entity_type {
            USER => self.user.is_some(),
            CLIENT_ID => self.client_id.is_some(),
            _ => false,
        }
    }

    fn get(&self, entity_type: &str) -> Option<&EntityName> {
        match entity_type {
            USER => self.user.as_ref(),
            CLIENT_ID => self.client_id.as_ref(),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientQuotaEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .components()
            .into_iter()
            .map(|(t, n)| format!("{t}={}", n.unwrap_or("<default>")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Why an AlterClientQuotas entry or a DescribeClientQuotas filter is refused. Mapped to Kafka
/// error codes in `handlers::errors`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    InvalidEntity(String),
    #[error("unsupported client quota entity type: {0}")]
    UnknownEntityType(String),
    #[error("ip quotas (connection_creation_rate) are not supported by this broker")]
    IpQuotasUnsupported,
    #[error("invalid configuration key {0}")]
    UnknownKey(String),
    #[error("{0} quotas are not enforced by this broker (producer_byte_rate, consumer_byte_rate, request_percentage and strata.cluster.producer_byte_rate / consumer_byte_rate are), so they cannot be set")]
    NotEnforced(String),
    #[error("quota {key} must be greater than 0, got {value}")]
    NotPositive { key: String, value: f64 },
    #[error("configuration {key} must be a Long value, got {value}")]
    NotWhole { key: String, value: f64 },
    #[error("duplicate quota key {0}")]
    DuplicateKey(String),
    #[error("duplicate entity {0} in the request")]
    DuplicateEntity(String),
    #[error("{0}")]
    InvalidFilter(String),
    #[error("unknown match type {0}")]
    UnknownMatchType(i8),
}

/// Checks one quota value to set, as Kafka does: a known, enforced key; a positive value; a
/// whole number for the byte rates (Kafka declares them as Long configs; `request_percentage`
/// is a Double).
pub fn validate_quota(key: &str, value: f64) -> Result<(), QuotaError> {
    let whole = match key {
        PRODUCER_BYTE_RATE
        | CONSUMER_BYTE_RATE
        | CLUSTER_PRODUCER_BYTE_RATE
        | CLUSTER_CONSUMER_BYTE_RATE => true,
        REQUEST_PERCENTAGE => false,
        CONTROLLER_MUTATION_RATE => return Err(QuotaError::NotEnforced(key.to_string())),
        other => return Err(QuotaError::UnknownKey(other.to_string())),
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(QuotaError::NotPositive {
            key: key.to_string(),
            value,
        });
    }
    if !whole {
        return Ok(());
    }
    const EPSILON: f64 = 1e-6;
    if (value - (value + EPSILON).trunc()).abs() > EPSILON {
        return Err(QuotaError::NotWhole {
            key: key.to_string(),
            value,
        });
    }
    Ok(())
}

/// Every client quota in the cluster: entity → key → value. Entities with no values are not
/// kept. Serialized as a list of pairs (JSON map keys must be strings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientQuotas(pub BTreeMap<ClientQuotaEntity, BTreeMap<String, f64>>);

impl Serialize for ClientQuotas {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for ClientQuotas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(ClientQuotaEntity, BTreeMap<String, f64>)> = Vec::deserialize(d)?;
        Ok(ClientQuotas(pairs.into_iter().collect()))
    }
}

/// The client a rate is kept for: the parts of (user, client id) that the applying quota entity
/// names. Clients that share an entity share a rate: with a quota on user `alice` alone, all of
/// alice's client ids share one; with `<default>` client ids, each client id has its own
/// (Kafka's quota metric tags).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SensorKey {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

impl ClientQuotas {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, entity: &ClientQuotaEntity) -> Option<&BTreeMap<String, f64>> {
        self.0.get(entity)
    }

    /// Sets (`Some`) or removes (`None`) one value; an entity left with no values is dropped.
    pub fn apply(&mut self, entity: &ClientQuotaEntity, key: &str, value: Option<f64>) {
        match value {
            Some(v) => {
                self.0
                    .entry(entity.clone())
                    .or_default()
                    .insert(key.to_string(), v);
            }
            None => {
                if let Some(values) = self.0.get_mut(entity) {
                    values.remove(key);
                    if values.is_empty() {
                        self.0.remove(entity);
                    }
                }
            }
        }
    }

    /// The quota `key` that applies to `(user, client_id)`, and the key its rate is kept
    /// under. Kafka's precedence, most specific first:
    /// 1. user + client id, 2. user + default client id, 3. user,
    /// 4. default user + client id, 5. default user + default client id, 6. default user,
    /// 7. client id, 8. default client id.
    pub fn resolve(&self, user: &str, client_id: &str, key: &str) -> Option<(SensorKey, f64)> {
        if self.0.is_empty() {
            return None;
        }
        let named = |s: &str| Some(EntityName::Named(s.to_string()));
        let default = || Some(EntityName::Default);
        let order = [
            (named(user), named(client_id)),
            (named(user), default()),
            (named(user), None),
            (default(), named(client_id)),
            (default(), default()),
            (default(), None),
            (None, named(client_id)),
            (None, default()),
        ];
        order.into_iter().find_map(|(u, c)| {
            let sensor = SensorKey {
                user: u.is_some().then(|| user.to_string()),
                client_id: c.is_some().then(|| client_id.to_string()),
            };
            let entity = ClientQuotaEntity {
                user: u,
                client_id: c,
            };
            self.0
                .get(&entity)
                .and_then(|values| values.get(key))
                .map(|v| (sensor, *v))
        })
    }

    /// DescribeClientQuotas: the entities (with all their values) that `filter` matches.
    pub fn describe<'a>(
        &'a self,
        filter: &'a QuotaFilter,
    ) -> impl Iterator<Item = (&'a ClientQuotaEntity, &'a BTreeMap<String, f64>)> + 'a {
        self.0.iter().filter(move |(e, _)| filter.matches(e))
    }
}

/// How one component of a DescribeClientQuotas filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchType {
    /// The entity has this type with exactly this name (0, with a name).
    Exact(String),
    /// The entity has this type as the default (1).
    Default,
    /// The entity has this type, named or default (2).
    Any,
}

/// A DescribeClientQuotas filter: components by entity type, and whether entities with other
/// types are excluded (`strict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaFilter {
    pub components: Vec<(String, MatchType)>,
    pub strict: bool,
}

impl QuotaFilter {
    /// Builds a filter from the wire's (entity type, match type, match), with Kafka's checks.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>,
        strict: bool,
    ) -> Result<QuotaFilter, QuotaError> {
        let mut out: Vec<(String, MatchType)> = Vec::new();
        for (entity_type, match_type, name) in components {
            if entity_type.is_empty() {
                return Err(QuotaError::InvalidFilter(
                    "invalid empty entity type".into(),
                ));
            }
            if out.iter().any(|(t, _)| t == entity_type) {
                return Err(QuotaError::InvalidFilter(format!(
                    "entity type {entity_type} cannot appear more than once in the filter"
                )));
            }
            if ![USER, CLIENT_ID, IP].contains(&entity_type) {
                return Err(QuotaError::UnknownEntityType(entity_type.to_string()));
            }
            let m = match (match_type, name) {
                (0, Some(n)) => MatchType::Exact(n.to_string()),
                (0, None) => {
                    return Err(QuotaError::InvalidFilter(
                        "match type exact needs a match string".into(),
                    ))
                }
                (1, None) => MatchType::Default,
                (2, None) => MatchType::Any,
                (1 | 2, Some(_)) => {
                    return Err(QuotaError::InvalidFilter(format!(
                        "match type {} takes no match string",
                        if match_type == 1 { "default" } else { "any" }
                    )))
                }
                (other, _) => return Err(QuotaError::UnknownMatchType(other)),
            };
            out.push((entity_type.to_string(), m));
        }
        let has = |t: &str| out.iter().any(|(e, _)| e == t);
        if has(IP) && (has(USER) || has(CLIENT_ID)) {
            return Err(QuotaError::InvalidFilter(
                "an ip filter component cannot be combined with user or client-id".into(),
            ));
        }
        Ok(QuotaFilter {
            components: out,
            strict,
        })
    }

    pub fn matches(&self, entity: &ClientQuotaEntity) -> bool {
        let types = usize::from(entity.user.is_some()) + usize::from(entity.client_id.is_some());
        if self.strict && types != self.components.len() {
            return false;
        }
        self.components.iter().all(|(t, m)| match m {
            MatchType::Exact(n) => {
                matches!(entity.get(t), Some(EntityName::Named(x)) if x == n)
            }
            MatchType::Default => matches!(entity.get(t), Some(EntityName::Default)),
            MatchType::Any => entity.has(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(user: Option<Option<&str>>, client: Option<Option<&str>>) -> ClientQuotaEntity {
        ClientQuotaEntity {
            user: user.map(EntityName::from_wire),
            client_id: client.map(EntityName::from_wire),
        }
    }

    fn quotas(entries: &[(ClientQuotaEntity, f64)]) -> ClientQuotas {
        let mut q = ClientQuotas::default();
        for (entity, v) in entries {
            q.apply(entity, PRODUCER_BYTE_RATE, Some(*v));
        }
        q
    }

    #[test]
    fn precedence_is_kafkas_most_specific_first() {
        // One entity of each form, valued by its rank.
        let all = [
            (e(Some(Some("u")), Some(Some("c"))), 1.0),
            (e(Some(Some("u")), Some(None)), 2.0),
            (e(Some(Some("u")), None), 3.0),
            (e(Some(None), Some(Some("c"))), 4.0),
            (e(Some(None), Some(None)), 5.0),
            (e(Some(None), None), 6.0),
            (e(None, Some(Some("c"))), 7.0),
            (e(None, Some(None)), 8.0),
        ];
        // Remove the most specific one at a time: the next one takes over.
        for i in 0..all.len() {
            let q = quotas(&all[i..]);
            let (_, v) = q
                .resolve("u", "c", PRODUCER_BYTE_RATE)
                .expect("a quota applies");
            assert_eq!(v, (i + 1) as f64, "with the first {i} forms removed");
        }
        // Another user and client id only meet the defaults.
        let q = quotas(&all);
        assert_eq!(
            q.resolve("v", "d", PRODUCER_BYTE_RATE).map(|r| r.1),
            Some(5.0)
        );
        // Another key is not inherited from an entity that lacks it.
        assert_eq!(q.resolve("u", "c", CONSUMER_BYTE_RATE), None);
        assert_eq!(
            ClientQuotas::default().resolve("u", "c", PRODUCER_BYTE_RATE),
            None
        );
    }

    #[test]
    fn clients_share_a_rate_only_where_the_entity_does() {
        let q = quotas(&[(e(Some(Some("alice")), None), 10.0)]);
        let (k1, _) = q.resolve("alice", "c1", PRODUCER_BYTE_RATE).expect("quota");
        let (k2, _) = q.resolve("alice", "c2", PRODUCER_BYTE_RATE).expect("quota");
        assert_eq!(k1, k2);
        assert_eq!(k1.client_id, None);
        let q = quotas(&[(e(None, Some(None)), 10.0)]);
        let (k1, _) = q.resolve("alice", "c1", PRODUCER_BYTE_RATE).expect("quota");
        let (k2, _) = q.resolve("alice", "c2", PRODUCER_BYTE_RATE).expect("quota");
        assert_ne!(k1, k2);
        assert_eq!(k1.user, None);
        assert_eq!(k1.client_id.as_deref(), Some("c1"));
    }

    #[test]
    fn entities_and_values_are_validated_like_kafka() {
        assert!(ClientQuotaEntity::from_components(Vec::<(&str, Option<&str>)>::new()).is_err());
        assert!(
            ClientQuotaEntity::from_components([(USER, Some("a")), (USER, Some("b"))]).is_err()
        );
        assert!(ClientQuotaEntity::from_components([(CLIENT_ID, Some(""))]).is_err());
        assert_eq!(
            ClientQuotaEntity::from_components([(IP, Some("1.2.3.4"))]),
            Err(QuotaError::IpQuotasUnsupported)
        );
        assert!(matches!(
            ClientQuotaEntity::from_components([("group", Some("g"))]),
            Err(QuotaError::UnknownEntityType(_))
        ));
        assert_eq!(
            ClientQuotaEntity::from_components([(CLIENT_ID, None), (USER, Some("u"))]),
            Ok(e(Some(Some("u")), Some(None)))
        );
        assert_eq!(validate_quota(PRODUCER_BYTE_RATE, 1024.0), Ok(()));
        assert!(matches!(
            validate_quota(PRODUCER_BYTE_RATE, 0.0),
            Err(QuotaError::NotPositive { .. })
        ));
        assert!(matches!(
            validate_quota(CONSUMER_BYTE_RATE, -5.0),
            Err(QuotaError::NotPositive { .. })
        ));
        assert!(matches!(
            validate_quota(CONSUMER_BYTE_RATE, 1.5),
            Err(QuotaError::NotWhole { .. })
        ));
        assert_eq!(validate_quota(REQUEST_PERCENTAGE, 50.0), Ok(()));
        assert_eq!(validate_quota(REQUEST_PERCENTAGE, 0.5), Ok(()));
        assert!(matches!(
            validate_quota(REQUEST_PERCENTAGE, 0.0),
            Err(QuotaError::NotPositive { .. })
        ));
        assert_eq!(validate_quota(CLUSTER_PRODUCER_BYTE_RATE, 10e6), Ok(()));
        assert!(matches!(
            validate_quota(CLUSTER_CONSUMER_BYTE_RATE, 1.5),
            Err(QuotaError::NotWhole { .. })
        ));
        assert!(matches!(
            validate_quota(CONTROLLER_MUTATION_RATE, 50.0),
            Err(QuotaError::NotEnforced(_))
        ));
        assert!(matches!(
            validate_quota("bogus", 1.0),
            Err(QuotaError::UnknownKey(_))
        ));
    }

    #[test]
    fn filters_match_exact_default_and_any_strictly_or_not() {
        let q = quotas(&[
            (e(Some(Some("u")), None), 1.0),
            (e(Some(None), None), 2.0),
            (e(Some(Some("u")), Some(Some("c"))), 3.0),
            (e(None, Some(Some("c"))), 4.0),
            (e(None, Some(None)), 5.0),
        ]);
        let values = |components: &[(&str, i8, Option<&str>)], strict: bool| {
            let f =
                QuotaFilter::from_components(components.iter().copied(), strict).expect("filter");
            let mut v: Vec<f64> = q
                .describe(&f)
                .map(|(_, vals)| vals[PRODUCER_BYTE_RATE])
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        assert_eq!(values(&[(USER, 0, Some("u"))], false), vec![1.0, 3.0]);
        assert_eq!(values(&[(USER, 0, Some("u"))], true), vec![1.0]);
        assert_eq!(values(&[(USER, 1, None)], false), vec![2.0]);
        assert_eq!(values(&[(USER, 2, None)], false), vec![1.0, 2.0, 3.0]);
        assert_eq!(values(&[(CLIENT_ID, 2, None)], true), vec![4.0, 5.0]);
        assert_eq!(values(&[(CLIENT_ID, 1, None)], false), vec![5.0]);
        assert_eq!(
            values(&[(USER, 2, None), (CLIENT_ID, 0, Some("c"))], false),
            vec![3.0]
        );
        assert_eq!(values(&[], false), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(values(&[], true), Vec::<f64>::new());
        for bad in [
            vec![(USER, 0, None)],
            vec![(USER, 1, Some("u"))],
            vec![(USER, 2, None), (USER, 2, None)],
            vec![("", 2, None)],
            vec![(IP, 2, None), (USER, 2, None)],
        ] {
            assert!(
                QuotaFilter::from_components(bad.iter().copied(), false).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            QuotaFilter::from_components([(USER, 7, None)], false),
            Err(QuotaError::UnknownMatchType(7))
        );
    }

    #[test]
    fn removing_the_last_value_drops_the_entity_and_serde_round_trips() {
        let mut q = ClientQuotas::default();
        let entity = e(Some(None), Some(Some("c")));
        q.apply(&entity, PRODUCER_BYTE_RATE, Some(5.0));
        q.apply(&entity, CONSUMER_BYTE_RATE, Some(6.0));
        let json = serde_json::to_string(&q).expect("encode");
        assert_eq!(
            serde_json::from_str::<ClientQuotas>(&json).expect("decode"),
            q
        );
        q.apply(&entity, PRODUCER_BYTE_RATE, None);
        assert_eq!(q.get(&entity).map(|v| v.len()), Some(1));
        q.apply(&entity, CONSUMER_BYTE_RATE, None);
        assert!(q.is_empty());
    }
}
