//! The format-name grammar: `DIRECT=`, `PRIVATE=`, `PUBLIC=` and `MACHINE=` names, with
//! their `;JOURNAL` and system-queue suffixes (MS-MQMQ section 2.1.2 to 2.1.7).

use std::net::{Ipv4Addr, Ipv6Addr};

use uuid::Uuid;

use super::check::{
    after_system_mark, check_computer, check_queue_name, check_subqueue, components, system_suffix,
    Ctx, Shown,
};
use super::eq::eq_ci;
use super::{
    Protocol, QueueName, QueuePart, Repr, Scope, Suffix, SystemQueue, JOURNAL_SUFFIX,
    MAX_PRIVATE_ID_DIGITS, PRIVATE_MARK, SUBQUEUE_HAS_NO_JOURNAL, SUFFIX_KEYWORDS,
};
use crate::error::Result;

/// Whether `text` starts like a format name: letters and then `=`, as in `DIRECT=`.
///
/// A computer name made only of letters followed by `=` is not a real computer name, so
/// reading such text as a format name loses no path name.
pub(super) fn looks_like_format_name(text: &str) -> bool {
    match text.split_once('=') {
        Some((head, _)) => !head.is_empty() && head.bytes().all(|b| b.is_ascii_alphabetic()),
        None => false,
    }
}

/// Parses a format name; `input` is the whole text and `body` the part after any
/// `FormatName:` prefix.
pub(super) fn parse_format(input: &str, body: &str) -> Result<QueueName> {
    let ctx = Ctx::format(input);
    if body.is_empty() {
        return Err(ctx.err("the format name is empty"));
    }
    if body.contains(',') {
        return Err(ctx.err(
            "multiple-element (comma-separated) format names are not supported, \
             and `,` is not allowed in queue names",
        ));
    }
    let Some((kind, rest)) = body.split_once('=') else {
        return Err(ctx.err("there is no `=`; expected DIRECT=, PRIVATE=, PUBLIC= or MACHINE="));
    };
    let repr = if eq_ci(kind, "DIRECT") {
        parse_direct(&ctx, rest)?
    } else if eq_ci(kind, "PRIVATE") {
        parse_private_id(&ctx, rest)?
    } else if eq_ci(kind, "PUBLIC") {
        let (guid, suffix) = split_suffix(rest);
        Repr::PublicGuid {
            guid: parse_guid(&ctx, guid)?,
            journal: journal_suffix(&ctx, "PUBLIC=", suffix)?,
        }
    } else if eq_ci(kind, "MACHINE") {
        parse_machine(&ctx, rest)?
    } else if ["DL", "CONNECTOR", "MULTICAST"]
        .iter()
        .any(|word| eq_ci(word, kind))
    {
        return Err(ctx.err(format!(
            "{}= format names do not name one queue and are not supported",
            kind.to_ascii_uppercase()
        )));
    } else {
        return Err(ctx.err(format!(
            "`{kind}=` is not a format name type; expected DIRECT=, PRIVATE=, PUBLIC= or MACHINE="
        )));
    };
    Ok(QueueName::from_repr(repr))
}

/// Splits `text` at its first `;` into the part before and the suffix after.
pub(super) fn split_suffix(text: &str) -> (&str, Option<&str>) {
    match text.split_once(';') {
        Some((head, suffix)) => (head, Some(suffix)),
        None => (text, None),
    }
}

/// Whether an optional suffix on a `PRIVATE=` or `PUBLIC=` name asks for the journal; any
/// other suffix is refused.
pub(super) fn journal_suffix(ctx: &Ctx<'_>, kind: &str, suffix: Option<&str>) -> Result<bool> {
    match suffix {
        None => Ok(false),
        Some(word) if eq_ci(word, JOURNAL_SUFFIX) => Ok(true),
        Some(word) => Err(ctx.err(format!(
            "{kind} format names accept only the `;JOURNAL` suffix, not `;{word}`"
        ))),
    }
}

