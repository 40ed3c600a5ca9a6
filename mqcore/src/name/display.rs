//! The canonical text of a queue name, which parses back to an equal name.

use std::fmt;

use super::{
    QueueName, QueuePart, Repr, Scope, Suffix, JOURNAL_PATH_SUFFIX, JOURNAL_SUFFIX, PRIVATE_MARK,
    SYSTEM_MARK,
};

impl fmt::Display for QueueName {
    /// Writes the canonical text of the name, which parses back to an equal name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text())
    }
}

/// Formats the canonical text of a name afresh; [`QueueName::as_text`] keeps what it gives.
pub(super) struct Canonical<'a>(pub(super) &'a QueueName);

impl fmt::Display for Canonical<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.repr {
            Repr::Path { computer, target } => {
                write!(f, "{computer}\\")?;
                write_part(f, target, '\\', ('\\', JOURNAL_PATH_SUFFIX))
            }
            Repr::Direct {
                protocol,
                address,
                target,
            } => {
                let separator = if protocol.is_http() {
                    write!(f, "DIRECT={}://{address}/msmq/", protocol.keyword())?;
                    '/'
                } else {
                    write!(f, "DIRECT={}:{address}\\", protocol.keyword())?;
                    '\\'
                };
                write_part(f, target, separator, (';', JOURNAL_SUFFIX))
            }
            Repr::PrivateId {
                machine,
                id,
                journal,
            } => {
                write!(f, "PRIVATE={}\\{id:08x}", machine.hyphenated())?;
                write_journal(f, *journal)
            }
            Repr::PublicGuid { guid, journal } => {
                write!(f, "PUBLIC={}", guid.hyphenated())?;
                write_journal(f, *journal)
            }
            Repr::Machine { machine, system } => {
                write!(f, "MACHINE={};{}", machine.hyphenated(), system.keyword())
            }
        }
    }
}

/// Writes the `;JOURNAL` suffix if `journal` is set.
fn write_journal(f: &mut fmt::Formatter<'_>, journal: bool) -> fmt::Result {
    if journal {
        write!(f, ";{JOURNAL_SUFFIX}")
    } else {
        Ok(())
    }
}

/// Writes the queue part of a path or direct name: a system queue, or `private$` and the name
/// after `separator`, then a subqueue after `;` or the journal as `journal` (its separator and
/// keyword: `\JOURNAL$` in a path name, `;JOURNAL` in a format name).
fn write_part(
    f: &mut fmt::Formatter<'_>,
    part: &QueuePart,
    separator: char,
    journal: (char, &str),
) -> fmt::Result {
    match part {
        QueuePart::System(system) => write!(f, "{SYSTEM_MARK};{}", system.keyword()),
        QueuePart::Named {
            scope,
            name,
            suffix,
        } => {
            if let Scope::Private = scope {
                write!(f, "{PRIVATE_MARK}{separator}")?;
            }
            f.write_str(name)?;
            match suffix {
                Suffix::None => Ok(()),
                Suffix::Subqueue(subqueue) => write!(f, ";{subqueue}"),
                Suffix::Journal => write!(f, "{}{}", journal.0, journal.1),
            }
        }
    }
}
