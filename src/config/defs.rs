//! The tables of known config keys: node keys and topic keys, under Kafka's property names.
//!
//! One table per scope; parsing, `--print-config`, DescribeConfigs and validation all read
//! these, so a key is declared exactly once.

/// How a config value is parsed and reported (DescribeConfigs' `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Bool,
    Int,
    Long,
    Double,
    String,
    List,
}

impl ConfigKind {
    /// Kafka's `ConfigType` numbering in DescribeConfigs v3+.
    pub fn wire_type(self) -> i8 {
        match self {
            ConfigKind::Bool => 1,
            ConfigKind::String => 2,
            ConfigKind::Int => 3,
            ConfigKind::Long => 5,
            ConfigKind::Double => 6,
            ConfigKind::List => 7,
        }
    }
}

/// A node-level key.
#[derive(Debug, Clone, Copy)]
pub struct NodeKey {
    pub name: &'static str,
    pub kind: ConfigKind,
    pub default: &'static str,
    /// Whether AlterConfigs on the broker resource may change it without a restart.
    pub dynamic: bool,
    pub doc: &'static str,
}

/// A topic-level key and the node key that supplies its default.
#[derive(Debug, Clone, Copy)]
pub struct TopicKey {
    pub name: &'static str,
    pub kind: ConfigKind,
    /// The node key whose value is the default; empty for the few keys Kafka gives no broker
    /// default (then `default` is it).
    pub node_key: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn node(
    name: &'static str,
    kind: ConfigKind,
    default: &'static str,
    dynamic: bool,
    doc: &'static str,
) -> NodeKey {
    NodeKey {
        name,
        kind,
        default,
        dynamic,
        doc,
    }
}

use ConfigKind::*;

pub const NODE_KEYS: &[NodeKey] = &[
    node("node.id", Int, "1", false, "This node's id, unique in the cluster."),
    node("process.roles", List, "broker,controller", false, "broker, controller, or both."),
    node(
        "listeners",
        String,
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        false,
        "Addresses to listen on, NAME://host:port, comma-separated.",
    ),
    node("advertised.listeners", String, "", false, "Addresses clients are told to use, NAME://host:port, comma-separated; a listener not named here is advertised at its `listeners` address (0.0.0.0 or an empty host as 127.0.0.1)."),
    node("listener.security.protocol.map", String, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", false, "The security protocol of each listener name, NAME:PROTOCOL, comma-separated (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). A controller listener left out of it is PLAINTEXT."),
    node("inter.broker.listener.name", String, "", false, "The listener brokers replicate over, and whose address a broker registers as its own; empty: the first listener that is not a controller listener."),
    node("controller.listener.names", List, "CONTROLLER", false, "Names of the listeners the controller RPC uses; the first one is where this node listens for it."),
    node("max.connections.per.ip", Int, "2147483647", false, "Most client connections from one IP address at once; more are closed on accept."),
    node("max.connections.per.ip.overrides", String, "", false, "Per-host exceptions to max.connections.per.ip, host:count, comma-separated (host is an IP address or a name resolved at start)."),
    node("max.connection.creation.rate", Int, "2147483647", false, "Most new connections per second accepted by the broker (per listener with listener.name.NAME.max.connection.creation.rate); faster arrivals wait to be accepted."),
    node("ssl.keystore.location", String, "", false, "PEM file with this node's private key and certificate chain (ssl.keystore.type=PEM)."),
    node("ssl.keystore.type", String, "PEM", false, "Format of ssl.keystore.location; only PEM."),
    node("ssl.certificate.location", String, "", false, "PEM certificate chain of this node, with ssl.key.location (instead of ssl.keystore.location)."),
    node("ssl.key.location", String, "", false, "PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted) of this node, with ssl.certificate.location."),
    node("ssl.truststore.location", String, "", false, "PEM bundle of the CA certificates peers are verified against (ssl.truststore.type=PEM)."),
    node("ssl.truststore.type", String, "PEM", false, "Format of ssl.truststore.location; only PEM."),
    node("ssl.ca.location", String, "", false, "PEM CA bundle, the librdkafka name of ssl.truststore.location."),
    node("ssl.client.auth", String, "none", false, "Client certificates on SSL listeners: none, requested (verified when sent), or required."),
    node("ssl.principal.mapping.rules", String, "DEFAULT", false, "Rules mapping a client certificate's subject DN to a principal name: RULE:pattern/replacement/[LU], comma-separated, then DEFAULT (the whole DN)."),
    node("ssl.endpoint.identification.algorithm", String, "https", false, "https: a node connecting to a peer over TLS checks the peer certificate names the host it dialled; empty: no host name check (the chain is still verified)."),
    node("ssl.key.password", String, "", false, "Password of an encrypted PKCS#8 private key (ENCRYPTED PRIVATE KEY, PBES2) in ssl.keystore.location or ssl.key.location. Never printed or described."),
    node("ssl.enabled.protocols", List, "TLSv1.2,TLSv1.3", false, "TLS versions listeners and outgoing broker connections accept: TLSv1.2 and/or TLSv1.3 (rustls serves no older version)."),
    node("ssl.cipher.suites", List, "", false, "Cipher suites allowed, by IANA name (TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, ...); empty: every suite rustls offers, AES-128-GCM first. The order is the broker's preference, which wins over the client's. A name rustls does not offer stops the start."),
    node("ssl.handshake.timeout.ms", Long, "10000", false, "A TLS handshake not finished in this long closes the connection."),
    node("sasl.enabled.mechanisms", List, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", false, "SASL mechanisms SASL_PLAINTEXT and SASL_SSL listeners accept (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER); per listener with listener.name.NAME.sasl.enabled.mechanisms. PLAIN checks the user's SCRAM credential."),
    node("connections.max.reauth.ms", Long, "0", false, "KIP-368: a SASL session lasts at most this long (and no longer than an OAUTHBEARER token); the client must re-authenticate before it ends or its connection is closed. 0: sessions do not expire."),
    node("sasl.mechanism.inter.broker.protocol", String, "PLAIN", false, "The SASL mechanism brokers authenticate with to one another when the inter-broker listener is SASL_PLAINTEXT or SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (Kafka's default, GSSAPI, is not served). The broker's user name and password come from listener.name.LISTENER.MECHANISM.sasl.jaas.config (the mechanism lower-cased), as in Kafka."),
    node("sasl.server.max.receive.size", Int, "524288", false, "Largest SASL token accepted before authentication completes."),
    node("sasl.oauthbearer.jwks.endpoint.url", String, "", false, "JWKS whose keys sign OAUTHBEARER tokens: file:///path or an http(s) URL. Required when OAUTHBEARER is enabled."),
    node("sasl.oauthbearer.jwks.endpoint.refresh.ms", Long, "3600000", false, "How often the JWKS is loaded again."),
    node("sasl.oauthbearer.expected.issuer", String, "", false, "The iss claim OAUTHBEARER tokens must carry; empty: any issuer."),
    node("sasl.oauthbearer.expected.audience", List, "", false, "The aud claim of an OAUTHBEARER token must contain one of these; empty: any audience."),
    node("sasl.oauthbearer.sub.claim.name", String, "sub", false, "The token claim that names the principal."),
    node("sasl.oauthbearer.clock.skew.seconds", Int, "30", false, "Allowed clock difference when checking a token's exp and nbf."),
    node("sasl.scram.bootstrap.credentials.file", String, "", false, "File of SCRAM credentials to create at start for users that have none for that mechanism, one per line: MECHANISM=[name=USER,password=PASSWORD] (as `strata format --add-scram`). Lets a deployment load the first admin's secret at boot."),
    node("http.listener", String, "127.0.0.1:9644", false, "Address of the HTTP endpoint (/metrics, /health, /ready)."),
    node("controller.quorum.voters", String, "1@127.0.0.1:9093", false, "The controller quorum: id@host:port, comma-separated."),
    node("cluster.id", String, "", false, "The cluster id; written by `strata format` or on first start."),
    node("controller.quorum.election.timeout.ms", Long, "1000", false, "Voters that hear no leader for 0.5 to 1.0 times this long start an election, each at its own time by rank of node id (so two never stand at once and split the vote)."),
    node(
        "broker.session.timeout.ms",
        Long,
        "4000",
        false,
        "The active controller fences a broker that has not heartbeated for this long. The fallback for silent failures (a network partition, a frozen machine); a dead process is fenced sooner, by broker.session.reconnect.grace.ms. Eight heartbeat intervals: a broker on a loaded machine may miss several heartbeats without being fenced, while a partitioned one loses its leaderships within seconds (Kafka's 9 s dates from 3 s heartbeats).",
    ),
    node(
        "broker.session.reconnect.grace.ms",
        Long,
        "300",
        false,
        "A broker whose heartbeat connection to the active controller closed (its process died: the kernel closes its sockets) is fenced unless it heartbeats again within this long. After a controller election, brokers that have not heartbeated to the new controller within the larger of this and broker.heartbeat.interval.ms are fenced.",
    ),
    node(
        "broker.heartbeat.interval.ms",
        Long,
        "500",
        false,
        "How often a broker heartbeats to the active controller (after a failed heartbeat it retries sooner). Short, so a new active controller, which knows no sessions, hears from every live broker within its election grace.",
    ),
    node("auto.leader.rebalance.enable", Bool, "true", false, "Move leadership back to preferred replicas when a broker's imbalance passes leader.imbalance.per.broker.percentage."),
    node("leader.imbalance.check.interval.seconds", Long, "300", false, "How often the active controller checks leader imbalance."),
    node("leader.imbalance.per.broker.percentage", Int, "10", false, "Share of a broker's preferred partitions led elsewhere that triggers a rebalance."),
    node("replica.alter.log.dirs.io.max.bytes.per.second", Long, "9223372036854775807", true, "Bytes/s that replicas moving between this broker's log dirs (AlterReplicaLogDirs) copy, over all moves together."),
    node("follower.replication.throttled.rate", Long, "9223372036854775807", true, "Bytes/s a follower fetches, over all its replicas listed in their topic's follower.replication.throttled.replicas (a reassignment's copies); other replicas are not limited."),
    node("strata.balancer.enable", Bool, "true", true, "The active controller's balancer moves replicas by itself: onto brokers that joined, off brokers in strata.balancer.drain.brokers, and between brokers whose replica counts differ by more than strata.balancer.tolerance.replicas. false pauses it (`strata cluster balance pause`); moves under way still complete."),
    node("strata.balancer.max.concurrent.moves", Int, "2", true, "Partition reassignments the balancer lets run at once (its own and any others); it starts the next move when one completes."),
    node("strata.balancer.tolerance.replicas", Int, "1", true, "The balancer leaves replica counts alone while the broker holding the most holds at most this many more than the one holding the fewest."),
    node("strata.balancer.tolerance.bytes.ratio", Double, "0.2", true, "Once replica counts are even, the balancer moves (or swaps) replicas between brokers while the broker holding the most bytes (its replicas' local log sizes, as brokers report them with their heartbeats) holds more than this fraction above the mean."),
    node("strata.balancer.size.report.interval.ms", Long, "10000", false, "How often a broker's heartbeat carries the local log size of each of its replicas to the active controller, for the balancer (and at once to a newly elected controller)."),
    node("strata.balancer.tolerance.bytes.min", Long, "1073741824", true, "The balancer leaves bytes alone while the heaviest broker holds less than this many bytes more than the lightest: smaller gaps are not worth a copy."),
    node("leader.replication.throttled.rate", Long, "9223372036854775807", true, "Bytes/s a leader sends to followers, over all its replicas listed in their topic's leader.replication.throttled.replicas (a reassignment's sources); followers in the ISR and other replicas are not limited."),
    node("strata.balancer.throttle.bytes.per.second", Long, "0", true, "When above 0, every partition move (the balancer's, `strata cluster drain`'s or an operator's) is throttled: the active controller lists its source replicas in the topic's leader.replication.throttled.replicas and its new replicas in follower.replication.throttled.replicas, and removes them when the move completes; brokers apply this rate to the listed replicas where leader/follower.replication.throttled.rate is not set. 0: moves are not throttled."),
    node("strata.balancer.drain.brokers", List, "", true, "Broker ids the balancer empties and never fills (`strata cluster drain` adds one, `strata cluster unregister` removes it)."),
    node("controlled.shutdown.enable", Bool, "true", false, "On SIGTERM, ask the controller to move this broker's leaderships away before stopping."),
    node("controlled.shutdown.timeout.ms", Long, "10000", false, "How long a controlled shutdown waits for leaderships to move."),
    node("broker.rack", String, "", false, "The rack (availability zone) of this broker."),
    node("log.dirs", String, "./data", false, "Directories holding partition logs, comma-separated."),
    node("strata.log.dir.disk.low.watermark.ratio", Double, "0.8", false, "Disk pressure: a log dir under pressure is normal again (produce served, no more deletions) once its filesystem is less full than this fraction."),
    node("strata.log.dir.disk.high.watermark.ratio", Double, "0.9", false, "Disk pressure: from this used fraction of its filesystem, a log dir loses the local copies of segments already in remote storage, oldest first, down to the low watermark."),
    node("strata.log.dir.disk.refuse.ratio", Double, "0.95", false, "Disk pressure: from this used fraction of its filesystem, produce to the partitions of a log dir is refused (KAFKA_STORAGE_ERROR, retriable) until it is below the low watermark."),
    node("strata.log.dir.disk.check.interval.ms", Long, "5000", false, "How often each log dir's disk usage is read for disk pressure."),
    node("strata.test.log.dir.disk.usage.file", String, "", false, "For tests only: when set, every log dir's used fraction is read from this file (a number from 0 to 1) instead of the filesystem."),
    node("remote.storage.uri", String, "", false, "Object storage for tiered segments: file://DIR or s3://bucket/prefix; empty means DIR/remote under the first log dir."),
    node("remote.storage.s3.endpoint", String, "", false, "Endpoint of an S3-compatible server; empty for AWS."),
    node("remote.storage.s3.region", String, "", false, "AWS region of the bucket; empty to take it from the environment."),
    // Not a Bool: "unset" must be told apart from "false", because the right default depends on
    // the endpoint, and --print-config must print a value that means the same when read back.
    node("remote.storage.s3.path.style", String, "", false, "S3 addressing: true puts the bucket in the path (http://host/bucket/key), false in the host name (http://bucket.host/key). Empty (the default): path style when remote.storage.s3.endpoint is set, as MinIO, Ceph, moto and most S3-compatible servers want; virtual-hosted for AWS itself."),
    node("log.remote.storage.default", Bool, "true", true, "Default of the topic config remote.storage.enable for delete topics (internal topics are never tiered; a compacted topic is tiered only when the topic sets remote.storage.enable=true)."),
    node("log.local.retention.ms", Long, "-2", true, "How long a tiered topic keeps segments on local disk; -2: as long as log.retention.ms."),
    node("log.local.retention.bytes", Long, "-2", true, "How many bytes of a tiered partition stay on local disk; -2: as many as log.retention.bytes."),
    node("remote.upload.concurrency", Int, "4", false, "Segment uploads in flight at once, across all partitions."),
    node("remote.cache.bytes", Long, "1073741824", false, "Local disk used to cache chunks of remote segments."),
    node("remote.cache.memory.bytes", Long, "134217728", false, "Memory that also holds the chunks of remote segments fetched or read last, so a sequential reader takes them without reading the cache's files back; 0 serves every hit from disk."),
    node("remote.cache.chunk.bytes", Int, "8388608", false, "Size of the ranged reads of remote segments (cache unit)."),
    node("remote.cache.readahead.chunks", Int, "2", false, "Chunks fetched ahead of a remote reader that starts a segment or turns sequential (the first read-ahead window); 0 turns read-ahead off."),
    node("remote.fetch.read.ahead.max.chunks", Int, "8", false, "Widest read-ahead window: the window doubles while a remote reader stays sequential, up to this many chunks, and falls back on a seek."),
    node("remote.fetch.concurrency", Int, "8", false, "Ranged GETs in flight at once for remote reads that fetches wait on, and as many again for read-ahead, across all partitions."),
    node("remote.log.manager.fetch.max.bytes.per.second", Long, "9223372036854775807", false, "Bytes per second this broker may read from remote storage (Kafka's KIP-956 name); reads over it are delayed, not failed. The default is unlimited."),
    node("remote.log.manager.task.interval.ms", Long, "5000", false, "How often tiering looks for segments to upload and remote data to expire."),
    node("remote.storage.breaker.failure.threshold", Int, "8", false, "Consecutive failed object-store calls, from at least two partitions, that open the store's circuit breaker (calls then stop until a probe succeeds); 0 turns the breaker off."),
    node("remote.storage.breaker.open.max.ms", Long, "30000", false, "Longest time the store's circuit breaker stays open before its next probe (it starts at 1 s and doubles while probes fail)."),
    node("remote.group.offsets.export.interval.ms", Long, "5000", false, "How often each broker writes the committed offsets of the groups it coordinates to the remote store (when they changed), for strata restore; 0 turns the export off."),
    node("strata.remote.storage.internal.topics.enable", Bool, "false", false, "Tier the coordinators' compacted topics __consumer_offsets and __transaction_state as any tiered compacted topic; their coordinators then load the remote part too."),
    node("remote.compaction.interval.ms", Long, "300000", false, "How often the leader of a tiered compacted partition considers compacting its remote log (a pass runs when the bytes uploaded since the last one reach min.cleanable.dirty.ratio of the remote log)."),
    node("remote.orphan.sweep.interval.ms", Long, "3600000", false, "How often a leader looks for remote objects no manifest names (orphans of interrupted uploads) and deletes them."),
    node("remote.orphan.grace.ms", Long, "600000", false, "Objects no manifest names are deleted once this old (an upload in flight is younger)."),
    node("remote.fetch.max.bytes", Int, "8388608", false, "Most bytes one fetch reads from a remote segment."),
    node("remote.list.offsets.request.timeout.ms", Long, "30000", false, "How long a ListOffsets request before v10 (which carries its own timeout) may wait on remote storage; partitions unanswered by then are REQUEST_TIMED_OUT."),
    node("auto.create.topics.enable", Bool, "true", false, "Create a topic when a client asks for metadata of a topic that does not exist."),
    node("num.partitions", Int, "1", true, "Partitions of an auto-created topic."),
    node("default.replication.factor", Int, "1", true, "Replication factor of an auto-created topic."),
    node("min.insync.replicas", Int, "1", true, "Fewest in-sync replicas for an acks=all write."),
    node("replica.lag.time.max.ms", Long, "10000", false, "A follower that has not caught up with the leader for this long leaves the ISR."),
    node("replica.fetch.wait.max.ms", Int, "500", false, "How long a leader holds a follower's fetch when it has no new records."),
    node("replica.fetch.max.bytes", Int, "1048576", false, "Bytes a follower fetches per partition per round (at least one batch)."),
    node("replica.fetch.response.max.bytes", Int, "10485760", false, "Bytes a follower fetches per round across partitions."),
    node("replica.fetch.backoff.ms", Long, "1000", false, "How long a follower waits after a failed fetch before trying again."),
    node("follower.fetch.last.tiered.offset.enable", Bool, "true", false, "A follower with an empty log of a tiered topic starts after the last uploaded offset and copies only the leader's tail (KIP-1023; Kafka's default is false)."),
    node("max.incremental.fetch.session.cache.slots", Int, "1000", false, "Most incremental fetch sessions (KIP-227) the broker keeps, across consumers and followers."),
    node("min.incremental.fetch.session.eviction.ms", Long, "120000", false, "How long a fetch session is protected from eviction by a larger one, and how long unused before any new session may evict it."),
    node("replica.high.watermark.checkpoint.interval.ms", Long, "5000", false, "How often replicated partitions checkpoint their high watermark."),
    node("unclean.leader.election.enable", Bool, "false", true, "Allow a replica outside the ISR to become leader."),
    node("super.users", String, "", false, "Principals that bypass ACLs, semicolon-separated (User:admin;User:ops)."),
    node("allow.everyone.if.no.acl.found", String, "", false, "Whether a resource no ACL covers is open to every principal: true or false; empty (the default) means true while no listener authenticates clients (no SASL listener, no ssl.client.auth=required) and false once one does."),
    node("socket.request.max.bytes", Int, "104857600", false, "Largest request frame accepted."),
    node("connections.max.idle.ms", Long, "600000", false, "Close connections idle this long."),
    node("max.connections", Int, "10000", false, "Most client connections at once."),
    node("max.request.partition.size.limit", Int, "2000", false, "Most partitions one DescribeTopicPartitions response describes; a client asking for more gets a cursor to continue from."),
    node("queued.max.requests", Int, "32", false, "Most requests in flight on one connection before reading pauses."),
    node("quota.window.num", Int, "11", false, "Samples a client's byte rate is measured over for its quota (at least 1); the rate counts at least this many minus one whole samples, and no throttle exceeds the whole window."),
    node("quota.window.size.seconds", Int, "1", false, "Length of one quota rate sample, in seconds (at least 1)."),
    node("strata.producer.byte.rate", Long, "-1", true, "Default of the topic config of that name: bytes/s that may be produced to one topic over all brokers together; -1 (or any value <= 0) for no limit."),
    node("strata.consumer.byte.rate", Long, "-1", true, "Default of the topic config of that name: bytes/s that consumers may fetch from one topic over all brokers together; -1 (or any value <= 0) for no limit."),
    node("log.flush.policy", String, "fsync", false, "fsync: acknowledge after an fsync, with group commit. interval: flush per log.flush.interval.messages / .ms."),
    node("log.flush.interval.messages", Long, "9223372036854775807", true, "With the interval policy, flush after this many records."),
    node("log.flush.interval.ms", Long, "9223372036854775807", true, "With the interval policy, flush after this long."),
    node("log.segment.bytes", Int, "1073741824", true, "Roll a segment at this size."),
    node("log.roll.ms", Long, "604800000", true, "Roll a segment at this age."),
    node("log.index.size.max.bytes", Int, "10485760", true, "Largest offset index; a full index rolls the segment."),
    node("log.index.interval.bytes", Int, "4096", true, "Bytes between offset index entries."),
    node("log.flush.offset.checkpoint.interval.ms", Int, "60000", false, "How often each partition's recovery point is written; a crash rescans what was appended since."),
    node("log.preallocate.bytes", Long, "8388608", true, "Disk space reserved ahead of each active segment's end, in chunks of this size; 0 turns it off."),
    node("log.retention.ms", Long, "604800000", true, "Delete segments older than this; -1 keeps forever."),
    node("log.retention.bytes", Long, "-1", true, "Delete old segments past this partition size; -1 for no bound."),
    node("log.retention.check.interval.ms", Long, "300000", false, "How often retention runs."),
    node("log.cleaner.backoff.ms", Long, "15000", false, "Pause between the cleaner's passes over the compacted logs."),
    node("log.cleanup.policy", List, "delete", true, "delete, compact, or both."),
    node("log.cleaner.delete.retention.ms", Long, "86400000", true, "How long tombstones survive compaction."),
    node("log.cleaner.min.cleanable.ratio", Double, "0.5", true, "Dirty ratio that makes a log eligible for cleaning."),
    node("log.cleaner.min.compaction.lag.ms", Long, "0", true, "Records younger than this are not compacted."),
    node("log.segment.delete.delay.ms", Long, "60000", true, "Delay before a deleted segment's files are removed."),
    node("log.message.timestamp.type", String, "CreateTime", true, "CreateTime or LogAppendTime."),
    node("message.max.bytes", Int, "1048588", true, "Largest record batch accepted."),
    node("compression.type", String, "producer", true, "Compression of stored batches: producer (keep each batch as sent), uncompressed, gzip, snappy, lz4 or zstd (batches in another codec are recompressed on append)."),
    node("compression.gzip.level", Int, "-1", true, "Level of broker-side gzip compression: 1-9, or -1 for the codec's default (6)."),
    node("compression.lz4.level", Int, "9", true, "Level of broker-side lz4 compression: 1 (fast) to 17 (the lz4 library caps high compression at 12)."),
    node("compression.zstd.level", Int, "3", true, "Level of broker-side zstd compression: -131072 to 22."),
    node("log.message.timestamp.before.max.ms", Long, "9223372036854775807", true, "Most a CreateTime record's timestamp may lie behind the broker's clock."),
    node("log.message.timestamp.after.max.ms", Long, "3600000", true, "Most a CreateTime record's timestamp may lie ahead of the broker's clock."),
    node("log.cleaner.max.compaction.lag.ms", Long, "9223372036854775807", true, "Accepted for Kafka compatibility and not enforced: the cleaner runs by min.cleanable.dirty.ratio only."),
    node("log.preallocate", Bool, "false", true, "Accepted for Kafka compatibility; preallocation is log.preallocate.bytes."),
    node("log.roll.jitter.ms", Long, "0", true, "Accepted for Kafka compatibility and not applied: segments roll at log.roll.ms exactly."),
    node("offsets.topic.num.partitions", Int, "50", false, "Partitions of __consumer_offsets, fixed when it is created."),
    node("offsets.topic.replication.factor", Int, "3", false, "Replication factor of __consumer_offsets (at most the live brokers when it is created)."),
    node("offsets.topic.segment.bytes", Int, "104857600", false, "segment.bytes of __consumer_offsets."),
    node("offsets.retention.minutes", Long, "10080", false, "Committed offsets of an empty group expire this long after it became empty."),
    node("offsets.retention.check.interval.ms", Long, "600000", false, "How often expired offsets are looked for."),
    node("offsets.commit.timeout.ms", Int, "5000", false, "How long a commit waits for its offsets record to be committed."),
    node("transaction.state.log.num.partitions", Int, "50", false, "Partitions of __transaction_state, fixed when it is created."),
    node("transaction.state.log.replication.factor", Int, "3", false, "Replication factor of __transaction_state (at most the live brokers when it is created)."),
    node("transaction.state.log.min.isr", Int, "2", false, "min.insync.replicas of __transaction_state (at most its replication factor)."),
    node("transaction.state.log.segment.bytes", Int, "104857600", false, "segment.bytes of __transaction_state."),
    node("transaction.max.timeout.ms", Int, "900000", false, "Largest transaction.timeout.ms a producer may ask for; above it InitProducerId is INVALID_TRANSACTION_TIMEOUT."),
    node("transactional.id.expiration.ms", Long, "604800000", false, "A transactional id with no transaction for this long is removed."),
    node("transaction.partition.verification.enable", Bool, "true", true, "Before a partition leader appends the first transactional batch of a transaction, it verifies with the transaction coordinator that the partition is in the producer's ongoing transaction (KIP-890)."),
    node("strata.feature.transaction.version", Int, "2", true, "The finalized level of Kafka's transaction.version feature that ApiVersions tells clients (0 to 2): at 2, clients that support transaction version 2 (KIP-890 part 2) send no AddPartitionsToTxn and get a new epoch at every EndTxn."),
    node("transaction.abort.timed.out.transaction.cleanup.interval.ms", Long, "10000", false, "How often transactions past their timeout and expired transactional ids are looked for at the latest."),
    node("offset.metadata.max.bytes", Int, "4096", false, "Largest metadata string of a committed offset."),
    node("group.min.session.timeout.ms", Int, "6000", false, "Smallest session timeout a group member may ask for."),
    node("group.max.session.timeout.ms", Int, "1800000", false, "Largest session timeout a group member may ask for."),
    node("group.initial.rebalance.delay.ms", Int, "3000", false, "How long the first rebalance of an empty group waits for more members."),
    node("group.max.size", Int, "2147483647", false, "Most members in one group."),
    node("group.consumer.heartbeat.interval.ms", Int, "5000", false, "Heartbeat interval the coordinator gives consumer-protocol (KIP-848) members."),
    node("group.consumer.session.timeout.ms", Int, "45000", false, "Session timeout of consumer-protocol members: one missing its heartbeats this long is removed."),
    node("group.consumer.assignors", List, "uniform,range", false, "Server-side assignors of consumer groups; the first is the default."),
    node("group.consumer.max.size", Int, "2147483647", false, "Most members in one consumer group."),
    node("group.consumer.migration.policy", String, "bidirectional", false, "Conversions between classic and consumer groups: bidirectional, upgrade, downgrade or disabled."),
    node("metrics.group.lag.max.series", Int, "1000", true, "Most (group, topic, partition) series of strata_group_consumer_lag_records; partitions beyond it are left out of that gauge (counted in strata_group_consumer_lag_series_dropped) but stay in the per-group sum."),
];

const fn topic(
    name: &'static str,
    kind: ConfigKind,
    node_key: &'static str,
    doc: &'static str,
) -> TopicKey {
    TopicKey {
        name,
        kind,
        node_key,
        default: "",
        doc,
    }
}

/// A topic key without a broker default.
const fn topic_only(
    name: &'static str,
    kind: ConfigKind,
    default: &'static str,
    doc: &'static str,
) -> TopicKey {
    TopicKey {
        name,
        kind,
        node_key: "",
        default,
        doc,
    }
}

pub const TOPIC_KEYS: &[TopicKey] = &[
    topic(
        "cleanup.policy",
        List,
        "log.cleanup.policy",
        "delete, compact, or both.",
    ),
    topic(
        "compression.type",
        String,
        "compression.type",
        "Compression of stored batches.",
    ),
    topic(
        "compression.gzip.level",
        Int,
        "compression.gzip.level",
        "Level of broker-side gzip compression: 1-9, or -1 for the default.",
    ),
    topic(
        "compression.lz4.level",
        Int,
        "compression.lz4.level",
        "Level of broker-side lz4 compression: 1-17.",
    ),
    topic(
        "compression.zstd.level",
        Int,
        "compression.zstd.level",
        "Level of broker-side zstd compression: -131072 to 22.",
    ),
    topic(
        "delete.retention.ms",
        Long,
        "log.cleaner.delete.retention.ms",
        "How long tombstones survive compaction.",
    ),
    topic(
        "file.delete.delay.ms",
        Long,
        "log.segment.delete.delay.ms",
        "Delay before deleted files are removed.",
    ),
    topic(
        "flush.messages",
        Long,
        "log.flush.interval.messages",
        "With the interval flush policy, flush after this many records.",
    ),
    topic(
        "flush.ms",
        Long,
        "log.flush.interval.ms",
        "With the interval flush policy, flush after this long.",
    ),
    topic_only(
        "follower.replication.throttled.replicas",
        List,
        "",
        "Replicas whose followers fetch within follower.replication.throttled.rate: partition:broker pairs, comma-separated, or * for every replica.",
    ),
    topic(
        "index.interval.bytes",
        Int,
        "log.index.interval.bytes",
        "Bytes between offset index entries.",
    ),
    topic_only(
        "leader.replication.throttled.replicas",
        List,
        "",
        "Replicas whose leaders send within leader.replication.throttled.rate to followers out of the ISR: partition:broker pairs, comma-separated, or * for every replica.",
    ),
    topic(
        "local.retention.bytes",
        Long,
        "log.local.retention.bytes",
        "Bytes of a tiered partition kept on local disk; -2: as retention.bytes.",
    ),
    topic(
        "local.retention.ms",
        Long,
        "log.local.retention.ms",
        "How long a tiered partition keeps segments on local disk; -2: as retention.ms.",
    ),
    topic(
        "max.compaction.lag.ms",
        Long,
        "log.cleaner.max.compaction.lag.ms",
        "Accepted and not enforced: the cleaner runs by min.cleanable.dirty.ratio only.",
    ),
    topic(
        "max.message.bytes",
        Int,
        "message.max.bytes",
        "Largest record batch accepted.",
    ),
    topic(
        "message.timestamp.after.max.ms",
        Long,
        "log.message.timestamp.after.max.ms",
        "Most a CreateTime record's timestamp may lie ahead of the broker's clock.",
    ),
    topic(
        "message.timestamp.before.max.ms",
        Long,
        "log.message.timestamp.before.max.ms",
        "Most a CreateTime record's timestamp may lie behind the broker's clock.",
    ),
    topic(
        "message.timestamp.type",
        String,
        "log.message.timestamp.type",
        "CreateTime or LogAppendTime.",
    ),
    topic(
        "min.cleanable.dirty.ratio",
        Double,
        "log.cleaner.min.cleanable.ratio",
        "Dirty ratio that makes the log eligible for cleaning.",
    ),
    topic(
        "min.compaction.lag.ms",
        Long,
        "log.cleaner.min.compaction.lag.ms",
        "Records younger than this are not compacted.",
    ),
    topic(
        "min.insync.replicas",
        Int,
        "min.insync.replicas",
        "Fewest in-sync replicas for an acks=all write.",
    ),
    topic(
        "preallocate",
        Bool,
        "log.preallocate",
        "Accepted and not applied: preallocation is the node's log.preallocate.bytes.",
    ),
    topic_only(
        "remote.log.copy.disable",
        Bool,
        "false",
        "Accepted and not applied: a tiered topic keeps uploading.",
    ),
    topic_only(
        "remote.log.delete.on.disable",
        Bool,
        "false",
        "Accepted and not applied.",
    ),
    topic(
        "remote.storage.enable",
        Bool,
        "log.remote.storage.default",
        "Upload sealed segments to object storage and serve old offsets from there.",
    ),
    topic(
        "retention.bytes",
        Long,
        "log.retention.bytes",
        "Delete old segments past this size; -1 for no bound.",
    ),
    topic(
        "retention.ms",
        Long,
        "log.retention.ms",
        "Delete segments older than this; -1 keeps forever.",
    ),
    topic(
        "segment.bytes",
        Int,
        "log.segment.bytes",
        "Roll a segment at this size.",
    ),
    topic(
        "segment.index.bytes",
        Int,
        "log.index.size.max.bytes",
        "Largest offset index.",
    ),
    topic(
        "segment.jitter.ms",
        Long,
        "log.roll.jitter.ms",
        "Accepted and not applied: segments roll at segment.ms exactly.",
    ),
    topic(
        "segment.ms",
        Long,
        "log.roll.ms",
        "Roll a segment at this age.",
    ),
    topic(
        "strata.consumer.byte.rate",
        Long,
        "strata.consumer.byte.rate",
        "Bytes/s consumers may fetch from this topic over all brokers together; consumers over it are throttled (throttle_time_ms); -1 for no limit.",
    ),
    topic(
        "strata.producer.byte.rate",
        Long,
        "strata.producer.byte.rate",
        "Bytes/s that may be produced to this topic over all brokers together; producers over it are throttled (throttle_time_ms); -1 for no limit.",
    ),
    topic(
        "unclean.leader.election.enable",
        Bool,
        "unclean.leader.election.enable",
        "Allow a replica outside the ISR to become leader.",
    ),
];

/// Topic keys Kafka 4.x defines that Strata accepts, stores and reports but does not act on
/// (docs/configs.md says why for each).
pub const IGNORED_TOPIC_KEYS: &[&str] = &[
    "max.compaction.lag.ms",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "segment.jitter.ms",
];

/// Topic keys Kafka 4.0 removed; refused as unknown, as Kafka 4.x refuses them.
pub const REMOVED_TOPIC_KEYS: &[&str] = &[
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.difference.max.ms",
];

pub fn node_key(name: &str) -> Option<&'static NodeKey> {
    NODE_KEYS.iter().find(|k| k.name == name)
}

pub fn topic_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// Keys whose values are secrets: printed as `[hidden]`, described as sensitive with no value
/// (Kafka's PASSWORD type): `ssl.key.password` and the listeners' `sasl.jaas.config`.
pub fn is_sensitive(key: &str) -> bool {
    key.ends_with("ssl.key.password") || key.ends_with("sasl.jaas.config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, TopicConfig};

    /// The rows of docs/configs.md's table: (key, Strata column).
    fn documented() -> Vec<(std::string::String, std::string::String)> {
        let doc = include_str!("../../docs/configs.md");
        doc.lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_string(), cells[3].to_string())
            })
            .collect()
    }

