//! [`ControllerSettings`], read from the node config, and [`RaftTimers`], the openraft timers
//! each voter derives from `controller.quorum.election.timeout.ms`.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::BasicNode;

use super::balancer::BalancerConfig;
use super::quorum::{parse_voters, NodeId};
use super::ControllerError;
use crate::config::NodeConfig;

/// The controller's settings, from the node config.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub node_id: NodeId,
    pub voters: BTreeMap<NodeId, BasicNode>,
    /// `process.roles` includes `controller`.
    pub is_voter: bool,
    /// Where to listen for the controller RPC; `None` for a lone voter, which needs no peers.
    pub listen: Option<String>,
    /// How peers reach this node (a learner registers it).
    pub advertised: Option<String>,
    pub election_timeout: Duration,
    pub session_timeout: Duration,
    /// `broker.session.reconnect.grace.ms`.
    pub reconnect_grace: Duration,
    pub broker_heartbeat_interval: Duration,
    /// `strata.balancer.size.report.interval.ms`: how often a broker's heartbeat carries its
    /// replicas' sizes.
    pub replica_sizes_interval: Duration,
    pub unclean_leader_election: bool,
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval: Duration,
    pub leader_imbalance_percent: u32,
    /// The balancer's static settings; the image's dynamic configs override them.
    pub balancer: BalancerConfig,
}

impl ControllerSettings {
    pub fn from_node(node: &NodeConfig) -> Result<ControllerSettings, ControllerError> {
        let node_id = node.node_id().0 as NodeId;
        let voters = parse_voters(node.get("controller.quorum.voters"))?;
        let is_voter = node
            .get("process.roles")
            .split(',')
            .any(|r| r.trim() == "controller");
        if is_voter && !voters.contains_key(&node_id) {
            return Err(ControllerError::InvalidConfig(format!(
                "process.roles includes controller but node {node_id} is not in controller.quorum.voters"
            )));
        }
        let controller_listener = node
            .controller_listener()
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?
            .map(|(l, _)| l);
        let lone_voter = is_voter && voters.len() == 1;
        let listen = match (&controller_listener, lone_voter) {
            (_, true) => None,
            (Some(l), false) => Some(format!(
                "{}:{}",
                if l.host.is_empty() {
                    "0.0.0.0"
                } else {
                    &l.host
                },
                l.port
            )),
            (None, false) => {
                return Err(ControllerError::InvalidConfig(
                    "a node of a multi-node quorum needs a controller listener (controller.listener.names, e.g. CONTROLLER://host:port)".into(),
                ))
            }
        };
        let advertised = if is_voter {
            voters.get(&node_id).map(|n| n.addr.clone())
        } else {
            controller_listener.map(|l| format!("{}:{}", l.host, l.port))
        };
        let ms = |k: &str| Duration::from_millis(node.get_i64(k).max(1) as u64);
        Ok(ControllerSettings {
            node_id,
            voters,
            is_voter,
            listen,
            advertised,
            election_timeout: ms("controller.quorum.election.timeout.ms"),
            session_timeout: ms("broker.session.timeout.ms"),
            reconnect_grace: ms("broker.session.reconnect.grace.ms"),
            broker_heartbeat_interval: ms("broker.heartbeat.interval.ms"),
            replica_sizes_interval: ms("strata.balancer.size.report.interval.ms"),
            unclean_leader_election: node.get("unclean.leader.election.enable") == "true",
            auto_leader_rebalance: node.get("auto.leader.rebalance.enable") == "true",
            leader_imbalance_check_interval: Duration::from_secs(
                node.get_i64("leader.imbalance.check.interval.seconds")
                    .max(1) as u64,
            ),
            leader_imbalance_percent: node
                .get_i64("leader.imbalance.per.broker.percentage")
                .clamp(0, 100) as u32,
            balancer: BalancerConfig::default()
                .with_values(|k| Some(node.get(k)).filter(|v| !v.is_empty())),
        })
    }

    /// A lone voter: `strata serve` with the defaults.
    pub fn single(node_id: NodeId) -> ControllerSettings {
        ControllerSettings {
            node_id,
            voters: [(node_id, BasicNode::new("127.0.0.1:9093"))].into(),
            is_voter: true,
            listen: None,
            advertised: None,
            election_timeout: Duration::from_millis(1000),
            session_timeout: Duration::from_millis(4000),
            reconnect_grace: Duration::from_millis(300),
            broker_heartbeat_interval: Duration::from_millis(500),
            replica_sizes_interval: Duration::from_secs(10),
            unclean_leader_election: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            leader_imbalance_percent: 10,
            balancer: BalancerConfig::default(),
        }
    }
}

