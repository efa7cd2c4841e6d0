//! Round trips, limits and error cases of the frame codec.

#![allow(clippy::unwrap_used)]

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;
use shoal_core::{InfoHash, PeerId};
use shoal_wire::{
    DEFAULT_MAX_FRAME_LEN, ErrorCode, FrameDecoder, Handshake, MAX_BITFIELD_LEN, MAX_STRING_LEN,
    Message, PROTOCOL_VERSION, WireError, encode, pb,
};

fn handshake() -> Handshake {
    Handshake::new(
        PeerId::from_bytes([7; 32]),
        InfoHash::from_bytes([9; 32]),
        Bytes::from_static(&[0xff, 0x80]),
        true,
    )
}

fn all_messages() -> Vec<Message> {
    let mut empty_bitfield = handshake();
    empty_bitfield.bitfield = Bytes::new();
    empty_bitfield.is_origin = false;
    vec![
        Message::Handshake(handshake()),
        Message::Handshake(empty_bitfield),
        Message::Have(0),
        Message::Have(u32::MAX),
        Message::Request {
            piece: 42,
            info_hash: InfoHash::from_bytes([3; 32]),
        },
        Message::Piece {
            piece: 1,
            length: 4 << 20,
        },
        Message::Cancel(5),
        Message::Complete,
        Message::Error {
            code: ErrorCode::PieceUnavailable,
            message: "nope".into(),
        },
        Message::error(ErrorCode::Unspecified, ""),
        Message::error(ErrorCode::UnknownTorrent, "x"),
        Message::error(ErrorCode::TooManyConnections, "x"),
        Message::error(ErrorCode::Protocol, "x"),
        Message::error(ErrorCode::GoingAway, "bye"),
    ]
}

fn frame_bytes(frame: &pb::Frame) -> BytesMut {
    let body = frame.encode_to_vec();
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body);
    buf
}

fn decode_one(frame: &pb::Frame) -> Result<Option<Message>, WireError> {
    FrameDecoder::default().decode(&mut frame_bytes(frame))
}

#[test]
fn every_message_round_trips() {
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    for msg in all_messages() {
        encode(&msg, &mut buf).unwrap();
    }
    for msg in all_messages() {
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(msg));
    }
    assert!(buf.is_empty());
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(handshake().version, PROTOCOL_VERSION);
}

#[test]
fn truncated_frames_wait_for_more_bytes() {
    let decoder = FrameDecoder::default();
    let mut whole = BytesMut::new();
    encode(&Message::Handshake(handshake()), &mut whole).unwrap();
    encode(&Message::Have(3), &mut whole).unwrap();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    // Feed one byte at a time: nothing comes out until a frame is complete.
    for &b in whole.iter() {
        buf.put_u8(b);
        if let Some(msg) = decoder.decode(&mut buf).unwrap() {
            out.push(msg);
        }
    }
    assert_eq!(out, vec![Message::Handshake(handshake()), Message::Have(3)]);
}

#[test]
fn oversized_length_prefix_is_an_error_before_the_body_arrives() {
    let decoder = FrameDecoder::new(100);
    let mut buf = BytesMut::new();
    buf.put_u32(101);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(WireError::FrameTooLong { len: 101, max: 100 })
    );
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        FrameDecoder::default().decode(&mut buf),
        Err(WireError::FrameTooLong {
            len: u32::MAX,
            max: DEFAULT_MAX_FRAME_LEN
        })
    ));
    // A large handshake fits the default maximum.
    let mut big = handshake();
    big.bitfield = Bytes::from(vec![0u8; MAX_BITFIELD_LEN]);
    let mut buf = BytesMut::new();
    encode(&Message::Handshake(big.clone()), &mut buf).unwrap();
    assert_eq!(
        FrameDecoder::default().decode(&mut buf).unwrap(),
        Some(Message::Handshake(big))
    );
}

