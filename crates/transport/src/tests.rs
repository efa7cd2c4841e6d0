//! Peers that misbehave on purpose, using crate-internal hooks to send raw bytes.

#![allow(clippy::unwrap_used)]

use bytes::{BufMut, Bytes, BytesMut};
use shoal_core::{InfoHash, PeerId};
use shoal_wire::{ErrorCode, FrameDecoder, Handshake, Message, encode};

use crate::{RequestError, Session, SessionError, Transport, TransportConfig};

fn hs(peer: u8) -> Handshake {
    Handshake::new(
        PeerId::from_bytes([peer; 32]),
        InfoHash::from_bytes([1; 32]),
        Bytes::new(),
        false,
    )
}

fn frame(msg: &Message) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf).unwrap();
    buf
}

async fn pair() -> (Transport, Transport, Session, Session) {
    let (a, _) = Transport::bind(TransportConfig::localhost()).unwrap();
    let (b, mut acc) = Transport::bind(TransportConfig::localhost()).unwrap();
    let (s_a, s_b) = tokio::join!(a.connect(b.local_addr(), hs(1)), async {
        acc.accept().await.unwrap().accept(hs(2)).await.unwrap()
    });
    (a, b, s_a.unwrap(), s_b)
}

/// Opens a raw stream from `a` to `b`, sends `bytes` and returns the first frame of the answer.
async fn raw_exchange(a: &Transport, b: &Transport, bytes: &[u8]) -> Option<Message> {
    let (mut send, mut recv) = a.raw_stream(b.local_addr()).await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let data = recv.read_to_end(1 << 16).await.unwrap();
    FrameDecoder::default()
        .decode(&mut BytesMut::from(&data[..]))
        .unwrap()
}

#[tokio::test]
async fn malformed_stream_openings_get_a_protocol_error() {
    let (a, b, s_a, mut s_b) = pair().await;
    let protocol = |m: Option<Message>| {
        matches!(
            m,
            Some(Message::Error {
                code: ErrorCode::Protocol,
                ..
            })
        )
    };
    // Garbage body.
    let mut garbage = BytesMut::new();
    garbage.put_u32(3);
    garbage.put_slice(&[0xff, 0xff, 0xff]);
    assert!(protocol(raw_exchange(&a, &b, &garbage).await));
    // Oversized length prefix.
    assert!(protocol(
        raw_exchange(&a, &b, &u32::MAX.to_be_bytes()).await
    ));
    // Truncated frame.
    assert!(protocol(
        raw_exchange(&a, &b, &frame(&Message::Have(1))[..3]).await
    ));
    // A frame that cannot open a stream.
    assert!(protocol(
        raw_exchange(&a, &b, &frame(&Message::Complete)).await
    ));
    // A handshake of another protocol version.
    let mut v2 = hs(1);
    v2.version = 2;
    assert!(protocol(
        raw_exchange(&a, &b, &frame(&Message::Handshake(v2))).await
    ));
    // The connection and the session survive all that.
    s_a.send(Message::Have(1)).await.unwrap();
    assert_eq!(s_b.recv().await.unwrap(), Some(Message::Have(1)));
}

#[tokio::test]
async fn malformed_control_frames_are_typed_errors() {
    let (_a, _b, s_a, mut s_b) = pair().await;
    s_a.split()
        .0
        .send_raw(
            frame(&Message::Request {
                piece: 1,
                info_hash: InfoHash::from_bytes([1; 32]),
            })
            .freeze(),
        )
        .await
        .unwrap();
    assert!(matches!(
        s_b.recv().await,
        Err(SessionError::Unexpected("request"))
    ));

    let (_a, _b, s_a, mut s_b) = pair().await;
    s_a.split()
        .0
        .send_raw(Bytes::from_static(&[0, 0, 0, 2, 0xff, 0xff]))
        .await
        .unwrap();
    assert!(matches!(s_b.recv().await, Err(SessionError::Wire(_))));

    let (_a, _b, s_a, mut s_b) = pair().await;
    s_a.split()
        .0
        .send_raw(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]))
        .await
        .unwrap();
    assert!(matches!(s_b.recv().await, Err(SessionError::Wire(_))));
}

#[tokio::test]
async fn malformed_piece_answers_are_typed_errors() {
    let (_a, _b, s_a, mut s_b) = pair().await;
    tokio::spawn(async move {
        while let Some(req) = s_b.next_request().await {
            let mut out = BytesMut::new();
            match req.piece() {
                // Garbage instead of a header.
                0 => out.put_slice(&[0, 0, 0, 2, 0xff, 0xff]),
                // Header of another piece.
                1 => {
                    out = frame(&Message::Piece {
                        piece: 9,
                        length: 1,
                    })
                }
                // Fewer bytes than announced.
                2 => {
                    out = frame(&Message::Piece {
                        piece: 2,
                        length: 10,
                    });
                    out.put_slice(b"abc");
                }
                // More bytes than announced.
                3 => {
                    out = frame(&Message::Piece {
                        piece: 3,
                        length: 4,
                    });
                    out.put_slice(b"abcde");
                }
                // A huge frame length where a header should be.
                4 => out.put_u32(1 << 30),
                // A frame that does not answer a request.
                _ => out = frame(&Message::Complete),
            }
            let _ = req.send_raw(out.freeze()).await;
        }
    });
    let err = s_a.request(0, 4).await.unwrap_err();
    assert!(matches!(err, RequestError::Wire(_)), "{err:?}");
    let err = s_a.request(1, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::WrongPiece {
                requested: 1,
                got: 9
            }
        ),
        "{err:?}"
    );
    let err = s_a.request(2, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Truncated {
                received: 3,
                expected: 10
            }
        ),
        "{err:?}"
    );
    let err = s_a.request(3, 4).await.unwrap_err();
    assert!(matches!(err, RequestError::TrailingData), "{err:?}");
    let err = s_a.request(4, 4).await.unwrap_err();
    assert!(matches!(err, RequestError::Wire(_)), "{err:?}");
    let err = s_a.request(5, 4).await.unwrap_err();
    assert!(
        matches!(err, RequestError::Unexpected("complete")),
        "{err:?}"
    );
}
