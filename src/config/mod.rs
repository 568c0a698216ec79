//! Node config and topic configs, under Kafka's property names.
//!
//! A node config is merged from, lowest to highest precedence: the defaults in [`defs`], a
//! TOML file (keys flat or as dotted tables: `node.id = 1` is the same key either way), the
//! environment (`STRATA_` + the key upper-cased with `.` as `_`), and `--set key=value` flags.
//! Unknown keys are an error that names the key. Topic configs are overrides on top of the
//! node's `log.*` defaults, resolved into a [`LogConfig`] by [`TopicConfig::log_config`].

pub mod defs;
mod listeners;
mod log_dirs;
mod sasl;

pub use listeners::{listener_prefix, KafkaListenerConfig, ListenerInfo, SecurityProtocol};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use defs::is_sensitive;
use defs::{node_key, topic_key, ConfigKind, NODE_KEYS, TOPIC_KEYS};

use crate::log::{BrokerCompression, CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
use crate::model::BrokerId;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key '{key}' (from {source_name})")]
    UnknownKey { key: String, source_name: String },
    /// Kafka's wording (`LogConfig.validateNames`); also what a key Kafka 4.0 removed gets.
    #[error("Unknown topic config name: {key}")]
    UnknownTopicConfig { key: String },
    /// Kafka's wording (`ConfigException`), which clients show as is.
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("'{key}' cannot be changed without a restart")]
    NotDynamic { key: String },
}

/// Where an effective value came from; DescribeConfigs reports it as `config_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigSource {
    Default,
    File,
    Env,
    Flag,
    /// Set at run time through AlterConfigs on the broker resource.
    Dynamic,
}

impl ConfigSource {
    /// Kafka's DescribeConfigs `ConfigSource` numbering.
    pub fn wire(self) -> i8 {
        match self {
            ConfigSource::Default => 5,
            ConfigSource::File | ConfigSource::Env | ConfigSource::Flag => 4,
            // Dynamic changes are cluster-wide defaults: DYNAMIC_DEFAULT_BROKER_CONFIG.
            ConfigSource::Dynamic => 3,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ConfigSource::Default => "default",
            ConfigSource::File => "file",
            ConfigSource::Env => "env",
            ConfigSource::Flag => "flag",
            ConfigSource::Dynamic => "dynamic",
        };
        f.write_str(s)
    }
}

/// Checks that `value` parses as `kind` and, for keys with a closed set of values, is one of
/// them. Returns the value in its canonical text form.
pub fn validate_value(key: &str, kind: ConfigKind, value: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let v = value.trim();
    match kind {
        ConfigKind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(invalid("Expected value to be either true or false")),
        },
        ConfigKind::Int => {
            let n = v
                .parse::<i32>()
                .map_err(|_| invalid("Not a number of type INT"))?;
            check_range(key, n as f64).map_err(|r| invalid(&r))?;
            Ok(n.to_string())
        }
        ConfigKind::Long => {
            let n = v
                .parse::<i64>()
                .map_err(|_| invalid("Not a number of type LONG"))?;
            check_range(key, n as f64).map_err(|r| invalid(&r))?;
            Ok(n.to_string())
        }
        ConfigKind::Double => {
            let n = v
                .parse::<f64>()
                .map_err(|_| invalid("Not a number of type DOUBLE"))?;
            check_range(key, n).map_err(|r| invalid(&r))?;
            Ok(n.to_string())
        }
        ConfigKind::String | ConfigKind::List => {
            let canonical = if kind == ConfigKind::List {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                v.to_string()
            };
            match key {
                "cleanup.policy" | "log.cleanup.policy" => {
                    parse_cleanup_policy(&canonical).map_err(|r| invalid(&r))?;
                }
                "message.timestamp.type" | "log.message.timestamp.type" => {
                    parse_timestamp_type(&canonical).map_err(|r| invalid(&r))?;
                }
                "log.flush.policy" if canonical != "fsync" && canonical != "interval" => {
                    return Err(invalid("expected fsync or interval"));
                }
                // Empty means "by the endpoint" (tiering's `S3Config::default_path_style`).
                "remote.storage.s3.path.style" => {
                    let lower = canonical.to_ascii_lowercase();
                    if !matches!(lower.as_str(), "" | "true" | "false") {
                        return Err(invalid("expected true, false, or empty for the default"));
                    }
                    return Ok(lower);
                }
                "max.connections.per.ip.overrides" => {
                    for item in canonical
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                    {
                        let ok = item
                            .rsplit_once(':')
                            .is_some_and(|(h, n)| !h.is_empty() && n.trim().parse::<u32>().is_ok());
                        if !ok {
                            return Err(invalid("expected host:count, comma-separated"));
                        }
                    }
                }
                "ssl.client.auth" => {
                    let lower = canonical.to_ascii_lowercase();
                    if !matches!(lower.as_str(), "none" | "requested" | "required") {
                        return Err(invalid("expected none, requested or required"));
                    }
                    return Ok(lower);
                }
                "ssl.endpoint.identification.algorithm" => {
                    let lower = canonical.to_ascii_lowercase();
                    if !matches!(lower.as_str(), "" | "https") {
                        return Err(invalid("expected https, or empty for no host name check"));
                    }
                    return Ok(lower);
                }
                "allow.everyone.if.no.acl.found" => {
                    let lower = canonical.to_ascii_lowercase();
                    if !matches!(lower.as_str(), "" | "true" | "false") {
                        return Err(invalid("expected true, false, or empty for the default"));
                    }
                    return Ok(lower);
                }
                "super.users" => {
                    let bad = canonical
                        .split(';')
                        .map(str::trim)
                        .find(|p| !p.is_empty() && !p.contains(':'));
                    if let Some(p) = bad {
                        return Err(invalid(&format!(
                            "`{p}` is not a principal (type:name, such as User:admin)"
                        )));
                    }
                }
                "compression.type" if parse_compression_type(&canonical).is_none() => {
                    return Err(invalid(
                        "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
                    ));
                }
                "process.roles" => {
                    for role in canonical.split(',') {
                        if role != "broker" && role != "controller" {
                            return Err(invalid("roles are broker and controller"));
                        }
                    }
                }
                _ => {}
            }
            Ok(canonical)
        }
    }
}

