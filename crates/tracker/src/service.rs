//! The gRPC service: request validation and translation between the wire and the tables.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use prometheus_client::metrics::counter::Counter;
use shoal_core::{Digest, InfoHash, PeerId, RepoName};
use shoal_engine::handout::PeerEntry;
use tonic::{Request, Response, Status};

use crate::metainfo::{LookupError, MetaInfoSource};
use crate::peers::PeerTables;
use crate::proto::{
    AnnounceEvent, AnnounceRequest, AnnounceResponse, MetaInfoRequest, MetaInfoResponse, Peer,
    tracker_server,
};

/// Counters of the announce path.
#[derive(Debug, Clone)]
pub(crate) struct AnnounceMetrics {
    /// Announces accepted (any event).
    pub(crate) announces: Counter,
    /// Announces rejected as invalid.
    pub(crate) invalid: Counter,
}

/// How long an announce waits for the metainfo lookup that tells it the torrent's origins.
const ORIGIN_LOOKUP_WAIT: Duration = Duration::from_secs(2);

/// State shared by every request (the generated server holds it in an `Arc`).
#[derive(Debug)]
pub(crate) struct TrackerService {
    pub(crate) peers: Arc<PeerTables>,
    pub(crate) metainfo: MetaInfoSource,
    pub(crate) interval: Duration,
    pub(crate) ttl: Duration,
    pub(crate) max_peers: usize,
    pub(crate) metrics: AnnounceMetrics,
}

#[tonic::async_trait]
impl tracker_server::Tracker for TrackerService {
    async fn announce(
        &self,
        request: Request<AnnounceRequest>,
    ) -> Result<Response<AnnounceResponse>, Status> {
        let remote = remote_addr(&request);
        let req = request.into_inner();
        let parsed = parse_announce(&req, remote).inspect_err(|_| {
            self.metrics.invalid.inc();
        })?;
        self.metrics.announces.inc();
        let interval_ms = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if parsed.event == AnnounceEvent::Stopped {
            self.peers.remove(&parsed.torrent, &parsed.entry.peer_id);
            return Ok(Response::new(AnnounceResponse {
                peers: Vec::new(),
                interval_ms,
            }));
        }
        // Looked up before the peer tables are touched: never two locks at once.
        let mut origins = self.metainfo.origin_peers(&parsed.torrent);
        if origins.is_empty() {
            // Lookups route by digest and announces by info hash, and after a failover this
            // tracker may never have seen the torrent's metainfo: fetch it now (once, shared,
            // cached) from the blob named in the announce, to hand out its seeding origins.
            if let (Ok(ns), Ok(digest)) = (
                req.namespace.parse::<RepoName>(),
                req.digest.parse::<Digest>(),
            ) {
                let fetched =
                    tokio::time::timeout(ORIGIN_LOOKUP_WAIT, self.metainfo.get(&ns, digest)).await;
                if let Ok(Err(e)) = fetched {
                    tracing::debug!(%digest, "announce: metainfo for origin peers: {e}");
                }
                origins = self.metainfo.origin_peers(&parsed.torrent);
            }
        }
        let now = tokio::time::Instant::now();
        let chosen = self.peers.announce(
            parsed.torrent,
            parsed.entry,
            &origins,
            now + self.ttl,
            now,
            self.max_peers,
        );
        Ok(Response::new(AnnounceResponse {
            peers: chosen.into_iter().map(to_wire).collect(),
            interval_ms,
        }))
    }