/// Parses the part after `DIRECT=`: a protocol, an address and the queue.
pub(super) fn parse_direct(ctx: &Ctx<'_>, rest: &str) -> Result<Repr> {
    let Some((keyword, after)) = rest.split_once(':') else {
        return Err(
            ctx.err("DIRECT= must be followed by a protocol and `:` (TCP:, OS:, HTTP: or HTTPS:)")
        );
    };
    let protocol = if eq_ci(keyword, "TCP") {
        Protocol::Tcp
    } else if eq_ci(keyword, "OS") {
        Protocol::Os
    } else if eq_ci(keyword, "HTTP") {
        Protocol::Http
    } else if eq_ci(keyword, "HTTPS") {
        Protocol::Https
    } else if eq_ci(keyword, "IPX") {
        return Err(ctx.err("DIRECT=IPX: is not supported (MSMQ 4.0 dropped IPX)"));
    } else {
        return Err(ctx.err(format!(
            "`{keyword}` is not a DIRECT protocol; expected TCP, OS, HTTP or HTTPS"
        )));
    };
    let (address, parts) = if protocol.is_http() {
        let Some(url) = after.strip_prefix("//") else {
            return Err(ctx.err(format!(
                "DIRECT={}: must be followed by `//`, the host and `/msmq/`",
                protocol.keyword()
            )));
        };
        let Some((address, path)) = url.split_once(['/', '\\']) else {
            return Err(ctx.err("`/msmq/` and a queue name must follow the host"));
        };
        check_http_host(ctx, address)?;
        let parts = components(ctx, path, &['/', '\\'])?;
        match parts.split_first() {
            Some((msmq, queue)) if eq_ci(msmq, "msmq") && !queue.is_empty() => {
                (address, queue.to_vec())
            }
            Some((msmq, _)) if eq_ci(msmq, "msmq") => {
                return Err(ctx.err("a queue name must follow `/msmq/`"))
            }
            _ => return Err(ctx.err("`/msmq/` must follow the host")),
        }
    } else {
        let Some((address, path)) = after.split_once('\\') else {
            return Err(ctx.err("there is no `\\` between the address and the queue name"));
        };
        if protocol == Protocol::Tcp {
            check_ip(ctx, address)?;
        } else {
            check_computer(ctx, "computer name", address)?;
        }
        (address, components(ctx, path, &['\\'])?)
    };
    let target = match parts.as_slice() {
        [single] if eq_ci(single, PRIVATE_MARK) => {
            return Err(ctx.err("`private$` must be followed by a separator and a queue name"))
        }
        [single] => match after_system_mark(single) {
            Some(rest) => QueuePart::System(system_suffix(ctx, rest)?),
            None => format_named(ctx, Scope::Public, single)?,
        },
        [mark, queue] if eq_ci(mark, PRIVATE_MARK) => format_named(ctx, Scope::Private, queue)?,
        [other, _] => {
            return Err(ctx.err(format!(
                "`{other}` stands where only `private$` may; \
             a queue name cannot contain a separator"
            )))
        }
        _ => return Err(ctx.err("the queue part has too many separated parts")),
    };
    Ok(Repr::Direct {
        protocol,
        address: address.to_owned(),
        target,
    })
}

/// Parses `queue`, `queue;JOURNAL` or `queue;subqueue` in a direct format name.
pub(super) fn format_named(ctx: &Ctx<'_>, scope: Scope, text: &str) -> Result<QueuePart> {
    let mut segments = text.split(';');
    // `split` yields at least one segment, even for empty text.
    let name = segments.next().unwrap_or_default();
    check_queue_name(ctx, scope, name)?;
    let suffixes: Vec<&str> = segments.collect();
    let suffix = match suffixes.as_slice() {
        [] => Suffix::None,
        [word] if eq_ci(word, JOURNAL_SUFFIX) => Suffix::Journal,
        [word] if SUFFIX_KEYWORDS.iter().any(|k| eq_ci(k, word)) => {
            return Err(ctx.err(format!(
                "`;{word}` does not apply to a queue; \
                 only `;JOURNAL` or a subqueue name may follow a queue name"
            )))
        }
        [subqueue] => {
            check_subqueue(ctx, subqueue)?;
            Suffix::Subqueue((*subqueue).to_owned())
        }
        [first, _] if eq_ci(first, JOURNAL_SUFFIX) => {
            return Err(ctx.err("a queue journal has no subqueues"))
        }
        [_, second] if eq_ci(second, JOURNAL_SUFFIX) => {
            return Err(ctx.err(SUBQUEUE_HAS_NO_JOURNAL))
        }
        _ => return Err(ctx.err("the queue name has more than one `;` suffix")),
    };
    Ok(QueuePart::Named {
        scope,
        name: name.to_owned(),
        suffix,
    })
}