    #[test]
    fn a_compacted_topic_is_tiered_only_when_it_says_so() {
        let node = crate::config::NodeConfig::load(None, &[], &[]).expect("load");
        let tiered = |overrides: &[(&str, &str)], topic: &str, internal: bool| {
            let mut t = TopicConfig::default();
            for (k, v) in overrides {
                t.overrides.insert(k.to_string(), v.to_string());
            }
            t.log_config(&node)
                .for_topic(topic, internal)
                .remote_storage_enable
        };
        // log.remote.storage.default (true) tiers delete topics only.
        assert!(tiered(&[], "t", false));
        assert!(!tiered(&[("cleanup.policy", "compact")], "t", false));
        assert!(!tiered(&[("cleanup.policy", "compact,delete")], "t", false));
        let compact_tiered = [
            ("cleanup.policy", "compact"),
            ("remote.storage.enable", "true"),
        ];
        assert!(tiered(&compact_tiered, "t", false));
        assert!(!tiered(&[("remote.storage.enable", "false")], "t", false));
        // Internal topics: the coordinators' two, and only with the flag.
        assert!(!tiered(&[], "__consumer_offsets", false));
        assert!(tiered(&[], "__consumer_offsets", true));
        assert!(tiered(&[], "__transaction_state", true));
        assert!(!tiered(&[], "__strata_other", true));
    }

