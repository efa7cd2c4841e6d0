//! Helpers shared by the integration tests.

use std::net::SocketAddr;

use bytes::Bytes;
use shoal_core::{InfoHash, PeerId};
use shoal_transport::{Acceptor, Session, TlsConfig, Transport, TransportConfig};
use shoal_wire::Handshake;

pub(crate) fn hs(peer: u8, torrent: u8) -> Handshake {
    Handshake::new(
        PeerId::from_bytes([peer; 32]),
        InfoHash::from_bytes([torrent; 32]),
        Bytes::from_static(&[0xf0]),
        peer == 0,
    )
}

pub(crate) fn config(tls: TlsConfig) -> TransportConfig {
    TransportConfig {
        tls,
        ..TransportConfig::localhost()
    }
}

/// Both TLS modes: (name, config for peer A, config for peer B). The tempdir must outlive them.
pub(crate) fn modes(
    dir: &std::path::Path,
) -> Vec<(&'static str, TransportConfig, TransportConfig)> {
    let pki = shoal_transport::tls::write_test_pki(dir, 2).unwrap();
    vec![
        (
            "dev",
            config(TlsConfig::default()),
            config(TlsConfig::default()),
        ),
        ("ca", config(pki[0].clone()), config(pki[1].clone())),
    ]
}

pub(crate) fn bind(cfg: TransportConfig) -> (Transport, Acceptor) {
    Transport::bind(cfg).unwrap()
}

/// `from` opens a session for `torrent` to `to`, whose acceptor accepts it.
pub(crate) async fn session_pair(
    from: &Transport,
    from_peer: u8,
    to_addr: SocketAddr,
    to_acceptor: &mut Acceptor,
    to_peer: u8,
    torrent: u8,
) -> (Session, Session) {
    let connect = from.connect(to_addr, hs(from_peer, torrent));
    let accept = async {
        let incoming = to_acceptor.accept().await.unwrap();
        assert_eq!(incoming.theirs(), &hs(from_peer, torrent));
        incoming.accept(hs(to_peer, torrent)).await.unwrap()
    };
    let (a, b) = tokio::join!(connect, accept);
    (a.unwrap(), b)
}

/// Deterministic content for piece `piece` of `len` bytes.
pub(crate) fn piece_data(piece: u32, len: usize) -> Bytes {
    let mut x = u64::from(piece).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Serves every request on `session` with `piece_data(piece, len)`.
pub(crate) fn serve(session: Session, len: usize) -> tokio::task::JoinHandle<()> {
    let (_sender, _control, mut requests) = session.split();
    tokio::spawn(async move {
        let _keep = (_sender, _control);
        while let Some(req) = requests.next().await {
            let data = piece_data(req.piece(), len);
            tokio::spawn(req.respond(data));
        }
    })
}
