//! From an MSMQ queue name to the server that holds the queue, and to the name that server knows
//! it by.
//!
//! A client is given names such as `DIRECT=TCP:127.0.0.1\private$\orders` or
//! `DIRECT=OS:host\private$\orders;poison`. The host part picks the server to connect to; once
//! there, the queue is local to that server, so the name sent is the local path name
//! (`.\private$\orders;poison`). Format names carry no port: the port is the client's setting
//! (the protocol's default unless told otherwise).

use mqcore::name::{Host, Protocol, QueueRef};
use mqcore::{Error, ErrorCode, QueueName, SystemQueue};

/// The `host:port` of the server holding the queue `name`; a local name (`.\private$\q`)
/// names the server on this computer (`127.0.0.1`).
pub fn server_of(name: &str, port: u16) -> Result<String, Error> {
    let parsed: QueueName = QueueName::parse(name)?;
    let host = match parsed.host() {
        Host::Local => "127.0.0.1".to_owned(),
        Host::Computer(c) => c.to_owned(),
        Host::Address {
            protocol: Protocol::Tcp,
            address,
        } => {
            if address.contains(':') && !address.starts_with('[') {
                format!("[{address}]")
            } else {
                address.to_owned()
            }
        }
        Host::Address { protocol, .. } => {
            return Err(Error::new(
                ErrorCode::UnsupportedFormatnameOperation,
                format!("{name}: {protocol:?} names reach MSMQ's HTTP ingress, not the native protocol; use DIRECT=TCP: or DIRECT=OS:"),
            ))
        }
        Host::Machine(_) => {
            return Err(Error::new(
                ErrorCode::UnsupportedFormatnameOperation,
                format!("{name} names its computer by GUID, which gives no network address; use DIRECT=TCP: or DIRECT=OS:"),
            ))
        }
    };
    Ok(format!("{host}:{port}"))
}

/// The name the server holding `name` knows the queue by: the local path name for a private or
/// system queue, the name unchanged otherwise (`PRIVATE=` and `PUBLIC=` names carry no host).
pub fn localize(name: &str) -> Result<String, Error> {
    let parsed: QueueName = QueueName::parse(name)?;
    if matches!(parsed.host(), Host::Local | Host::Machine(_)) {
        return Ok(name.to_owned());
    }
    Ok(match parsed.queue() {
        QueueRef::Private {
            name: q,
            subqueue,
            journal,
        } => {
            let local = QueueName::try_private(".", q)?;
            let local = match subqueue {
                Some(sub) => local.with_subqueue(sub)?,
                None => local,
            };
            if journal {
                local.journal().to_string()
            } else {
                local.to_string()
            }
        }
        QueueRef::System(s) => format!(
            r".\SYSTEM$;{}",
            match s {
                SystemQueue::Journal => "JOURNAL",
                SystemQueue::DeadLetter => "DEADLETTER",
                SystemQueue::DeadXact => "DEADXACT",
            }
        ),
        _ => name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        assert_eq!(
            server_of(r"DIRECT=TCP:10.1.2.3\private$\q", 18010).unwrap(),
            "10.1.2.3:18010"
        );
        assert_eq!(
            server_of(r"FormatName:DIRECT=OS:box\private$\q", 1).unwrap(),
            "box:1"
        );
        assert_eq!(server_of(r".\private$\q", 5).unwrap(), "127.0.0.1:5");
        assert_eq!(server_of(r"host\private$\q", 5).unwrap(), "host:5");
        let e = server_of(r"DIRECT=HTTP://h/msmq/private$/q", 5).unwrap_err();
        assert_eq!(e.code(), ErrorCode::UnsupportedFormatnameOperation);
        assert_eq!(
            server_of("garbage", 5).unwrap_err().code(),
            ErrorCode::IllegalQueuePathname
        );
    }

    #[test]
    fn local_names() {
        let same = |a: &str, b: &str| {
            assert_eq!(
                QueueName::parse(&localize(a).unwrap()).unwrap(),
                QueueName::parse(b).unwrap(),
                "{a}"
            )
        };
        same(r"DIRECT=TCP:10.1.2.3\private$\q", r".\private$\q");
        same(r"DIRECT=OS:box\private$\q;poison", r".\private$\q;poison");
        same(
            r"DIRECT=OS:box\private$\q;journal",
            r".\private$\q\JOURNAL$",
        );
        same(r"box\private$\q", r".\private$\q");
        same(r"DIRECT=OS:box\SYSTEM$;DEADXACT", r".\SYSTEM$;DEADXACT");
        same(r".\private$\q", r".\private$\q");
    }
}
