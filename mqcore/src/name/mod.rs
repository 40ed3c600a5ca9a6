//! The one grammar for MSMQ queue path names and format names, so every part of the engine
//! reads a queue name the same way.
//!
//! MSMQ names a queue in two ways (MS-MQMQ section 2.1, summarised in
//! `shared/reference/msmq-facts.md` section 2):
//!
//! * A **path name** names a queue by computer and queue name: `.\private$\orders`,
//!   `HOST\orders` (public), `HOST\system$;DEADXACT`, optionally with a subqueue
//!   (`.\private$\orders;poison`). System.Messaging adds the suffixes `\JOURNAL$`,
//!   `\DEADLETTER$` and `\XACTDEADLETTER$`, which this module also accepts.
//! * A **format name** says how to reach the queue: `DIRECT=OS:host\private$\q`,
//!   `DIRECT=TCP:1.2.3.4\q;JOURNAL`, `DIRECT=HTTP://host/msmq/private$/q`,
//!   `PRIVATE=<computer guid>\<hex id>`, `PUBLIC=<guid>` and `MACHINE=<guid>;DEADLETTER`.
//!   System.Messaging's `FormatName:` prefix is accepted and dropped.
//!
//! [`QueueName`] is the parsed value. Keywords are matched without regard to case, and so
//! are names: MSMQ queue and computer names are case-insensitive, so equality and hashing
//! ignore ASCII case while [`Display`](std::fmt::Display) keeps the spelling the name was given
//! in. Display is canonical: keywords are upper case (`DIRECT=`, `OS:`, `;JOURNAL`) except
//! `private$` and `system$`, GUIDs are lower case without braces, `PRIVATE=` queue numbers
//! are eight lower-case hexadecimal digits, HTTP names use `/` separators, and the
//! `FormatName:` prefix is not written. Parsing the displayed text always gives back an
//! equal name, and displaying that again gives the same text.
//!
//! Choices this module makes where MSMQ's documents leave room:
//!
//! * A subqueue may not be called `JOURNAL`, `DEADLETTER`, `DEADXACT` or `XACTONLY`,
//!   because in a format name `;JOURNAL` means the queue journal and the others are
//!   format-name suffixes; accepting them as subqueue names would make names ambiguous.
//! * A public queue may not be called `private$`, `system$`, `JOURNAL$`, `DEADLETTER$` or
//!   `XACTDEADLETTER$`, because those words already mean something in a path name.
//! * `DL=`, `CONNECTOR=`, `MULTICAST=` and multiple-element (comma-separated) format names
//!   name no single queue and are refused, as is `DIRECT=IPX:` (MSMQ 4.0 dropped IPX).
//! * `DIRECT=TCP:` needs an IP address literal (IPv4, or IPv6 with or without brackets);
//!   computer names go in `DIRECT=OS:`.
//! * A `PUBLIC=` name names no computer; [`QueueName::host`] answers [`Host::Local`] for it,
//!   because the directory that resolves it is this engine's own.
//! * [`QueueName::journal`] of a journal or a system queue is the name itself, and of a
//!   subqueue is the parent queue's journal.
//! * A path name never equals a format name, even one for the same queue: resolving names
//!   to queues is the engine's job, not the grammar's.
//!
//! Every refusal of a path name is `MQ_ERROR_ILLEGAL_QUEUE_PATHNAME` and every refusal of a
//! format name is `MQ_ERROR_ILLEGAL_FORMATNAME`, each with a sentence saying what is wrong.

use std::hash::Hash;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::{Error, Result};

mod check;
mod display;
mod eq;
mod format;
mod path;
mod related;
#[cfg(test)]
mod tests;

use check::{check_computer, check_name, strip_prefix_ci, Ctx};
use format::{looks_like_format_name, parse_format};
use path::parse_path_text;

/// The longest queue name MSMQ accepts, in characters (`MQ_MAX_Q_NAME_LEN`).
pub const MAX_QUEUE_NAME_LEN: usize = 124;

