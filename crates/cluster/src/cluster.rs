//! The [`Cluster`] handle: a published snapshot (ring + health) for readers, and the mutable
//! state (members, health machines) its writers — the DNS refresher, the health checker and
//! clients' reports — update under a mutex.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use shoal_hashring::{Member, Ring};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::parse_members;
use crate::health::{HealthMachine, Thresholds, Transition};
use crate::{ClusterConfig, ClusterError, HealthConfig, Node, tasks};

/// A live view of a ring's membership and health. Cheap to clone (all clones share the view);
/// `Send + Sync`. Background tasks (DNS refresh, health checks) stop when the shutdown token
/// passed to [`Cluster::start`] is cancelled or every clone is dropped.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// Counts for gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Current members.
    pub members: usize,
    /// Members currently healthy.
    pub healthy: usize,
}

pub(crate) struct Inner {
    /// What readers see; replaced (never mutated) on every change.
    view: RwLock<Arc<View>>,
    /// What writers change; the view is rebuilt from it while the mutex is held, so views are
    /// published in the order the changes happened.
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    /// False for [`Cluster::fixed`] and `health.enabled = false`: everyone is healthy.
    track_health: bool,
    thresholds: Thresholds,
    replicas: usize,
    /// Whether any member has reported failures pending, so that `report_success` (called on
    /// every successful request) takes no lock in the common case.
    passive_pending: AtomicBool,
}

/// An immutable snapshot.
struct View {
    ring: Ring,
    nodes: HashMap<String, Node>,
    unhealthy: HashSet<String>,
}

impl View {
    fn node(&self, id: &str) -> Node {
        self.nodes
            .get(id)
            .cloned()
            .unwrap_or_else(|| Node::from_id(id.to_owned()))
    }

    fn nodes_of(&self, members: Vec<&Member>) -> Vec<Node> {
        members.into_iter().map(|m| self.node(&m.id)).collect()
    }
}

struct State {
    static_nodes: Vec<Node>,
    /// The last non-empty DNS answer.
    dns_nodes: Vec<Node>,
    members: BTreeMap<String, (Node, HealthMachine)>,
}