#[test]
fn bad_handshake_fields_are_typed_errors() {
    let good = pb::Handshake {
        protocol_version: 1,
        peer_id: Bytes::from(vec![1; 32]),
        info_hash: Bytes::from(vec![2; 32]),
        bitfield: Bytes::new(),
        is_origin: false,
    };
    let wrap = |h: pb::Handshake| pb::Frame {
        kind: Some(pb::frame::Kind::Handshake(h)),
    };
    assert!(matches!(
        decode_one(&wrap(good.clone())),
        Ok(Some(Message::Handshake(_)))
    ));
    let mut h = good.clone();
    h.peer_id = Bytes::from(vec![1; 31]);
    assert_eq!(
        decode_one(&wrap(h)),
        Err(WireError::IdLength {
            field: "peer_id",
            len: 31
        })
    );
    let mut h = good.clone();
    h.info_hash = Bytes::new();
    assert_eq!(
        decode_one(&wrap(h)),
        Err(WireError::IdLength {
            field: "info_hash",
            len: 0
        })
    );
    let mut h = good;
    h.bitfield = Bytes::from(vec![0; MAX_BITFIELD_LEN + 1]);
    assert_eq!(
        decode_one(&wrap(h)),
        Err(WireError::BitfieldTooLong {
            len: MAX_BITFIELD_LEN + 1,
            max: MAX_BITFIELD_LEN
        })
    );
}

#[test]
fn other_bad_frames_are_typed_errors() {
    assert_eq!(
        decode_one(&pb::Frame { kind: None }),
        Err(WireError::MissingKind)
    );
    let request = pb::Frame {
        kind: Some(pb::frame::Kind::Request(pb::Request {
            piece: 1,
            info_hash: Bytes::from(vec![0; 33]),
        })),
    };
    assert_eq!(
        decode_one(&request),
        Err(WireError::IdLength {
            field: "info_hash",
            len: 33
        })
    );
    let error = |code: i32, message: String| pb::Frame {
        kind: Some(pb::frame::Kind::Error(pb::Error { code, message })),
    };
    assert_eq!(
        decode_one(&error(99, String::new())),
        Err(WireError::UnknownErrorCode(99))
    );
    assert_eq!(
        decode_one(&error(1, "x".repeat(MAX_STRING_LEN + 1))),
        Err(WireError::StringTooLong {
            len: MAX_STRING_LEN + 1,
            max: MAX_STRING_LEN
        })
    );
    // Garbage body.
    let mut buf = BytesMut::new();
    buf.put_u32(3);
    buf.put_slice(&[0xff, 0xff, 0xff]);
    assert!(matches!(
        FrameDecoder::default().decode(&mut buf),
        Err(WireError::Decode(_))
    ));
}

#[test]
fn encode_refuses_what_a_receiver_would_reject() {
    let mut buf = BytesMut::new();
    let long = Message::Error {
        code: ErrorCode::Protocol,
        message: "é".repeat(MAX_STRING_LEN),
    };
    assert!(matches!(
        encode(&long, &mut buf),
        Err(WireError::StringTooLong { .. })
    ));
    assert!(buf.is_empty());
    // The constructor truncates at a character boundary instead.
    let Message::Error { message, .. } =
        Message::error(ErrorCode::Protocol, "é".repeat(MAX_STRING_LEN))
    else {
        unreachable!()
    };
    assert_eq!(message.len(), MAX_STRING_LEN);
    let mut big = handshake();
    big.bitfield = Bytes::from(vec![0; MAX_BITFIELD_LEN + 1]);
    assert!(matches!(
        encode(&Message::Handshake(big), &mut buf),
        Err(WireError::BitfieldTooLong { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        max in 0u32..1024,
    ) {
        let decoder = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&bytes[..]);
        // Decode until an error or no complete frame is left.
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }

    #[test]
    fn plausible_frames_never_panic(
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
    ) {
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32);
        buf.put_slice(&body);
        let _ = FrameDecoder::default().decode(&mut buf);
    }

    #[test]
    fn have_round_trips(piece in proptest::num::u32::ANY) {
        let mut buf = BytesMut::new();
        encode(&Message::Have(piece), &mut buf).unwrap();
        proptest::prop_assert_eq!(FrameDecoder::default().decode(&mut buf).unwrap(), Some(Message::Have(piece)));
    }
}
