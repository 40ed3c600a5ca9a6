//! Random operation sequences against a reference model of MSMQ's queue semantics.
//!
//! The model is deliberately naive: per queue, a `BTreeMap` keyed by (priority rank, arrival
//! sequence) plus, per open transaction, its staged sends and the messages it holds with their
//! original keys. After every step the engine's visible contents must equal the model's, and every
//! receive must return the message the model predicts (so order, exactly-once receive and abort
//! restoration are all checked), including which operations MSMQ refuses.

use std::collections::BTreeMap;
use std::time::Duration;

use mqcore::{ErrorCode, Message, Queue, QueueManager, QueueProps, Transaction, Tx};
use proptest::prelude::*;

const QUEUES: usize = 3;
const MAX_TX: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Begin,
    /// Send to `queue` with `priority`; `tx` picks an open transaction (modulo), or none.
    Send {
        queue: usize,
        priority: u8,
        tx: Option<usize>,
    },
    /// Send as a single-message transaction.
    SendSingle {
        queue: usize,
    },
    Receive {
        queue: usize,
        tx: Option<usize>,
    },
    Commit {
        tx: usize,
    },
    Abort {
        tx: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES;
    let tx = proptest::option::of(0..MAX_TX);
    prop_oneof![
        1 => Just(Op::Begin),
        4 => (q.clone(), 0u8..=7, tx.clone()).prop_map(|(queue, priority, tx)| Op::Send { queue, priority, tx }),
        1 => q.clone().prop_map(|queue| Op::SendSingle { queue }),
        4 => (q, tx).prop_map(|(queue, tx)| Op::Receive { queue, tx }),
        1 => (0..MAX_TX).prop_map(|tx| Op::Commit { tx }),
        1 => (0..MAX_TX).prop_map(|tx| Op::Abort { tx }),
    ]
}

/// A message in the model: its body tag and how often a receive of it was aborted.
#[derive(Debug, Clone, PartialEq)]
struct M {
    tag: u64,
    aborts: u32,
}

type Key = (u8, u64);

#[derive(Default)]
struct ModelTx {
    sends: Vec<(usize, u8, u64)>,
    held: Vec<(usize, Key, M)>,
}

struct Model {
    queues: Vec<BTreeMap<Key, M>>,
    seq: u64,
    txs: Vec<ModelTx>,
}

impl Model {
    fn publish(&mut self, queue: usize, priority: u8, tag: u64) {
        self.seq += 1;
        self.queues[queue].insert((7 - priority, self.seq), M { tag, aborts: 0 });
    }
}

fn transactional(queue: usize) -> bool {
    queue != 0 // queue 0 is non-transactional, 1 and 2 transactional
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let qm = QueueManager::new();
    let queues: Vec<Queue> = (0..QUEUES)
        .map(|i| {
            let props = QueueProps {
                transactional: transactional(i),
                ..QueueProps::default()
            };
            qm.create_queue(&format!(r".\private$\q{i}"), props)
                .unwrap()
        })
        .collect();
    let mut model = Model {
        queues: vec![BTreeMap::new(); QUEUES],
        seq: 0,
        txs: Vec::new(),
    };
    let mut txs: Vec<Transaction> = Vec::new();
    let mut next_tag = 0u64;

    for op in ops {
        match op {
            Op::Begin => {
                if txs.len() < MAX_TX {
                    txs.push(qm.begin());
                    model.txs.push(ModelTx::default());
                }
            }
            Op::Send {
                queue,
                priority,
                tx,
            } => {
                next_tag += 1;
                let tag = next_tag;
                let msg = Message::new(tag.to_string()).with_priority(priority);
                let tx = tx.filter(|_| !txs.is_empty()).map(|t| t % txs.len());
                let r = queues[queue].send(msg, tx.map_or(Tx::None, |t| Tx::In(&txs[t])));
                if transactional(queue) != tx.is_some() {
                    prop_assert_eq!(r.unwrap_err().code(), ErrorCode::TransactionUsage);
                    continue;
                }
                r.unwrap();
                match tx {
                    // Transactional messages are forced to priority 0.
                    Some(t) => model.txs[t].sends.push((queue, 0, tag)),
                    None => model.publish(queue, priority, tag),
                }
            }
            Op::SendSingle { queue } => {
                next_tag += 1;
                let tag = next_tag;
                let r = queues[queue].send(Message::new(tag.to_string()), Tx::Single);
                if !transactional(queue) {
                    prop_assert_eq!(r.unwrap_err().code(), ErrorCode::TransactionUsage);
                    continue;
                }
                r.unwrap();
                model.publish(queue, 0, tag);
            }
            Op::Receive { queue, tx } => {
                let tx = tx.filter(|_| !txs.is_empty()).map(|t| t % txs.len());
                let r =
                    queues[queue].receive(Duration::ZERO, tx.map_or(Tx::None, |t| Tx::In(&txs[t])));
                if tx.is_some() && !transactional(queue) {
                    prop_assert_eq!(r.unwrap_err().code(), ErrorCode::TransactionUsage);
                    continue;
                }
                match model.queues[queue].pop_first() {
                    None => prop_assert_eq!(r.unwrap_err().code(), ErrorCode::IoTimeout),
                    Some((key, m)) => {
                        let got = r.unwrap();
                        prop_assert_eq!(got.body_str().unwrap().parse::<u64>().unwrap(), m.tag);
                        prop_assert_eq!(got.abort_count(), m.aborts);
                        if let Some(t) = tx {
                            model.txs[t].held.push((queue, key, m));
                        }
                    }
                }
            }
            Op::Commit { tx } => {
                if txs.is_empty() {
                    continue;
                }
                let t = tx % txs.len();
                txs.remove(t).commit().unwrap();
                let mt = model.txs.remove(t);
                for (queue, priority, tag) in mt.sends {
                    model.publish(queue, priority, tag);
                }
            }
            Op::Abort { tx } => {
                if txs.is_empty() {
                    continue;
                }
                let t = tx % txs.len();
                txs.remove(t).abort();
                let mt = model.txs.remove(t);
                for (queue, key, mut m) in mt.held {
                    m.aborts += 1;
                    model.queues[queue].insert(key, m);
                }
            }
        }
        for (i, q) in queues.iter().enumerate() {
            let engine: Vec<(u64, u32)> = q
                .messages()
                .unwrap()
                .iter()
                .map(|m| (m.body_str().unwrap().parse().unwrap(), m.abort_count()))
                .collect();
            let expected: Vec<(u64, u32)> = model.queues[i]
                .values()
                .map(|m| (m.tag, m.aborts))
                .collect();
            prop_assert_eq!(engine, expected, "queue {} after a step", i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