/// Kafka's validators of numeric keys (topic keys and their node synonyms), with Kafka's
/// messages. Not enforced: `segment.bytes` at least 1 MiB (Kafka 4.0), which Strata leaves
/// lower so that tests can roll small segments (docs/configs.md).
fn check_range(key: &str, n: f64) -> Result<(), String> {
    let at_least = |min: f64| {
        if n < min {
            Err(format!("Value must be at least {min}"))
        } else {
            Ok(())
        }
    };
    let between = |min: f64, max: f64| {
        at_least(min)?;
        if n > max {
            return Err(format!("Value must be no more than {max}"));
        }
        Ok(())
    };
    match key {
        "compression.gzip.level" if n != -1.0 && !(1.0..=9.0).contains(&n) => {
            Err("Value must be between 1 and 9 or equal to -1".into())
        }
        "compression.lz4.level" => between(1.0, 17.0),
        "strata.feature.transaction.version" => between(0.0, 2.0),
        "compression.zstd.level" => between(-131072.0, 22.0),
        "delete.retention.ms"
        | "log.cleaner.delete.retention.ms"
        | "file.delete.delay.ms"
        | "log.segment.delete.delay.ms"
        | "flush.ms"
        | "index.interval.bytes"
        | "log.index.interval.bytes"
        | "max.message.bytes"
        | "message.max.bytes"
        | "message.timestamp.after.max.ms"
        | "log.message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "log.message.timestamp.before.max.ms"
        | "min.compaction.lag.ms"
        | "log.cleaner.min.compaction.lag.ms"
        | "segment.jitter.ms"
        | "log.roll.jitter.ms" => at_least(0.0),
        "flush.messages" | "max.compaction.lag.ms" | "log.cleaner.max.compaction.lag.ms" => {
            at_least(1.0)
        }
        "min.insync.replicas" | "segment.ms" | "log.roll.ms" => at_least(1.0),
        "local.retention.ms" | "local.retention.bytes" => at_least(-2.0),
        "retention.ms" => at_least(-1.0),
        "segment.index.bytes" => at_least(4.0),
        "min.cleanable.dirty.ratio" | "log.cleaner.min.cleanable.ratio" => between(0.0, 1.0),
        _ => Ok(()),
    }
}

/// `compression.type` and the levels of its codec.
fn parse_compression_type(v: &str) -> Option<fn(i32, i32, i32) -> BrokerCompression> {
    Some(match v {
        "producer" => |_, _, _| BrokerCompression::Producer,
        "uncompressed" => |_, _, _| BrokerCompression::Uncompressed,
        "gzip" => |level, _, _| BrokerCompression::Gzip { level },
        "snappy" => |_, _, _| BrokerCompression::Snappy,
        "lz4" => |_, level, _| BrokerCompression::Lz4 { level },
        "zstd" => |_, _, level| BrokerCompression::Zstd { level },
        _ => return None,
    })
}

