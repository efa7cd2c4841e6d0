//! Announce over real gRPC: handout classes and limit, addresses, STOPPED, expiry, validation.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{client, metric, start_tracker, tracker_config};
use shoal_runtime::wait::wait_until;
use shoal_tracker::proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse};
use tonic::Code;

const HASH: [u8; 32] = [7; 32];

fn req(peer: u8, complete: bool, is_origin: bool) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: HASH.to_vec(),
        peer_id: vec![peer; 32],
        ip: format!("10.0.0.{peer}"),
        port: 7000 + u32::from(peer),
        bytes_done: if complete { 100 } else { 5 },
        complete,
        is_origin,
        event: AnnounceEvent::Started.into(),
        namespace: "library/app".into(),
        digest: String::new(),
    }
}

fn peer_ids(resp: &AnnounceResponse) -> Vec<u8> {
    resp.peers.iter().map(|p| p.peer_id[0]).collect()
}

#[tokio::test]
async fn handout_orders_classes_and_respects_the_limit() {
    let tracker = start_tracker(tracker_config()).await;
    let mut c = client(&tracker).await;
    // In-progress 20..=24, origins 10..=11, seeders 1..=2.
    for n in 20..=24 {
        c.announce(req(n, false, false)).await.unwrap();
    }
    for n in 10..=11 {
        c.announce(req(n, true, true)).await.unwrap();
    }
    for n in 1..=2 {
        c.announce(req(n, true, false)).await.unwrap();
    }
    let resp = c
        .announce(req(99, false, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.interval_ms, 3000);
    let ids = peer_ids(&resp);
    assert_eq!(ids.len(), 9, "{ids:?}");
    let mut seeders = ids[..2].to_vec();
    seeders.sort_unstable();
    assert_eq!(seeders, [1, 2]);
    let mut origins = ids[2..4].to_vec();
    origins.sort_unstable();
    assert_eq!(origins, [10, 11]);
    assert!(ids[4..].iter().all(|n| (20..=24).contains(n)), "{ids:?}");
    // Fields round trip.
    let first = &resp.peers[0];
    assert_eq!(first.ip, format!("10.0.0.{}", first.peer_id[0]));
    assert_eq!(first.port, 7000 + u32::from(first.peer_id[0]));
    assert!(first.complete && !first.is_origin);
    let origin = &resp.peers[2];
    assert!(origin.is_origin);
    // The requester is never handed itself.
    assert!(!ids.contains(&99));
    tracker.stop().await;

    let tracker = start_tracker(shoal_tracker::TrackerConfig {
        max_peers: 3,
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;
    for n in 20..=29 {
        c.announce(req(n, false, false)).await.unwrap();
    }
    c.announce(req(10, true, true)).await.unwrap();
    let ids = peer_ids(
        &c.announce(req(99, false, false))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], 10, "the origin outranks in-progress peers: {ids:?}");
    // A different torrent is a different swarm.
    let other = AnnounceRequest {
        info_hash: vec![8; 32],
        ..req(50, false, false)
    };
    assert!(
        c.announce(other)
            .await
            .unwrap()
            .into_inner()
            .peers
            .is_empty()
    );
    assert_eq!(metric(&tracker, "shoal_tracker_torrents").await, 2);
    assert_eq!(metric(&tracker, "shoal_tracker_peers").await, 13);
    assert_eq!(metric(&tracker, "shoal_tracker_announces_total").await, 13);
    tracker.stop().await;
}

#[tokio::test]
async fn ipv6_and_caller_addresses() {
    let tracker = start_tracker(tracker_config()).await;
    let mut c = client(&tracker).await;
    let v6 = AnnounceRequest {
        ip: "::1".into(),
        ..req(1, true, false)
    };
    c.announce(v6).await.unwrap();
    let bracketed = AnnounceRequest {
        ip: "[2001:db8::5]".into(),
        ..req(2, true, false)
    };
    c.announce(bracketed).await.unwrap();
    let from_caller = AnnounceRequest {
        ip: String::new(),
        ..req(3, true, false)
    };
    c.announce(from_caller).await.unwrap();
    let resp = c
        .announce(req(99, false, false))
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<(u8, String, u32)> = resp
        .peers
        .iter()
        .map(|p| (p.peer_id[0], p.ip.clone(), p.port))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (1, "::1".to_owned(), 7001),
            (2, "2001:db8::5".to_owned(), 7002),
            (3, "127.0.0.1".to_owned(), 7003),
        ]
    );
    let parsed: std::net::IpAddr = got[0].1.parse().unwrap();
    assert!(parsed.is_ipv6() && parsed.is_loopback());
    tracker.stop().await;
}

