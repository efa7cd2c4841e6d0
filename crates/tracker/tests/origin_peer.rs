//! Origin peers: an origin that answers the metainfo request with `Shoal-Peer-Id` and
//! `Shoal-Peer-Addr` is handed out by Announce for that torrent; without (valid) headers it is
//! not, and the metainfo is served either way.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::IntoResponse;
use common::{Client, Running, blob, client, start_tracker, tracker_config};
use shoal_core::{Digest, InfoHash, MetaInfo, MetaInfoBuilder};
use shoal_tracker::TrackerConfig;
use shoal_tracker::proto::{AnnounceEvent, AnnounceRequest, AnnounceResponse, MetaInfoRequest};
use tokio_util::sync::CancellationToken;

const ORIGIN_ID: [u8; 32] = [0xab; 32];

/// A fake origin serving one blob's metainfo at its metainfo URL, with `headers` added.
async fn fake_origin(ns: &str, meta: &MetaInfo, headers: &[(&str, &str)]) -> Running {
    let path = format!(
        "/v1/namespace/{}/blobs/{}/metainfo",
        ns.replace('/', "%2F"),
        meta.digest()
    );
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let body = meta.encode();
    // The origin's namespace is one percent-encoded segment: match the raw path.
    let app = axum::Router::new().fallback(move |uri: Uri| async move {
        if uri.path() == path {
            (StatusCode::OK, map, body).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let serve = shoal_runtime::admin::serve(listener, app, token.clone());
    let handle = tokio::spawn(async move { Ok(serve.await?) });
    Running::new(addr, token, handle)
}

fn metainfo(len: usize, seed: u8) -> MetaInfo {
    let (data, d): (Vec<u8>, Digest) = blob(len, seed);
    let mut b = MetaInfoBuilder::new(shoal_core::Algorithm::Sha256, 64 * 1024).unwrap();
    b.update(&data);
    b.finish(d).unwrap()
}

async fn get_meta(c: &mut Client, ns: &str, meta: &MetaInfo) -> bytes::Bytes {
    c.get_meta_info(MetaInfoRequest {
        namespace: ns.into(),
        digest: meta.digest().to_string(),
    })
    .await
    .unwrap()
    .into_inner()
    .metainfo
}

async fn announce(c: &mut Client, hash: InfoHash, peer: u8) -> AnnounceResponse {
    c.announce(AnnounceRequest {
        info_hash: hash.as_bytes().to_vec(),
        peer_id: vec![peer; 32],
        ip: "10.0.0.1".into(),
        port: 7000 + u32::from(peer),
        event: AnnounceEvent::Started.into(),
        ..AnnounceRequest::default()
    })
    .await
    .unwrap()
    .into_inner()
}

async fn tracker_for(origin: &Running) -> Running {
    start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([origin.base()]),
        ..tracker_config()
    })
    .await
}

#[tokio::test]
async fn a_seeding_origin_is_handed_out_with_its_torrent() {
    let meta = metainfo(200_000, 1);
    let hash = meta.info_hash();
    let id = hex(&ORIGIN_ID);
    let origin = fake_origin(
        "library/app",
        &meta,
        &[("Shoal-Peer-Id", &id), ("Shoal-Peer-Addr", "[::1]:7101")],
    )
    .await;
    let tracker = tracker_for(&origin).await;
    let mut c = client(&tracker).await;

    // Before the metainfo is fetched the tracker knows nothing of the origin.
    assert!(announce(&mut c, hash, 1).await.peers.is_empty());

    assert_eq!(get_meta(&mut c, "library/app", &meta).await, meta.encode());
    let resp = announce(&mut c, hash, 2).await;
    let origins: Vec<_> = resp.peers.iter().filter(|p| p.is_origin).collect();
    assert_eq!(origins.len(), 1, "{:?}", resp.peers);
    let o = origins[0];
    assert_eq!(o.peer_id, ORIGIN_ID);
    assert_eq!((o.ip.as_str(), o.port), ("::1", 7101));
    assert!(o.complete && o.is_origin);
    // Peer 1 (in progress) comes after the origin.
    assert_eq!(resp.peers.len(), 2);
    assert_eq!(resp.peers[1].peer_id, [1; 32]);

    // It counts toward max_peers and stays for every announce, even with its origin gone.
    origin.stop().await;
    for n in 3..6 {
        let resp = announce(&mut c, hash, n).await;
        assert_eq!(resp.peers[0].peer_id, ORIGIN_ID, "announce {n}");
    }
    // Other torrents do not get it.
    let other = InfoHash::from_bytes([9; 32]);
    assert!(announce(&mut c, other, 1).await.peers.is_empty());
    tracker.stop().await;

    let origin = fake_origin(
        "demo",
        &meta,
        &[
            ("shoal-peer-id", &id),
            ("shoal-peer-addr", "127.0.0.1:7101"),
        ],
    )
    .await;
    let tracker = start_tracker(TrackerConfig {
        origins: shoal_cluster::ClusterConfig::with_members([origin.base()]),
        max_peers: 1,
        ..tracker_config()
    })
    .await;
    let mut c = client(&tracker).await;
    get_meta(&mut c, "demo", &meta).await;
    let seeder = AnnounceRequest {
        info_hash: hash.as_bytes().to_vec(),
        peer_id: vec![1; 32],
        ip: "10.0.0.1".into(),
        port: 7001,
        complete: true,
        ..AnnounceRequest::default()
    };
    c.announce(seeder).await.unwrap();
    // Limit 1: the seeder goes first, the origin does not fit.
    let resp = announce(&mut c, hash, 2).await;
    assert_eq!(resp.peers.len(), 1);
    assert_eq!(resp.peers[0].peer_id, [1; 32]);
    assert!(!resp.peers[0].is_origin);
    tracker.stop().await;
    origin.stop().await;
}

#[tokio::test]
async fn no_or_bad_headers_mean_no_origin_peer() {
    let id = hex(&ORIGIN_ID);
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("Shoal-Peer-Id", &id)],
        &[
            ("Shoal-Peer-Id", "not-hex"),
            ("Shoal-Peer-Addr", "127.0.0.1:7101"),
        ],
        &[("Shoal-Peer-Id", &id), ("Shoal-Peer-Addr", "127.0.0.1")],
        &[("Shoal-Peer-Id", &id), ("Shoal-Peer-Addr", "0.0.0.0:7101")],
    ];
    for (i, headers) in cases.into_iter().enumerate() {
        let meta = metainfo(100_000, 10 + u8::try_from(i).unwrap());
        let origin = fake_origin("demo", &meta, headers).await;
        let tracker = tracker_for(&origin).await;
        let mut c = client(&tracker).await;
        let bytes = get_meta(&mut c, "demo", &meta).await;
        assert_eq!(MetaInfo::decode(&bytes).unwrap(), meta, "{headers:?}");
        announce(&mut c, meta.info_hash(), 1).await;
        let resp = announce(&mut c, meta.info_hash(), 2).await;
        assert_eq!(resp.peers.len(), 1, "{headers:?}: {:?}", resp.peers);
        assert!(!resp.peers[0].is_origin);
        tracker.stop().await;
        origin.stop().await;
    }
}