fn parse_cleanup_policy(v: &str) -> Result<CleanupPolicy, String> {
    let mut compact = false;
    let mut delete = false;
    for p in v.split(',').map(str::trim) {
        match p {
            "compact" => compact = true,
            "delete" => delete = true,
            _ => return Err("expected delete, compact, or compact,delete".into()),
        }
    }
    match (compact, delete) {
        (true, true) => Ok(CleanupPolicy::CompactDelete),
        (true, false) => Ok(CleanupPolicy::Compact),
        (false, true) => Ok(CleanupPolicy::Delete),
        (false, false) => Err("empty cleanup.policy".into()),
    }
}

fn parse_timestamp_type(v: &str) -> Result<TimestampType, String> {
    match v {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err("expected CreateTime or LogAppendTime".into()),
    }
}

/// A listener parsed from `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            self.host.as_str()
        };
        format!("{host}:{}", self.port).parse().or_else(|_| {
            use std::net::ToSocketAddrs;
            (host, self.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ConfigError::InvalidValue {
                    key: "listeners".into(),
                    value: format!("{host}:{}", self.port),
                    reason: "cannot resolve host".into(),
                })
        })
    }
}

fn parse_listeners(key: &str, v: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: key.into(),
            value: item.into(),
            reason: reason.into(),
        };
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| invalid("expected NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected NAME://host:port"))?;
        let port: u16 = port.parse().map_err(|_| invalid("bad port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        out.push(Listener {
            name: name.to_string(),
            host,
            port,
        });
    }
    Ok(out)
}

/// The effective node config: every known key with its value and source.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    values: BTreeMap<&'static str, (String, ConfigSource)>,
    /// `listener.name.<name>.<key>` overrides, by full key (see [`NodeConfig::listener_get`]).
    listener_values: BTreeMap<String, (String, ConfigSource)>,
    /// Things worth a log line that did not stop the load.
    pub warnings: Vec<String>,
}

