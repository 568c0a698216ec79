//! CreateAcls and DeleteAcls, decided: the records that bring the image's ACLs to what a
//! request asks (Kafka's `AclControlManager`). Creating an ACL equal to one that exists writes
//! nothing and answers success, so a repeated request is a no-op; a deletion removes every ACL
//! its filter selects, each once even when several filters select it.

use std::collections::BTreeSet;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::security::acl::{AclBinding, AclBindingFilter, AclId};

/// What became of one requested creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclCreation {
    /// A new ACL, under this id.
    Created(AclId),
    /// An equal ACL already existed (or came earlier in the same request).
    AlreadyExists(AclId),
}

/// `creations` are validated bindings, each with the id it gets if it is new (ids are chosen
/// by the caller, so that deciding again after a lost race gives the same records).
pub fn decide_create_acls(
    image: &MetadataImage,
    creations: &[(AclId, AclBinding)],
) -> (Vec<AclCreation>, Vec<MetadataRecord>) {
    let mut outcomes = Vec::with_capacity(creations.len());
    let mut records = Vec::new();
    let mut new: Vec<(AclId, &AclBinding)> = Vec::new();
    for (id, binding) in creations {
        let existing = image
            .acls
            .find(binding)
            .or_else(|| new.iter().find(|(_, b)| *b == binding).map(|(id, _)| *id));
        match existing {
            Some(existing) => outcomes.push(AclCreation::AlreadyExists(existing)),
            None => {
                new.push((*id, binding));
                outcomes.push(AclCreation::Created(*id));
                records.push(MetadataRecord::AccessControlEntry {
                    id: *id,
                    binding: binding.clone(),
                });
            }
        }
    }
    (outcomes, records)
}

/// For each filter, the ACLs it selects (in id order); and the records removing all of them.
pub fn decide_delete_acls(
    image: &MetadataImage,
    filters: &[AclBindingFilter],
) -> (Vec<Vec<(AclId, AclBinding)>>, Vec<MetadataRecord>) {
    let mut removed = BTreeSet::new();
    let matched: Vec<Vec<(AclId, AclBinding)>> = filters
        .iter()
        .map(|f| {
            image
                .acls
                .matching(f)
                .map(|(id, b)| {
                    removed.insert(id);
                    (id, b.clone())
                })
                .collect()
        })
        .collect();
    let records = removed
        .into_iter()
        .map(|id| MetadataRecord::RemoveAccessControlEntry { id })
        .collect();
    (matched, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{
        AccessControlEntry, AclOperation, AclPermissionType, PatternType, ResourcePattern,
        ResourceType,
    };

    fn acl(name: &str, principal: &str) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Topic,
                name: name.into(),
                pattern_type: PatternType::Literal,
            },
            entry: AccessControlEntry {
                principal: principal.into(),
                host: "*".into(),
                operation: AclOperation::Read,
                permission_type: AclPermissionType::Allow,
            },
        }
    }

    fn id(n: u128) -> AclId {
        AclId(uuid::Uuid::from_u128(n))
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(image.offset + 1, r);
        }
    }

    #[test]
    fn creations_are_idempotent_and_deduplicated() {
        let mut image = MetadataImage::default();
        let a = acl("t", "User:alice");
        let b = acl("t", "User:bob");
        let (outcomes, records) = decide_create_acls(
            &image,
            &[(id(1), a.clone()), (id(2), a.clone()), (id(3), b.clone())],
        );
        assert_eq!(
            outcomes,
            vec![
                AclCreation::Created(id(1)),
                AclCreation::AlreadyExists(id(1)),
                AclCreation::Created(id(3))
            ]
        );
        assert_eq!(records.len(), 2);
        apply(&mut image, &records);
        assert_eq!(image.acls.get(id(1)), Some(&a));
        assert_eq!(image.acls.get(id(3)), Some(&b));
        let (outcomes, records) = decide_create_acls(&image, &[(id(9), a.clone())]);
        assert_eq!(outcomes, vec![AclCreation::AlreadyExists(id(1))]);
        assert!(records.is_empty());
    }

    #[test]
    fn deletions_remove_each_selected_acl_once() {
        let mut image = MetadataImage::default();
        let a = acl("t", "User:alice");
        let b = acl("u", "User:alice");
        let c = acl("t", "User:bob");
        let (_, records) = decide_create_acls(
            &image,
            &[(id(1), a.clone()), (id(2), b.clone()), (id(3), c.clone())],
        );
        apply(&mut image, &records);
        let alice = AclBindingFilter {
            principal: Some("User:alice".into()),
            ..AclBindingFilter::any()
        };
        let topic_t = AclBindingFilter {
            name: Some("t".into()),
            ..AclBindingFilter::any()
        };
        let (matched, records) = decide_delete_acls(&image, &[alice, topic_t]);
        assert_eq!(matched[0], vec![(id(1), a.clone()), (id(2), b)]);
        assert_eq!(matched[1], vec![(id(1), a), (id(3), c)]);
        assert_eq!(records.len(), 3);
        apply(&mut image, &records);
        assert!(image.acls.is_empty());
        let (matched, records) = decide_delete_acls(&image, &[AclBindingFilter::any()]);
        assert_eq!(matched, vec![vec![]]);
        assert!(records.is_empty());
    }
}
