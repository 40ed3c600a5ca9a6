//! Random operation sequences against a reference model of MSMQ's queue semantics.
//!
//! The model is deliberately naive: per queue, a `BTreeMap` keyed by (priority rank, arrival
//! sequence) plus, per open transaction, its staged sends and the messages it holds with their
//! original keys. After every step the engine's visible contents must equal the model's, and every
//! receive must return the message the model predicts (so order, exactly-once receive and abort
//! restoration are all checked), including which operations MSMQ refuses. Receives by message id
//! and by lookup id (current, first, last, next, previous) pick a message by its position in the
//! model and must take exactly that one; peeks must show the model's first.

use std::collections::BTreeMap;
use std::time::Duration;

use mqcore::{ErrorCode, LookupAction, Message, Queue, QueueManager, QueueProps, Transaction, Tx};
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
    /// Receive a message chosen by its position in queue order (`pick`, modulo the length).
    ReceiveBy {
        queue: usize,
        pick: usize,
        how: By,
        tx: Option<usize>,
    },
    Peek {
        queue: usize,
    },
    Commit {
        tx: usize,
    },
    Abort {
        tx: usize,
    },
}

/// How [`Op::ReceiveBy`] names its message.
#[derive(Debug, Clone, Copy)]
enum By {
    /// Its message id.
    Id,
    /// Its lookup id (`MQ_LOOKUP_RECEIVE_CURRENT`).
    Lookup,
    /// The lowest lookup id in the queue (the pick does not matter).
    First,
    /// The highest lookup id.
    Last,
    /// The next lookup id after the pick's.
    Next,
    /// The lookup id before the pick's.
    Previous,
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES;
    let tx = proptest::option::of(0..MAX_TX);
    prop_oneof![
        1 => Just(Op::Begin),
        4 => (q.clone(), 0u8..=7, tx.clone()).prop_map(|(queue, priority, tx)| Op::Send { queue, priority, tx }),
        1 => q.clone().prop_map(|queue| Op::SendSingle { queue }),
        4 => (q, tx).prop_map(|(queue, tx)| Op::Receive { queue, tx }),
        2 => (0..QUEUES, 0..64usize, prop_oneof![
                Just(By::Id), Just(By::Lookup), Just(By::First),
                Just(By::Last), Just(By::Next), Just(By::Previous),
            ], proptest::option::of(0..MAX_TX))
            .prop_map(|(queue, pick, how, tx)| Op::ReceiveBy { queue, pick, how, tx }),
        1 => (0..QUEUES).prop_map(|queue| Op::Peek { queue }),
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
            Op::ReceiveBy {
                queue,
                pick,
                how,
                tx,
            } => {
                let tx = tx.filter(|_| !txs.is_empty()).map(|t| t % txs.len());
                // The engine's view, in queue order: checked equal to the model after the last
                // step, so it gives each model message its ids.
                let visible = queues[queue].messages().unwrap();
                if visible.is_empty() {
                    continue;
                }
                let chosen = &visible[pick % visible.len()];
                let mut by_lookup: Vec<&Message> = visible.iter().collect();
                by_lookup.sort_by_key(|m| m.lookup_id());
                let at = by_lookup
                    .iter()
                    .position(|m| m.lookup_id() == chosen.lookup_id())
                    .unwrap();
                let (action, expected) = match how {
                    By::Id | By::Lookup => {
                        (LookupAction::Current(chosen.lookup_id()), Some(chosen))
                    }
                    By::First => (LookupAction::First, by_lookup.first().copied()),
                    By::Last => (LookupAction::Last, by_lookup.last().copied()),
                    By::Next => (
                        LookupAction::Next(chosen.lookup_id()),
                        by_lookup.get(at + 1).copied(),
                    ),
                    By::Previous => (
                        LookupAction::Previous(chosen.lookup_id()),
                        at.checked_sub(1).map(|i| by_lookup[i]),
                    ),
                };
                let t = tx.map_or(Tx::None, |t| Tx::In(&txs[t]));
                let r = match how {
                    By::Id => queues[queue].receive_by_id(&chosen.id(), t),
                    _ => queues[queue].receive_by_lookup_id(action, t),
                };
                if tx.is_some() && !transactional(queue) {
                    prop_assert_eq!(r.unwrap_err().code(), ErrorCode::TransactionUsage);
                    continue;
                }
                let Some(expected) = expected else {
                    prop_assert_eq!(r.unwrap_err().code(), ErrorCode::MessageNotFound);
                    continue;
                };
                let tag: u64 = expected.body_str().unwrap().parse().unwrap();
                let got = r.unwrap();
                prop_assert_eq!(got.body_str().unwrap().parse::<u64>().unwrap(), tag);
                let key = *model.queues[queue]
                    .iter()
                    .find(|(_, m)| m.tag == tag)
                    .unwrap()
                    .0;
                let m = model.queues[queue].remove(&key).unwrap();
                prop_assert_eq!(got.abort_count(), m.aborts);
                if let Some(t) = tx {
                    model.txs[t].held.push((queue, key, m));
                }
            }
            Op::Peek { queue } => {
                let r = queues[queue].peek(Duration::ZERO);
                match model.queues[queue].first_key_value() {
                    None => prop_assert_eq!(r.unwrap_err().code(), ErrorCode::IoTimeout),
                    Some((_, m)) => {
                        let got = r.unwrap();
                        prop_assert_eq!(got.body_str().unwrap().parse::<u64>().unwrap(), m.tag);
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
