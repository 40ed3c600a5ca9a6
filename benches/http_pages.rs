//! What a scrape and the console cost on a big server: `/metrics`, the queue list the console's
//! first page loads, and one queue's page (its properties and first 50 messages), with 10,000
//! queues holding a million messages between them (100 each, 64 B), over keep-alive HTTP on
//! loopback. The goal (docs/http.md): each under 100 ms on this 2-core machine.
//!
//! Run with `cargo bench --bench http_pages`. A raw loopback round trip of a tiny response is
//! measured in the same run as the floor (`healthz`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mqemu::net::http::{HttpConfig, HttpServer};
use mqemu::{Message, QueueManager, QueueProps, Tx};

const QUEUES: usize = 10_000;
const PER_QUEUE: usize = 100;

fn pages(c: &mut Criterion) {
    let qm = QueueManager::new();
    let body = bytes::Bytes::from(vec![7u8; 64]);
    for i in 0..QUEUES {
        let q = qm
            .create_queue(&format!(r".\private$\q{i:05}"), QueueProps::default())
            .unwrap();
        let batch = (0..PER_QUEUE).map(|_| Message::new(body.clone())).collect();
        for r in q.send_batch(batch, Tx::None) {
            r.unwrap();
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(HttpServer::bind(
            "127.0.0.1:0",
            qm.clone(),
            HttpConfig::default(),
        ))
        .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    rt.spawn(server.run(std::future::pending()));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let get = |path: &str| -> usize {
        let mut r = agent.get(&format!("{base}{path}")).call().unwrap();
        r.body_mut().read_to_vec().unwrap().len()
    };
    // Sanity: the pages hold what they should.
    let metrics = get("/metrics");
    assert!(
        metrics > QUEUES * 3 * 40,
        "a line per queue and family: {metrics} bytes"
    );
    let mut group = c.benchmark_group("http_pages_10k_queues_1m_messages");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("healthz", |b| b.iter(|| get("/healthz")));
    group.bench_function("metrics", |b| b.iter(|| get("/metrics")));
    group.bench_function("console_queue_list", |b| b.iter(|| get("/api/queues")));
    group.bench_function("console_queue_page", |b| {
        b.iter(|| get("/api/queues/q05000") + get("/api/queues/q05000/messages?limit=50"))
    });
    group.finish();
    drop(rt);
}

criterion_group!(benches, pages);
criterion_main!(benches);
