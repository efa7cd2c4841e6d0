//! Real QUIC on 127.0.0.1 between two transports, in both TLS modes.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_transport::{
    BandwidthConfig, RequestError, RespondError, SessionError, TlsConfig, Transport,
    TransportConfig,
};
use shoal_wire::{ErrorCode, Message};
use support::{bind, config, hs, modes, piece_data, serve, session_pair};

const MIB: usize = 1 << 20;

#[tokio::test]
async fn handshakes_both_ways_control_frames_in_order_and_one_shared_connection() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, cfg_a, cfg_b) in modes(dir.path()) {
        let (a, mut acc_a) = bind(cfg_a);
        let (b, mut acc_b) = bind(cfg_b);
        // A opens torrent 1 to B, B opens torrent 2 to A: both reuse one connection.
        let (mut a1, mut b1) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
        let (b2, mut a2) = session_pair(&b, 2, a.local_addr(), &mut acc_a, 1, 2).await;
        assert_eq!(a1.theirs(), &hs(2, 1), "{mode}");
        assert_eq!(b1.theirs(), &hs(1, 1), "{mode}");
        assert_eq!(b2.theirs(), &hs(1, 2), "{mode}");
        assert_eq!(a2.theirs(), &hs(2, 2), "{mode}");
        assert_eq!(b1.remote_addr(), a.local_addr());
        assert_eq!(a.connection_count(), 1, "{mode}");
        assert_eq!(b.connection_count(), 1, "{mode}");

        for i in 0..100 {
            a1.send(Message::Have(i)).await.unwrap();
            b2.send(Message::Have(1000 + i)).await.unwrap();
        }
        a1.send(Message::Complete).await.unwrap();
        a1.send(Message::Cancel(7)).await.unwrap();
        a1.send(Message::error(ErrorCode::GoingAway, "bye"))
            .await
            .unwrap();
        for i in 0..100 {
            assert_eq!(b1.recv().await.unwrap(), Some(Message::Have(i)));
            assert_eq!(a2.recv().await.unwrap(), Some(Message::Have(1000 + i)));
        }
        assert_eq!(b1.recv().await.unwrap(), Some(Message::Complete));
        assert_eq!(b1.recv().await.unwrap(), Some(Message::Cancel(7)));
        assert!(matches!(
            b1.recv().await.unwrap(),
            Some(Message::Error {
                code: ErrorCode::GoingAway,
                ..
            })
        ));
        // Only control frames go on the control stream.
        assert!(matches!(a1.send(Message::Have(1)).await, Ok(())));
        assert!(matches!(
            a1.send(Message::Piece {
                piece: 0,
                length: 1
            })
            .await,
            Err(SessionError::Unexpected("piece"))
        ));
        // Requests flow on the shared connection in both directions.
        let server_b = serve(b1, 1000);
        let server_a = serve(a2, 1000);
        assert_eq!(a1.request(3, 1000).await.unwrap(), piece_data(3, 1000));
        assert_eq!(b2.request(4, 1000).await.unwrap(), piece_data(4, 1000));
        // Closing one session ends its control stream on the other side, cleanly.
        server_b.abort();
        let _ = server_b.await;
        assert_eq!(a1.recv().await.unwrap(), None, "{mode}");
        server_a.abort();
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test]
async fn rejections_unknown_torrent_and_info_hash_mismatch() {
    let (a, _acc_a) = bind(TransportConfig::localhost());
    let (b, mut acc_b) = bind(TransportConfig::localhost());
    let addr = b.local_addr();

    // B does not know torrent 9.
    let (res, ()) = tokio::join!(a.connect(addr, hs(1, 9)), async {
        let inc = acc_b.accept().await.unwrap();
        inc.reject(ErrorCode::UnknownTorrent, "never heard of it")
            .await
            .unwrap();
    });
    assert!(
        matches!(
            &res,
            Err(SessionError::Rejected { code: ErrorCode::UnknownTorrent, message }) if message == "never heard of it"
        ),
        "{res:?}"
    );

    // B answers for the wrong torrent: refused on B's side, and A is told.
    let (res, res_b) = tokio::join!(a.connect(addr, hs(1, 3)), async {
        acc_b.accept().await.unwrap().accept(hs(2, 4)).await
    });
    assert!(
        matches!(res_b, Err(SessionError::InfoHashMismatch { .. })),
        "{res_b:?}"
    );
    assert!(
        matches!(
            res,
            Err(SessionError::Rejected {
                code: ErrorCode::UnknownTorrent,
                ..
            })
        ),
        "{res:?}"
    );

    // A second session for the same torrent on the same connection is refused.
    let (s_a, s_b) = session_pair(&a, 1, addr, &mut acc_b, 2, 5).await;
    assert!(matches!(
        a.connect(addr, hs(1, 5)).await,
        Err(SessionError::Duplicate)
    ));

    // Requests for a torrent B no longer serves: UNKNOWN_TORRENT.
    let (_b_sender, _b_control, b_requests) = s_b.split();
    drop(b_requests);
    let err = s_a.request(0, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Rejected {
                code: ErrorCode::UnknownTorrent,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn pieces_arrive_intact_big_and_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, cfg_a, cfg_b) in modes(dir.path()) {
        let (a, _acc_a) = bind(cfg_a);
        let (b, mut acc_b) = bind(cfg_b);
        let (s_a, s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
        let (_keep, _control, mut requests) = s_b.split();
        let server = tokio::spawn(async move {
            while let Some(req) = requests.next().await {
                let len = if req.piece() == 1000 { 4 * MIB } else { MIB };
                let data = piece_data(req.piece(), len);
                tokio::spawn(req.respond(data));
            }
        });
        let big = s_a.request(1000, 4 * MIB as u32).await.unwrap();
        assert_eq!(big, piece_data(1000, 4 * MIB), "{mode}");

        let (sender, _control, _requests) = s_a.split();
        let mut set = tokio::task::JoinSet::new();
        for piece in 0..16 {
            let sender = sender.clone();
            set.spawn(async move { (piece, sender.request(piece, MIB as u32).await) });
        }
        let mut seen = 0;
        while let Some(r) = set.join_next().await {
            let (piece, data) = r.unwrap();
            assert_eq!(
                data.unwrap(),
                piece_data(piece, MIB),
                "{mode} piece {piece}"
            );
            seen += 1;
        }
        assert_eq!(seen, 16);
        assert_eq!(a.connection_count(), 1);
        server.abort();
    }
}

#[tokio::test]
async fn dropping_a_request_stops_the_servers_send() {
    let (a, _acc_a) = bind(TransportConfig::localhost());
    let (b, mut acc_b) = bind(TransportConfig::localhost());
    let (s_a, mut s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;

    // The request future is dropped (timeout) while the server still holds the request.
    let pending = tokio::time::timeout(Duration::from_millis(200), s_a.request(0, MIB as u32));
    let (res, req) = tokio::join!(pending, s_b.next_request());
    assert!(res.is_err(), "the request cannot complete: nobody answered");
    let mut req = req.unwrap();
    tokio::time::timeout(Duration::from_secs(5), req.cancelled())
        .await
        .expect("the server sees the stop");
    let err = req.respond(piece_data(0, MIB)).await.unwrap_err();
    assert!(matches!(err, RespondError::Cancelled), "{err:?}");

    // Mid-transfer: a throttled answer stops soon after the requester gives up.
    let (a, _acc_a) = bind(TransportConfig::localhost());
    let (b, mut acc_b) = bind(TransportConfig {
        bandwidth: BandwidthConfig {
            egress_bytes_per_sec: Some(MIB as u64),
            ingress_bytes_per_sec: None,
        },
        ..TransportConfig::localhost()
    });
    let (s_a, mut s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
    let server = tokio::spawn(async move {
        let req = s_b.next_request().await.unwrap();
        let start = Instant::now();
        let res = req.respond(piece_data(0, 8 * MIB)).await;
        (res, start.elapsed())
    });
    let res =
        tokio::time::timeout(Duration::from_millis(500), s_a.request(0, 8 * MIB as u32)).await;
    assert!(res.is_err());
    let (res, elapsed) = server.await.unwrap();
    assert!(matches!(res, Err(RespondError::Cancelled)), "{res:?}");
    assert!(
        elapsed < Duration::from_secs(4),
        "{elapsed:?}: 8 MiB at 1 MiB/s would take 8 s"
    );
}

#[tokio::test]
async fn lengths_are_checked_before_reading_data() {
    let (a, _acc_a) = bind(TransportConfig {
        max_piece_len: MIB as u32,
        ..TransportConfig::localhost()
    });
    let (b, mut acc_b) = bind(TransportConfig::localhost());
    let (s_a, mut s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
    let server = tokio::spawn(async move {
        while let Some(req) = s_b.next_request().await {
            match req.piece() {
                0 => req.respond(piece_data(0, 2 * MIB)).await.ok(),
                1 => req.respond(piece_data(1, 1000)).await.ok(),
                _ => req
                    .reject(ErrorCode::PieceUnavailable, "not yet")
                    .await
                    .ok(),
            };
        }
    });
    let err = s_a.request(0, MIB as u32).await.unwrap_err();
    assert!(
        matches!(err, RequestError::TooLarge { length, max } if length == 2 * MIB as u32 && max == MIB as u32),
        "{err:?}"
    );
    let err = s_a.request(1, 1024).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::LengthMismatch {
                expected: 1024,
                announced: 1000
            }
        ),
        "{err:?}"
    );
    let err = s_a.request(2, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Rejected {
                code: ErrorCode::PieceUnavailable,
                ..
            }
        ),
        "{err:?}"
    );
    let err = s_a.request(3, 2 * MIB as u32).await.unwrap_err();
    assert!(matches!(err, RequestError::TooLarge { .. }), "{err:?}");
    // The session is still usable after all that.
    assert_eq!(s_a.request(1, 1000).await.unwrap(), piece_data(1, 1000));
    server.abort();
}

async fn timed_transfer(cfg_a: TransportConfig, cfg_b: TransportConfig) -> Duration {
    let (a, _acc_a) = bind(cfg_a);
    let (b, mut acc_b) = bind(cfg_b);
    let (s_a, s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
    let _server = serve(s_b, MIB);
    let start = Instant::now();
    let (r1, r2) = tokio::join!(s_a.request(0, MIB as u32), s_a.request(1, MIB as u32));
    let elapsed = start.elapsed();
    assert_eq!(r1.unwrap(), piece_data(0, MIB));
    assert_eq!(r2.unwrap(), piece_data(1, MIB));
    elapsed
}

#[tokio::test]
async fn bandwidth_limits_slow_transfers() {
    let limit = BandwidthConfig {
        ingress_bytes_per_sec: Some(MIB as u64),
        egress_bytes_per_sec: None,
    };
    let limited = TransportConfig {
        bandwidth: limit,
        ..TransportConfig::localhost()
    };
    // 2 MiB at 1 MiB/s, minus a 100 ms burst.
    let ingress = timed_transfer(limited.clone(), TransportConfig::localhost()).await;
    assert!(
        ingress >= Duration::from_millis(1500),
        "ingress: {ingress:?}"
    );
    let limited = TransportConfig {
        bandwidth: BandwidthConfig {
            ingress_bytes_per_sec: None,
            egress_bytes_per_sec: Some(MIB as u64),
        },
        ..TransportConfig::localhost()
    };
    let egress = timed_transfer(TransportConfig::localhost(), limited).await;
    assert!(egress >= Duration::from_millis(1500), "egress: {egress:?}");
}

#[tokio::test]
async fn connecting_to_a_dead_address_fails_in_time() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = socket.local_addr().unwrap();
    drop(socket);
    let (a, _acc) = bind(TransportConfig {
        connect_timeout: Duration::from_millis(500),
        ..TransportConfig::localhost()
    });
    let start = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), a.connect(dead, hs(1, 1)))
        .await
        .expect("connect gives up by itself")
        .unwrap_err();
    assert!(
        matches!(err, SessionError::ConnectTimeout(addr) if addr == dead),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(a.connection_count(), 0);
}

#[tokio::test]
async fn peers_of_another_ca_or_without_certificates_are_refused() {
    let dir1 = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let ca1 = shoal_transport::tls::write_test_pki(dir1.path(), 1).unwrap();
    let ca2 = shoal_transport::tls::write_test_pki(dir2.path(), 1).unwrap();
    let (b, _acc_b) = bind(config(ca1[0].clone()));
    for tls in [ca2[0].clone(), TlsConfig::default()] {
        let (a, _acc_a) = bind(TransportConfig {
            connect_timeout: Duration::from_secs(2),
            ..config(tls)
        });
        let err = a.connect(b.local_addr(), hs(1, 1)).await.unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::Connection(_) | SessionError::Read(_) | SessionError::Write(_)
            ),
            "{err:?}"
        );
    }
    // Incomplete CA config is a startup error.
    let partial = TlsConfig {
        key: None,
        ..ca1[0].clone()
    };
    assert!(Transport::bind(config(partial)).is_err());
}

