//! Strata: a Kafka-compatible message broker with tiered object storage.
//!
//! # Layout
//! In the order a request meets them. Each module uses only the layers below it
//! (docs/architecture.md; `tests/architecture.rs` checks it):
//! - [`config`]: node config (TOML, `STRATA_*` env, flags) and topic configs under Kafka's
//!   names; the listener model (`listeners`, `listener.security.protocol.map`, ...).
//! - [`server`]: the listeners, TLS handshakes and principals, connection limits, connections,
//!   framing, in-order responses, shutdown.
//! - [`protocol`]: glue to the `kafka-protocol` crate, request decoding, the retired Produce
//!   versions, the record-batch header reader, the records inside a batch, and Kafka's
//!   compression codecs.
//! - [`handlers`]: one file per Kafka API; the ApiVersions table is derived from their list.
//!   `KafkaApis` is all a handler reaches of the broker; typed errors become Kafka error codes
//!   in `handlers::errors`, once; `handlers::fetch_session` is the fetch session cache (KIP-227).
//! - [`quota`]: client quotas (byte rates, request time, cluster-wide tenant and topic limits)
//!   — which quota applies to a client, its rate over Kafka's sampled window, the throttle time
//!   it earns, this broker's shares of the cluster-wide limits.
//! - [`security`]: principals, the ACL model and the authorization decision, the
//!   `Authorizer` handlers consult, and the audit log of denials and security changes.
//! - [`replication`]: `ReplicaManager` and `Partition` — roles, high watermark, acks, follower
//!   fetchers, ISR maintenance; `MetadataClient`, the controller as the broker uses it;
//!   `replication::mirror`, the link fetchers of mirror topics; `replication::hot_tail`, where
//!   a new replica of a tiered topic starts (after the remote log).
//! - [`log`]: the storage engine: `PartitionLog`, a partition's whole log (local and remote,
//!   the one place that decides which part answers), `UnifiedLog` (the local log: segments,
//!   indexes, recovery, retention, cleaner), [`log::validator`] (what a leader checks and
//!   recompresses in a producer's batch), [`log::dir_failure`] (which log dirs a failed disk
//!   took offline), [`log::disk_pressure`] (each log dir's usage against its marks),
//!   [`log::alter_log_dirs`] (moving a replica to another log dir),
//!   [`log::repair`] (restoring a corrupt batch from the tiered copy or a replica: the
//!   decision), and [`log::remote`]: the `RemoteLogManager`, which
//!   puts tiered storage (the `strata-tiering` crate) under the logs. `log` never imports
//!   `replication`, `handlers`, `group`, `broker` or `server`.
//! - [`group`]: the group coordinator — consumer groups and committed offsets in `__consumer_offsets`.
//! - [`txn`]: the transaction coordinator — transactional ids, their transactions and markers,
//!   in `__transaction_state`; and the partition leaders' questions to coordinators on other
//!   brokers (KIP-890 verification, `txn::verification`).
//! - [`controller`]: the openraft metadata quorum: records, the `MetadataImage`, the decisions
//!   that change it, broker liveness and leader elections, partition reassignments, replica
//!   placement and the balance planner, and the split of cluster-wide quota limits among brokers.
//! - [`net`]: the network seam the Kafka listener, the controller RPC and replica fetchers use
//!   (tokio, or turmoil in tests), and [`net::tls`], TLS over it (rustls); [`runtime`]: blocking work on either runtime flavour.
//! - [`broker`]: the node's parts wired together, and nothing more.
//! - [`metrics`]: the Prometheus registry and the HTTP endpoint (`/metrics`, `/health`, `/ready`).
//! - [`admin`]: the `strata topics`, `strata groups`, `strata quotas`, `strata acls`,
//!   `strata mirror` and `strata cluster drain/balance` commands; [`client`]:
//!   the Kafka-protocol client they and follower fetchers use.
//! - `alloc`: the process allocator, which reserves huge blocks lazily (see its docs).
//! - [`sasl`]: the SASL mechanisms (PLAIN, SCRAM, OAUTHBEARER) as pure state machines,
//!   server and client side, and the SCRAM credential.
//! - [`model`]: newtypes for offsets, epochs and ids; [`clock`]: injected time.

pub mod admin;
mod alloc;
pub use alloc::keep_large_blocks;
pub mod broker;
pub mod client;
pub mod clock;
pub mod config;
pub mod controller;
pub mod group;
pub mod handlers;
pub mod log;
pub mod metrics;
pub mod model;
pub mod net;
pub mod protocol;
pub mod quota;
pub mod replication;
pub mod runtime;
pub mod sasl;
pub mod security;
pub mod server;
pub mod txn;