impl Cluster {
    /// Starts a cluster: validates `config`, then spawns the DNS refresher (with `dns`) and the
    /// health checker (with `health.enabled`) on the current Tokio runtime; both stop at
    /// `shutdown`. Static members are in the ring at once; DNS members arrive with the first
    /// non-empty answer (until then, with no static members, every route is empty). After
    /// `shutdown` the view stays as it last was.
    pub fn start(config: ClusterConfig, shutdown: CancellationToken) -> Result<Self, ClusterError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClusterError::NoRuntime)?;
        let static_nodes = config.static_nodes()?;
        let client = if config.health.enabled {
            Some(health_client(&config.health)?)
        } else {
            None
        };
        let cluster = Self::build(
            static_nodes,
            config.replicas,
            &config.health,
            config.health.enabled,
        );
        if let Some(client) = client {
            runtime.spawn(tasks::run_checker(
                Arc::downgrade(&cluster.inner),
                client,
                config.health.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(dns) = config.dns {
            runtime.spawn(tasks::run_dns(
                Arc::downgrade(&cluster.inner),
                dns,
                shutdown,
            ));
        }
        Ok(cluster)
    }

    /// A fixed membership with no background tasks in which every member is always healthy
    /// (reports are ignored): for tests and single-node setups. `members` are `host:port` as in
    /// [`ClusterConfig::members`]; an empty list gives an empty ring.
    pub fn fixed(members: Vec<String>, replicas: usize) -> Result<Self, ClusterError> {
        if replicas == 0 {
            return Err(ClusterError::InvalidConfig(
                "replicas must be at least 1".to_owned(),
            ));
        }
        let nodes = parse_members(&members)?;
        Ok(Self::build(
            nodes,
            replicas,
            &HealthConfig::default(),
            false,
        ))
    }

    fn build(
        static_nodes: Vec<Node>,
        replicas: usize,
        health: &HealthConfig,
        track_health: bool,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        let mut state = State {
            static_nodes,
            dns_nodes: Vec::new(),
            members: BTreeMap::new(),
        };
        state.reconcile();
        let inner = Inner {
            view: RwLock::new(Arc::new(View {
                ring: Ring::new([], replicas),
                nodes: HashMap::new(),
                unhealthy: HashSet::new(),
            })),
            state: Mutex::new(state),
            changes,
            track_health,
            thresholds: Thresholds::from(health),
            replicas,
            passive_pending: AtomicBool::new(false),
        };
        {
            let state = inner.state.lock();
            *inner.view.write() = Arc::new(inner.view_of(&state));
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    fn view(&self) -> Arc<View> {
        self.inner.view.read().clone()
    }

    /// The current members, sorted by id.
    pub fn nodes(&self) -> Vec<Node> {
        let view = self.view();
        view.ring
            .members()
            .iter()
            .map(|m| view.node(&m.id))
            .collect()
    }

    /// Every member in rank order for `key`, healthy ones first, then the unhealthy ones (in
    /// rank order too) as a last resort: try them in order and fail over on errors. Empty when
    /// the ring is.
    pub fn route(&self, key: &[u8]) -> Vec<Node> {
        let view = self.view();
        let ranked = view.ring.ranked(key);
        let mut out = Vec::with_capacity(ranked.len());
        let mut last = Vec::new();
        for m in ranked {
            if view.unhealthy.contains(&m.id) {
                last.push(view.node(&m.id));
            } else {
                out.push(view.node(&m.id));
            }
        }
        out.extend(last);
        out
    }

    /// The R owners of `key` by the full ring, ignoring health: who should hold the data.
    pub fn owners(&self, key: &[u8]) -> Vec<Node> {
        let view = self.view();
        view.nodes_of(view.ring.owners(key))
    }

    /// The first R healthy members in rank order for `key` (fewer if fewer are healthy):
    /// placement for new writes.
    pub fn healthy_owners(&self, key: &[u8]) -> Vec<Node> {
        let view = self.view();
        view.nodes_of(
            view.ring
                .healthy_owners(key, |m| !view.unhealthy.contains(&m.id)),
        )
    }

    /// Whether the member `id` is one of the R owners of `key` (ignoring health).
    pub fn is_owner(&self, id: &str, key: &[u8]) -> bool {
        self.view().ring.owns(id, key)
    }

    /// Whether `node` is a current member and healthy.
    pub fn is_healthy(&self, node: &Node) -> bool {
        let view = self.view();
        view.ring.contains(&node.id) && !view.unhealthy.contains(&node.id)
    }

    /// A passive mark: a request to `node` failed (connection error, timeout, 5xx; not a 404).
    /// `health.passive_failures` of them within `health.passive_window`, with no success
    /// reported in between, make it unhealthy until the active checker sees `health.rise`
    /// passes. Ignored for non-members and when health is not tracked.
    pub fn report_failure(&self, node: &Node) {
        if !self.inner.track_health {
            return;
        }
        self.inner.update(|state| {
            let Some((_, machine)) = state.members.get_mut(&node.id) else {
                return false;
            };
            match machine.on_failure(Instant::now(), &self.inner.thresholds) {
                Some(t) => {
                    log_transition(&node.id, t);
                    true
                }
                None => false,
            }
        });
    }

    /// A request to `node` succeeded: clears its pending reported failures (it does not make an
    /// unhealthy member healthy; only active checks do). Cheap when nothing is pending.
    pub fn report_success(&self, node: &Node) {
        if !self.inner.track_health || !self.inner.passive_pending.load(Ordering::Relaxed) {
            return;
        }
        self.inner.update(|state| {
            if let Some((_, machine)) = state.members.get_mut(&node.id) {
                machine.on_success();
            }
            false
        });
    }

    /// Replaces the static members (a config reload, or a test growing and shrinking a ring).
    /// DNS members are kept; newcomers start healthy, leavers lose their health history.
    pub fn set_static_members(&self, members: &[String]) -> Result<(), ClusterError> {
        let nodes = parse_members(members)?;
        self.inner.update(|state| {
            state.static_nodes = nodes;
            state.reconcile()
        });
        Ok(())
    }

    /// [`Cluster::start`] when `config` names members, else an empty ring (every route is
    /// empty): for services where the ring is optional.
    pub fn start_or_empty(
        config: ClusterConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ClusterError> {
        if config.is_configured() {
            Self::start(config, shutdown)
        } else {
            Self::fixed(Vec::new(), config.replicas.max(1))
        }
    }

    /// A counter bumped whenever membership or any member's health changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The current membership as a ring (weight 1 each).
    pub fn ring(&self) -> Ring {
        self.view().ring.clone()
    }

    /// Member counts, for gauges.
    pub fn stats(&self) -> ClusterStats {
        let view = self.view();
        let members = view.ring.members().len();
        ClusterStats {
            members,
            healthy: members.saturating_sub(view.unhealthy.len()),
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let view = self.view();
        let mut unhealthy: Vec<&String> = view.unhealthy.iter().collect();
        unhealthy.sort();
        f.debug_struct("Cluster")
            .field("members", &view.ring.members())
            .field("replicas", &view.ring.replicas())
            .field("unhealthy", &unhealthy)
            .finish()
    }
}

impl Inner {
    fn view_of(&self, state: &State) -> View {
        let ring = Ring::new(
            state.members.keys().map(|id| Member::new(id.clone())),
            self.replicas,
        );
        let nodes = state
            .members
            .iter()
            .map(|(id, (node, _))| (id.clone(), node.clone()))
            .collect();
        let unhealthy = state
            .members
            .iter()
            .filter(|(_, (_, m))| self.track_health && !m.is_healthy())
            .map(|(id, _)| id.clone())
            .collect();
        View {
            ring,
            nodes,
            unhealthy,
        }
    }

    /// Runs `change` on the state; when it returns true (the view changed), publishes a new
    /// view and bumps the change counter.
    fn update(&self, change: impl FnOnce(&mut State) -> bool) {
        let mut state = self.state.lock();
        let changed = change(&mut state);
        let pending = state
            .members
            .values()
            .any(|(_, m)| m.has_passive_failures());
        self.passive_pending.store(pending, Ordering::Relaxed);
        if changed {
            let view = Arc::new(self.view_of(&state));
            *self.view.write() = view;
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The current members, for the health checker.
    pub(crate) fn members(&self) -> Vec<Node> {
        self.view.read().nodes.values().cloned().collect()
    }

    /// A new non-empty DNS answer.
    pub(crate) fn set_dns_members(&self, nodes: Vec<Node>) {
        self.update(|state| {
            state.dns_nodes = nodes;
            state.reconcile()
        });
    }

    /// Results of a round of active checks, by member id.
    pub(crate) fn apply_checks(&self, results: &[(String, bool)]) {
        self.update(|state| {
            let mut changed = false;
            for (id, passed) in results {
                // A member that left during the round is skipped.
                if let Some((_, machine)) = state.members.get_mut(id)
                    && let Some(t) = machine.on_check(*passed, &self.thresholds)
                {
                    log_transition(id, t);
                    changed = true;
                }
            }
            changed
        });
    }
}

impl State {
    /// Makes `members` the union of the static and DNS nodes: newcomers start healthy, leavers
    /// lose their health history. Returns whether membership changed.
    fn reconcile(&mut self) -> bool {
        let mut wanted: BTreeMap<&str, &Node> = BTreeMap::new();
        for node in self.static_nodes.iter().chain(&self.dns_nodes) {
            wanted.entry(node.id.as_str()).or_insert(node);
        }
        let before = self.members.len();
        self.members.retain(|id, _| {
            let keep = wanted.contains_key(id.as_str());
            if !keep {
                info!(member = %id, "cluster member left");
            }
            keep
        });
        let mut changed = self.members.len() != before;
        for (id, node) in wanted {
            if !self.members.contains_key(id) {
                info!(member = %id, "cluster member joined");
                self.members
                    .insert(id.to_owned(), ((*node).clone(), HealthMachine::new()));
                changed = true;
            }
        }
        changed
    }
}

fn log_transition(id: &str, t: Transition) {
    match t {
        Transition::Down(reason) => warn!(member = %id, %reason, "cluster member unhealthy"),
        Transition::Up => info!(member = %id, "cluster member healthy again"),
    }
}

fn health_client(health: &HealthConfig) -> Result<reqwest::Client, ClusterError> {
    reqwest::Client::builder()
        .timeout(health.timeout)
        .connect_timeout(health.timeout)
        // A fresh connection per check: a member whose listener is gone fails at once instead
        // of answering over an old keep-alive connection.
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("shoal-cluster/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClusterError::HttpClient)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ids(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.id.as_str()).collect()
    }

    fn tracked(members: &[&str]) -> Cluster {
        let nodes =
            parse_members(&members.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        Cluster::build(nodes, 2, &HealthConfig::default(), true)
    }

    #[test]
    fn checks_and_reports_drive_the_view() {
        let c = tracked(&["a:1", "b:1", "c:1"]);
        let mut rx = c.changes();
        let b = c.nodes()[1].clone();
        assert_eq!(b.id, "b:1");
        let fail = [("b:1".to_owned(), false)];
        c.inner.apply_checks(&fail);
        c.inner.apply_checks(&fail);
        assert!(!rx.has_changed().unwrap());
        c.inner.apply_checks(&fail);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(!c.is_healthy(&b));
        assert_eq!(
            c.stats(),
            ClusterStats {
                members: 3,
                healthy: 2
            }
        );
        for i in 0..50u8 {
            let route = c.route(&[i]);
            assert_eq!(route.last().unwrap().id, "b:1");
            assert!(!ids(&c.healthy_owners(&[i])).contains(&"b:1"));
        }
        let pass = [("b:1".to_owned(), true), ("gone:1".to_owned(), true)];
        c.inner.apply_checks(&pass);
        c.inner.apply_checks(&pass);
        assert!(c.is_healthy(&b));
        assert!(rx.has_changed().unwrap());

        // Passive: the lock-free fast path of report_success must not lose pending failures.
        assert!(!c.inner.passive_pending.load(Ordering::Relaxed));
        c.report_failure(&b);
        assert!(c.inner.passive_pending.load(Ordering::Relaxed));
        c.report_success(&b);
        assert!(!c.inner.passive_pending.load(Ordering::Relaxed));
        for _ in 0..3 {
            c.report_failure(&b);
        }
        assert!(!c.is_healthy(&b));
    }

    #[test]
    fn dns_answers_reconcile_membership() {
        let c = tracked(&["a:1"]);
        let mut rx = c.changes();
        let dns = |ids: &[&str]| {
            parse_members(&ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
        };
        c.inner
            .set_dns_members(dns(&["10.0.0.1:1", "10.0.0.2:1", "a:1"]));
        assert_eq!(ids(&c.nodes()), ["10.0.0.1:1", "10.0.0.2:1", "a:1"]);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        // Same answer: no change.
        c.inner.set_dns_members(dns(&["10.0.0.2:1", "10.0.0.1:1"]));
        assert!(!rx.has_changed().unwrap());
        // A member that leaves and comes back starts healthy.
        let gone = Node::from_id("10.0.0.2:1".to_owned());
        for _ in 0..3 {
            c.inner.apply_checks(&[(gone.id.clone(), false)]);
        }
        assert!(!c.is_healthy(&gone));
        c.inner.set_dns_members(dns(&["10.0.0.1:1"]));
        assert_eq!(ids(&c.nodes()), ["10.0.0.1:1", "a:1"]);
        assert!(!c.is_healthy(&gone), "not a member");
        c.inner.set_dns_members(dns(&["10.0.0.1:1", "10.0.0.2:1"]));
        assert!(c.is_healthy(&gone));
        // Static members stay whatever DNS says.
        assert!(c.ring().contains("a:1"));
    }

    #[test]
    fn fixed_ignores_reports() {
        let c = Cluster::fixed(vec!["a:1".into(), "b:1".into()], 1).unwrap();
        let a = c.nodes()[0].clone();
        for _ in 0..10 {
            c.report_failure(&a);
        }
        assert!(c.is_healthy(&a));
        assert_eq!(c.stats().healthy, 2);
        assert!(format!("{c:?}").contains("a:1"));
    }

    #[test]
    fn static_members_can_be_replaced() {
        let c = Cluster::fixed(vec!["a:1".into(), "b:1".into()], 2).unwrap();
        let changes = c.changes();
        let before = *changes.borrow();
        c.set_static_members(&["a:1".into(), "b:1".into(), "c:1".into()])
            .unwrap();
        assert_eq!(ids(&c.nodes()), ["a:1", "b:1", "c:1"]);
        assert_ne!(*changes.borrow(), before);
        c.set_static_members(&["a:1".into()]).unwrap();
        assert_eq!(ids(&c.nodes()), ["a:1"]);
        assert!(c.set_static_members(&["not a member".into()]).is_err());
        assert_eq!(ids(&c.nodes()), ["a:1"], "a bad list changes nothing");
    }
}