#[tokio::test]
async fn shutdown_ends_sessions_and_accepting() {
    let (a, _acc_a) = bind(TransportConfig::localhost());
    let (b, mut acc_b) = bind(TransportConfig::localhost());
    let (mut s_a, _s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
    b.shutdown().await;
    assert!(acc_b.accept().await.is_none());
    let res = tokio::time::timeout(Duration::from_secs(5), s_a.recv())
        .await
        .unwrap();
    assert!(res.is_err(), "{res:?}");
    let err = s_a.request(0, 1).await.unwrap_err();
    assert!(matches!(err, RequestError::Connection(_)), "{err:?}");
}

#[test]
fn config_parses_with_defaults_and_rejects_unknown_keys() {
    let cfg: TransportConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, TransportConfig::default());
    assert_eq!(cfg.bandwidth, BandwidthConfig::default());
    assert!(cfg.tls.is_dev_mode());
    let cfg: TransportConfig = toml::from_str(
        r#"
        listen = "127.0.0.1:9000"
        idle_timeout = "1m"
        keep_alive = "5s"
        max_piece_len = 8388608
        [tls]
        ca_cert = "/ca.pem"
        cert = "/c.pem"
        key = "/c.key"
        [bandwidth]
        egress_bytes_per_sec = 1000
        "#,
    )
    .unwrap();
    assert_eq!(cfg.idle_timeout, Duration::from_secs(60));
    assert_eq!(cfg.bandwidth.egress_bytes_per_sec, Some(1000));
    assert!(!cfg.tls.is_dev_mode());
    assert!(toml::from_str::<TransportConfig>("listn = \"127.0.0.1:1\"").is_err());
    assert!(toml::from_str::<TransportConfig>("[bandwidth]\negress = 1").is_err());
}

