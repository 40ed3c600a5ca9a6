//! The cluster file's checks: the refusals WSFC makes, and the dependency order.

use super::*;

const VS1: &str = r#"
[timing]
heartbeat_ms = 100
missed_heartbeats = 5

[[node]]
name = "NODE1"
address = "127.0.1.1"

[[node]]
name = "NODE2"
address = "127.0.1.2"

[[group]]
name = "VS1"
preferred_owners = ["NODE2", "NODE1"]

[[group.resource]]
name = "MSMQ"
type = "message_queuing"
depends_on = ["Name", "Disk"]

[[group.resource]]
name = "Triggers"
type = "msmq_triggers"
depends_on = ["MSMQ"]

[[group.resource]]
name = "IP"
type = "ip_address"
address = "127.0.0.11"

[[group.resource]]
name = "Name"
type = "network_name"
dns_name = "VS1"
depends_on = ["IP"]

[[group.resource]]
name = "Disk"
type = "physical_disk"
path = "disks/vs1"
restart_threshold = 1
"#;

fn refused(text: &str) -> (Win32, String) {
    match ClusterConfig::parse(text) {
        Err(ClusterError::Refused { code, why }) => (code, why),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_group_comes_online_in_dependency_order() {
    let config = ClusterConfig::parse(VS1).unwrap();
    let g = config.group("vs1").unwrap();
    let order: Vec<&str> = g
        .online_order()
        .unwrap()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(order, ["IP", "Name", "Disk", "MSMQ", "Triggers"]);
    assert_eq!(g.resource("Disk").unwrap().policy.restart_threshold, 1);
    assert_eq!(g.resource("IP").unwrap().policy, ResourcePolicy::default());
    assert_eq!(config.timing.lease(), Duration::from_millis(500));
    assert_eq!(g.failover_threshold(config.nodes.len()), 1);
}

#[test]
fn a_dependency_cycle_is_refused() {
    let text = VS1.replace(
        "address = \"127.0.0.11\"",
        "address = \"127.0.0.11\"\ndepends_on = [\"Triggers\"]",
    );
    let (code, why) = refused(&text);
    assert_eq!(code, Win32::CircularDependency);
    assert!(why.contains("cycle"), "{why}");
    let text = VS1.replace("depends_on = [\"IP\"]", "depends_on = [\"IP\", \"Name\"]");
    assert_eq!(refused(&text).0, Win32::CircularDependency);
}

#[test]
fn a_dependency_across_groups_is_refused() {
    let text = format!(
        "{VS1}\n[[group]]\nname = \"Apps\"\n[[group.resource]]\nname = \"App\"\n\
         type = \"generic_application\"\ncommand = \"true\"\ndepends_on = [\"MSMQ\"]\n"
    );
    let (code, why) = refused(&text);
    assert_eq!(code, Win32::InvalidParameter);
    assert!(why.contains("inside a group"), "{why}");
}

#[test]
fn msmq_needs_its_name_and_disk() {
    let text = VS1.replace(
        "depends_on = [\"Name\", \"Disk\"]",
        "depends_on = [\"Name\"]",
    );
    let (code, why) = refused(&text);
    assert_eq!(code, Win32::InvalidParameter);
    assert!(why.contains("Physical Disk"), "{why}");
}

#[test]
fn a_virtual_servers_tls_needs_both_certificate_and_key() {
    let with = |keys: &str| {
        VS1.replace(
            "type = \"message_queuing\"\n",
            &format!("type = \"message_queuing\"\n{keys}"),
        )
    };
    ClusterConfig::parse(&with("tls_cert = \"vs1.crt\"\ntls_key = \"vs1.key\"\n")).unwrap();
    for half in ["tls_cert = \"vs1.crt\"\n", "tls_key = \"vs1.key\"\n"] {
        let (code, why) = refused(&with(half));
        assert_eq!(code, Win32::InvalidParameter);
        assert!(why.contains("tls_cert and tls_key"), "{half}: {why}");
    }
}

#[test]
fn unknown_names_and_duplicates_are_refused() {
    assert_eq!(
        refused(&VS1.replace("[\"NODE2\", \"NODE1\"]", "[\"NODE3\"]")).0,
        Win32::NodeNotFound
    );
    assert_eq!(
        refused(&VS1.replace("[\"MSMQ\"]", "[\"MSMQ\", \"Nope\"]")).0,
        Win32::ResourceNotFound
    );
    assert_eq!(
        refused(&VS1.replace("[\"MSMQ\"]", "[\"MSMQ\", \"msmq\"]")).0,
        Win32::DependencyAlreadyExists
    );
    assert_eq!(
        refused(&VS1.replace("name = \"Triggers\"", "name = \"IP\"")).0,
        Win32::ObjectAlreadyExists
    );
    assert!(matches!(
        ClusterConfig::parse("[[node]]\nname = \"A\"\n"),
        Err(ClusterError::Config(_))
    ));
}