/// The longest subqueue name MSMQ accepts, in characters (MS-MQMQ section 2.1.1).
pub const MAX_SUBQUEUE_NAME_LEN: usize = 32;

/// The longest computer name MSMQ accepts, in characters (MS-MQMQ section 2.1.1).
pub const MAX_COMPUTER_NAME_LEN: usize = 256;

/// The longest `PRIVATE=` queue number, in hexadecimal digits (MS-MQMQ section 2.1.4).
const MAX_PRIVATE_ID_DIGITS: usize = 8;

/// How many characters of a refused input an error detail quotes before cutting it short.
const SHOWN_INPUT_LIMIT: usize = 200;

/// The word that marks a private queue in path names and direct format names.
const PRIVATE_MARK: &str = "private$";

/// The word that marks a computer's system queues in path names and direct format names.
const SYSTEM_MARK: &str = "system$";

/// The suffix that names a queue journal in a format name.
const JOURNAL_SUFFIX: &str = "JOURNAL";

/// The System.Messaging path suffix that names a queue journal or the computer journal.
const JOURNAL_PATH_SUFFIX: &str = "JOURNAL$";

/// Why a subqueue's journal cannot be named.
const SUBQUEUE_HAS_NO_JOURNAL: &str =
    "a subqueue has no journal; its messages are journaled in the parent queue's journal";

/// System.Messaging's prefix that marks the rest of its text as a format name.
const FORMAT_NAME_PREFIX: &str = "FormatName:";

/// Format-name suffix keywords, which therefore cannot be subqueue names.
const SUFFIX_KEYWORDS: [&str; 4] = ["JOURNAL", "DEADLETTER", "DEADXACT", "XACTONLY"];

/// Words that already mean something in a path name, which therefore cannot name a public queue.
const RESERVED_PUBLIC_NAMES: [&str; 5] = [
    PRIVATE_MARK,
    SYSTEM_MARK,
    JOURNAL_PATH_SUFFIX,
    "DEADLETTER$",
    "XACTDEADLETTER$",
];

/// One of a computer's system queues, which hold messages the queue manager keeps on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SystemQueue {
    /// The computer journal, which holds source-journaling copies of sent messages.
    Journal,
    /// The dead-letter queue, which holds undeliverable non-transactional messages.
    DeadLetter,
    /// The transactional dead-letter queue, which holds undelivered transactional messages.
    DeadXact,
}

impl SystemQueue {
    /// The keyword that names this queue after `system$;` or `MACHINE=<guid>;`.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            SystemQueue::Journal => "JOURNAL",
            SystemQueue::DeadLetter => "DEADLETTER",
            SystemQueue::DeadXact => "DEADXACT",
        }
    }

    /// The system queue a keyword such as `DEADXACT` names, in any case.
    fn from_keyword(word: &str) -> Option<SystemQueue> {
        [
            SystemQueue::Journal,
            SystemQueue::DeadLetter,
            SystemQueue::DeadXact,
        ]
        .into_iter()
        .find(|queue| word.eq_ignore_ascii_case(queue.keyword()))
    }

    /// The system queue a System.Messaging path suffix such as `XACTDEADLETTER$` names.
    fn from_path_suffix(word: &str) -> Option<SystemQueue> {
        if word.eq_ignore_ascii_case(JOURNAL_PATH_SUFFIX) {
            Some(SystemQueue::Journal)
        } else if word.eq_ignore_ascii_case("DEADLETTER$") {
            Some(SystemQueue::DeadLetter)
        } else if word.eq_ignore_ascii_case("XACTDEADLETTER$") {
            Some(SystemQueue::DeadXact)
        } else {
            None
        }
    }
}

/// The transport a `DIRECT=` format name names.
///
/// IPX, which MS-MQMQ also lists, is refused: MSMQ 4.0 dropped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `DIRECT=TCP:`, addressed by an IP address.
    Tcp,
    /// `DIRECT=OS:`, addressed by a computer name.
    Os,
    /// `DIRECT=HTTP://`, addressed by a host and optional port.
    Http,
    /// `DIRECT=HTTPS://`, addressed by a host and optional port.
    Https,
}

