//! `strata-tiering`: tiered storage for Strata — sealed log segments in object storage, served
//! back on demand. It depends on nothing in the broker: the broker describes a sealed segment
//! ([`SealedSegment`]: files, base and last offset, max timestamp, leader epochs) and asks for
//! byte ranges back.
//!
//! # Overview
//! - [`storage`]: the [`RemoteStorage`] seam and [`ObjectStorage`] over the `object_store`
//!   crate: a local directory (the embedded default), S3 or an S3-compatible server, in memory.
//!   [`UnreliableStorage`] fails the first N attempts of each call, for tests.
//! - [`breaker`]: a circuit breaker per store ([`BreakerStorage`]): consecutive failures from
//!   several partitions open it, calls stop at it, a half-open probe closes it; `SlowDown`
//!   paces calls.
//! - [`manifest`]: the per-partition [`RemotePartitionManifest`] and the segment lifecycle
//!   ([`RemoteLogSegmentState`]); [`keys`]: the object layout.
//! - [`topic_manifest`]: the per-topic [`RemoteTopicManifest`] (name, id, partition count,
//!   configs) and [`restore_plan`], what a restore from the bucket alone creates.
//! - [`scheduler`]: the pure decisions (next upload, local deletability, remote retention).
//! - [`compaction`]: remote compaction of compacted topics: the pure plan
//!   ([`plan_remote_compaction`]) and the steps that read segments, write rewritten ones and
//!   swap them into the manifest (the records are filtered by the broker).
//! - [`partition`]: [`RemotePartition`], the one owner of a partition's remote state, which
//!   carries the decisions out against the store with retries ([`retry`]).
//! - [`cache`]: [`ChunkCache`], ranged reads in chunks cached on local disk, coalesced, fetched
//!   in parallel, with adaptive read-ahead ([`readahead`], pure) under the broker's remote-read
//!   quota ([`quota`]).
//! - [`stats`]: requests and bytes per store operation ([`StoreStats`]), for the bill.
//! - [`probe`]: the startup check that the store can be written ([`probe_store`]), with a
//!   one-line verdict naming bucket and endpoint ([`StoreProbeError`]) for readiness.
//!
//! Credentials: S3 takes them from the standard AWS chain through `aws-config`
//! ([`credentials`]: environment, profile files, web identity, ECS task role, IMDSv2), cached
//! and refreshed before they expire. SSO profiles are not supported (that would add the SSO
//! clients to the build).
//!
//! # Consistency
//! One [`RemotePartition`] per partition owns its manifest; its steps are serialised. Manifest
//! writes are conditional puts on the version last read (`If-Match` / `If-None-Match` on S3),
//! so two brokers that both act as leader cannot clobber each other: the loser's step fails
//! with [`TieringError::ManifestConflict`] and it continues from the stored manifest. The local
//! directory store has no conditional update; there a per-process lock stands in, which does
//! not protect two processes sharing one directory. Readers
//! use the last published manifest, an immutable snapshot. A segment is uploaded whole (every
//! object) before the manifest that names it is written, so a reader that finds a segment in
//! the manifest finds all of its objects. Local copies are deleted only when
//! [`scheduler::local_copy_deletable`] says the manifest naming them is durable. Object keys
//! contain a fresh UUID per upload, so a repeated or concurrent upload never overwrites an
//! object a manifest names.
//!
//! # Crash consistency
//! Data first, manifest last (Neon's `IndexPart`): a crash mid-upload leaves objects that no
//! manifest names, which [`RemotePartition::sweep_orphans`] deletes once they are older than a
//! grace period; never a manifest entry without its data. Deletion is the reverse: the manifest
//! first marks segments `DeleteSegmentStarted` (and moves the start offset past them, so
//! nothing reads them), then the objects go, then the entries. Each step is idempotent, so after
//! a crash the next pass repeats whatever was interrupted. Remote compaction writes its
//! rewritten segments first and swaps them in with one manifest write, which also marks the
//! replaced segments `DeleteSegmentStarted` without moving the start offset; their objects stay
//! until `delete_after_ms` for readers of the older manifest, then retention deletes them.
//!
//! # Cancellation
//! Store calls run under a `CancellationToken`; cancelling it ends retry loops with
//! [`TieringError::ShuttingDown`], a typed outcome rather than an error. An upload cancelled
//! between its data and its manifest leaves orphans, as a crash would; nothing else is needed.
//! Timeouts (the HTTP client's connect and request timeouts) catch hangs; they are not how the
//! broker stops.

pub mod breaker;
pub mod cache;
pub mod compaction;
pub mod credentials;
pub mod error;
pub mod keys;
pub mod manifest;
pub mod partition;
pub mod probe;
pub mod quota;
pub mod readahead;
pub mod retry;
pub mod scheduler;
pub mod stats;
pub mod storage;
pub mod topic_manifest;
pub mod unreliable;

pub use breaker::{BreakerPolicy, BreakerState, BreakerStorage, CircuitBreaker, StoreBreaker};
pub use cache::{CacheStats, ChunkCache, ChunkCacheConfig};
pub use compaction::{plan_remote_compaction, RemoteCompactionPlan, RemoteCompactionPolicy};
pub use credentials::AwsChainCredentials;
pub use error::{Result, TieringError};
pub use keys::{PartitionPath, SegmentFileKind};
pub use manifest::{RemoteLogSegmentMetadata, RemoteLogSegmentState, RemotePartitionManifest};
pub use partition::{RemoteLogAuxState, RemotePartition, RetryPolicy, UploadOutcome};
pub use probe::{probe_store, watch_store, ProbePolicy, StoreHealth, StoreProbeError};
pub use quota::RemoteReadQuota;
pub use readahead::{decide_read_ahead, ReadAheadPolicy, ReadAheadState};
pub use retry::Backoff;
pub use scheduler::SealedSegment;
pub use stats::{StoreOp, StoreStats};
pub use storage::{
    ObjectInfo, ObjectStorage, ObjectVersion, PutCondition, PutFileOutcome, RemoteStorage,
    S3Config, StorageConfig, StoreLocation,
};
pub use topic_manifest::{restore_plan, RemoteTopicManifest, RestoreSkip, RestoreTopic};
pub use unreliable::{Fault, UnreliableStorage};
