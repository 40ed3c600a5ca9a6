//! A fuzz target for the frame decoder and the request decoder that runs on stable Rust: valid,
//! random and mutated byte streams, fed in random chunks as a socket would deliver them.
//!
//! The default run is short (CI); `MQEMU_FUZZ_ITERS=1000000 cargo test -p mqnet --release
//! --test fuzz_frames` runs longer, and `MQEMU_FUZZ_SEED` replays a failing seed.
//!
//! What must hold:
//! - valid frames, several back to back, decode to exactly the payloads encoded, in order, each
//!   taking exactly its own bytes off the buffer, however the bytes arrive;
//! - for any input: no panic; nothing is consumed from an incomplete frame; no buffer grows past
//!   the frame limit plus the bytes actually received (a length over the limit is refused before
//!   any room is reserved); every frame that decodes is one that was encoded (the crc rules out
//!   the rest, up to crc collisions, which the fixed seed does not produce), and anything else is
//!   refused with an error;
//! - requests re-encode to the bytes they came from, and a mutated payload that still decodes as
//!   a request re-encodes to one that decodes to the same request.

use bytes::{Bytes, BytesMut};
use mqcore::Message;
use mqnet::frame::{self, FrameError};
use mqnet::proto::{self, Envelope, Request, Select, TxRef};

const MAX: usize = 4096;

fn iters(default: u64) -> u64 {
    std::env::var("MQEMU_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rng() -> fastrand::Rng {
    let seed: u64 = std::env::var("MQEMU_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x006d_7165_6d75);
    fastrand::Rng::with_seed(seed)
}

/// Valid request frames: a spread of request kinds.
fn corpus() -> Vec<Vec<u8>> {
    let reqs = [
        Request::Ping,
        Request::Hello {
            min_version: 1,
            max_version: 1,
            token: Some("t".into()),
            client: "fuzz".into(),
        },
        Request::Send {
            queue: r".\private$\q".into(),
            msg: Box::new(Message::new("body").with_label("label").with_priority(5)),
            tx: TxRef::Single,
        },
        Request::Receive {
            queue: r".\private$\q;poison".into(),
            select: Select::Head,
            timeout_ms: 1000,
            tx: TxRef::In(7),
        },
        Request::Commit { tx: 3 },
        Request::ListQueues,
    ];
    reqs.iter()
        .enumerate()
        .map(|(i, r)| proto::frame(i as u64, r).to_vec())
        .collect()
}

/// A payload a frame may carry: empty, small, a request's, or (one in `big` times) up to the
/// limit exactly.
fn random_payload(rng: &mut fastrand::Rng, corpus: &[Vec<u8>], big: u32) -> Vec<u8> {
    let len = if rng.u32(0..big) == 0 {
        match rng.u8(0..2) {
            0 => MAX,
            _ => rng.usize(0..=MAX),
        }
    } else {
        match rng.u8(0..6) {
            0 => 0,
            1 => {
                let f = &corpus[rng.usize(0..corpus.len())];
                return f[frame::HEADER_LEN..].to_vec();
            }
            _ => rng.usize(0..64),
        }
    };
    let mut p = vec![0; len];
    rng.fill(&mut p);
    p
}

/// Frames holding `payloads`, back to back in one buffer.
fn encode_all(payloads: &[Vec<u8>]) -> BytesMut {
    let mut wire = BytesMut::new();
    for p in payloads {
        frame::encode(p, &mut wire);
    }
    wire
}

/// Changes `input` at random, and adds to `encoded` any payload it frames anew.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, encoded: &mut Vec<Vec<u8>>) {
    for _ in 0..rng.usize(1..4) {
        match rng.u8(0..6) {
            0 if !input.is_empty() => {
                let i = rng.usize(0..input.len());
                input[i] ^= 1 << rng.u8(0..8);
            }
            1 if !input.is_empty() => {
                let i = rng.usize(0..input.len());
                input[i] = rng.u8(..);
            }
            2 => input.truncate(rng.usize(0..=input.len())),
            3 => {
                let at = rng.usize(0..=input.len());
                let extra: Vec<u8> = (0..rng.usize(0..16)).map(|_| rng.u8(..)).collect();
                input.splice(at..at, extra);
            }
            4 if input.len() >= 4 => {
                // A plausible-looking length: near the limit, over it, or huge.
                let len: u32 = match rng.u8(0..3) {
                    0 => rng.u32(0..MAX as u32 + 16),
                    1 => MAX as u32 + 1,
                    _ => u32::MAX,
                };
                input[..4].copy_from_slice(&len.to_le_bytes());
            }
            _ => {
                // Re-seal: a frame whose crc is right but whose payload is mutated, so the
                // request decoder sees garbage. It is encoded here, so it may decode.
                if input.len() >= frame::HEADER_LEN && input.len() - frame::HEADER_LEN <= MAX {
                    let payload = input[frame::HEADER_LEN..].to_vec();
                    input.clear();
                    let mut b = BytesMut::new();
                    frame::encode(&payload, &mut b);
                    input.extend_from_slice(&b);
                    encoded.push(payload);
                }
            }
        }
    }
}

/// What feeding a stream to the decoder gave.
#[derive(Debug, Default)]
struct Outcome {
    /// The payloads decoded, in order.
    frames: Vec<Bytes>,
    /// The error that ended the stream, if one did.
    refused: Option<FrameError>,
    /// Bytes left in the buffer at the end (a partial frame).
    left: usize,
}

/// Feeds `input` to the decoder in random chunks, as reads from a socket would, and checks on
/// every call what must hold for any input: a frame taken off consumes exactly its own bytes,
/// nothing is consumed from an incomplete frame, and the buffer never grows past the limit plus
/// the bytes received.
fn feed(rng: &mut fastrand::Rng, input: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let room = |fed: usize| (frame::HEADER_LEN + MAX).max(fed) * 2 + 64;
    while fed < input.len() {
        // Mostly small reads, some that bring in many frames at once.
        let most = if rng.u8(0..4) == 0 { 4096 } else { 64 };
        let n = rng.usize(1..=(input.len() - fed).min(most));
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            let got = frame::decode(&mut buf, MAX);
            assert!(
                buf.capacity() <= room(fed),
                "capacity {} after {fed} bytes for a {MAX}-byte limit ({got:?})",
                buf.capacity()
            );
            match got {
                Ok(Some(payload)) => {
                    assert!(payload.len() <= MAX);
                    assert_eq!(
                        before - buf.len(),
                        frame::HEADER_LEN + payload.len(),
                        "a frame takes exactly its own bytes"
                    );
                    out.frames.push(payload);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "nothing consumed from a partial frame");
                    break;
                }
                Err(e) => {
                    out.refused = Some(e);
                    out.left = buf.len();
                    return out;
                }
            }
        }
    }
    out.left = buf.len();
    out
}

