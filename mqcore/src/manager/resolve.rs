//! Name resolution: which queue, journal, subqueue or system queue a parsed name points at on
//! this queue manager, and whether a host names this computer at all.

use std::sync::Arc;

use super::Inner;
use crate::error::{Error, ErrorCode, Result};
use crate::name::{Host, QueueName, QueueRef};
use crate::queue::{Opened, Queue};

impl Inner {
    /// Whether `host` names this queue manager: its own name, `localhost`, one of its addresses
    /// (the loopback ones when none were given), a name the host map sends to one of them, or
    /// its GUID.
    pub(super) fn is_local(&self, host: &Host<'_>) -> bool {
        match host {
            Host::Local => true,
            Host::Computer(n) => self.is_my_name(n),
            Host::Address { address, .. } => {
                // An address may carry a port (HTTP forms): compare the host part.
                let host = address.rsplit_once(':').map_or(*address, |(h, p)| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        h
                    } else {
                        address
                    }
                });
                self.is_my_name(host) || self.is_my_name(address)
            }
            Host::Machine(g) => *g == self.guid,
        }
    }

    /// Whether a computer name or address written in a queue name is this queue manager's.
    fn is_my_name(&self, n: &str) -> bool {
        n.eq_ignore_ascii_case(&self.name)
            || n.eq_ignore_ascii_case("localhost")
            || self.is_my_address(n)
            // The map is keyed in lower case; a lookup allocates, so only when there is a map.
            || (!self.hosts.is_empty()
                && self
                    .hosts
                    .get(&n.to_ascii_lowercase())
                    .is_some_and(|a| self.is_my_address(a)))
    }

    /// Compares without allocating: names are resolved on every send by name.
    fn is_my_address(&self, address: &str) -> bool {
        let address = address.trim_start_matches('[').trim_end_matches(']');
        if self.addresses.is_empty() {
            address == "127.0.0.1" || address == "::1"
        } else {
            self.addresses
                .iter()
                .any(|mine| mine.eq_ignore_ascii_case(address))
        }
    }

    /// Where a remote host is reached, for error messages: ` (at ADDRESS)` when the host map
    /// knows the computer.
    pub(super) fn reached_at(&self, host: &Host<'_>) -> String {
        match host {
            Host::Computer(n) => self
                .hosts
                .get(&n.to_ascii_lowercase())
                .map(|a| format!(" (at {a})"))
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// Finds what a name points at on this queue manager.
    pub(crate) fn resolve(&self, name: &QueueName) -> Result<Opened> {
        if !self.is_local(&name.host()) {
            return self.remote(name);
        }
        let not_found = || {
            Error::new(
                ErrorCode::QueueNotFound,
                format!("queue {name} does not exist"),
            )
        };
        match name.queue() {
            QueueRef::Private {
                name: qname,
                subqueue,
                journal,
            } => {
                let q = self
                    .catalog()
                    .by_name
                    .get(&qname.to_ascii_lowercase())
                    .cloned()
                    .ok_or_else(not_found)?;
                match (subqueue, journal) {
                    (Some(sub), _) => {
                        self.require_msmq4("subqueues")?;
                        Ok(Opened::Sub(q, sub.to_owned()))
                    }
                    (None, true) => Ok(Opened::Journal(q)),
                    (None, false) => Ok(Opened::Main(q)),
                }
            }
            QueueRef::PrivateId { id, journal } => {
                let q = self.catalog().by_id.get(&id).cloned().ok_or_else(not_found)?;
                Ok(if journal {
                    Opened::Journal(q)
                } else {
                    Opened::Main(q)
                })
            }
            QueueRef::Public { .. } | QueueRef::PublicGuid { .. } => Err(Error::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "{name} is a public queue; public queues need Active Directory and mqemu runs in workgroup mode"
                ),
            )),
            QueueRef::System(s) => Ok(Opened::System(s)),
        }
    }

    pub(crate) fn open(self: &Arc<Self>, name: &QueueName) -> Result<Queue> {
        let target = self.resolve(name)?;
        Ok(Queue {
            qm: self.clone(),
            target,
            name: name.clone(),
        })
    }
}
