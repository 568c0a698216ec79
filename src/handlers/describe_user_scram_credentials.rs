//! DescribeUserScramCredentials (KIP-554): which SCRAM mechanisms each user has, with their
//! iteration counts (never salts or keys). No user list (or an empty one) describes every user;
//! a named user without credentials is RESOURCE_NOT_FOUND, one named twice DUPLICATE_RESOURCE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use super::authz::message;
use super::{Reply, RequestContext};
use crate::security::acl::AclOperation;
use crate::controller::MetadataImage;
use crate::handlers::errors::NONE;
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

fn described(image: &MetadataImage, user: &str) -> DescribeUserScramCredentialsResult {
    let r = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user.to_string()));
    match image.scram_credentials.get(user) {
        Some(by_mechanism) => r.with_error_code(NONE).with_credential_infos(
            by_mechanism
                .iter()
                .map(|(m, c)| CredentialInfo::default().with_mechanism(m.type_id()).with_iterations(c.iterations as i32))
                .collect(),
        ),
        None => r
            .with_error_code(ResponseError::ResourceNotFound.code())
            .with_error_message(Some(str_bytes("Attempt to describe a user credential that does not exist".to_string()))),
    }
}

pub fn handle(ctx: RequestContext, req: DescribeUserScramCredentialsRequest) -> Reply {
    // Authorization: DESCRIBE on the cluster, as Kafka.
    if let Err(code) = ctx.authorize_cluster(AclOperation::Describe) {
        return Reply::Now(ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message(code)))),
        ));
    }
    let image = ctx.apis.image();
    let results = match req.users.as_deref() {
        None | Some([]) => image.scram_credentials.keys().map(|u| described(&image, u)).collect(),
        Some(users) => users
            .iter()
            .map(|u| {
                let name = u.name.as_str();
                if users.iter().filter(|o| o.name.as_str() == name).count() > 1 {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(u.name.clone())
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(Some(str_bytes("Cannot describe SCRAM credentials for the same user twice in a single request".to_string())))
                } else {
                    described(&image, name)
                }
            })
            .collect(),
    };
    Reply::Now(ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default().with_error_code(NONE).with_results(results),
    ))
}
