//! Broker liveness: the [`BrokerHeartbeatManager`] keeps what the active controller observed
//! about brokers beyond the image (heartbeats, closed heartbeat connections, controlled
//! shutdowns), and [`decide_fencing`] turns that, the image and the time into the brokers to
//! fence and unfence.
//!
//! A broker heartbeats over one connection it keeps open to the active controller.
//! The controller fences a broker when
//! - that connection closed and no heartbeat followed within `broker.session.reconnect.grace.ms`
//!   (the broker's process died: the kernel closes its sockets; this is the fast path),
//! - or it has not heartbeated for `broker.session.timeout.ms` (silent failures: a network
//!   partition, a frozen machine),
//! - or, right after this node became the active controller (it inherits no sessions), it has
//!   not heartbeated within the election grace (the larger of the reconnect grace and
//!   `broker.heartbeat.interval.ms`): live brokers have been failing heartbeats since the old
//!   controller stopped answering, so they retry at once and reach the new one as soon as Raft
//!   names it;
//! - or, right after this node became the active controller, the previous active controller's
//!   controller port refused a connection: in a combined node that process is dead (a live
//!   one, or one merely cut off, accepts or times out), and so is its broker, which need not be
//!   waited for through the election grace.
//!
//! A broker that registers during this controller's term (or registers again, as a new
//! incarnation) starts a fresh session then: it is fenced if it has not heartbeated within
//! `broker.session.timeout.ms` of registering, and heartbeats of an earlier incarnation no
//! longer count.
//!
//! A fenced broker that heartbeats again is unfenced, unless it is in controlled shutdown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::elections::Liveness;
use super::image::{BrokerRegistration, MetadataImage};
use super::network::ConnectionId;
use super::settings::ControllerSettings;
use crate::model::{BrokerId, TopicPartition};

/// The timeouts of a broker session, from the controller settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionTimeouts {
    /// `broker.session.timeout.ms`.
    pub session: Duration,
    /// `broker.session.reconnect.grace.ms`.
    pub reconnect_grace: Duration,
    /// How long a broker inherited from the previous controller may take to heartbeat: the
    /// larger of the reconnect grace and `broker.heartbeat.interval.ms`.
    pub election_grace: Duration,
}

impl SessionTimeouts {
    pub(super) fn from_settings(settings: &ControllerSettings) -> SessionTimeouts {
        SessionTimeouts {
            session: settings.session_timeout,
            reconnect_grace: settings.reconnect_grace,
            election_grace: settings
                .reconnect_grace
                .max(settings.broker_heartbeat_interval),
        }
    }
}

/// What the active controller knows about brokers beyond the image. Reset when this node
/// becomes the active controller ([`BrokerHeartbeatManager::begin_term`]): every broker gets a
/// fresh session.
#[derive(Debug)]
pub(super) struct BrokerHeartbeatManager {
    timeouts: SessionTimeouts,
    /// Last heartbeat seen by this node while it was the active controller, with the term.
    last_seen: HashMap<BrokerId, (Instant, u64)>,
    /// The connection each broker incarnation last heartbeated on.
    heartbeat_conns: HashMap<ConnectionId, (BrokerId, uuid::Uuid)>,
    /// Brokers whose heartbeat connection closed with no heartbeat since: when, the
    /// incarnation that connection belonged to (a broker that registered again is not it), and
    /// the term.
    disconnected: HashMap<BrokerId, (Instant, uuid::Uuid, u64)>,
    /// The incarnation of each broker this controller has seen in the image, since when, and
    /// whether it was inherited from the previous controller (registered before this term).
    incarnations: HashMap<BrokerId, (uuid::Uuid, Instant, bool)>,
    /// Partitions each broker reported in an offline log dir (its last heartbeat's list).
    offline_replicas: BTreeMap<BrokerId, BTreeSet<TopicPartition>>,
    /// Brokers in controlled shutdown, with the incarnation that asked.
    draining: BTreeMap<BrokerId, uuid::Uuid>,
    /// The previous active controller, when its controller port refused a connection after
    /// this node took over: its broker incarnation then, and the term.
    dead_controllers: HashMap<BrokerId, (uuid::Uuid, u64)>,
    leader_term: Option<u64>,
    leader_since: Option<Instant>,
}

