//! Kafka's connection quotas beside `max.connections`: `max.connections.per.ip` (with
//! `max.connections.per.ip.overrides`), which closes a connection over its address's limit, and
//! `max.connection.creation.rate` (broker-wide, and per listener with
//! `listener.name.<name>.max.connection.creation.rate`), which delays accepting connections
//! that arrive faster than the rate, as Kafka's acceptor does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{ConfigError, NodeConfig};

/// Parses `max.connections.per.ip.overrides`: `host:count,...`, a host being an IP address or
/// a name (resolved now; every address it resolves to gets the count).
pub fn parse_ip_overrides(value: &str) -> Result<HashMap<IpAddr, usize>, ConfigError> {
    let mut out = HashMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: "max.connections.per.ip.overrides".into(),
            value: item.into(),
            reason: reason.into(),
        };
        let (host, count) = item
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:count"))?;
        let count: usize = count.trim().parse().map_err(|_| invalid("bad count"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                out.insert(ip, count);
            }
            Err(_) => {
                use std::net::ToSocketAddrs;
                let addrs = (host, 0)
                    .to_socket_addrs()
                    .map_err(|e| invalid(&format!("cannot resolve {host}: {e}")))?;
                for a in addrs {
                    out.insert(a.ip(), count);
                }
            }
        }
    }
    Ok(out)
}

/// Open connections per client address, bounded by `max.connections.per.ip`.
#[derive(Debug)]
pub struct PerIpLimits {
    max_per_ip: usize,
    overrides: HashMap<IpAddr, usize>,
    // Short sections (a map update), never held across an await.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct IpSlot {
    limits: Arc<PerIpLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerIpLimits {
    pub fn new(max_per_ip: usize, overrides: HashMap<IpAddr, usize>) -> PerIpLimits {
        PerIpLimits {
            max_per_ip,
            overrides,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_config(node: &NodeConfig) -> Result<PerIpLimits, ConfigError> {
        Ok(PerIpLimits::new(
            node.get_i32("max.connections.per.ip").max(0) as usize,
            parse_ip_overrides(node.get("max.connections.per.ip.overrides"))?,
        ))
    }

    /// The limit of `ip`.
    pub fn limit(&self, ip: IpAddr) -> usize {
        self.overrides.get(&ip).copied().unwrap_or(self.max_per_ip)
    }

    /// Counts a new connection from `ip`, or `Err(limit)` when `ip` is at its limit.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, usize> {
        let limit = self.limit(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&ip);
            }
            return Err(limit);
        }
        *n += 1;
        Ok(IpSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// A connection creation rate, as the generic cell rate algorithm: connections are admitted
/// `1 / rate` apart on average, with a burst of one second's worth; one that comes sooner
/// waits. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct CreationRate {
    interval: Duration,
    burst: Duration,
    /// When the next connection would be due if connections came evenly spaced.
    due: Option<Instant>,
}

impl CreationRate {
    /// `None` for an unbounded rate (Kafka's default, `Int.MaxValue`).
    pub fn new(per_second: i64) -> Option<CreationRate> {
        if per_second <= 0 || per_second >= i64::from(i32::MAX) {
            return None;
        }
        let interval = Duration::from_secs(1) / per_second as u32;
        Some(CreationRate {
            interval,
            burst: Duration::from_secs(1).saturating_sub(interval),
            due: None,
        })
    }

    /// Admits one connection arriving at `now`; returns how long it must wait first.
    pub fn admit(&mut self, now: Instant) -> Duration {
        let due = self.due.map_or(now, |d| d.max(now));
        self.due = Some(due + self.interval);
        (due - now).saturating_sub(self.burst)
    }
}

/// A rate shared by the listeners' accept loops (the broker-wide one).
pub type SharedCreationRate = Arc<Mutex<Option<CreationRate>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_admits_a_seconds_burst_then_spaces_connections() {
        let mut r = CreationRate::new(10).expect("bounded");
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(r.admit(t0), Duration::ZERO, "connection {i} of the burst");
        }
        assert_eq!(r.admit(t0), Duration::from_millis(100));
        assert_eq!(r.admit(t0), Duration::from_millis(200));
        // After a quiet second the burst is back.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(r.admit(later), Duration::ZERO);
        assert!(CreationRate::new(i64::from(i32::MAX)).is_none());
    }

    #[test]
    fn per_ip_limits_count_open_connections_with_overrides() {
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.7".parse().expect("ip");
        let limits = Arc::new(PerIpLimits::new(
            2,
            parse_ip_overrides("10.0.0.7:0, localhost:3").expect("overrides"),
        ));
        assert_eq!(limits.limit(local), 3);
        assert_eq!(limits.try_open(other).map(|_| ()), Err(0));
        let slots: Vec<_> = (0..3)
            .map(|_| limits.try_open(local).expect("under the limit"))
            .collect();
        assert_eq!(limits.try_open(local).map(|_| ()), Err(3));
        drop(slots);
        assert!(limits.try_open(local).is_ok());
        assert!(parse_ip_overrides("nocount").is_err());
        assert!(parse_ip_overrides("1.2.3.4:x").is_err());
    }
}
