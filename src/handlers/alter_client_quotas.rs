//! AlterClientQuotas: set and remove client quota values, committed to the metadata log by the
//! controller. Each entry succeeds or fails alone (its own error code); the valid ones are
//! committed together in one write. `validate_only` checks and writes nothing.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::alter_client_quotas_request::EntryData as RequestEntry;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::security::audit;
use crate::controller::{decide_client_quotas, QuotaAlteration};
use crate::handlers::errors::{controller_error_code, quota_error_code, NONE};
use crate::protocol::str_bytes;
use crate::quota::{validate_quota, ClientQuotaEntity, QuotaError};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// One entry of the request, checked: its entity and its operations, a key at most once.
fn parse(entry: &RequestEntry) -> Result<QuotaAlteration, QuotaError> {
    let entity = ClientQuotaEntity::from_components(entry.entity.iter().map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())))?;
    let mut ops: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for op in &entry.ops {
        let key = op.key.to_string();
        if ops.contains_key(&key) {
            return Err(QuotaError::DuplicateKey(key));
        }
        let value = if op.remove {
            None
        } else {
            validate_quota(&key, op.value)?;
            Some(op.value)
        };
        ops.insert(key, value);
    }
    Ok(QuotaAlteration { entity, ops: ops.into_iter().collect() })
}

pub fn handle(ctx: RequestContext, req: AlterClientQuotasRequest) -> Reply {
    // Authorization: ALTER_CONFIGS on the cluster.
    if let Err(code) = ctx.authorize_cluster(AclOperation::AlterConfigs) {
        let entries = req
            .entries
            .iter()
            .map(|entry| {
                let entity = entry.entity.iter().map(|e| EntityData::default().with_entity_type(e.entity_type.clone()).with_entity_name(e.entity_name.clone())).collect();
                EntryData::default().with_entity(entity).with_error_code(code).with_error_message(Some(str_bytes(message(code))))
            })
            .collect();
        return Reply::Now(ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default().with_entries(entries)));
    }
    let mut parsed: Vec<Result<QuotaAlteration, (i16, String)>> =
        req.entries.iter().map(|e| parse(e).map_err(|e| (quota_error_code(&e), e.to_string()))).collect();
    // An entity named twice is ambiguous: neither entry is applied.
    let mut seen = HashSet::new();
    let duplicates: HashSet<ClientQuotaEntity> =
        parsed.iter().filter_map(|p| p.as_ref().ok()).filter(|a| !seen.insert(a.entity.clone())).map(|a| a.entity.clone()).collect();
    for p in &mut parsed {
        if let Ok(a) = p {
            if duplicates.contains(&a.entity) {
                let e = QuotaError::DuplicateEntity(a.entity.to_string());
                *p = Err((quota_error_code(&e), e.to_string()));
            }
        }
    }
    Reply::later(async move {
        let valid: Vec<QuotaAlteration> = parsed.iter().filter_map(|p| p.as_ref().ok()).cloned().collect();
        let committed = if req.validate_only || valid.is_empty() {
            Ok(())
        } else {
            ctx.apis.commit(|image| Ok(((), decide_client_quotas(image, &valid)))).await
        };
        if let Err(e) = &committed {
            tracing::warn!(error = %e, "committing client quotas failed");
        } else if !req.validate_only && !valid.is_empty() {
            let entities: Vec<String> = valid.iter().map(|a| a.entity.to_string()).collect();
            tracing::info!(?entities, "altered client quotas");
            for entity in &entities {
                ctx.with_requester(|who| audit::security_change("client_quota", who, entity));
            }
        }
        let entries = req
            .entries
            .iter()
            .zip(parsed)
            .map(|(entry, outcome)| {
                let r = EntryData::default().with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|e| EntityData::default().with_entity_type(e.entity_type.clone()).with_entity_name(e.entity_name.clone()))
                        .collect(),
                );
                let outcome = outcome.and_then(|_| committed.as_ref().map_err(|e| (controller_error_code(e), e.to_string())).copied());
                match outcome {
                    Ok(()) => r.with_error_code(NONE),
                    Err((code, message)) => r.with_error_code(code).with_error_message(Some(str_bytes(message))),
                }
            })
            .collect();
        ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default().with_entries(entries))
    })
}