impl NodeConfig {
    /// Loads the config: defaults, then `file`, then the environment, then `sets`.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        sets: &[(String, String)],
    ) -> Result<NodeConfig, ConfigError> {
        let mut cfg = NodeConfig::defaults();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            cfg.apply_toml(path, &text)?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("STRATA_") else {
                continue;
            };
            // Reserved for the process itself (log filter), not node config.
            if rest == "LOG" {
                continue;
            }
            // Other tools share the prefix (STRATA_BIN in scripts): an unknown variable is named
            // in a warning, not fatal as an unknown key in a file or flag is.
            match NODE_KEYS
                .iter()
                .find(|k| k.name.to_ascii_uppercase().replace('.', "_") == rest)
            {
                Some(key) => cfg.set(key.name, value, ConfigSource::Env)?,
                None => cfg.warnings.push(format!(
                    "ignoring environment variable {name}: it names no config key"
                )),
            }
        }
        for (key, value) in sets {
            cfg.set(key, value, ConfigSource::Flag)?;
        }
        cfg.check()?;
        Ok(cfg)
    }

    pub fn defaults() -> NodeConfig {
        let values = NODE_KEYS
            .iter()
            .map(|k| (k.name, (k.default.to_string(), ConfigSource::Default)))
            .collect();
        NodeConfig {
            values,
            listener_values: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    fn apply_toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                path: path.into(),
                message: e.to_string(),
            })?;
        let mut flat = Vec::new();
        flatten_toml("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value, ConfigSource::File)?;
        }
        Ok(())
    }

    /// Sets one key, validating the value.
    pub fn set(&mut self, key: &str, value: &str, source: ConfigSource) -> Result<(), ConfigError> {
        if self.set_listener_override(key, value, source)? {
            return Ok(());
        }
        let def = node_key(key).ok_or_else(|| ConfigError::UnknownKey {
            key: key.to_string(),
            source_name: source.to_string(),
        })?;
        let canonical = validate_value(def.name, def.kind, value)?;
        self.values.insert(def.name, (canonical, source));
        Ok(())
    }

    /// Cross-key checks that single values cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        self.check_listeners()?;
        self.http_listener()?;
        if self.get_i32("node.id") < 0 {
            return Err(ConfigError::InvalidValue {
                key: "node.id".into(),
                value: self.get("node.id").into(),
                reason: "must be >= 0".into(),
            });
        }
        if self.log_dirs().is_empty() {
            return Err(ConfigError::InvalidValue {
                key: "log.dirs".into(),
                value: String::new(),
                reason: "no directory".into(),
            });
        }
        self.disk_pressure()?;
        Ok(())
    }

    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(|(v, _)| v.as_str()).unwrap_or("")
    }

    pub fn source(&self, key: &str) -> ConfigSource {
        self.values
            .get(key)
            .map(|(_, s)| *s)
            .unwrap_or(ConfigSource::Default)
    }

    // Values were validated against their kind when set, so these parses cannot fail; the
    // fallbacks only keep the accessors total.
    pub fn get_i32(&self, key: &str) -> i32 {
        self.get(key).parse().unwrap_or_default()
    }

    pub fn get_i64(&self, key: &str) -> i64 {
        self.get(key).parse().unwrap_or_default()
    }

    pub fn get_bool(&self, key: &str) -> bool {
        self.get(key) == "true"
    }

    /// Every key with its value and source, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str, ConfigSource)> {
        self.values.iter().map(|(k, (v, s))| (*k, v.as_str(), *s))
    }

    /// The effective config as TOML, for `strata serve --print-config`; passwords are
    /// `[hidden]`.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (key, value, source) in self.entries() {
            if is_sensitive(key) && !value.is_empty() {
                out.push_str(&format!("\"{key}\" = \"[hidden]\"  # {source}\n"));
                continue;
            }
            let def = node_key(key).map(|d| d.kind).unwrap_or(ConfigKind::String);
            let rendered = match def {
                ConfigKind::Bool | ConfigKind::Int | ConfigKind::Long | ConfigKind::Double => {
                    value.to_string()
                }
                ConfigKind::List => {
                    let items: Vec<String> = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| format!("{s:?}"))
                        .collect();
                    format!("[{}]", items.join(", "))
                }
                ConfigKind::String => format!("{value:?}"),
            };
            out.push_str(&format!("\"{key}\" = {rendered}  # {source}\n"));
        }
        for (key, value, source) in self.listener_overrides() {
            // Credentials are printed as Kafka logs its password configs.
            let value = if is_sensitive(key) { "[hidden]" } else { value };
            out.push_str(&format!("\"{key}\" = {value:?}  # {source}\n"));
        }
        out
    }

    pub fn node_id(&self) -> BrokerId {
        BrokerId(self.get_i32("node.id"))
    }

    pub fn roles(&self) -> Vec<String> {
        self.get("process.roles")
            .split(',')
            .map(str::to_string)
            .collect()
    }

    pub fn log_dirs(&self) -> Vec<PathBuf> {
        self.get("log.dirs")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    pub fn listeners(&self) -> Result<Vec<Listener>, ConfigError> {
        parse_listeners("listeners", self.get("listeners"))
    }

    pub fn http_listener(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let v = self.get("http.listener");
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| ConfigError::InvalidValue {
            key: "http.listener".into(),
            value: v.into(),
            reason: "expected host:port".into(),
        })
    }

    pub fn flush_uses_fsync(&self) -> bool {
        self.get("log.flush.policy") == "fsync"
    }
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_toml(&key, v, out);
            }
        }
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), parts.join(",")));
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// A topic's config overrides (only keys set explicitly), validated against [`TOPIC_KEYS`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Validates one key and value, returning the canonical value.
    pub fn validate(key: &str, value: &str) -> Result<String, ConfigError> {
        let def = topic_key(key).ok_or_else(|| ConfigError::UnknownTopicConfig {
            key: key.to_string(),
        })?;
        validate_value(def.name, def.kind, value)
    }

    /// The effective value of a topic key: the override, else the node's default.
    pub fn effective<'a>(&'a self, key: &str, node: &'a NodeConfig) -> (&'a str, bool) {
        if let Some(v) = self.overrides.get(key) {
            return (v.as_str(), true);
        }
        match topic_key(key) {
            Some(d) if d.node_key.is_empty() => (d.default, false),
            d => (node.get(d.map_or("", |d| d.node_key)), false),
        }
    }

    /// Resolves the storage engine's config for this topic.
    pub fn log_config(&self, node: &NodeConfig) -> LogConfig {
        let s = |k: &str| self.effective(k, node).0.to_string();
        let i = |k: &str| s(k).parse::<i64>().unwrap_or_default();
        let flush_policy = if node.flush_uses_fsync() {
            FlushPolicy::GroupCommit
        } else {
            FlushPolicy::Interval {
                messages: i("flush.messages").max(1) as u64,
                ms: i("flush.ms").max(1) as u64,
            }
        };
        let cleanup_policy =
            parse_cleanup_policy(&s("cleanup.policy")).unwrap_or(CleanupPolicy::Delete);
        // A compacted topic is tiered only when the topic itself says so: the broker-wide
        // default (log.remote.storage.default) predates tiering for compacted topics.
        let (remote, remote_set) = self.effective("remote.storage.enable", node);
        let remote_storage_enable = remote == "true" && (remote_set || !cleanup_policy.compacts());
        LogConfig {
            segment_bytes: i("segment.bytes").max(1) as u64,
            segment_ms: i("segment.ms"),
            segment_index_bytes: i("segment.index.bytes").max(8) as u32,
            index_interval_bytes: i("index.interval.bytes").max(0) as u32,
            retention_ms: i("retention.ms"),
            retention_bytes: i("retention.bytes"),
            cleanup_policy,
            delete_retention_ms: i("delete.retention.ms"),
            min_cleanable_dirty_ratio: s("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            min_compaction_lag_ms: i("min.compaction.lag.ms"),
            max_message_bytes: i("max.message.bytes").max(0) as u32,
            timestamp_type: parse_timestamp_type(&s("message.timestamp.type"))
                .unwrap_or(TimestampType::CreateTime),
            message_timestamp_before_max_ms: i("message.timestamp.before.max.ms").max(0),
            message_timestamp_after_max_ms: i("message.timestamp.after.max.ms").max(0),
            compression: parse_compression_type(&s("compression.type")).map_or(
                BrokerCompression::Producer,
                |make| {
                    make(
                        i("compression.gzip.level") as i32,
                        i("compression.lz4.level") as i32,
                        i("compression.zstd.level") as i32,
                    )
                },
            ),
            flush_policy,
            file_delete_delay_ms: i("file.delete.delay.ms"),
            remote_storage_enable,
            local_retention_ms: i("local.retention.ms"),
            local_retention_bytes: i("local.retention.bytes"),
            preallocate_bytes: node.get_i64("log.preallocate.bytes").max(0) as u64,
        }
    }

    /// Every topic key with its effective value, whether it is an override, and its kind.
    pub fn describe<'a>(
        &'a self,
        node: &'a NodeConfig,
    ) -> Vec<(&'static str, String, bool, ConfigKind, &'static str)> {
        TOPIC_KEYS
            .iter()
            .map(|d| {
                let (v, over) = self.effective(d.name, node);
                (d.name, v.to_string(), over, d.kind, d.doc)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flag_over_env_over_file_over_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "node.id = 3\n\"num.partitions\" = 4\n[log]\ndirs = \"/srv/a\"\n",
        )
        .expect("write");
        let env = vec![("STRATA_NUM_PARTITIONS".to_string(), "5".to_string())];
        let sets = vec![("log.dirs".to_string(), "/srv/b".to_string())];
        let cfg = NodeConfig::load(Some(&path), &env, &sets).expect("load");
        assert_eq!(cfg.get("node.id"), "3");
        assert_eq!(cfg.source("node.id"), ConfigSource::File);
        assert_eq!(cfg.get("num.partitions"), "5");
        assert_eq!(cfg.source("num.partitions"), ConfigSource::Env);
        assert_eq!(cfg.log_dirs(), vec![PathBuf::from("/srv/b")]);
        assert_eq!(cfg.get("socket.request.max.bytes"), "104857600");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = NodeConfig::load(None, &[], &[("no.such.key".into(), "1".into())]).unwrap_err();
        assert!(err.to_string().contains("no.such.key"), "{err}");
        let err = NodeConfig::load(None, &[], &[("node.id".into(), "x".into())]).unwrap_err();
        assert!(err.to_string().contains("node.id"), "{err}");
        let cfg = NodeConfig::load(None, &[("STRATA_NOPE".into(), "1".into())], &[]).expect("load");
        assert!(
            cfg.warnings.iter().any(|w| w.contains("STRATA_NOPE")),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn topic_overrides_fall_back_to_node_defaults() {
        let node = NodeConfig::load(None, &[], &[("log.retention.ms".into(), "1000".into())])
            .expect("load");
        let mut topic = TopicConfig::default();
        topic.overrides.insert(
            "segment.bytes".into(),
            TopicConfig::validate("segment.bytes", "2048").expect("valid"),
        );
        topic.overrides.insert(
            "cleanup.policy".into(),
            TopicConfig::validate("cleanup.policy", "compact, delete").expect("valid"),
        );
        let lc = topic.log_config(&node);
        assert_eq!(lc.segment_bytes, 2048);
        assert_eq!(lc.retention_ms, 1000);
        assert_eq!(lc.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(lc.flush_policy, FlushPolicy::GroupCommit);
        assert!(TopicConfig::validate("retention.ms", "soon").is_err());
        assert!(TopicConfig::validate("bogus", "1").is_err());
    }
}
