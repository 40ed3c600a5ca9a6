//! Which names are this queue manager: its name, `localhost`, its addresses, and the computer
//! names the host map sends to them. Everything else is another computer, refused with
//! `MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE` until outgoing queues exist.

use mqcore::{ErrorCode, Message, QueueManager, QueueProps, Tx};

/// Opens `name` on `qm` (holding a queue `q`): `Ok` if it is this queue manager's, or the code.
fn reach(qm: &QueueManager, name: &str) -> Result<(), ErrorCode> {
    qm.open(name).map(drop).map_err(|e| e.code())
}

fn check(qm: &QueueManager, table: &[(&str, Result<(), ErrorCode>)]) {
    for (name, expected) in table {
        assert_eq!(&reach(qm, name), expected, "{name}");
    }
}

const REMOTE: Result<(), ErrorCode> = Err(ErrorCode::RemoteMachineNotAvailable);

#[test]
fn with_no_address_given_the_loopback_addresses_are_this_queue_managers() {
    let qm = QueueManager::builder().name("QM1").build();
    qm.create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    check(
        &qm,
        &[
            (r".\private$\q", Ok(())),
            (r"QM1\private$\q", Ok(())),
            (r"qm1\private$\q", Ok(())),
            (r"localhost\private$\q", Ok(())),
            (r"DIRECT=TCP:127.0.0.1\private$\q", Ok(())),
            (r"DIRECT=TCP:[::1]\private$\q", Ok(())),
            (r"DIRECT=OS:qm1\private$\q", Ok(())),
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
            (r"DIRECT=TCP:127.0.0.2\private$\q", Ok(())),
            (r"DIRECT=OS:orders\private$\q", Ok(())),
            (r"Orders\private$\q", Ok(())),
            // Another name for the same address.
            (r"DIRECT=OS:SHOP\private$\q", Ok(())),
            (r"shop\private$\q", Ok(())),
            (r"localhost\private$\q", Ok(())),
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
            (r"DIRECT=TCP:127.0.0.3\private$\q", Ok(())),
            (r"DIRECT=OS:BILLING\private$\q", Ok(())),
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
fn a_refused_remote_name_says_where_the_host_map_puts_it_and_changes_nothing() {
    let qm = QueueManager::builder()
        .name("orders")
        .address("127.0.0.2")
        .host("billing", "127.0.0.3")
        .build();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let e = qm
        .send(r"billing\private$\q", Message::new("x"), Tx::None)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RemoteMachineNotAvailable);
    assert!(e.to_string().contains("127.0.0.3"), "{e}");
    assert_eq!(q.len().unwrap(), 0);
}