impl Protocol {
    /// The keyword between `DIRECT=` and `:`.
    fn keyword(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Os => "OS",
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
        }
    }

    /// Whether names over this protocol use URL syntax (`//host/msmq/...`).
    fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

/// Where a named queue lives, as the name says it (no resolution is done here).
///
/// The strings borrow the name's own spelling, so comparing two `Host` values is exact,
/// not case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// The local computer: `.` in a path name or after `DIRECT=OS:`. A `PUBLIC=` format
    /// name also answers `Local`: it names no computer, and the queue is found in the
    /// directory, which in this engine is the local one.
    Local,
    /// A computer by name: `HOST\...` in a path name or `DIRECT=OS:HOST\...`.
    Computer(&'a str),
    /// A network address: `DIRECT=TCP:1.2.3.4\...`, or the host and optional port of
    /// `DIRECT=HTTP://host:port/msmq/...` (for example `host:443`).
    Address {
        /// The transport the address is for.
        protocol: Protocol,
        /// The address as written: an IP literal for TCP, `host[:port]` for HTTP(S).
        address: &'a str,
    },
    /// A computer by its GUID: `PRIVATE=<guid>\...` and `MACHINE=<guid>;...`.
    Machine(Uuid),
}

/// Which queue on its host a name designates.
///
/// The strings borrow the name's own spelling, so comparing two `QueueRef` values is
/// exact, not case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRef<'a> {
    /// A private queue by name, or its subqueue, or its journal.
    Private {
        /// The queue name, without `private$`.
        name: &'a str,
        /// The subqueue after `;`, if the name designates one.
        subqueue: Option<&'a str>,
        /// Whether the name designates the queue's journal.
        journal: bool,
    },
    /// A private queue by its number on its computer (`PRIVATE=<guid>\<id>`), or its journal.
    PrivateId {
        /// The queue number.
        id: u32,
        /// Whether the name designates the queue's journal.
        journal: bool,
    },
    /// A public queue by name, or its subqueue, or its journal.
    Public {
        /// The queue name.
        name: &'a str,
        /// The subqueue after `;`, if the name designates one.
        subqueue: Option<&'a str>,
        /// Whether the name designates the queue's journal.
        journal: bool,
    },
    /// A public queue by its directory GUID (`PUBLIC=<guid>`), or its journal.
    PublicGuid {
        /// The queue's GUID.
        guid: Uuid,
        /// Whether the name designates the queue's journal.
        journal: bool,
    },
    /// One of the host's system queues.
    System(SystemQueue),
}

/// A parsed MSMQ queue path name or format name.
///
/// Parse one with [`QueueName::parse`] (or `str::parse`), which accepts both kinds, or with
/// [`QueueName::parse_path`], which accepts path names only. Equality and hashing ignore
/// ASCII case in names and keywords, as MSMQ does, but a path name never equals a format
/// name, even one for the same queue: resolving names to queues is the engine's job.
#[derive(Clone)]
pub struct QueueName {
    /// The parsed name, with names kept in their original spelling.
    repr: Repr,
    /// The canonical text, made the first time it is asked for: a message carries its
    /// destination (and response and administration queues) into every log record and every
    /// answer, and formatting the name afresh each time was about 4% of the server's time under
    /// the durable pipelined bench (docs/performance.md).
    /// Shared, so a clone (every message sent to a queue clones its name) copies no text.
    text: std::sync::OnceLock<std::sync::Arc<str>>,
}

impl QueueName {
    fn from_repr(repr: Repr) -> QueueName {
        QueueName {
            repr,
            text: std::sync::OnceLock::new(),
        }
    }

    /// The canonical text (what `Display` writes), made once.
    pub fn as_text(&self) -> &str {
        self.text
            .get_or_init(|| display::Canonical(self).to_string().into())
    }
}

impl PartialEq for QueueName {
    fn eq(&self, other: &QueueName) -> bool {
        self.repr == other.repr
    }
}

impl Eq for QueueName {}

impl std::hash::Hash for QueueName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.repr.hash(state);
    }
}