#[test]
fn valid_frames_back_to_back_round_trip_exactly() {
    let corpus = corpus();
    let mut rng = rng();
    let mut decoded = 0u64;
    for _ in 0..iters(200_000) / 40 {
        let payloads: Vec<Vec<u8>> = (0..rng.usize(1..6))
            .map(|_| random_payload(&mut rng, &corpus, 4))
            .collect();
        let wire = encode_all(&payloads);
        let expected_len: usize = payloads.iter().map(|p| frame::HEADER_LEN + p.len()).sum();
        assert_eq!(wire.len(), expected_len);

        // All of it in the buffer at once.
        let mut buf = wire.clone();
        for p in &payloads {
            let before = buf.len();
            let got = frame::decode(&mut buf, MAX)
                .expect("a valid frame decodes")
                .expect("a whole frame is there");
            assert!(
                got[..] == p[..],
                "decoded {} bytes for {}",
                got.len(),
                p.len()
            );
            assert_eq!(before - buf.len(), frame::HEADER_LEN + p.len());
            decoded += 1;
        }
        assert!(buf.is_empty(), "the frames took every byte and no more");
        assert_eq!(frame::decode(&mut buf, MAX), Ok(None));

        // The same bytes in random chunks.
        let out = feed(&mut rng, &wire);
        assert_eq!(out.refused, None);
        assert_eq!(out.left, 0);
        let got: Vec<&[u8]> = out.frames.iter().map(|f| &f[..]).collect();
        let want: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
        let lens = |v: &[&[u8]]| v.iter().map(|f| f.len()).collect::<Vec<_>>();
        assert!(
            got == want,
            "in chunks, decoded frames of {:?} bytes for {:?}",
            lens(&got),
            lens(&want)
        );
        decoded += out.frames.len() as u64;
    }
    assert!(decoded > 0);
}

#[test]
fn mutated_streams_decode_only_encoded_frames_or_are_refused() {
    let corpus = corpus();
    let mut rng = rng();
    let (mut decoded, mut too_long, mut bad_crc) = (0u64, 0u64, 0u64);
    for i in 0..iters(200_000) {
        let mut encoded = Vec::new();
        let mut input = if i % 8 == 0 {
            (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
        } else {
            let payloads: Vec<Vec<u8>> = (0..rng.usize(1..4))
                .map(|_| random_payload(&mut rng, &corpus, 256))
                .collect();
            let wire = encode_all(&payloads).to_vec();
            encoded.extend(payloads);
            wire
        };
        mutate(&mut rng, &mut input, &mut encoded);
        let out = feed(&mut rng, &input);
        for f in &out.frames {
            assert!(
                encoded.iter().any(|e| e[..] == f[..]),
                "decoded a frame that was never encoded: {} bytes",
                f.len()
            );
        }
        decoded += out.frames.len() as u64;
        match out.refused {
            None => {}
            Some(FrameError::TooLong { len, max }) => {
                assert!(len > max);
                too_long += 1;
            }
            Some(FrameError::BadCrc { expected, actual }) => {
                assert_ne!(expected, actual);
                bad_crc += 1;
            }
            Some(e @ FrameError::Truncated { .. }) => {
                panic!("the decoder leaves a cut frame to the reader: {e}")
            }
        }
    }
    // The run reached each outcome: frames that survived, and both refusals.
    assert!(decoded > 0, "no frame decoded");
    assert!(too_long > 0, "no length over the limit was refused");
    assert!(bad_crc > 0, "no bad crc was refused");
}

#[test]
fn requests_re_encode_to_what_they_came_from() {
    for f in corpus() {
        let env: Envelope<Request> = proto::decode(&f[frame::HEADER_LEN..]).unwrap();
        assert_eq!(&proto::frame(env.id, &env.body)[..], &f[..]);
    }
    let corpus = corpus();
    let mut rng = rng();
    let mut requests = 0u64;
    for _ in 0..iters(200_000) / 4 {
        let mut input = corpus[rng.usize(0..corpus.len())].clone();
        mutate(&mut rng, &mut input, &mut Vec::new());
        for payload in feed(&mut rng, &input).frames {
            // postcard ignores trailing bytes, so only the request, not its bytes, must survive.
            if let Ok(env) = proto::decode::<Request>(&payload) {
                let again = proto::frame(env.id, &env.body);
                let env2: Envelope<Request> = proto::decode(&again[frame::HEADER_LEN..]).unwrap();
                assert_eq!(env.id, env2.id);
                assert_eq!(format!("{:?}", env.body), format!("{:?}", env2.body));
                requests += 1;
            }
        }
    }
    assert!(requests > 0, "no mutated frame decoded as a request");
}
