//! The cluster against real tiny HTTP servers on loopback: static and DNS membership, routing
//! order, active checks with hysteresis, passive marks, IPv6.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use shoal_cluster::{Cluster, ClusterConfig, ClusterError, DnsConfig, HealthConfig, Node};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A service whose `/health` answers 200 or 500 as `ok` says, counting the answers.
struct HealthServer {
    addr: SocketAddr,
    ok: Arc<AtomicBool>,
    passes: Arc<AtomicU32>,
    fails: Arc<AtomicU32>,
    /// Bumped on every answer.
    hits: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl HealthServer {
    async fn start() -> Self {
        Self::on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn on(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let ok = Arc::new(AtomicBool::new(true));
        let passes = Arc::new(AtomicU32::new(0));
        let fails = Arc::new(AtomicU32::new(0));
        let hits = watch::Sender::new(());
        let (o, p, f, h) = (ok.clone(), passes.clone(), fails.clone(), hits.clone());
        let app = Router::new().route(
            "/health",
            get(move || async move {
                let status = if o.load(Ordering::SeqCst) {
                    p.fetch_add(1, Ordering::SeqCst);
                    StatusCode::OK
                } else {
                    f.fetch_add(1, Ordering::SeqCst);
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                h.send_modify(|()| {});
                status
            }),
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            ok,
            passes,
            fails,
            hits,
            task,
        }
    }

    /// Waits until this server has answered `n` passing checks, for at most 20 s.
    async fn wait_passes(&self, n: u32) {
        let mut hits = self.hits.subscribe();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.passes.load(Ordering::SeqCst) < n {
            tokio::time::timeout_at(deadline, hits.changed())
                .await
                .expect("timed out waiting for health checks")
                .unwrap();
        }
    }

    fn id(&self) -> String {
        self.addr.to_string()
    }

    fn set_ok(&self, ok: bool) {
        self.ok.store(ok, Ordering::SeqCst);
    }
}

/// Fast checks so tests converge in a fraction of a second.
fn fast_health() -> HealthConfig {
    HealthConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
        fall: 3,
        rise: 2,
        ..HealthConfig::default()
    }
}

fn config(members: Vec<String>, replicas: usize) -> ClusterConfig {
    ClusterConfig {
        members,
        replicas,
        health: fast_health(),
        ..ClusterConfig::default()
    }
}

/// Waits (on `changes()`, no polling) until `cond` holds, for at most 20 s.
async fn wait_for(cluster: &Cluster, what: &str, cond: impl Fn(&Cluster) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut changes = cluster.changes();
    while !cond(cluster) {
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}: {cluster:?}"))
            .unwrap();
    }
}

fn node(cluster: &Cluster, id: &str) -> Node {
    cluster.nodes().into_iter().find(|n| n.id == id).unwrap()
}

fn ids(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.id.clone()).collect()
}

fn ranked(cluster: &Cluster, key: &[u8]) -> Vec<String> {
    cluster
        .ring()
        .ranked(key)
        .iter()
        .map(|m| m.id.clone())
        .collect()
}

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

#[tokio::test]
async fn static_members_route_in_ring_order() {
    let servers = [
        HealthServer::start().await,
        HealthServer::start().await,
        HealthServer::start().await,
        HealthServer::start().await,
    ];
    let members: Vec<String> = servers.iter().map(HealthServer::id).collect();
    let shutdown = CancellationToken::new();
    let cluster = Cluster::start(config(members.clone(), 2), shutdown.clone()).unwrap();
    let mut sorted = members.clone();
    sorted.sort();
    assert_eq!(ids(&cluster.nodes()), sorted);
    assert_eq!(cluster.ring().replicas(), 2);
    for n in cluster.nodes() {
        assert_eq!(n.base_url, format!("http://{}", n.id));
    }
    let fixed = Cluster::fixed(members, 2).unwrap();
    // After a few rounds of checks everyone is still healthy.
    for s in &servers {
        s.wait_passes(3).await;
    }
    assert_eq!(cluster.stats().healthy, 4);
    for i in 0..100 {
        let k = key(i);
        let want = ranked(&cluster, &k);
        assert_eq!(ids(&cluster.route(&k)), want);
        assert_eq!(ids(&cluster.owners(&k)), want[..2]);
        assert_eq!(ids(&cluster.healthy_owners(&k)), want[..2]);
        assert!(cluster.is_owner(&want[0], &k));
        assert!(!cluster.is_owner(&want[3], &k));
        // Every process with the same members routes the same way.
        assert_eq!(cluster.route(&k), fixed.route(&k));
    }
    shutdown.cancel();
}