impl std::fmt::Debug for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueName")
            .field("repr", &self.repr)
            .finish()
    }
}

/// The kinds of queue name, each with exactly the parts it can carry.
#[derive(Debug, Clone)]
enum Repr {
    /// A path name: `computer\...`.
    Path {
        /// The computer name as written; `.` is the local computer.
        computer: String,
        /// The queue on that computer.
        target: QueuePart,
    },
    /// A `DIRECT=` format name.
    Direct {
        /// The transport.
        protocol: Protocol,
        /// A computer name (OS), an IP literal (TCP) or `host[:port]` (HTTP, HTTPS).
        address: String,
        /// The queue at that address.
        target: QueuePart,
    },
    /// A `PRIVATE=<computer guid>\<id>` format name.
    PrivateId {
        /// The GUID of the computer that holds the queue.
        machine: Uuid,
        /// The queue number on that computer.
        id: u32,
        /// Whether the name designates the queue's journal.
        journal: bool,
    },
    /// A `PUBLIC=<guid>` format name.
    PublicGuid {
        /// The queue's directory GUID.
        guid: Uuid,
        /// Whether the name designates the queue's journal.
        journal: bool,
    },
    /// A `MACHINE=<guid>;<system queue>` format name.
    Machine {
        /// The computer's GUID.
        machine: Uuid,
        /// Which of its system queues.
        system: SystemQueue,
    },
}

/// The queue part of a path name or direct format name.
#[derive(Debug, Clone)]
enum QueuePart {
    /// A private or public queue by name.
    Named {
        /// Whether the queue is private or public.
        scope: Scope,
        /// The queue name as written.
        name: String,
        /// Whether the name designates the queue itself, a subqueue or the journal.
        suffix: Suffix,
    },
    /// A system queue of the computer.
    System(SystemQueue),
}

/// Whether a named queue is private or public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    /// Written after `private$`.
    Private,
    /// Written directly after the computer or address.
    Public,
}

/// What a named queue's name designates: the queue, one subqueue or the journal.
///
/// One enum rather than two fields makes a journal of a subqueue unrepresentable.
#[derive(Debug, Clone)]
enum Suffix {
    /// The queue itself.
    None,
    /// The subqueue with this name, as written.
    Subqueue(String),
    /// The queue's journal.
    Journal,
}

impl QueuePart {
    /// The queue this target designates, borrowing its names.
    fn queue_ref(&self) -> QueueRef<'_> {
        match self {
            QueuePart::Named {
                scope,
                name,
                suffix,
            } => {
                let (subqueue, journal) = match suffix {
                    Suffix::None => (None, false),
                    Suffix::Subqueue(subqueue) => (Some(subqueue.as_str()), false),
                    Suffix::Journal => (None, true),
                };
                match scope {
                    Scope::Private => QueueRef::Private {
                        name,
                        subqueue,
                        journal,
                    },
                    Scope::Public => QueueRef::Public {
                        name,
                        subqueue,
                        journal,
                    },
                }
            }
            QueuePart::System(system) => QueueRef::System(*system),
        }
    }
}

impl QueueName {
    /// Parses a path name or a format name (with or without the `FormatName:` prefix).
    ///
    /// Text that starts with `FormatName:` or with a format-name type such as `DIRECT=` is
    /// read as a format name and refused with `MQ_ERROR_ILLEGAL_FORMATNAME` if it is not
    /// one; anything else is read as a path name and refused with
    /// `MQ_ERROR_ILLEGAL_QUEUE_PATHNAME`.
    pub fn parse(text: &str) -> Result<QueueName> {
        if let Some(body) = strip_prefix_ci(text, FORMAT_NAME_PREFIX) {
            parse_format(text, body)
        } else if looks_like_format_name(text) {
            parse_format(text, text)
        } else {
            parse_path_text(text)
        }
    }

    /// Parses a path name only; a format name is refused with `MQ_ERROR_ILLEGAL_QUEUE_PATHNAME`.
    pub fn parse_path(text: &str) -> Result<QueueName> {
        if strip_prefix_ci(text, FORMAT_NAME_PREFIX).is_some() || looks_like_format_name(text) {
            return Err(Ctx::path(text).err("this is a format name, and a path name is required"));
        }
        parse_path_text(text)
    }

