//! AlterClientQuotas, decided: the `ClientQuota` records that bring the image's quotas to what
//! the alterations ask. Values that already hold and removals of absent values write nothing,
//! so repeating an alteration is a no-op (Kafka's `ClientQuotaControlManager`).

use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::quota::ClientQuotaEntity;

/// One entity's changes, validated: each key set to a value or removed (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaAlteration {
    pub entity: ClientQuotaEntity,
    pub ops: Vec<(String, Option<f64>)>,
}

pub fn decide_client_quotas(
    image: &MetadataImage,
    alterations: &[QuotaAlteration],
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for a in alterations {
        let current = image.client_quotas.get(&a.entity);
        for (key, value) in &a.ops {
            let now = current.and_then(|values| values.get(key)).copied();
            if now != *value {
                records.push(MetadataRecord::ClientQuota {
                    entity: a.entity.clone(),
                    key: key.clone(),
                    value: *value,
                });
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{EntityName, PRODUCER_BYTE_RATE};

    #[test]
    fn only_changes_become_records() {
        let entity = ClientQuotaEntity {
            user: None,
            client_id: Some(EntityName::Default),
        };
        let set = |v: Option<f64>| QuotaAlteration {
            entity: entity.clone(),
            ops: vec![(PRODUCER_BYTE_RATE.into(), v)],
        };
        let mut image = MetadataImage::default();
        // Removing what is not there writes nothing.
        assert!(decide_client_quotas(&image, &[set(None)]).is_empty());
        let records = decide_client_quotas(&image, &[set(Some(100.0))]);
        assert_eq!(records.len(), 1);
        for r in &records {
            image.apply(1, r);
        }
        assert_eq!(
            image
                .client_quotas
                .resolve("u", "c", PRODUCER_BYTE_RATE)
                .map(|r| r.1),
            Some(100.0)
        );
        assert!(decide_client_quotas(&image, &[set(Some(100.0))]).is_empty());
        for r in &decide_client_quotas(&image, &[set(None)]) {
            image.apply(2, r);
        }
        assert!(image.client_quotas.is_empty());
    }
}
