//! The authorizer as handlers call it: `ctx.authorize(operation, &resource)` at the top of a
//! handler's per-resource loop, with the request's principal, the client's address and the API
//! name filled in. Error codes for refusals are Kafka's `*_AUTHORIZATION_FAILED`.

use kafka_protocol::error::ResponseError as E;

use super::RequestContext;
use crate::controller::MetadataImage;
use crate::security::acl::{AclOperation, Resource, ResourceType};
use crate::security::Requester;

pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

impl RequestContext {
    pub(super) fn with_requester<T>(&self, f: impl FnOnce(Requester<'_>) -> T) -> T {
        let host = self.peer.map(|p| p.ip().to_string()).unwrap_or_default();
        f(Requester {
            principal: &self.principal,
            host: &host,
            api_key: self.header.request_api_key,
        })
    }

    /// Whether the principal may do `operation` on `resource`, from the current image; a
    /// refusal is counted and audited.
    pub fn authorize(&self, operation: AclOperation, resource: &Resource<'_>) -> bool {
        self.authorize_in(&self.apis.image(), operation, resource)
    }

    /// As [`authorize`](Self::authorize), against an image the handler already holds.
    pub fn authorize_in(
        &self,
        image: &MetadataImage,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> bool {
        self.with_requester(|who| {
            self.apis
                .authorizer
                .authorize(&image.acls, who, operation, resource)
        })
    }

    /// Whether the principal may see `resource` in a listing; not audited, since leaving an
    /// item out of a listing refuses nothing that was asked for by name.
    pub fn may_list(
        &self,
        image: &MetadataImage,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> bool {
        self.with_requester(|who| {
            self.apis
                .authorizer
                .is_allowed(&image.acls, who, operation, resource)
        })
    }

    /// The operations the principal may do on `resource`, as Kafka's `authorized_operations`
    /// bit field (Metadata, DescribeCluster, DescribeGroups, DescribeTopicPartitions).
    pub fn authorized_operations(&self, image: &MetadataImage, resource: &Resource<'_>) -> i32 {
        self.with_requester(|who| {
            self.apis
                .authorizer
                .authorized_operations(&image.acls, who, resource)
        })
    }

    /// Whether the principal may do `operation` on at least one resource of `resource_type`.
    pub fn may_on_some(
        &self,
        image: &MetadataImage,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        self.with_requester(|who| {
            self.apis
                .authorizer
                .is_allowed_on_some(&image.acls, who, operation, resource_type)
        })
    }

    /// CLUSTER_AUTHORIZATION_FAILED unless the principal may do `operation` on the cluster.
    pub fn authorize_cluster(&self, operation: AclOperation) -> Result<(), i16> {
        if self.authorize(operation, &Resource::cluster()) {
            Ok(())
        } else {
            Err(CLUSTER_AUTHORIZATION_FAILED)
        }
    }
}

/// Kafka's message for a refusal code, for responses that carry one.
pub fn message(code: i16) -> String {
    match code {
        TOPIC_AUTHORIZATION_FAILED => E::TopicAuthorizationFailed.to_string(),
        GROUP_AUTHORIZATION_FAILED => E::GroupAuthorizationFailed.to_string(),
        CLUSTER_AUTHORIZATION_FAILED => E::ClusterAuthorizationFailed.to_string(),
        _ => E::TransactionalIdAuthorizationFailed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kafkas() {
        assert_eq!(
            TOPIC_AUTHORIZATION_FAILED,
            E::TopicAuthorizationFailed.code()
        );
        assert_eq!(
            GROUP_AUTHORIZATION_FAILED,
            E::GroupAuthorizationFailed.code()
        );
        assert_eq!(
            CLUSTER_AUTHORIZATION_FAILED,
            E::ClusterAuthorizationFailed.code()
        );
        assert_eq!(
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            E::TransactionalIdAuthorizationFailed.code()
        );
    }
}