    /// Whether this is a format name (anything but a path name).
    pub fn is_format_name(&self) -> bool {
        !matches!(self.repr, Repr::Path { .. })
    }

    /// Where the named queue lives, as the name says it.
    ///
    /// `.` (in a path name or after `DIRECT=OS:`) is [`Host::Local`], and so is a `PUBLIC=`
    /// name, which names no computer (see [`Host::Local`]).
    pub fn host(&self) -> Host<'_> {
        match &self.repr {
            Repr::Path { computer, .. } => computer_host(computer),
            Repr::Direct {
                protocol: Protocol::Os,
                address,
                ..
            } => computer_host(address),
            Repr::Direct {
                protocol, address, ..
            } => Host::Address {
                protocol: *protocol,
                address,
            },
            Repr::PrivateId { machine, .. } | Repr::Machine { machine, .. } => {
                Host::Machine(*machine)
            }
            Repr::PublicGuid { .. } => Host::Local,
        }
    }

    /// Which queue on its host the name designates.
    pub fn queue(&self) -> QueueRef<'_> {
        match &self.repr {
            Repr::Path { target, .. } | Repr::Direct { target, .. } => target.queue_ref(),
            Repr::PrivateId { id, journal, .. } => QueueRef::PrivateId {
                id: *id,
                journal: *journal,
            },
            Repr::PublicGuid { guid, journal } => QueueRef::PublicGuid {
                guid: *guid,
                journal: *journal,
            },
            Repr::Machine { system, .. } => QueueRef::System(*system),
        }
    }

    /// The path name of private queue `name` on `computer`, for example
    /// `private(".", "orders")`, which displays as `.\private$\orders`.
    ///
    /// The parts are not checked: this is for names known to be valid, such as literals.
    /// A part that breaks the grammar (say a `;` in `name`) gives a name whose text does not
    /// parse back to it. Use [`QueueName::try_private`] for names from outside.
    pub fn private(computer: &str, name: &str) -> QueueName {
        QueueName::from_repr(Repr::Path {
            computer: computer.to_owned(),
            target: QueuePart::Named {
                scope: Scope::Private,
                name: name.to_owned(),
                suffix: Suffix::None,
            },
        })
    }

    /// Like [`QueueName::private`], but checks the computer name and queue name against
    /// the grammar and refuses bad ones with `MQ_ERROR_ILLEGAL_QUEUE_PATHNAME`.
    pub fn try_private(computer: &str, name: &str) -> Result<QueueName> {
        let text = format!("{computer}\\{PRIVATE_MARK}\\{name}");
        let ctx = Ctx::path(&text);
        check_computer(&ctx, "computer name", computer)?;
        check_name(&ctx, "queue name", name, MAX_QUEUE_NAME_LEN)?;
        let q = QueueName::private(computer, name);
        // Whatever the parts, the name must read back as itself (a computer name with a `\`
        // in it would not, nor one like `a=b`, which reads as a format name).
        match QueueName::parse(&text) {
            Ok(back) if back == q => Ok(q),
            _ => Err(ctx.err("the parts do not make a path name that reads back as itself")),
        }
    }
}

/// The host a computer name designates: `.` is the local computer.
fn computer_host(computer: &str) -> Host<'_> {
    if computer == "." {
        Host::Local
    } else {
        Host::Computer(computer)
    }
}

impl FromStr for QueueName {
    type Err = Error;

    /// Parses a path name or a format name; see [`QueueName::parse`].
    fn from_str(text: &str) -> Result<QueueName> {
        QueueName::parse(text)
    }
}
/// Names travel (on the wire, in the log) as their canonical text and are parsed back, so the
/// grammar is the only judge of what a valid name is.
impl serde::Serialize for QueueName {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_text())
    }
}

impl<'de> serde::Deserialize<'de> for QueueName {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        QueueName::parse(&text).map_err(serde::de::Error::custom)
    }
}