/// openraft's timers for one voter, from `controller.quorum.election.timeout.ms` (et).
///
/// openraft 0.9 draws a voter's election timeout once, when the process starts, and a follower
/// stands after the leader's lease (its `election_timeout_max`) plus that timeout, checked on a
/// tick of 1.5 heartbeat intervals. With timeouts drawn at random from one range, two voters
/// may draw nearly the same value and then split every vote between them until one restarts
/// (measured: two splits in a row, 2.2 s of failover). So each voter gets its own slot by rank
/// of node id instead: the voter of rank r of n stands at et/2 + r x et/(2n) after the leader's
/// last heartbeat (0.5 to 0.83 x et for three voters), and consecutive ranks are et/(2n) apart,
/// more than a tick (et/20 x 1.5) plus a vote round trip for up to five voters, so no two
/// stand at once. The leases (et/4 to et/2) all end before the first voter stands.
///
/// A voter that has seen the leader's controller port refuse connections (its process is gone)
/// need not wait for its slot: it may stand as soon as a vote request can win, which is once
/// every voter's lease has ended — voters refuse votes while their lease on the leader runs.
/// That is the longest lease (the last rank's) after the leader's last heartbeat here, plus a
/// heartbeat interval for a heartbeat that reached another voter later than this one, plus one
/// slot per rank among the voters other than the dead leader, so that two voters that both saw
/// the refusal still stand one at a time ([`RaftTimers::early_stand_after`]; 467 ms and 550 ms
/// for three voters and the default 1 s). A voter stands early only while its vote is still the
/// dead leader's and no vote request has reached it since that leader's last heartbeat, so an
/// early candidate never competes with another one; a request that comes too soon is refused
/// by a lease and the candidate retries after its own timeout, as it would have anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RaftTimers {
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
}

impl RaftTimers {
    pub(crate) fn for_voter(election_timeout: Duration, rank: usize, voters: usize) -> RaftTimers {
        let et = (election_timeout.as_millis() as u64).max(40);
        let slot = et / 4 / voters.max(1) as u64;
        let min = et / 4 + rank as u64 * slot;
        RaftTimers {
            election_timeout_min_ms: min,
            election_timeout_max_ms: min + 1,
            heartbeat_interval_ms: (et / 20).max(2),
        }
    }

    /// When a voter that saw the leader's controller port refuse connections stands, after the
    /// leader's last heartbeat: `survivor_rank` is its rank among the voters other than the
    /// leader.
    pub(crate) fn early_stand_after(
        election_timeout: Duration,
        survivor_rank: usize,
        voters: usize,
    ) -> Duration {
        let voters = voters.max(1);
        let last = RaftTimers::for_voter(election_timeout, voters - 1, voters);
        let et = (election_timeout.as_millis() as u64).max(40);
        let slot = et / 4 / voters as u64;
        Duration::from_millis(
            last.election_timeout_max_ms + last.heartbeat_interval_ms + survivor_rank as u64 * slot,
        )
    }

    /// When this voter stands, after the leader's last heartbeat (before the tick rounds it up).
    #[cfg(test)]
    fn stands_after_ms(&self) -> u64 {
        self.election_timeout_max_ms + self.election_timeout_min_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_stand_at_distinct_times_further_apart_than_a_tick() {
        for voters in 1..=5 {
            let timers: Vec<RaftTimers> = (0..voters)
                .map(|r| RaftTimers::for_voter(Duration::from_millis(1000), r, voters))
                .collect();
            let tick = timers[0].heartbeat_interval_ms * 3 / 2;
            for pair in timers.windows(2) {
                let gap = pair[1].stands_after_ms() - pair[0].stands_after_ms();
                assert!(
                    gap > tick + 20,
                    "{voters} voters: gap {gap} ms, tick {tick} ms"
                );
            }
            let first = timers[0].stands_after_ms();
            let last = timers[voters - 1].stands_after_ms();
            assert!(
                (500..=1000).contains(&first) && last <= 1000,
                "{first}..{last}"
            );
            // Every lease has ended before the first voter stands.
            assert!(timers.iter().all(|t| t.election_timeout_max_ms < first));
            assert!(timers
                .iter()
                .all(|t| t.election_timeout_min_ms > t.heartbeat_interval_ms));
        }
    }

    #[test]
    fn early_candidates_stand_after_every_lease_one_at_a_time() {
        let et = Duration::from_millis(1000);
        for voters in 2..=5 {
            let timers: Vec<RaftTimers> = (0..voters)
                .map(|r| RaftTimers::for_voter(et, r, voters))
                .collect();
            let longest_lease = timers.iter().map(|t| t.election_timeout_max_ms).max();
            let beat = timers[0].heartbeat_interval_ms;
            let stands: Vec<u64> = (0..voters - 1)
                .map(|r| RaftTimers::early_stand_after(et, r, voters).as_millis() as u64)
                .collect();
            // Every voter's lease has ended, even one that heard the leader a beat later.
            assert!(stands
                .iter()
                .all(|s| Some(*s) >= longest_lease.map(|l| l + beat)));
            // Survivors a vote round trip apart, and the first no later than any rank's slot.
            assert!(stands.windows(2).all(|w| w[1] - w[0] >= 40), "{stands:?}");
            assert!(stands[0] <= timers[0].stands_after_ms(), "{stands:?}");
        }
        assert_eq!(
            RaftTimers::early_stand_after(et, 0, 3),
            Duration::from_millis(467)
        );
    }
}