#[tokio::test]
async fn unhealthy_members_are_tried_last_and_skipped_for_placement() {
    let servers = [
        HealthServer::start().await,
        HealthServer::start().await,
        HealthServer::start().await,
        HealthServer::start().await,
    ];
    servers[3].set_ok(false);
    let dead = servers[3].id();
    let members: Vec<String> = servers.iter().map(HealthServer::id).collect();
    let shutdown = CancellationToken::new();
    let cluster = Cluster::start(config(members, 2), shutdown.clone()).unwrap();
    let dead_node = node(&cluster, &dead);
    wait_for(&cluster, "the failing member to be unhealthy", |c| {
        !c.is_healthy(&dead_node)
    })
    .await;
    let stats = cluster.stats();
    assert_eq!((stats.members, stats.healthy), (4, 3));
    let mut dead_owned = 0;
    for i in 0..200 {
        let k = key(i);
        let full = ranked(&cluster, &k);
        let mut want: Vec<String> = full.iter().filter(|id| **id != dead).cloned().collect();
        assert_eq!(ids(&cluster.healthy_owners(&k)), want[..2]);
        want.push(dead.clone());
        assert_eq!(ids(&cluster.route(&k)), want, "unhealthy last");
        // Ownership ignores health: the unhealthy member keeps its keys.
        assert_eq!(ids(&cluster.owners(&k)), full[..2]);
        if cluster.is_owner(&dead, &k) {
            dead_owned += 1;
        }
    }
    assert!(dead_owned > 0, "the unhealthy member still owns keys");
    shutdown.cancel();
}

#[tokio::test]
async fn active_checks_fall_after_k_failures_and_rise_after_m_passes() {
    let server = HealthServer::start().await;
    let other = HealthServer::start().await;
    let shutdown = CancellationToken::new();
    let cluster =
        Cluster::start(config(vec![server.id(), other.id()], 1), shutdown.clone()).unwrap();
    let n = node(&cluster, &server.id());
    assert!(cluster.is_healthy(&n));

    server.set_ok(false);
    wait_for(&cluster, "unhealthy", |c| !c.is_healthy(&n)).await;
    let fails = server.fails.load(Ordering::SeqCst);
    assert!(
        fails >= 3,
        "unhealthy after {fails} failed checks, fall is 3"
    );
    assert!(cluster.is_healthy(&node(&cluster, &other.id())));

    let passes_before = server.passes.load(Ordering::SeqCst);
    server.set_ok(true);
    wait_for(&cluster, "healthy again", |c| c.is_healthy(&n)).await;
    let passes = server.passes.load(Ordering::SeqCst) - passes_before;
    assert!(
        passes >= 2,
        "healthy after {passes} passed checks, rise is 2"
    );

    // A member whose server is gone (connections refused) goes down too.
    server.task.abort();
    wait_for(&cluster, "unhealthy once closed", |c| !c.is_healthy(&n)).await;
    assert_eq!(cluster.stats().healthy, 1);
    // It is still a member, routed to last.
    let k = key(7);
    assert_eq!(cluster.route(&k).last().unwrap(), &n);
    shutdown.cancel();
}

