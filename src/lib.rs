//! Strata: a Kafka-compatible message broker with tiered object storage.
//!
//! # Layout
//! In the order a request meets them:
//! - [`config`]: node config (TOML, `STRATA_*` env, flags) and topic configs under Kafka's names.
//! - [`server`]: listeners, connections, framing, in-order responses, shutdown.
//! - [`protocol`]: glue to the `kafka-protocol` crate, the ApiVersions table, error codes,
//!   the record-batch header reader.
//! - [`handlers`]: one file per Kafka API.
//! - [`log`]: the storage engine (`UnifiedLog`, segments, indexes, recovery, retention, cleaner).
//! - [`model`]: newtypes for offsets, epochs and ids.
//! - [`clock`]: injected time.

pub mod clock;
pub mod log;
pub mod model;
pub mod protocol;
