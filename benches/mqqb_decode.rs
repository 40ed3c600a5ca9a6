//! How fast MS-MQQB user messages decode, beside a copy of the same bytes: `decode` checks
//! every field and copies the label, extension and body out of the packet, so a `memcpy` of the
//! whole packet is its floor. Criterion prints both as MB/s of packet bytes; the ratio is the
//! codec's cost. A 1 KiB body (with a label, a SID and a transaction header, as a Windows
//! sender's transactional message has) and a 64 KiB one.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqnet::mqqb::packet::BaseHeader;
use mqnet::mqqb::user::{
    user_flags, MessageProperties, QueueFormat, SecurityHeader, TransactionHeader, UserHeader,
    UserMessage,
};
use mqnet::mqqb::{decode, encode, Packet};
use uuid::Uuid;

fn packet(body: usize) -> Vec<u8> {
    let m = UserMessage {
        base: BaseHeader {
            reserved: 0,
            flags: 0,
            packet_size: 0,
            time_to_reach_queue: 345_600,
        },
        user: UserHeader {
            source_qm: Uuid::from_u128(0x5573_58d1),
            destination_qm: Uuid::nil(),
            time_to_be_received: u32::MAX,
            sent_time: 1_796_000_000,
            message_id: 2286,
            flags: user_flags::RECOVERABLE,
            destination: QueueFormat::Direct(r"OS:a04bm02\private$\orders".into()),
            admin: QueueFormat::Direct(r"OS:winbox\private$\admin".into()),
            response: QueueFormat::None,
            connector_type: None,
        },
        transaction: Some(TransactionHeader {
            flags: 0x0C,
            sequence_id: 0x4411_05E6_0000_0001,
            sequence_number: 7,
            previous_number: 6,
            connector_qm: None,
        }),
        security: Some(SecurityHeader {
            flags: 1,
            sender_id: vec![1; 28],
            ..SecurityHeader::default()
        }),
        properties: MessageProperties {
            label: "mqsender label".into(),
            body_type: 8,
            allocation_body_size: body as u32,
            body: vec![b'a'; body],
            ..MessageProperties::default()
        },
        debug: None,
        soap: None,
        multi_queue: None,
        session: None,
    };
    let mut out = Vec::new();
    encode(&Packet::User(Box::new(m)), &mut out);
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("mqqb_user_message");
    for body in [1024, 64 * 1024] {
        let bytes = packet(body);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("decode", body), &bytes, |b, bytes| {
            b.iter(|| decode(black_box(bytes)).unwrap())
        });
        let mut copy = vec![0u8; bytes.len()];
        g.bench_with_input(BenchmarkId::new("memcpy", body), &bytes, |b, bytes| {
            b.iter(|| {
                copy.copy_from_slice(black_box(bytes));
                black_box(&copy);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