#[tokio::test]
async fn a_real_seeding_origin_is_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, peer_addr) = common::start_seeding_origin(dir.path()).await;
    let (data, d) = blob(150_000, 3);
    common::upload(&origin, "library/app", &data, &d).await;
    // What the origin advertises, straight from its metainfo response.
    let resp = reqwest::get(format!(
        "{}/v1/namespace/library%2Fapp/blobs/{d}/metainfo",
        origin.base()
    ))
    .await
    .unwrap();
    let header = |name| resp.headers()[name].to_str().unwrap().to_owned();
    let (id, addr) = (
        header(shoal_tracker::ORIGIN_PEER_ID_HEADER),
        header(shoal_tracker::ORIGIN_PEER_ADDR_HEADER),
    );
    assert_eq!(addr, peer_addr.to_string());

    let tracker = tracker_for(&origin).await;
    let mut c = client(&tracker).await;
    let bytes = c
        .get_meta_info(MetaInfoRequest {
            namespace: "library/app".into(),
            digest: d.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .metainfo;
    let hash = MetaInfo::decode(&bytes).unwrap().info_hash();
    let peers = announce(&mut c, hash, 1).await.peers;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(hex(&peers[0].peer_id), id);
    assert_eq!(peers[0].ip, peer_addr.ip().to_string());
    assert_eq!(peers[0].port, u32::from(peer_addr.port()));
    assert!(peers[0].is_origin && peers[0].complete);
    tracker.stop().await;
    origin.stop().await;
}

#[tokio::test]
async fn a_real_origin_that_does_not_seed_is_not_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let origin = common::start_origin(dir.path()).await;
    let (data, d) = blob(150_000, 4);
    common::upload(&origin, "library/app", &data, &d).await;
    let tracker = tracker_for(&origin).await;
    let mut c = client(&tracker).await;
    let bytes = c
        .get_meta_info(MetaInfoRequest {
            namespace: "library/app".into(),
            digest: d.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .metainfo;
    let hash = MetaInfo::decode(&bytes).unwrap().info_hash();
    assert!(announce(&mut c, hash, 1).await.peers.is_empty());
    tracker.stop().await;
    origin.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lookups route by digest and announces by info hash, so the tracker that gets a torrent's
/// announces (or takes over after a failover) may never have fetched its metainfo: the
/// announce names the blob, and the tracker fetches the metainfo itself to hand out origins.
#[tokio::test]
async fn an_announce_naming_its_blob_gets_the_origins_without_a_prior_lookup() {
    let meta = metainfo(200_000, 3);
    let hash = meta.info_hash();
    let id = hex(&ORIGIN_ID);
    let origin = fake_origin(
        "library/app",
        &meta,
        &[
            ("Shoal-Peer-Id", &id),
            ("Shoal-Peer-Addr", "127.0.0.1:7101"),
        ],
    )
    .await;
    let tracker = tracker_for(&origin).await;
    let mut c = client(&tracker).await;
    let resp = c
        .announce(AnnounceRequest {
            info_hash: hash.as_bytes().to_vec(),
            peer_id: vec![1; 32],
            ip: "10.0.0.1".into(),
            port: 7001,
            event: AnnounceEvent::Started.into(),
            namespace: "library/app".into(),
            digest: meta.digest().to_string(),
            ..AnnounceRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let origins: Vec<_> = resp.peers.iter().filter(|p| p.is_origin).collect();
    assert_eq!(origins.len(), 1, "{:?}", resp.peers);
    assert_eq!(origins[0].peer_id, ORIGIN_ID);
    tracker.stop().await;
    origin.stop().await;
}
