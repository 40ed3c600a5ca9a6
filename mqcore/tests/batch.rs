//! `Queue::send_batch` and `Queue::receive_batch`, which the network server uses to give a
//! pipelined connection one log record per batch: each message keeps the result and the order
//! it would have had when sent alone, and the durable ones survive a restart.

mod common;
use common::{bodies_of, recoverable};

use std::time::Duration;

use mqcore::{ErrorCode, Message, QueueManager, QueueProps, Tx};

#[test]
fn a_batch_behaves_as_its_messages_sent_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let qm = QueueManager::builder().open(dir.path()).unwrap();
        let props = QueueProps {
            quota_kb: Some(1),
            ..QueueProps::default()
        };
        let q = qm.create_queue(r".\private$\q", props).unwrap();
        let big = recoverable(&"x".repeat(2000));
        let bad = recoverable("bad").with_priority(9);
        let msgs = vec![
            recoverable("a"),
            Message::new("express"),
            big,
            bad,
            recoverable("b"),
        ];
        let results = q.send_batch(msgs, Tx::None);
        let codes: Vec<Option<ErrorCode>> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.code()))
            .collect();
        assert_eq!(
            codes,
            [
                None,
                None,
                Some(ErrorCode::InsufficientResources),
                Some(ErrorCode::IllegalPropertyValue),
                None
            ]
        );
        assert_eq!(
            bodies_of(&q.messages().unwrap()),
            ["a", "express", "b"],
            "order of sending"
        );
        let tq = qm
            .create_queue(r".\private$\t", QueueProps::transactional())
            .unwrap();
        let msgs = vec![
            Message::new("t1"),
            Message::new("t2").with_time_to_be_received(Duration::from_secs(3600)),
            Message::new("t3"),
        ];
        let results = tq.send_batch(msgs, Tx::Single);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let got = tq.messages().unwrap();
        assert_eq!(bodies_of(&got), ["t1", "t2", "t3"]);
        // Each keeps its own time limit: only equal limits share a transaction.
        assert_eq!(got[0].time_to_be_received, None);
        assert_eq!(got[1].time_to_be_received, Some(Duration::from_secs(3600)));
        assert_eq!(got[2].time_to_be_received, None);
        assert_eq!(
            q.send_batch(vec![Message::new("x")], Tx::Single)[0]
                .as_ref()
                .unwrap_err()
                .code(),
            ErrorCode::TransactionUsage
        );
    }
    // Recoverable and transactional messages are on disk; the express one is not.
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let q = qm.open(r".\private$\q").unwrap();
    assert_eq!(bodies_of(&q.messages().unwrap()), ["a", "b"]);
    let got = q.receive_batch(10, Tx::None).unwrap();
    assert_eq!(bodies_of(&got), ["a", "b"]);
    assert!(q.receive_batch(10, Tx::None).unwrap().is_empty());
    let tq = qm.open(r".\private$\t").unwrap();
    assert_eq!(
        bodies_of(&tq.receive_batch(2, Tx::Single).unwrap()),
        ["t1", "t2"]
    );
    drop((q, tq, qm));
    // The batch receives were logged before they returned.
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    assert!(qm.open(r".\private$\q").unwrap().is_empty().unwrap());
    assert_eq!(
        bodies_of(&qm.open(r".\private$\t").unwrap().messages().unwrap()),
        ["t3"]
    );
}