    #[test]
    fn configs_md_matches_the_key_tables() {
        let rows = documented();
        assert!(rows.len() >= 37, "the table has {} rows", rows.len());
        for (key, status) in &rows {
            let known = topic_key(key).is_some();
            match status.as_str() {
                "honoured" => assert!(
                    known && !IGNORED_TOPIC_KEYS.contains(&key.as_str()),
                    "{key}"
                ),
                "accepted, not applied" => {
                    assert!(known && IGNORED_TOPIC_KEYS.contains(&key.as_str()), "{key}");
                    let doc = topic_key(key).map_or("", |k| k.doc);
                    assert!(doc.starts_with("Accepted and not"), "{key}: {doc}");
                }
                "refused" => assert!(
                    matches!(
                        TopicConfig::validate(key, "1"),
                        Err(ConfigError::UnknownTopicConfig { .. })
                    ),
                    "{key}"
                ),
                other => panic!("{key}: unknown status '{other}'"),
            }
        }
        for k in TOPIC_KEYS {
            assert!(
                rows.iter().any(|(key, _)| key == k.name),
                "{} has no row in docs/configs.md",
                k.name
            );
        }
        for k in REMOVED_TOPIC_KEYS {
            assert!(
                rows.iter().any(|(key, s)| key == k && s == "refused"),
                "{k}"
            );
        }
    }

