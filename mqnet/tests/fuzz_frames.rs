//! A fuzz target for the frame decoder and the request decoder that runs on stable Rust: random
//! and mutated byte streams, fed in random chunks as a socket would deliver them.
//!
//! The default run is short (CI); `MQEMU_FUZZ_ITERS=1000000 cargo test -p mqnet --release
//! --test fuzz_frames` runs longer, and `MQEMU_FUZZ_SEED` replays a failing seed.
//!
//! What must hold for any input: no panic; nothing is consumed from an incomplete frame; no
//! buffer grows past the frame limit plus the bytes actually received; every frame that decodes
//! is one that was encoded (the crc rules out the rest, up to crc collisions, which mutations of
//! a single frame cannot produce); requests that decode re-encode to the same bytes.

use bytes::BytesMut;
use mqcore::Message;
use mqnet::frame::{self, FrameError};
use mqnet::proto::{self, Envelope, Request, Select, TxRef};

const MAX: usize = 4096;

/// Valid frames to mutate: a spread of request kinds.
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

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>) {
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
                // request decoder sees garbage.
                if input.len() >= frame::HEADER_LEN {
                    let payload = input[frame::HEADER_LEN..].to_vec();
                    input.clear();
                    let mut b = BytesMut::new();
                    frame::encode(&payload, &mut b);
                    input.extend_from_slice(&b);
                }
            }
        }
    }
}

/// Feeds `input` to the decoder in random chunks, as reads from a socket would.
fn run_one(rng: &mut fastrand::Rng, input: &[u8]) {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    while fed < input.len() {
        let n = rng.usize(1..=(input.len() - fed).min(64));
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match frame::decode(&mut buf, MAX) {
                Ok(Some(payload)) => {
                    assert!(payload.len() <= MAX);
                    if let Ok(env) = proto::decode::<Request>(&payload) {
                        let again = proto::frame(env.id, &env.body);
                        let env2: Envelope<Request> =
                            proto::decode(&again[frame::HEADER_LEN..]).unwrap();
                        assert_eq!(format!("{:?}", env.body), format!("{:?}", env2.body));
                    }
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "nothing consumed from a partial frame");
                    assert!(
                        buf.capacity() <= (MAX + frame::HEADER_LEN).max(input.len()) * 2 + 64,
                        "capacity {} for a {MAX}-byte limit",
                        buf.capacity()
                    );
                    break;
                }
                Err(FrameError::TooLong { len, max }) => {
                    assert!(len > max);
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

#[test]
fn frame_decoder_survives_random_and_mutated_input() {
    let iters: u64 = std::env::var("MQEMU_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed: u64 = std::env::var("MQEMU_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x006d_7165_6d75);
    let corpus = corpus();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut decoded = 0u64;
    for i in 0..iters {
        let mut input = if i % 8 == 0 {
            (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
        } else {
            // One to three frames back to back, one of them mutated.
            let mut v = Vec::new();
            for _ in 0..rng.usize(1..4) {
                v.extend_from_slice(&corpus[rng.usize(0..corpus.len())]);
            }
            v
        };
        if i % 8 != 1 {
            mutate(&mut rng, &mut input);
        } else {
            decoded += 1;
        }
        run_one(&mut rng, &input);
    }
    assert!(decoded > 0);
}
