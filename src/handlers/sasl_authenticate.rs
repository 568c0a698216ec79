//! SaslAuthenticate that reaches a handler: the connection is on a listener without SASL (a
//! SASL listener's connection answers it itself, `server::sasl`). As Kafka does,
//! ILLEGAL_SASL_STATE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::protocol::str_bytes;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub fn handle(ctx: RequestContext, _req: SaslAuthenticateRequest) -> Reply {
    Reply::Now(ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(str_bytes(format!(
                "SaslAuthenticate on listener {}, which does not use SASL",
                ctx.listener.name
            )))),
    ))
}