    #[test]
    fn every_topic_key_has_a_default() {
        for k in TOPIC_KEYS {
            if k.node_key.is_empty() {
                continue; // `default` is it, possibly empty (an empty list)
            }
            assert!(
                node_key(k.node_key).is_some(),
                "{}: no node key {}",
                k.name,
                k.node_key
            );
        }
    }

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        let message = |k: &str, v: &str| TopicConfig::validate(k, v).map_err(|e| e.to_string());
        assert_eq!(
            message("compression.gzip.level", "0"),
            Err("Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1".into())
        );
        assert_eq!(
            message("compression.zstd.level", "-131073"),
            Err("Invalid value -131073 for configuration compression.zstd.level: Value must be at least -131072".into())
        );
        assert_eq!(
            message("retention.ms", "soon"),
            Err(
                "Invalid value soon for configuration retention.ms: Not a number of type LONG"
                    .into()
            )
        );
        assert_eq!(
            message("min.cleanable.dirty.ratio", "1.5"),
            Err("Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1".into())
        );
        for (k, v) in [
            ("compression.gzip.level", "-1"),
            ("compression.lz4.level", "17"),
            ("compression.zstd.level", "-131072"),
            ("compression.type", "snappy"),
            ("retention.bytes", "-2"),
            ("message.timestamp.after.max.ms", "0"),
        ] {
            assert!(TopicConfig::validate(k, v).is_ok(), "{k}={v}");
        }
        assert!(TopicConfig::validate("compression.type", "none").is_err());
    }
}
