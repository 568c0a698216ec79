//! Authentication: the SASL mechanisms as pure state machines (server and client sides) and
//! the SCRAM credential they verify against.
//!
//! Nothing here touches a socket: `server::connection` feeds a mechanism the client's tokens
//! and sends its answers, `client` drives the client side, and `controller` stores
//! [`sasl::ScramCredential`]s in the metadata image. The one piece of I/O is loading an
//! OAUTHBEARER key set (`sasl::oauthbearer::JwksSource`), done by the broker, never by a
//! mechanism.

pub mod sasl;