    async fn get_meta_info(
        &self,
        request: Request<MetaInfoRequest>,
    ) -> Result<Response<MetaInfoResponse>, Status> {
        let req = request.into_inner();
        let ns: RepoName = req
            .namespace
            .parse()
            .map_err(|e| Status::invalid_argument(format!("namespace: {e}")))?;
        let digest: Digest = req
            .digest
            .parse()
            .map_err(|e| Status::invalid_argument(format!("digest: {e}")))?;
        match self.metainfo.get(&ns, digest).await {
            Ok(metainfo) => Ok(Response::new(MetaInfoResponse { metainfo })),
            Err(e @ LookupError::NotFound(_)) => Err(Status::not_found(e.to_string())),
            Err(e @ LookupError::Unavailable(_)) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// The address the call came from: tonic's own transport records `TcpConnectInfo`, axum's
/// `serve` (which this crate uses) records `ConnectInfo<SocketAddr>`.
fn remote_addr<T>(request: &Request<T>) -> Option<SocketAddr> {
    request.remote_addr().or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
    })
}

/// A validated announce.
#[derive(Debug)]
struct Announce {
    torrent: InfoHash,
    entry: PeerEntry,
    event: AnnounceEvent,
}

fn parse_announce(req: &AnnounceRequest, remote: Option<SocketAddr>) -> Result<Announce, Status> {
    let torrent = <[u8; 32]>::try_from(req.info_hash.as_slice())
        .map(InfoHash::from_bytes)
        .map_err(|_| {
            Status::invalid_argument(format!(
                "info_hash must be 32 bytes, got {}",
                req.info_hash.len()
            ))
        })?;
    let peer_id = PeerId::from_slice(&req.peer_id).ok_or_else(|| {
        Status::invalid_argument(format!(
            "peer_id must be 32 bytes, got {}",
            req.peer_id.len()
        ))
    })?;
    let port = u16::try_from(req.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("port {} out of range", req.port)))?;
    let event = AnnounceEvent::try_from(req.event)
        .map_err(|_| Status::invalid_argument(format!("unknown event {}", req.event)))?;
    let ip = parse_ip(&req.ip, remote)?;
    Ok(Announce {
        torrent,
        entry: PeerEntry {
            peer_id,
            addr: SocketAddr::new(ip, port),
            complete: req.complete,
            is_origin: req.is_origin,
            bytes_done: req.bytes_done,
        },
        event,
    })
}

/// The peer's address: as given (IPv4, IPv6, bracketed IPv6), or the caller's address when
/// empty or unspecified. IPv4-mapped IPv6 addresses are reported as IPv4.
fn parse_ip(ip: &str, remote: Option<SocketAddr>) -> Result<IpAddr, Status> {
    let text = ip.trim();
    let given = if text.is_empty() {
        None
    } else {
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        let parsed: IpAddr = bare
            .parse()
            .map_err(|_| Status::invalid_argument(format!("ip {ip:?} is not an IP address")))?;
        Some(parsed).filter(|a| !a.is_unspecified())
    };
    given
        .or_else(|| remote.map(|r| r.ip()))
        .map(|a| a.to_canonical())
        .ok_or_else(|| Status::invalid_argument("ip is empty and the caller's address is unknown"))
}

fn to_wire(p: PeerEntry) -> Peer {
    Peer {
        peer_id: p.peer_id.as_bytes().to_vec(),
        ip: p.addr.ip().to_string(),
        port: u32::from(p.addr.port()),
        complete: p.complete,
        is_origin: p.is_origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_parse_or_fall_back_to_the_caller() {
        let remote: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let ok = |s: &str| parse_ip(s, Some(remote)).unwrap().to_string();
        assert_eq!(ok("10.1.2.3"), "10.1.2.3");
        assert_eq!(ok("::1"), "::1");
        assert_eq!(ok("[fe80::1]"), "fe80::1");
        assert_eq!(ok(""), "192.0.2.7");
        assert_eq!(ok("0.0.0.0"), "192.0.2.7");
        assert_eq!(ok("::"), "192.0.2.7");
        assert_eq!(ok("::ffff:10.0.0.1"), "10.0.0.1");
        for bad in ["host.example", "1.2.3", "[::1", "1.2.3.4:80"] {
            assert_eq!(
                parse_ip(bad, Some(remote)).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
        assert!(parse_ip("", None).is_err());
    }

    #[test]
    fn announces_are_validated() {
        let good = AnnounceRequest {
            info_hash: vec![1; 32],
            peer_id: vec![2; 32],
            ip: "10.0.0.1".into(),
            port: 7000,
            ..AnnounceRequest::default()
        };
        let a = parse_announce(&good, None).unwrap();
        assert_eq!(a.entry.addr, "10.0.0.1:7000".parse().unwrap());
        assert_eq!(a.event, AnnounceEvent::Unspecified);
        let bad = [
            AnnounceRequest {
                info_hash: vec![1; 31],
                ..good.clone()
            },
            AnnounceRequest {
                peer_id: vec![2; 33],
                ..good.clone()
            },
            AnnounceRequest {
                port: 0,
                ..good.clone()
            },
            AnnounceRequest {
                port: 65536,
                ..good.clone()
            },
            AnnounceRequest {
                event: 9,
                ..good.clone()
            },
        ];
        for req in bad {
            let err = parse_announce(&req, None).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{req:?}");
        }
    }
}