impl BrokerHeartbeatManager {
    pub(super) fn new(settings: &ControllerSettings) -> BrokerHeartbeatManager {
        BrokerHeartbeatManager {
            timeouts: SessionTimeouts::from_settings(settings),
            last_seen: HashMap::new(),
            heartbeat_conns: HashMap::new(),
            disconnected: HashMap::new(),
            incarnations: HashMap::new(),
            draining: BTreeMap::new(),
            offline_replicas: BTreeMap::new(),
            dead_controllers: HashMap::new(),
            leader_term: None,
            leader_since: None,
        }
    }

    /// This node is not the active controller (any more): what it observed as one no longer
    /// holds.
    pub(super) fn step_down(&mut self) {
        self.leader_term = None;
        self.draining.clear();
        self.disconnected.clear();
        self.incarnations.clear();
        self.dead_controllers.clear();
    }

    /// This node is the active controller in `term`. On a new term every broker in `image`
    /// gets a fresh session, inherited from the previous controller; heartbeats and closed
    /// heartbeat connections already seen in this term (before the duties noticed) count.
    /// Returns whether the term is new.
    pub(super) fn begin_term(&mut self, term: u64, image: &MetadataImage, now: Instant) -> bool {
        if self.leader_term == Some(term) {
            return false;
        }
        self.leader_term = Some(term);
        self.last_seen.retain(|_, (_, t)| *t == term);
        self.disconnected.retain(|_, (_, _, t)| *t == term);
        self.dead_controllers.retain(|_, (_, t)| *t == term);
        self.incarnations = image
            .brokers
            .values()
            .map(|b| (b.broker_id, (b.incarnation, now, true)))
            .collect();
        self.leader_since = Some(now);
        // Learnt again from the brokers' next heartbeats.
        self.offline_replicas.clear();
        true
    }

    /// A heartbeat from `broker_id`, on controller connection `conn` (`None`: from this node),
    /// while this node is the active controller in `term`.
    pub(super) fn record_heartbeat(
        &mut self,
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
        conn: Option<ConnectionId>,
        now: Instant,
        term: u64,
    ) {
        self.last_seen.insert(broker_id, (now, term));
        self.disconnected.remove(&broker_id);
        self.dead_controllers.remove(&broker_id);
        if let Some(conn) = conn {
            self.heartbeat_conns.insert(conn, (broker_id, incarnation));
        }
    }

    pub(super) fn offline_replicas(&self) -> BTreeMap<BrokerId, BTreeSet<TopicPartition>> {
        self.offline_replicas.clone()
    }

    /// The partitions `broker_id` holds in offline log dirs, as its latest heartbeat says.
    pub(super) fn record_offline_replicas(
        &mut self,
        broker_id: BrokerId,
        partitions: Vec<TopicPartition>,
    ) {
        if partitions.is_empty() {
            self.offline_replicas.remove(&broker_id);
        } else {
            self.offline_replicas
                .insert(broker_id, partitions.into_iter().collect());
        }
    }

    /// Controller connection `conn` closed: the broker incarnation that heartbeated on it, if
    /// one did.
    pub(super) fn forget_connection(
        &mut self,
        conn: ConnectionId,
    ) -> Option<(BrokerId, uuid::Uuid)> {
        self.heartbeat_conns.remove(&conn)
    }

