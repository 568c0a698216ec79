//! SaslHandshake that reaches a handler: the connection is on a listener without SASL (a SASL
//! listener's connection answers it itself, `server::sasl`). As Kafka does, ILLEGAL_SASL_STATE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ResponseKind, SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub fn handle(_ctx: RequestContext, _req: SaslHandshakeRequest) -> Reply {
    Reply::Now(ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()),
    ))
}
