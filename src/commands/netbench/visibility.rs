//! `--visibility`: message by message, how long a transactional send takes to commit and how
//! long after its commit a waiting receiver has it, for each target in turn: one server (sent and
//! received there) or transfer (`mqemu://A?to=B`: sent to A, received from B). Unlike a load run,
//! nothing queues up behind the message being measured, so the figure is the path's own latency.

use std::time::{Duration, Instant};

use mqemu::{ErrorCode, Message};
use mqnet::Tx;
use serde_json::json;

use super::measure::Latencies;
use super::native::{connect_mqemu, prepare_mqemu_queue};
use super::target::Target;
use super::{invalid, within, Mode, Options, RTT_MAX, RTT_WARMUP};

/// The commit and commit-to-visibility latencies of one target.
struct Figures {
    commit: Latencies,
    visible: Latencies,
}

async fn probe(opts: &Options, addr: &str, to: &Option<String>) -> mqemu::Result<Figures> {
    let queue = Mode::Transactional.queue();
    let consumer_addr = match to {
        Some(host) => format!("{host}:{}", addr.rsplit_once(':').map_or("", |(_, p)| p)),
        None => addr.to_owned(),
    };
    let consumer = connect_mqemu(&consumer_addr, opts).await?;
    prepare_mqemu_queue(&consumer, Mode::Transactional).await?;
    let producer = connect_mqemu(addr, opts).await?;
    let sender = match to {
        Some(host) => producer.sender(&format!(
            "DIRECT=TCP:{host}\\{}",
            queue.trim_start_matches(".\\")
        )),
        None => within("open the bench queue", producer.open(queue)).await??,
    };
    let receiver = within("open the bench queue", consumer.open(queue)).await??;
    let n = opts.count.min(RTT_MAX);
    let mut figures = Figures {
        commit: Latencies::new(),
        visible: Latencies::new(),
    };
    for i in 0..RTT_WARMUP + n {
        // The receive waits on the server first, so the message is handed to it on arrival.
        let receive = receiver.receive(Duration::from_secs(10), Tx::None);
        let body = vec![0u8; opts.size];
        let t0 = Instant::now();
        let send = async {
            let r = sender.send(Message::new(body), Tx::Single).await;
            (r, Instant::now())
        };
        let ((sent, committed), got) = tokio::join!(send, receive);
        let seen = Instant::now();
        sent?;
        match got {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::IoTimeout => {
                return Err(invalid(format!(
                    "message {i} was not visible within 10 s of its commit"
                )))
            }
            Err(e) => return Err(e),
        }
        if i >= RTT_WARMUP {
            figures.commit.record(committed - t0);
            figures
                .visible
                .record(seen.saturating_duration_since(committed));
        }
    }
    Ok(figures)
}

/// Runs the probes against every mqemu target, `--rounds` times in turn, and reports each
/// target's figures over all rounds.
pub(super) async fn visibility(opts: &Options, targets: &[Target]) -> mqemu::Result<()> {
    let mut all: Vec<Figures> = Vec::new();
    for round in 1..=opts.rounds {
        for (i, target) in targets.iter().enumerate() {
            let Target::Mqemu { addr, to, .. } = target else {
                return Err(invalid("--visibility measures mqemu:// targets"));
            };
            let f = probe(&opts.for_target(target)?, addr, to).await?;
            if !opts.json {
                println!(
                    "round {round}: {target}\n  commit (µs)              {}\n  commit to visible (µs)   {}",
                    f.commit.text(),
                    f.visible.text()
                );
            }
            match all.get_mut(i) {
                Some(a) => {
                    a.commit.merge(&f.commit);
                    a.visible.merge(&f.visible);
                }
                None => all.push(f),
            }
        }
    }
    if opts.json {
        let v: Vec<_> = targets
            .iter()
            .zip(&all)
            .map(|(t, f)| json!({"target": t.to_string(), "commit_us": f.commit.json(), "visible_us": f.visible.json()}))
            .collect();
        println!("{}", json!({ "visibility": v }));
    } else {
        println!("over {} round(s):", opts.rounds);
        for (t, f) in targets.iter().zip(&all) {
            println!(
                "  {t}: commit p50 {:.0} µs p99 {:.0} µs; commit to visible p50 {:.0} µs p99 {:.0} µs",
                f.commit.us(0.5),
                f.commit.us(0.99),
                f.visible.us(0.5),
                f.visible.us(0.99)
            );
        }
    }
    Ok(())
}