    /// The heartbeat connection of `broker_id`'s `incarnation` closed at `now`, in `term`.
    /// Returns false when its heartbeats already come on another connection: nothing was lost.
    pub(super) fn heartbeat_connection_closed(
        &mut self,
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
        now: Instant,
        term: u64,
    ) -> bool {
        if self
            .heartbeat_conns
            .values()
            .any(|(b, i)| *b == broker_id && *i == incarnation)
        {
            return false;
        }
        self.disconnected
            .insert(broker_id, (now, incarnation, term));
        true
    }

    /// `broker_id`'s `incarnation` asked for a controlled shutdown.
    pub(super) fn begin_draining(&mut self, broker_id: BrokerId, incarnation: uuid::Uuid) {
        self.draining.insert(broker_id, incarnation);
    }

    /// The brokers in controlled shutdown.
    pub(super) fn draining_brokers(&self) -> BTreeSet<BrokerId> {
        self.draining.keys().copied().collect()
    }

    /// The previous active controller's port refused a connection after this node took over in
    /// `term`: its broker, at `incarnation`, is dead.
    pub(super) fn controller_port_refused(
        &mut self,
        broker_id: BrokerId,
        incarnation: uuid::Uuid,
        term: u64,
    ) {
        self.dead_controllers.insert(broker_id, (incarnation, term));
    }

    /// Brings the sessions up to date with the registrations in `image`: a draining broker that
    /// registered again (a new incarnation) is back, and a broker that registered during this
    /// term starts its session at `now`, without the heartbeats of an earlier incarnation.
    /// [`decide_fencing`] decides the same with or without this; it makes the session start
    /// stick for later decisions.
    pub(super) fn track_registrations(&mut self, image: &MetadataImage, now: Instant) {
        self.draining
            .retain(|b, inc| image.brokers.get(b).is_some_and(|r| r.incarnation == *inc));
        for b in image.brokers.values() {
            let known = self.incarnations.get(&b.broker_id).copied();
            if known.is_some_and(|(inc, _, _)| inc == b.incarnation) {
                continue;
            }
            self.incarnations
                .insert(b.broker_id, (b.incarnation, now, false));
            if known.is_some() {
                self.last_seen.remove(&b.broker_id);
            }
        }
    }

    /// The session of `b`'s current incarnation as of `now`.
    fn session_of(&self, b: &BrokerRegistration, now: Instant) -> Session {
        let last_heartbeat = self.last_seen.get(&b.broker_id).map(|(t, _)| *t);
        match self.incarnations.get(&b.broker_id) {
            Some((inc, at, inherited)) if *inc == b.incarnation => Session {
                registered: *at,
                inherited: *inherited,
                last_heartbeat,
            },
            // Registered again during this term: its session starts now, and heartbeats of
            // the earlier incarnation no longer count.
            Some(_) => Session {
                registered: now,
                inherited: false,
                last_heartbeat: None,
            },
            // Registered during this term: its session starts now.
            None => Session {
                registered: now,
                inherited: false,
                last_heartbeat,
            },
        }
    }
}

/// One broker incarnation's session with this active controller.
#[derive(Debug, Clone, Copy)]
struct Session {
    /// When this controller first saw this incarnation registered.
    registered: Instant,
    /// Registered before this controller's term.
    inherited: bool,
    last_heartbeat: Option<Instant>,
}

/// Why the active controller fenced a broker (the rules in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FenceRule {
    /// No heartbeat for `broker.session.timeout.ms`.
    SessionTimeout,
    /// Its heartbeat connection closed and no heartbeat followed within the reconnect grace.
    ConnectionClosed,
    /// Inherited from the previous controller and silent through the election grace.
    ElectionGrace,
    /// The previous active controller, whose controller port refused a connection.
    ControllerPortRefused,
}

impl FenceRule {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            FenceRule::SessionTimeout => "session_timeout",
            FenceRule::ConnectionClosed => "connection_closed",
            FenceRule::ElectionGrace => "election_grace",
            FenceRule::ControllerPortRefused => "controller_port_refused",
        }
    }
}

