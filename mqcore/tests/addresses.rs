//! Which names are this queue manager: its name, `localhost`, its addresses, and the computer
//! names the host map sends to them. Everything else is another computer, reached through an
//! outgoing queue.

use mqcore::{Message, QueueManager, QueueProps, Tx};

/// Where a name opened on a queue manager leads.
#[derive(Debug, PartialEq, Eq)]
enum Reach {
    /// A queue of this queue manager.
    Here,
    /// Another computer's queue, through an outgoing queue (such a handle only sends).
    Remote,
}
use Reach::{Here, Remote};

/// Opens `name` on `qm` (holding a queue `q`).
fn reach(qm: &QueueManager, name: &str) -> Reach {
    let q = qm.open(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    match q.len() {
        Ok(_) => Here,
        Err(e) => {
            assert_eq!(e.code(), mqcore::ErrorCode::UnsupportedOperation, "{name}");
            Remote
        }
    }
}

fn check(qm: &QueueManager, table: &[(&str, Reach)]) {
    for (name, expected) in table {
        assert_eq!(&reach(qm, name), expected, "{name}");
    }
}

const REMOTE: Reach = Remote;

#[test]
fn with_no_address_given_the_loopback_addresses_are_this_queue_managers() {
    let qm = QueueManager::builder().name("QM1").build();
    qm.create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    check(
        &qm,
        &[
            (r".\private$\q", Here),
            (r"QM1\private$\q", Here),
            (r"qm1\private$\q", Here),
            (r"localhost\private$\q", Here),
            (r"DIRECT=TCP:127.0.0.1\private$\q", Here),
            (r"DIRECT=TCP:[::1]\private$\q", Here),
            (r"DIRECT=OS:qm1\private$\q", Here),
            (r"DIRECT=TCP:127.0.0.2\private$\q", REMOTE),
            (r"DIRECT=OS:elsewhere\private$\q", REMOTE),
            (r"elsewhere\private$\q", REMOTE),
        ],
    );
}

#[test]
fn given_addresses_and_a_host_map_two_queue_managers_on_one_machine_tell_each_other_apart() {
    let hosts = |b: mqcore::Builder| {
        b.host("ORDERS", "127.0.0.2")
            .host("shop", "127.0.0.2")
            .host("billing", "127.0.0.3")
            .host("v6", "[::1]")
    };
    let orders = hosts(QueueManager::builder().name("orders").address("127.0.0.2")).build();
    let billing = hosts(QueueManager::builder().name("billing").address("127.0.0.3")).build();
    for qm in [&orders, &billing] {
        qm.create_queue(r".\private$\q", QueueProps::default())
            .unwrap();
    }
    check(
        &orders,
        &[
            (r"DIRECT=TCP:127.0.0.2\private$\q", Here),
            (r"DIRECT=OS:orders\private$\q", Here),
            (r"Orders\private$\q", Here),
            // Another name for the same address.
            (r"DIRECT=OS:SHOP\private$\q", Here),
            (r"shop\private$\q", Here),
            (r"localhost\private$\q", Here),
            (r"DIRECT=TCP:127.0.0.3\private$\q", REMOTE),
            (r"DIRECT=OS:billing\private$\q", REMOTE),
            (r"BILLING\private$\q", REMOTE),
            // Loopback is another server's once addresses are given.
            (r"DIRECT=TCP:127.0.0.1\private$\q", REMOTE),
            (r"DIRECT=OS:v6\private$\q", REMOTE),
            (r"DIRECT=OS:unknown\private$\q", REMOTE),
        ],
    );
    check(
        &billing,
        &[
            (r"DIRECT=TCP:127.0.0.3\private$\q", Here),
            (r"DIRECT=OS:BILLING\private$\q", Here),
            (r"DIRECT=TCP:127.0.0.2\private$\q", REMOTE),
            (r"orders\private$\q", REMOTE),
            (r"shop\private$\q", REMOTE),
        ],
    );
    assert_eq!(orders.addresses(), ["127.0.0.2"]);
    assert_eq!(orders.address_of("Billing"), Some("127.0.0.3"));
    assert_eq!(orders.address_of("v6"), Some("::1"));
    assert_eq!(orders.address_of("nowhere"), None);
}

#[test]
fn a_send_to_a_mapped_name_waits_in_an_outgoing_queue_for_that_computer() {
    let qm = QueueManager::builder()
        .name("orders")
        .address("127.0.0.2")
        .host("billing", "127.0.0.3")
        .build();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    qm.send(r"billing\private$\q", Message::new("x"), Tx::None)
        .unwrap();
    assert_eq!(q.len().unwrap(), 0);
    let out = qm.transfer().outgoing();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].host(), "billing");
    assert_eq!(out[0].info().messages, 1);
    assert_eq!(qm.address_of(out[0].host()), Some("127.0.0.3"));
}