#[tokio::test]
async fn passive_failures_mark_unhealthy_until_checks_pass() {
    let server = HealthServer::start().await;
    let shutdown = CancellationToken::new();
    let cluster = Cluster::start(config(vec![server.id()], 1), shutdown.clone()).unwrap();
    let n = node(&cluster, &server.id());
    let changes = cluster.changes();

    cluster.report_failure(&n);
    cluster.report_failure(&n);
    cluster.report_success(&n);
    cluster.report_failure(&n);
    cluster.report_failure(&n);
    assert!(
        cluster.is_healthy(&n),
        "a success in between resets the count"
    );
    cluster.report_failure(&n);
    assert!(!cluster.is_healthy(&n));
    assert!(changes.has_changed().unwrap());
    assert!(cluster.healthy_owners(&key(1)).is_empty());
    assert_eq!(
        cluster.route(&key(1)),
        std::slice::from_ref(&n),
        "still a last resort"
    );
    assert_eq!(cluster.owners(&key(1)), std::slice::from_ref(&n));
    // Successes reported meanwhile do not bring it back: the checker does.
    cluster.report_success(&n);
    assert!(!cluster.is_healthy(&n));
    wait_for(&cluster, "healthy after passing checks", |c| {
        c.is_healthy(&n)
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn dns_membership_from_localhost() {
    let server = HealthServer::start().await;
    let port = server.addr.port();
    let shutdown = CancellationToken::new();
    let cluster = Cluster::start(
        ClusterConfig {
            dns: Some(DnsConfig::new("localhost", port)),
            health: fast_health(),
            ..ClusterConfig::default()
        },
        shutdown.clone(),
    )
    .unwrap();
    let v4 = format!("127.0.0.1:{port}");
    wait_for(&cluster, "localhost to resolve", |c| c.ring().contains(&v4)).await;
    for n in cluster.nodes() {
        assert!(
            n.id == v4 || n.id == format!("[::1]:{port}"),
            "unexpected member {n:?}"
        );
    }
    let n = node(&cluster, &v4);
    assert_eq!(n.base_url, format!("http://{v4}"));
    assert!(cluster.route(&key(1)).contains(&n));
    // The resolved member is health-checked like a static one.
    server.set_ok(false);
    wait_for(&cluster, "the DNS member to be unhealthy", |c| {
        !c.is_healthy(&n)
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn unresolved_dns_leaves_only_static_members() {
    let shutdown = CancellationToken::new();
    let dns = DnsConfig::new("shoal-cluster-test.invalid", 7100);
    let empty = Cluster::start(
        ClusterConfig {
            dns: Some(dns.clone()),
            ..ClusterConfig::default()
        },
        shutdown.clone(),
    )
    .unwrap();
    assert!(empty.nodes().is_empty());
    assert!(empty.route(&key(1)).is_empty());
    assert!(empty.owners(&key(1)).is_empty());
    assert!(empty.healthy_owners(&key(1)).is_empty());
    assert_eq!(empty.stats().members, 0);

    let with_static = Cluster::start(
        ClusterConfig {
            members: vec!["origin-0.origin:7100".into()],
            dns: Some(dns),
            health: HealthConfig {
                enabled: false,
                ..HealthConfig::default()
            },
            ..ClusterConfig::default()
        },
        shutdown.clone(),
    )
    .unwrap();
    assert_eq!(ids(&with_static.nodes()), ["origin-0.origin:7100"]);
    shutdown.cancel();
}

#[tokio::test]
async fn ipv6_member() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("skipping: this host has no ::1");
        return;
    };
    let server = HealthServer::on(listener);
    let id = format!("[::1]:{}", server.addr.port());
    assert_eq!(server.id(), id);
    let shutdown = CancellationToken::new();
    let cluster = Cluster::start(config(vec![id.clone()], 3), shutdown.clone()).unwrap();
    let n = node(&cluster, &id);
    assert_eq!(n.base_url, format!("http://{id}"));
    server.wait_passes(1).await;
    assert!(cluster.is_healthy(&n));
    server.set_ok(false);
    wait_for(&cluster, "unhealthy over IPv6", |c| !c.is_healthy(&n)).await;
    server.set_ok(true);
    wait_for(&cluster, "healthy over IPv6", |c| c.is_healthy(&n)).await;
    shutdown.cancel();
}

#[test]
fn fixed_membership() {
    let c = Cluster::fixed(
        vec![
            "b:7100".into(),
            "a:7100".into(),
            "[::1]:7100".into(),
            "a:7100".into(),
        ],
        2,
    )
    .unwrap();
    assert_eq!(ids(&c.nodes()), ["[::1]:7100", "a:7100", "b:7100"]);
    assert!(c.nodes().iter().all(|n| c.is_healthy(n)));
    assert!(!c.is_healthy(&Node {
        id: "z:1".into(),
        base_url: "http://z:1".into()
    }));
    let k = key(3);
    assert_eq!(c.route(&k).len(), 3);
    assert_eq!(c.owners(&k), c.route(&k)[..2]);
    assert_eq!(c.healthy_owners(&k), c.owners(&k));
    let first = c.owners(&k)[0].clone();
    for _ in 0..10 {
        c.report_failure(&first);
    }
    assert!(c.is_healthy(&first), "fixed clusters ignore reports");
    assert_eq!(*c.changes().borrow(), 0);
    assert_eq!(c.stats().healthy, 3);

    assert!(Cluster::fixed(vec![], 1).unwrap().route(&k).is_empty());
    assert!(matches!(
        Cluster::fixed(vec!["nope".into()], 1),
        Err(ClusterError::InvalidMember { .. })
    ));
    assert!(matches!(
        Cluster::fixed(vec!["a:1".into()], 0),
        Err(ClusterError::InvalidConfig(_))
    ));
}

#[test]
fn start_validates_and_needs_a_runtime() {
    let token = CancellationToken::new();
    assert!(matches!(
        Cluster::start(config(vec!["a:1".into()], 1), token.clone()),
        Err(ClusterError::NoRuntime)
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert!(matches!(
        Cluster::start(ClusterConfig::default(), token.clone()),
        Err(ClusterError::NoMembers)
    ));
    assert!(matches!(
        Cluster::start(config(vec!["http://a:1".into()], 1), token.clone()),
        Err(ClusterError::InvalidMember { .. })
    ));
    let c = Cluster::start(config(vec!["a:1".into()], 1), token.clone()).unwrap();
    assert_eq!(ids(&c.nodes()), ["a:1"]);
}