#[tokio::test]
async fn stopped_removes_the_peer() {
    let tracker = start_tracker(tracker_config()).await;
    let mut c = client(&tracker).await;
    c.announce(req(1, true, false)).await.unwrap();
    assert_eq!(
        peer_ids(&c.announce(req(2, false, false)).await.unwrap().into_inner()),
        [1]
    );
    let stop = AnnounceRequest {
        event: AnnounceEvent::Stopped.into(),
        ..req(1, true, false)
    };
    let resp = c.announce(stop).await.unwrap().into_inner();
    assert!(resp.peers.is_empty());
    assert!(
        c.announce(req(2, false, false))
            .await
            .unwrap()
            .into_inner()
            .peers
            .is_empty()
    );
    // Peer 2 stopping too leaves no torrent behind.
    let stop2 = AnnounceRequest {
        event: AnnounceEvent::Stopped.into(),
        ..req(2, false, false)
    };
    c.announce(stop2).await.unwrap();
    assert_eq!(metric(&tracker, "shoal_tracker_torrents").await, 0);
    tracker.stop().await;
}

#[tokio::test]
async fn silent_peers_expire() {
    let tracker = start_tracker(shoal_tracker::TrackerConfig {
        announce_interval: Duration::from_millis(100),
        peer_ttl: Some(Duration::from_millis(300)),
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;
    let resp = c.announce(req(1, true, false)).await.unwrap().into_inner();
    assert_eq!(resp.interval_ms, 100);
    assert_eq!(metric(&tracker, "shoal_tracker_peers").await, 1);
    // Peer 1 never announces again: the sweeper drops it and its torrent.
    wait_until(Duration::from_secs(10), "peer swept", || async {
        metric(&tracker, "shoal_tracker_peers").await == 0
    })
    .await
    .unwrap();
    assert_eq!(metric(&tracker, "shoal_tracker_torrents").await, 0);
    assert_eq!(
        metric(&tracker, "shoal_tracker_peers_expired_total").await,
        1
    );
    assert!(
        c.announce(req(2, false, false))
            .await
            .unwrap()
            .into_inner()
            .peers
            .is_empty()
    );
    tracker.stop().await;
}

#[tokio::test]
async fn invalid_announces_are_rejected() {
    let tracker = start_tracker(tracker_config()).await;
    let mut c = client(&tracker).await;
    let bad = [
        AnnounceRequest {
            info_hash: vec![1; 31],
            ..req(1, false, false)
        },
        AnnounceRequest {
            info_hash: Vec::new(),
            ..req(1, false, false)
        },
        AnnounceRequest {
            peer_id: vec![1; 33],
            ..req(1, false, false)
        },
        AnnounceRequest {
            ip: "not-an-ip".into(),
            ..req(1, false, false)
        },
        AnnounceRequest {
            port: 70_000,
            ..req(1, false, false)
        },
        AnnounceRequest {
            event: 42,
            ..req(1, false, false)
        },
    ];
    for r in bad {
        let err = c.announce(r.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{r:?}: {err}");
    }
    assert_eq!(
        metric(&tracker, "shoal_tracker_announces_invalid_total").await,
        6
    );
    assert_eq!(metric(&tracker, "shoal_tracker_peers").await, 0);
    tracker.stop().await;
}

#[tokio::test]
async fn concurrent_announces_from_one_client() {
    let tracker = start_tracker(tracker_config()).await;
    let c = client(&tracker).await;
    // One agent, 64 torrents, all at once over one connection.
    let calls = (0..64u8).map(|t| {
        let mut c = c.clone();
        async move {
            let r = AnnounceRequest {
                info_hash: vec![t; 32],
                ..req(1, false, false)
            };
            c.announce(r).await.map(|_| ())
        }
    });
    for res in futures_join_all(calls).await {
        res.unwrap();
    }
    assert_eq!(metric(&tracker, "shoal_tracker_torrents").await, 64);
    tracker.stop().await;
}

async fn futures_join_all<F: Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