/// Checks a `DIRECT=TCP:` address, which must be an IPv4 or IPv6 literal.
pub(super) fn check_ip(ctx: &Ctx<'_>, address: &str) -> Result<()> {
    let bracketed = address
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'));
    let valid = match bracketed {
        Some(inner) => inner.parse::<Ipv6Addr>().is_ok(),
        None => address.parse::<Ipv4Addr>().is_ok() || address.parse::<Ipv6Addr>().is_ok(),
    };
    if valid {
        Ok(())
    } else if address.is_empty() {
        Err(ctx.err("the address after DIRECT=TCP: is empty"))
    } else {
        Err(ctx.err(format!(
            "`{}` is not an IP address; DIRECT=TCP: needs one (computer names go in DIRECT=OS:)",
            Shown(address)
        )))
    }
}

/// Checks the `host[:port]` of an HTTP or HTTPS direct format name.
pub(super) fn check_http_host(ctx: &Ctx<'_>, address: &str) -> Result<()> {
    let port = if let Some(bracketed) = address.strip_prefix('[') {
        // A bracketed IPv6 literal, which has colons of its own before any `:port`.
        let Some((inner, after)) = bracketed.split_once(']') else {
            return Err(ctx.err("the host has an unmatched `[`"));
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(ctx.err("the bracketed host is not an IPv6 address"));
        }
        if after.is_empty() {
            None
        } else if let Some(port) = after.strip_prefix(':') {
            Some(port)
        } else {
            return Err(ctx.err("only `:port` may follow a bracketed host"));
        }
    } else {
        let (host, port) = split_port(address);
        check_computer(ctx, "host name", host)?;
        port
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok();
        if !valid {
            return Err(ctx.err(format!(
                "`{}` is not a port number (0 to 65535)",
                Shown(port)
            )));
        }
    }
    Ok(())
}

/// Splits `host:port` at its first `:` into the host and the port, if there is one.
pub(super) fn split_port(address: &str) -> (&str, Option<&str>) {
    match address.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (address, None),
    }
}

/// Parses a GUID written as 8-4-4-4-12 hexadecimal digits, with or without braces.
pub(super) fn parse_guid(ctx: &Ctx<'_>, text: &str) -> Result<Uuid> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}'),
        None if text.ends_with('}') => None,
        None => Some(text),
    };
    let well_formed = inner.filter(|inner| {
        inner.len() == 36
            && inner.bytes().enumerate().all(|(index, b)| match index {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    });
    well_formed
        .and_then(|inner| Uuid::parse_str(inner).ok())
        .ok_or_else(|| {
            ctx.err(format!(
                "`{}` is not a GUID; expected 8-4-4-4-12 hexadecimal digits, \
                 with or without braces",
                Shown(text)
            ))
        })
}

/// Parses the part after `PRIVATE=`: the computer GUID, `\`, the queue number and an
/// optional `;JOURNAL`.
pub(super) fn parse_private_id(ctx: &Ctx<'_>, rest: &str) -> Result<Repr> {
    let Some((guid, number)) = rest.split_once('\\') else {
        return Err(
            ctx.err("PRIVATE= must be followed by the computer GUID, `\\` and a queue number")
        );
    };
    let machine = parse_guid(ctx, guid)?;
    let (digits, suffix) = split_suffix(number);
    if digits.is_empty() {
        return Err(ctx.err("the private queue number after `\\` is empty"));
    }
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ctx.err(format!(
            "`{}` is not a hexadecimal private queue number",
            Shown(digits)
        )));
    }
    if digits.len() > MAX_PRIVATE_ID_DIGITS {
        return Err(ctx.err(format!(
            "the private queue number has {} digits; the limit is {MAX_PRIVATE_ID_DIGITS}",
            digits.len()
        )));
    }
    let id = u32::from_str_radix(digits, 16)
        .map_err(|_| ctx.err("the private queue number does not fit in 32 bits"))?;
    Ok(Repr::PrivateId {
        machine,
        id,
        journal: journal_suffix(ctx, "PRIVATE=", suffix)?,
    })
}

/// Parses the part after `MACHINE=`: the computer GUID and a required system queue suffix.
pub(super) fn parse_machine(ctx: &Ctx<'_>, rest: &str) -> Result<Repr> {
    let (guid, suffix) = split_suffix(rest);
    let machine = parse_guid(ctx, guid)?;
    let Some(word) = suffix else {
        return Err(ctx.err(
            "MACHINE= names a queue only with a `;JOURNAL`, `;DEADLETTER` or `;DEADXACT` suffix",
        ));
    };
    let system = SystemQueue::from_keyword(word).ok_or_else(|| {
        ctx.err(format!(
            "`;{word}` is not a system queue; expected ;JOURNAL, ;DEADLETTER or ;DEADXACT"
        ))
    })?;
    Ok(Repr::Machine { machine, system })
}
