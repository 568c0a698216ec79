//! AlterUserScramCredentials (KIP-554): create, replace and delete users' SCRAM credentials,
//! committed to the metadata log. Each user succeeds or fails alone; see
//! `controller::scram_credentials` for Kafka's validation.

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::security::audit;
use crate::controller::{decide_scram_credentials, ScramAlteration};
use crate::handlers::errors::{controller_error_code, scram_alteration_error_code, NONE};
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(ctx: RequestContext, req: AlterUserScramCredentialsRequest) -> Reply {
    // Authorization: ALTER on the cluster, as Kafka; every user is answered with the refusal.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Alter) {
        let mut users: Vec<String> = Vec::new();
        for name in req.deletions.iter().map(|d| &d.name).chain(req.upsertions.iter().map(|u| &u.name)) {
            if !users.iter().any(|u| u == name.as_str()) {
                users.push(name.to_string());
            }
        }
        let results = users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(u))
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message(code))))
            })
            .collect();
        return Reply::Now(ResponseKind::AlterUserScramCredentials(
            AlterUserScramCredentialsResponse::default().with_results(results),
        ));
    }
    let alterations: Vec<ScramAlteration> = req
        .deletions
        .iter()
        .map(|d| ScramAlteration::Delete {
            user: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .chain(req.upsertions.iter().map(|u| ScramAlteration::Upsert {
            user: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        }))
        .collect();
    Reply::later(async move {
        let committed = ctx.apis.commit(|image| Ok(decide_scram_credentials(image, &alterations))).await;
        let results = match committed {
            Ok(outcomes) => {
                // One audit line per user whose credentials changed (never the credential).
                for (user, _) in outcomes.iter().filter(|(_, r)| r.is_ok()) {
                    ctx.with_requester(|who| audit::security_change("scram_credential", who, user));
                }
                outcomes
                    .into_iter()
                    .map(|(user, outcome)| {
                        let r = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
                        match outcome {
                            Ok(()) => r.with_error_code(NONE),
                            Err(e) => r.with_error_code(scram_alteration_error_code(&e)).with_error_message(Some(str_bytes(e.to_string()))),
                        }
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "committing SCRAM credentials failed");
                let mut users: Vec<&str> = Vec::new();
                for a in &alterations {
                    if !users.contains(&a.user()) {
                        users.push(a.user());
                    }
                }
                users
                    .into_iter()
                    .map(|u| {
                        AlterUserScramCredentialsResult::default()
                            .with_user(str_bytes(u.to_string()))
                            .with_error_code(controller_error_code(&e))
                            .with_error_message(Some(str_bytes(e.to_string())))
                    })
                    .collect()
            }
        };
        ResponseKind::AlterUserScramCredentials(AlterUserScramCredentialsResponse::default().with_results(results))
    })
}
