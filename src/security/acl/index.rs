//! [`AclIndex`]: the ACLs of the metadata image, indexed for the authorizer's lookup by
//! resource.
//!
//! Every ACL has a stable id given when it is created, so a removal names exactly one ACL and
//! replaying the log yields the same index on every node. Lookups for a resource read three
//! places of one ordered map: the literal name, the literal wildcard `*`, and the prefixed
//! patterns that are prefixes of the name (one probe per prefix length, so the cost grows with
//! the name, not with the number of ACLs).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{AclBinding, AclBindingFilter, PatternType, Resource, ResourceType, WILDCARD_RESOURCE};

/// The stable id of one ACL (Kafka's `AccessControlEntryRecord.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclId(pub uuid::Uuid);

impl std::fmt::Display for AclId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The ACLs by id, and by pattern for lookup. Serialized as the list of (id, binding); the
/// pattern map is rebuilt when read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(AclId, AclBinding)>", into = "Vec<(AclId, AclBinding)>")]
pub struct AclIndex {
    by_id: BTreeMap<AclId, AclBinding>,
    /// (resource type, pattern type) -> resource name -> ids: names are looked up as `&str`.
    by_pattern: BTreeMap<(ResourceType, PatternType), BTreeMap<String, BTreeSet<AclId>>>,
}

impl From<Vec<(AclId, AclBinding)>> for AclIndex {
    fn from(acls: Vec<(AclId, AclBinding)>) -> AclIndex {
        let mut index = AclIndex::default();
        for (id, binding) in acls {
            index.add(id, binding);
        }
        index
    }
}

impl From<AclIndex> for Vec<(AclId, AclBinding)> {
    fn from(index: AclIndex) -> Self {
        index.by_id.into_iter().collect()
    }
}

impl AclIndex {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds an ACL under `id`, replacing whatever had that id.
    pub fn add(&mut self, id: AclId, binding: AclBinding) {
        self.remove(id);
        let p = &binding.pattern;
        self.by_pattern
            .entry((p.resource_type, p.pattern_type))
            .or_default()
            .entry(p.name.clone())
            .or_default()
            .insert(id);
        self.by_id.insert(id, binding);
    }

    /// Removes the ACL with `id`; an unknown id changes nothing.
    pub fn remove(&mut self, id: AclId) -> Option<AclBinding> {
        let binding = self.by_id.remove(&id)?;
        let p = &binding.pattern;
        let kind = (p.resource_type, p.pattern_type);
        if let Some(names) = self.by_pattern.get_mut(&kind) {
            if let Some(ids) = names.get_mut(&p.name) {
                ids.remove(&id);
                if ids.is_empty() {
                    names.remove(&p.name);
                }
            }
            if names.is_empty() {
                self.by_pattern.remove(&kind);
            }
        }
        Some(binding)
    }

    pub fn get(&self, id: AclId) -> Option<&AclBinding> {
        self.by_id.get(&id)
    }

    /// The id of an ACL equal to `binding`, if one exists.
    pub fn find(&self, binding: &AclBinding) -> Option<AclId> {
        let p = &binding.pattern;
        self.by_pattern
            .get(&(p.resource_type, p.pattern_type))?
            .get(&p.name)?
            .iter()
            .copied()
            .find(|id| self.by_id.get(id).is_some_and(|b| b == binding))
    }

    /// Every ACL, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (AclId, &AclBinding)> {
        self.by_id.iter().map(|(id, b)| (*id, b))
    }

    /// The ACLs a filter selects, in id order.
    pub fn matching<'a>(
        &'a self,
        filter: &'a AclBindingFilter,
    ) -> impl Iterator<Item = (AclId, &'a AclBinding)> + 'a {
        self.iter().filter(move |(_, b)| filter.matches(b))
    }

    /// The ACLs whose pattern covers `resource`, whoever they name: the literal name, the
    /// literal wildcard, and every prefixed pattern that is a prefix of the name.
    pub fn covering<'a>(&'a self, resource: &Resource<'_>) -> Vec<&'a AclBinding> {
        let mut out = Vec::new();
        let mut add = |ids: Option<&BTreeSet<AclId>>| {
            out.extend(
                ids.into_iter()
                    .flatten()
                    .filter_map(|id| self.by_id.get(id)),
            );
        };
        if let Some(literal) = self
            .by_pattern
            .get(&(resource.resource_type, PatternType::Literal))
        {
            add(literal.get(resource.name));
            if resource.name != WILDCARD_RESOURCE {
                add(literal.get(WILDCARD_RESOURCE));
            }
        }
        if let Some(prefixed) = self
            .by_pattern
            .get(&(resource.resource_type, PatternType::Prefixed))
        {
            for (at, c) in resource.name.char_indices() {
                add(prefixed.get(&resource.name[..at + c.len_utf8()]));
            }
        }
        out
    }
}