/// What [`decide_fencing`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FencingDecision {
    /// Unfenced brokers to fence, each with the rule that fences it.
    pub fence: BTreeMap<BrokerId, FenceRule>,
    /// Fenced brokers heartbeating again.
    pub unfence: BTreeSet<BrokerId>,
    /// Brokers in controlled shutdown (their current incarnation asked).
    pub draining: BTreeSet<BrokerId>,
}

impl FencingDecision {
    /// The observation [`super::elections::decide_broker_liveness`] elects leaders from.
    pub(super) fn liveness(&self) -> Liveness {
        Liveness {
            fence: self.fence.keys().copied().collect(),
            unfence: self.unfence.clone(),
            draining: self.draining.clone(),
            offline_replicas: BTreeMap::new(),
        }
    }
}

/// Which brokers of `image` to fence and unfence at `now`, given the heartbeat `sessions` of
/// this active controller (the rules in the module doc). A broker already fenced is never
/// fenced again; it is unfenced once its current incarnation heartbeats within its session,
/// with no closed heartbeat connection or refused controller port since, and is not draining.
pub(super) fn decide_fencing(
    sessions: &BrokerHeartbeatManager,
    image: &MetadataImage,
    now: Instant,
) -> FencingDecision {
    let timeouts = sessions.timeouts;
    let since = sessions.leader_since.unwrap_or(now);
    let draining: BTreeSet<BrokerId> = sessions
        .draining
        .iter()
        .filter(|(b, inc)| image.brokers.get(b).is_some_and(|r| r.incarnation == **inc))
        .map(|(b, _)| *b)
        .collect();
    let mut decision = FencingDecision {
        draining,
        ..Default::default()
    };
    for b in image.brokers.values() {
        let session = sessions.session_of(b, now);
        let expired = match session.last_heartbeat {
            Some(t) => {
                (now.duration_since(t) >= timeouts.session).then_some(FenceRule::SessionTimeout)
            }
            // Inherited from the previous controller: live brokers reach a new one within the
            // election grace.
            None if session.inherited => (now.duration_since(since) >= timeouts.election_grace)
                .then_some(FenceRule::ElectionGrace),
            // Registered during this term: it starts heartbeating once its logs are open,
            // within its session.
            None => (now.duration_since(session.registered) >= timeouts.session)
                .then_some(FenceRule::SessionTimeout),
        };
        // Its heartbeat connection closed, and no heartbeat has come since.
        let closed_at = sessions
            .disconnected
            .get(&b.broker_id)
            .filter(|(_, inc, _)| *inc == b.incarnation)
            .map(|(t, _, _)| *t);
        let gone = closed_at
            .is_some_and(|t| now.duration_since(t) >= timeouts.reconnect_grace)
            .then_some(FenceRule::ConnectionClosed);
        // The previous active controller, whose port refused a connection.
        let dead = sessions
            .dead_controllers
            .get(&b.broker_id)
            .is_some_and(|(inc, _)| *inc == b.incarnation)
            .then_some(FenceRule::ControllerPortRefused);
        if let (false, Some(rule)) = (b.fenced, dead.or(gone).or(expired)) {
            decision.fence.insert(b.broker_id, rule);
        } else if b.fenced
            && closed_at.is_none()
            && dead.is_none()
            && session
                .last_heartbeat
                .is_some_and(|t| now.duration_since(t) < timeouts.session)
            && !decision.draining.contains(&b.broker_id)
        {
            decision.unfence.insert(b.broker_id);
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: u64 = 3;

    fn settings() -> ControllerSettings {
        let mut s = ControllerSettings::single(1);
        s.session_timeout = Duration::from_millis(4000);
        s.reconnect_grace = Duration::from_millis(300);
        s.broker_heartbeat_interval = Duration::from_millis(500);
        s
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn broker(id: i32, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            broker_id: BrokerId(id),
            incarnation: uuid::Uuid::new_v4(),
            host: "localhost".into(),
            port: 9092,
            rack: None,
            fenced,
            endpoints: vec![],
        }
    }

    fn image(brokers: &[BrokerRegistration]) -> MetadataImage {
        MetadataImage {
            brokers: brokers.iter().map(|b| (b.broker_id, b.clone())).collect(),
            ..Default::default()
        }
    }

    /// A manager that became the active controller at `t0` with `image` registered.
    fn leader_at(t0: Instant, image: &MetadataImage) -> BrokerHeartbeatManager {
        let mut m = BrokerHeartbeatManager::new(&settings());
        assert!(m.begin_term(TERM, image, t0));
        m
    }

    fn heartbeat(m: &mut BrokerHeartbeatManager, b: &BrokerRegistration, at: Instant) {
        m.record_heartbeat(b.broker_id, b.incarnation, Some(7), at, TERM);
    }

    #[test]
    fn the_election_grace_is_the_larger_of_reconnect_grace_and_heartbeat_interval() {
        let t = SessionTimeouts::from_settings(&settings());
        assert_eq!(t.election_grace, ms(500));
        let mut s = settings();
        s.reconnect_grace = ms(900);
        assert_eq!(SessionTimeouts::from_settings(&s).election_grace, ms(900));
    }

    #[test]
    fn a_broker_whose_session_expired_is_fenced() {
        let t0 = Instant::now();
        let b = broker(1, false);
        let img = image(&[b.clone()]);
        let mut m = leader_at(t0, &img);
        heartbeat(&mut m, &b, t0 + ms(100));
        let d = decide_fencing(&m, &img, t0 + ms(4100));
        assert_eq!(d.fence, [(b.broker_id, FenceRule::SessionTimeout)].into());
        assert_eq!(d.liveness().fence, [b.broker_id].into());
        assert!(d.unfence.is_empty());
    }

    #[test]
    fn a_broker_with_a_fresh_heartbeat_is_not_fenced() {
        let t0 = Instant::now();
        let b = broker(1, false);
        let img = image(&[b.clone()]);
        let mut m = leader_at(t0, &img);
        heartbeat(&mut m, &b, t0 + ms(100));
        assert_eq!(
            decide_fencing(&m, &img, t0 + ms(4099)),
            FencingDecision::default()
        );
        // Well past the election grace, a broker that keeps heartbeating stays.
        heartbeat(&mut m, &b, t0 + ms(8000));
        assert_eq!(
            decide_fencing(&m, &img, t0 + ms(9000)),
            FencingDecision::default()
        );
    }

    #[test]
    fn an_already_fenced_broker_is_not_fenced_again() {
        let t0 = Instant::now();
        let silent = broker(1, true);
        let closed = broker(2, true);
        let img = image(&[silent.clone(), closed.clone()]);
        let mut m = leader_at(t0, &img);
        heartbeat(&mut m, &closed, t0);
        assert!(m.forget_connection(7).is_some());
        assert!(m.heartbeat_connection_closed(closed.broker_id, closed.incarnation, t0, TERM));
        m.controller_port_refused(silent.broker_id, silent.incarnation, TERM);
        let d = decide_fencing(&m, &img, t0 + ms(10_000));
        assert!(d.fence.is_empty(), "{d:?}");
        assert!(d.unfence.is_empty(), "{d:?}");
    }

    #[test]
    fn an_inherited_broker_not_yet_seen_gets_the_election_grace() {
        let t0 = Instant::now();
        let b = broker(1, false);
        let img = image(&[b.clone()]);
        let m = leader_at(t0, &img);
        // Within the grace (the larger of 300 ms reconnect grace and 500 ms heartbeat
        // interval), counted from when this controller became active.
        assert!(decide_fencing(&m, &img, t0 + ms(499)).fence.is_empty());
        assert_eq!(
            decide_fencing(&m, &img, t0 + ms(500)).fence,
            [(b.broker_id, FenceRule::ElectionGrace)].into()
        );
    }

    #[test]
    fn a_broker_registered_during_the_term_gets_its_session_from_registering() {
        let t0 = Instant::now();
        let old = broker(1, false);
        let mut m = leader_at(t0, &image(&[old.clone()]));
        heartbeat(&mut m, &old, t0);
        // Broker 2 registers at t0 + 1 s; broker 1 registers again (a new incarnation).
        let new = broker(2, false);
        let again = BrokerRegistration {
            incarnation: uuid::Uuid::new_v4(),
            ..old.clone()
        };
        let img = image(&[again.clone(), new.clone()]);
        let registered = t0 + ms(1000);
        m.track_registrations(&img, registered);
        // Not held to the election grace, and the earlier incarnation's heartbeat is gone.
        assert!(decide_fencing(&m, &img, registered + ms(3999))
            .fence
            .is_empty());
        assert_eq!(
            decide_fencing(&m, &img, registered + ms(4000)).fence,
            [
                (again.broker_id, FenceRule::SessionTimeout),
                (new.broker_id, FenceRule::SessionTimeout)
            ]
            .into()
        );
    }

    #[test]
    fn deciding_before_tracking_registrations_decides_the_same() {
        let t0 = Instant::now();
        let old = broker(1, false);
        let mut m = leader_at(t0, &image(&[old.clone()]));
        heartbeat(&mut m, &old, t0);
        let again = BrokerRegistration {
            incarnation: uuid::Uuid::new_v4(),
            ..old
        };
        let img = image(&[again, broker(2, true)]);
        let now = t0 + ms(200);
        let before = decide_fencing(&m, &img, now);
        m.track_registrations(&img, now);
        assert_eq!(decide_fencing(&m, &img, now), before);
    }

    #[test]
    fn a_closed_heartbeat_connection_fences_after_the_reconnect_grace() {
        let t0 = Instant::now();
        let b = broker(1, false);
        let img = image(&[b.clone()]);
        let mut m = leader_at(t0, &img);
        heartbeat(&mut m, &b, t0);
        assert_eq!(m.forget_connection(7), Some((b.broker_id, b.incarnation)));
        assert!(m.heartbeat_connection_closed(b.broker_id, b.incarnation, t0 + ms(10), TERM));
        assert!(decide_fencing(&m, &img, t0 + ms(309)).fence.is_empty());
        assert_eq!(
            decide_fencing(&m, &img, t0 + ms(310)).fence,
            [(b.broker_id, FenceRule::ConnectionClosed)].into()
        );
        // A heartbeat on a new connection cancels it.
        heartbeat(&mut m, &b, t0 + ms(200));
        assert!(decide_fencing(&m, &img, t0 + ms(310)).fence.is_empty());
    }

    #[test]
    fn a_refused_controller_port_fences_at_once() {
        let t0 = Instant::now();
        let b = broker(1, false);
        let img = image(&[b.clone()]);
        let mut m = leader_at(t0, &img);
        m.controller_port_refused(b.broker_id, b.incarnation, TERM);
        assert_eq!(
            decide_fencing(&m, &img, t0).fence,
            [(b.broker_id, FenceRule::ControllerPortRefused)].into()
        );
    }

    #[test]
    fn a_fenced_broker_heartbeating_again_is_unfenced_unless_draining() {
        let t0 = Instant::now();
        let back = broker(1, true);
        let draining = broker(2, true);
        let img = image(&[back.clone(), draining.clone()]);
        let mut m = leader_at(t0, &img);
        heartbeat(&mut m, &back, t0 + ms(100));
        heartbeat(&mut m, &draining, t0 + ms(100));
        m.begin_draining(draining.broker_id, draining.incarnation);
        let d = decide_fencing(&m, &img, t0 + ms(200));
        assert_eq!(d.unfence, [back.broker_id].into());
        assert_eq!(d.draining, [draining.broker_id].into());
        assert!(d.fence.is_empty());
    }
}