/// Throughput of 256 x 4 MiB pieces, 8 in flight, over one connection. Run with
/// `cargo test -p shoal-transport --release --test transport -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_256_pieces_of_4_mib_8_in_flight() {
    let (a, _acc_a) = bind(TransportConfig::localhost());
    let (b, mut acc_b) = bind(TransportConfig::localhost());
    let (s_a, s_b) = session_pair(&a, 1, b.local_addr(), &mut acc_b, 2, 1).await;
    let piece = Bytes::from(vec![7u8; 4 * MIB]);
    let (_keep, _control, mut requests) = s_b.split();
    tokio::spawn(async move {
        while let Some(req) = requests.next().await {
            tokio::spawn(req.respond(piece.clone()));
        }
    });
    let (sender, _c, _r) = s_a.split();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0u32;
    let mut total = 0usize;
    loop {
        while set.len() < 8 && next < 256 {
            let s = sender.clone();
            let p = next;
            set.spawn(async move { s.request(p, 4 * MIB as u32).await });
            next += 1;
        }
        match set.join_next().await {
            Some(r) => total += r.unwrap().unwrap().len(),
            None => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "256 x 4 MiB, 8 in flight: {} MiB in {secs:.2} s = {:.0} MiB/s ({:.2} Gbit/s)",
        total / MIB,
        total as f64 / MIB as f64 / secs,
        total as f64 * 8.0 / secs / 1e9
    );
    assert_eq!(total, 256 * 4 * MIB);
}
