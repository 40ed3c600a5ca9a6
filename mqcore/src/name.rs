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
//! ignore ASCII case while [`Display`](fmt::Display) keeps the spelling the name was given
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

use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName {
    /// The parsed name, with names kept in their original spelling.
    repr: Repr,
}

/// The kinds of queue name, each with exactly the parts it can carry.
#[derive(Debug, Clone)]
enum Repr {
    /// A path name: `computer\...`.
    Path {
        /// The computer name as written; `.` is the local computer.
        computer: String,
        /// The queue on that computer.
        target: Target,
    },
    /// A `DIRECT=` format name.
    Direct {
        /// The transport.
        protocol: Protocol,
        /// A computer name (OS), an IP literal (TCP) or `host[:port]` (HTTP, HTTPS).
        address: String,
        /// The queue at that address.
        target: Target,
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
enum Target {
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

/// Compares two names the way MSMQ does, ignoring ASCII case.
fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Hashes a name so that names equal under [`eq_ci`] hash alike.
fn hash_ci<H: Hasher>(text: &str, state: &mut H) {
    for byte in text.bytes() {
        state.write_u8(byte.to_ascii_lowercase());
    }
    // 0xFF never occurs in UTF-8, so it ends the name unambiguously.
    state.write_u8(0xFF);
}

impl PartialEq for Repr {
    fn eq(&self, other: &Repr) -> bool {
        match (self, other) {
            (
                Repr::Path {
                    computer: a,
                    target: ta,
                },
                Repr::Path {
                    computer: b,
                    target: tb,
                },
            ) => eq_ci(a, b) && ta == tb,
            (
                Repr::Direct {
                    protocol: pa,
                    address: a,
                    target: ta,
                },
                Repr::Direct {
                    protocol: pb,
                    address: b,
                    target: tb,
                },
            ) => pa == pb && eq_ci(a, b) && ta == tb,
            (
                Repr::PrivateId {
                    machine: ma,
                    id: ia,
                    journal: ja,
                },
                Repr::PrivateId {
                    machine: mb,
                    id: ib,
                    journal: jb,
                },
            ) => ma == mb && ia == ib && ja == jb,
            (
                Repr::PublicGuid {
                    guid: ga,
                    journal: ja,
                },
                Repr::PublicGuid {
                    guid: gb,
                    journal: jb,
                },
            ) => ga == gb && ja == jb,
            (
                Repr::Machine {
                    machine: ma,
                    system: sa,
                },
                Repr::Machine {
                    machine: mb,
                    system: sb,
                },
            ) => ma == mb && sa == sb,
            _ => false,
        }
    }
}

impl Eq for Repr {}

impl Hash for Repr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Repr::Path { computer, target } => {
                hash_ci(computer, state);
                target.hash(state);
            }
            Repr::Direct {
                protocol,
                address,
                target,
            } => {
                protocol.hash(state);
                hash_ci(address, state);
                target.hash(state);
            }
            Repr::PrivateId {
                machine,
                id,
                journal,
            } => {
                machine.hash(state);
                id.hash(state);
                journal.hash(state);
            }
            Repr::PublicGuid { guid, journal } => {
                guid.hash(state);
                journal.hash(state);
            }
            Repr::Machine { machine, system } => {
                machine.hash(state);
                system.hash(state);
            }
        }
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        match (self, other) {
            (
                Target::Named {
                    scope: sa,
                    name: na,
                    suffix: xa,
                },
                Target::Named {
                    scope: sb,
                    name: nb,
                    suffix: xb,
                },
            ) => sa == sb && eq_ci(na, nb) && xa == xb,
            (Target::System(a), Target::System(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Target {}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Target::Named {
                scope,
                name,
                suffix,
            } => {
                scope.hash(state);
                hash_ci(name, state);
                suffix.hash(state);
            }
            Target::System(system) => system.hash(state),
        }
    }
}

impl PartialEq for Suffix {
    fn eq(&self, other: &Suffix) -> bool {
        match (self, other) {
            (Suffix::None, Suffix::None) | (Suffix::Journal, Suffix::Journal) => true,
            (Suffix::Subqueue(a), Suffix::Subqueue(b)) => eq_ci(a, b),
            _ => false,
        }
    }
}

impl Eq for Suffix {}

impl Hash for Suffix {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let Suffix::Subqueue(subqueue) = self {
            hash_ci(subqueue, state);
        }
    }
}

impl Target {
    /// The queue this target designates, borrowing its names.
    fn queue_ref(&self) -> QueueRef<'_> {
        match self {
            Target::Named {
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
            Target::System(system) => QueueRef::System(*system),
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
        QueueName {
            repr: Repr::Path {
                computer: computer.to_owned(),
                target: Target::Named {
                    scope: Scope::Private,
                    name: name.to_owned(),
                    suffix: Suffix::None,
                },
            },
        }
    }

    /// Like [`QueueName::private`], but checks the computer name and queue name against
    /// the grammar and refuses bad ones with `MQ_ERROR_ILLEGAL_QUEUE_PATHNAME`.
    pub fn try_private(computer: &str, name: &str) -> Result<QueueName> {
        let text = format!("{computer}\\{PRIVATE_MARK}\\{name}");
        let ctx = Ctx::path(&text);
        check_computer(&ctx, "computer name", computer)?;
        check_name(&ctx, "queue name", name, MAX_QUEUE_NAME_LEN)?;
        Ok(QueueName::private(computer, name))
    }

    /// The same queue's subqueue `subqueue`, replacing any subqueue this name already has.
    ///
    /// Only a private or public queue named in a path name or `DIRECT=` format name can
    /// have subqueues; a system queue, a journal, `PRIVATE=` and `PUBLIC=` names are
    /// refused, as is a subqueue name that breaks the grammar. The error is
    /// `MQ_ERROR_ILLEGAL_QUEUE_PATHNAME` for a path name and `MQ_ERROR_ILLEGAL_FORMATNAME`
    /// for a format name.
    pub fn with_subqueue(&self, subqueue: &str) -> Result<QueueName> {
        let text = self.to_string();
        let ctx = Ctx {
            code: self.error_code(),
            what: "subqueue of",
            input: &text,
        };
        let repr = match &self.repr {
            Repr::Path { computer, target } => Repr::Path {
                computer: computer.clone(),
                target: target.with_subqueue(&ctx, subqueue)?,
            },
            Repr::Direct {
                protocol,
                address,
                target,
            } => Repr::Direct {
                protocol: *protocol,
                address: address.clone(),
                target: target.with_subqueue(&ctx, subqueue)?,
            },
            Repr::Machine { .. } => return Err(ctx.err("system queues have no subqueues")),
            Repr::PrivateId { .. } | Repr::PublicGuid { .. } => {
                return Err(
                    ctx.err("subqueues can be named only in path names and DIRECT= format names")
                )
            }
        };
        Ok(QueueName { repr })
    }

    /// The name of this queue's journal, in the same kind of name.
    ///
    /// A path name gets the `\JOURNAL$` suffix and a format name `;JOURNAL`. A subqueue's
    /// journal is its parent queue's journal, because MSMQ journals a subqueue's messages
    /// there. A journal or system queue has no journal of its own, so for those the name is
    /// returned unchanged.
    pub fn journal(&self) -> QueueName {
        let repr = match &self.repr {
            Repr::Path { computer, target } => Repr::Path {
                computer: computer.clone(),
                target: target.journal(),
            },
            Repr::Direct {
                protocol,
                address,
                target,
            } => Repr::Direct {
                protocol: *protocol,
                address: address.clone(),
                target: target.journal(),
            },
            Repr::PrivateId { machine, id, .. } => Repr::PrivateId {
                machine: *machine,
                id: *id,
                journal: true,
            },
            Repr::PublicGuid { guid, .. } => Repr::PublicGuid {
                guid: *guid,
                journal: true,
            },
            Repr::Machine { .. } => self.repr.clone(),
        };
        QueueName { repr }
    }

    /// The code this kind of name is refused with.
    fn error_code(&self) -> ErrorCode {
        if self.is_format_name() {
            ErrorCode::IllegalFormatname
        } else {
            ErrorCode::IllegalQueuePathname
        }
    }
}

impl Target {
    /// The same named queue's subqueue `subqueue`; system queues and journals have none.
    fn with_subqueue(&self, ctx: &Ctx<'_>, subqueue: &str) -> Result<Target> {
        match self {
            Target::Named {
                suffix: Suffix::Journal,
                ..
            } => Err(ctx.err("a queue journal has no subqueues")),
            Target::Named { scope, name, .. } => {
                check_subqueue(ctx, subqueue)?;
                Ok(Target::Named {
                    scope: *scope,
                    name: name.clone(),
                    suffix: Suffix::Subqueue(subqueue.to_owned()),
                })
            }
            Target::System(_) => Err(ctx.err("system queues have no subqueues")),
        }
    }

    /// The journal of this target: a named queue's journal, or the target itself otherwise.
    fn journal(&self) -> Target {
        match self {
            Target::Named { scope, name, .. } => Target::Named {
                scope: *scope,
                name: name.clone(),
                suffix: Suffix::Journal,
            },
            Target::System(system) => Target::System(*system),
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

impl fmt::Display for QueueName {
    /// Writes the canonical text of the name, which parses back to an equal name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Path { computer, target } => {
                write!(f, "{computer}\\")?;
                match target {
                    Target::System(system) => write!(f, "{SYSTEM_MARK};{}", system.keyword()),
                    Target::Named {
                        scope,
                        name,
                        suffix,
                    } => {
                        if let Scope::Private = scope {
                            write!(f, "{PRIVATE_MARK}\\")?;
                        }
                        f.write_str(name)?;
                        match suffix {
                            Suffix::None => Ok(()),
                            Suffix::Subqueue(subqueue) => write!(f, ";{subqueue}"),
                            Suffix::Journal => write!(f, "\\{JOURNAL_PATH_SUFFIX}"),
                        }
                    }
                }
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
                match target {
                    Target::System(system) => write!(f, "{SYSTEM_MARK};{}", system.keyword()),
                    Target::Named {
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
                            Suffix::Journal => write!(f, ";{JOURNAL_SUFFIX}"),
                        }
                    }
                }
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

/// What is being parsed, so that every refusal carries the right code and quotes the input.
struct Ctx<'a> {
    /// The code every refusal carries.
    code: ErrorCode,
    /// What the input is, for the detail sentence ("path name", "format name").
    what: &'static str,
    /// The whole input, quoted in the detail sentence.
    input: &'a str,
}

impl<'a> Ctx<'a> {
    /// The context for parsing `input` as a path name.
    fn path(input: &'a str) -> Ctx<'a> {
        Ctx {
            code: ErrorCode::IllegalQueuePathname,
            what: "path name",
            input,
        }
    }

    /// The context for parsing `input` as a format name.
    fn format(input: &'a str) -> Ctx<'a> {
        Ctx {
            code: ErrorCode::IllegalFormatname,
            what: "format name",
            input,
        }
    }

    /// A refusal whose detail names the input and then `problem`.
    fn err(&self, problem: impl fmt::Display) -> Error {
        let detail = if self.input.is_empty() {
            format!("{problem}")
        } else {
            format!("{} `{}`: {problem}", self.what, Shown(self.input))
        };
        Error::new(self.code, detail)
    }
}

/// Input quoted in an error detail: cut short if long, with control characters escaped.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, c) in self.0.chars().enumerate() {
            if index == SHOWN_INPUT_LIMIT {
                return f.write_str("...");
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// A character named for an error detail: quoted if visible ASCII, by code point otherwise.
fn describe(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_ascii_graphic() {
        format!("`{c}`")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// `text` without `prefix`, if it starts with `prefix` in any ASCII case.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        // The matched bytes equal an ASCII prefix, so the cut falls on a character boundary;
        // `get` still guards it rather than slicing.
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Whether `text` starts like a format name: letters and then `=`, as in `DIRECT=`.
///
/// A computer name made only of letters followed by `=` is not a real computer name, so
/// reading such text as a format name loses no path name.
fn looks_like_format_name(text: &str) -> bool {
    match text.split_once('=') {
        Some((head, _)) => !head.is_empty() && head.bytes().all(|b| b.is_ascii_alphabetic()),
        None => false,
    }
}

/// Whether MSMQ allows `c` in a queue or subqueue name (MS-MQMQ section 2.1.1):
/// %x21 / %x23-2A / %x2D-3A / %x3C-5B / %x5D-7F, which leaves out space, `"`, `+`, `,`,
/// `;`, `\` and everything outside ASCII.
fn is_name_char(c: char) -> bool {
    matches!(u32::from(c), 0x21 | 0x23..=0x2A | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7F)
}

/// Checks a queue or subqueue name (`what`) against the grammar and a length limit.
fn check_name(ctx: &Ctx<'_>, what: &str, name: &str, limit: usize) -> Result<()> {
    if name.is_empty() {
        return Err(ctx.err(format!("{what} is empty")));
    }
    let length = name.chars().count();
    if length > limit {
        return Err(ctx.err(format!(
            "{what} has {length} characters; the limit is {limit}"
        )));
    }
    if let Some(c) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(ctx.err(format!(
            "{what} contains {}, which MSMQ does not allow in queue names",
            describe(c)
        )));
    }
    Ok(())
}

/// Checks a public queue's name, which must also not be a word reserved in path names.
fn check_queue_name(ctx: &Ctx<'_>, scope: Scope, name: &str) -> Result<()> {
    check_name(ctx, "queue name", name, MAX_QUEUE_NAME_LEN)?;
    if scope == Scope::Public && RESERVED_PUBLIC_NAMES.iter().any(|word| eq_ci(word, name)) {
        return Err(ctx.err(format!(
            "`{name}` is reserved in path names and cannot name a public queue"
        )));
    }
    Ok(())
}

/// Checks a subqueue name, which must also not be a format-name suffix keyword.
fn check_subqueue(ctx: &Ctx<'_>, subqueue: &str) -> Result<()> {
    check_name(ctx, "subqueue name", subqueue, MAX_SUBQUEUE_NAME_LEN)?;
    if SUFFIX_KEYWORDS.iter().any(|word| eq_ci(word, subqueue)) {
        return Err(ctx.err(format!(
            "`{subqueue}` is a format-name suffix keyword and cannot name a subqueue"
        )));
    }
    Ok(())
}

/// Checks a computer name (`what`): 1 to 256 visible ASCII characters.
fn check_computer(ctx: &Ctx<'_>, what: &str, computer: &str) -> Result<()> {
    if computer.is_empty() {
        return Err(ctx.err(format!("{what} is empty")));
    }
    let length = computer.chars().count();
    if length > MAX_COMPUTER_NAME_LEN {
        return Err(ctx.err(format!(
            "{what} has {length} characters; the limit is {MAX_COMPUTER_NAME_LEN}"
        )));
    }
    if let Some(c) = computer.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(ctx.err(format!(
            "{what} contains {}, which is not a visible ASCII character",
            describe(c)
        )));
    }
    Ok(())
}

/// Splits the queue part of a name at `separators`, refusing empty components.
fn components<'a>(ctx: &Ctx<'_>, text: &'a str, separators: &[char]) -> Result<Vec<&'a str>> {
    let parts: Vec<&'a str> = text.split(|c: char| separators.contains(&c)).collect();
    let last = parts.len().saturating_sub(1);
    for (index, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(ctx.err(if last == 0 {
                "the queue name is missing after the last separator"
            } else if index == last {
                "the name ends with a separator"
            } else {
                "the name has two separators in a row (an empty component)"
            }));
        }
    }
    Ok(parts)
}

/// The system queue named by `rest`, the text after `system$` (`;JOURNAL` and so on).
fn system_suffix(ctx: &Ctx<'_>, rest: &str) -> Result<SystemQueue> {
    let Some(word) = rest.strip_prefix(';') else {
        return Err(
            ctx.err("`system$` must be followed by `;JOURNAL`, `;DEADLETTER` or `;DEADXACT`")
        );
    };
    if word.contains(';') {
        return Err(ctx.err("system queues have no subqueues"));
    }
    SystemQueue::from_keyword(word).ok_or_else(|| {
        ctx.err(format!(
            "`{word}` is not a system queue; expected JOURNAL, DEADLETTER or DEADXACT"
        ))
    })
}

/// The text after `system$`, if `part` is `system$` or `system$;...` in any case.
fn after_system_mark(part: &str) -> Option<&str> {
    strip_prefix_ci(part, SYSTEM_MARK).filter(|rest| rest.is_empty() || rest.starts_with(';'))
}

/// Parses a path name: `computer\queue`, `computer\private$\queue`, `computer\system$;X`,
/// with `;subqueue` or the System.Messaging suffixes.
fn parse_path_text(input: &str) -> Result<QueueName> {
    let ctx = Ctx::path(input);
    if input.is_empty() {
        return Err(ctx.err("the path name is empty"));
    }
    let Some((computer, rest)) = input.split_once('\\') else {
        return Err(ctx.err("there is no `\\` between the computer name and the queue name"));
    };
    check_computer(&ctx, "computer name", computer)?;
    let parts = components(&ctx, rest, &['\\'])?;
    let target = match parts.as_slice() {
        [single] => path_single(&ctx, single)?,
        [mark, queue] if eq_ci(mark, PRIVATE_MARK) => path_named(&ctx, Scope::Private, queue)?,
        [queue, journal] if eq_ci(journal, JOURNAL_PATH_SUFFIX) => {
            path_journal(&ctx, Scope::Public, queue)?
        }
        [mark, queue, journal]
            if eq_ci(mark, PRIVATE_MARK) && eq_ci(journal, JOURNAL_PATH_SUFFIX) =>
        {
            path_journal(&ctx, Scope::Private, queue)?
        }
        [_, extra] => return Err(misplaced_extra(&ctx, extra)),
        [mark, _, extra] if eq_ci(mark, PRIVATE_MARK) => return Err(misplaced_extra(&ctx, extra)),
        [other, _, _] => {
            return Err(ctx.err(format!(
                "`{other}` stands where only `private$` may; a queue name cannot contain `\\`"
            )))
        }
        _ => return Err(ctx.err("the path name has too many `\\`-separated parts")),
    };
    Ok(QueueName {
        repr: Repr::Path {
            computer: computer.to_owned(),
            target,
        },
    })
}

/// The refusal of a path-name part that follows the queue name but is not `JOURNAL$`.
fn misplaced_extra(ctx: &Ctx<'_>, extra: &str) -> Error {
    ctx.err(format!(
        "`{extra}` follows the queue name, where only `\\JOURNAL$` may"
    ))
}

/// Parses the one part after the computer in a path name: a public queue or a system queue.
fn path_single(ctx: &Ctx<'_>, part: &str) -> Result<Target> {
    if eq_ci(part, PRIVATE_MARK) {
        return Err(ctx.err("`private$` must be followed by `\\` and a queue name"));
    }
    if let Some(system) = SystemQueue::from_path_suffix(part) {
        return Ok(Target::System(system));
    }
    if let Some(rest) = after_system_mark(part) {
        return system_suffix(ctx, rest).map(Target::System);
    }
    path_named(ctx, Scope::Public, part)
}

/// Parses `queue` or `queue;subqueue` in a path name.
fn path_named(ctx: &Ctx<'_>, scope: Scope, text: &str) -> Result<Target> {
    let (name, subqueue) = match text.split_once(';') {
        Some((name, subqueue)) => (name, Some(subqueue)),
        None => (text, None),
    };
    check_queue_name(ctx, scope, name)?;
    let suffix = match subqueue {
        None => Suffix::None,
        Some(subqueue) if subqueue.contains(';') => {
            return Err(ctx.err("the queue name has more than one `;`"))
        }
        Some(subqueue) => {
            check_subqueue(ctx, subqueue)?;
            Suffix::Subqueue(subqueue.to_owned())
        }
    };
    Ok(Target::Named {
        scope,
        name: name.to_owned(),
        suffix,
    })
}

/// Parses the queue before a `\JOURNAL$` path suffix.
fn path_journal(ctx: &Ctx<'_>, scope: Scope, queue: &str) -> Result<Target> {
    if scope == Scope::Public && after_system_mark(queue).is_some() {
        return Err(ctx.err("system queues have no journal"));
    }
    if queue.contains(';') {
        return Err(ctx.err(SUBQUEUE_HAS_NO_JOURNAL));
    }
    check_queue_name(ctx, scope, queue)?;
    Ok(Target::Named {
        scope,
        name: queue.to_owned(),
        suffix: Suffix::Journal,
    })
}

/// Parses a format name; `input` is the whole text and `body` the part after any
/// `FormatName:` prefix.
fn parse_format(input: &str, body: &str) -> Result<QueueName> {
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
    Ok(QueueName { repr })
}

/// Splits `text` at its first `;` into the part before and the suffix after.
fn split_suffix(text: &str) -> (&str, Option<&str>) {
    match text.split_once(';') {
        Some((head, suffix)) => (head, Some(suffix)),
        None => (text, None),
    }
}

/// Whether an optional suffix on a `PRIVATE=` or `PUBLIC=` name asks for the journal; any
/// other suffix is refused.
fn journal_suffix(ctx: &Ctx<'_>, kind: &str, suffix: Option<&str>) -> Result<bool> {
    match suffix {
        None => Ok(false),
        Some(word) if eq_ci(word, JOURNAL_SUFFIX) => Ok(true),
        Some(word) => Err(ctx.err(format!(
            "{kind} format names accept only the `;JOURNAL` suffix, not `;{word}`"
        ))),
    }
}

/// Parses the part after `DIRECT=`: a protocol, an address and the queue.
fn parse_direct(ctx: &Ctx<'_>, rest: &str) -> Result<Repr> {
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
            Some(rest) => Target::System(system_suffix(ctx, rest)?),
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
fn format_named(ctx: &Ctx<'_>, scope: Scope, text: &str) -> Result<Target> {
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
    Ok(Target::Named {
        scope,
        name: name.to_owned(),
        suffix,
    })
}

/// Checks a `DIRECT=TCP:` address, which must be an IPv4 or IPv6 literal.
fn check_ip(ctx: &Ctx<'_>, address: &str) -> Result<()> {
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
fn check_http_host(ctx: &Ctx<'_>, address: &str) -> Result<()> {
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
fn split_port(address: &str) -> (&str, Option<&str>) {
    match address.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (address, None),
    }
}

/// Parses a GUID written as 8-4-4-4-12 hexadecimal digits, with or without braces.
fn parse_guid(ctx: &Ctx<'_>, text: &str) -> Result<Uuid> {
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
fn parse_private_id(ctx: &Ctx<'_>, rest: &str) -> Result<Repr> {
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
fn parse_machine(ctx: &Ctx<'_>, rest: &str) -> Result<Repr> {
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

/// Names travel (on the wire, in the log) as their canonical text and are parsed back, so the
/// grammar is the only judge of what a valid name is.
impl serde::Serialize for QueueName {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;

    /// The GUID the tables use, in the canonical spelling display gives it.
    const G: &str = "01234567-89ab-cdef-0123-456789abcdef";

    /// The same GUID in upper case with braces, as a user might type it.
    const G_BRACED: &str = "{01234567-89AB-CDEF-0123-456789ABCDEF}";

    /// The GUID as a value.
    const GUID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

    /// Hashes a name with the standard hasher, to compare hashes of equal names.
    fn hash_of(name: &QueueName) -> u64 {
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        hasher.finish()
    }

    /// Parses `input` and checks its display, host and queue, then that the display parses
    /// back to an equal name and that `parse_path` agrees on whether it is a path name.
    fn check(input: &str, display: &str, host: Host<'_>, queue: QueueRef<'_>) {
        let name = QueueName::parse(input).unwrap_or_else(|e| panic!("`{input}` must parse: {e}"));
        assert_eq!(name.to_string(), display, "display of `{input}`");
        assert_eq!(name.host(), host, "host of `{input}`");
        assert_eq!(name.queue(), queue, "queue of `{input}`");
        let again = QueueName::parse(display)
            .unwrap_or_else(|e| panic!("display `{display}` must parse: {e}"));
        assert_eq!(again, name, "`{display}` parses back to `{input}`");
        assert_eq!(hash_of(&again), hash_of(&name));
        assert_eq!(again.to_string(), display, "display is a fixed point");
        assert_eq!(input.parse::<QueueName>().ok(), Some(name.clone()));
        match QueueName::parse_path(input) {
            Ok(path) => {
                assert!(!name.is_format_name(), "`{input}` is a path name");
                assert_eq!(path, name);
            }
            Err(e) => {
                assert!(name.is_format_name(), "`{input}` is a format name: {e}");
                assert_eq!(e.code(), ErrorCode::IllegalQueuePathname);
            }
        }
    }

    /// A private queue reference.
    fn private<'a>(name: &'a str, subqueue: Option<&'a str>, journal: bool) -> QueueRef<'a> {
        QueueRef::Private {
            name,
            subqueue,
            journal,
        }
    }

    /// A public queue reference.
    fn public<'a>(name: &'a str, subqueue: Option<&'a str>, journal: bool) -> QueueRef<'a> {
        QueueRef::Public {
            name,
            subqueue,
            journal,
        }
    }

    /// An address host.
    fn address(protocol: Protocol, address: &str) -> Host<'_> {
        Host::Address { protocol, address }
    }

    #[test]
    fn path_names() {
        use Host::{Computer, Local};
        let cases: &[(&str, &str, Host<'_>, QueueRef<'_>)] = &[
            (
                r".\private$\q",
                r".\private$\q",
                Local,
                private("q", None, false),
            ),
            (
                r".\PRIVATE$\Orders",
                r".\private$\Orders",
                Local,
                private("Orders", None, false),
            ),
            (
                r"HOST\private$\q",
                r"HOST\private$\q",
                Computer("HOST"),
                private("q", None, false),
            ),
            (
                r"HOST\q",
                r"HOST\q",
                Computer("HOST"),
                public("q", None, false),
            ),
            (
                r".\private$\orders;poison",
                r".\private$\orders;poison",
                Local,
                private("orders", Some("poison"), false),
            ),
            (
                r"HOST\q;retry",
                r"HOST\q;retry",
                Computer("HOST"),
                public("q", Some("retry"), false),
            ),
            (
                r"HOST\system$;JOURNAL",
                r"HOST\system$;JOURNAL",
                Computer("HOST"),
                QueueRef::System(SystemQueue::Journal),
            ),
            (
                r"host\SYSTEM$;deadletter",
                r"host\system$;DEADLETTER",
                Computer("host"),
                QueueRef::System(SystemQueue::DeadLetter),
            ),
            (
                r"HOST\System$;DeadXact",
                r"HOST\system$;DEADXACT",
                Computer("HOST"),
                QueueRef::System(SystemQueue::DeadXact),
            ),
            (
                r"HOST\private$\q\JOURNAL$",
                r"HOST\private$\q\JOURNAL$",
                Computer("HOST"),
                private("q", None, true),
            ),
            (
                r"HOST\Private$\q\journal$",
                r"HOST\private$\q\JOURNAL$",
                Computer("HOST"),
                private("q", None, true),
            ),
            (
                r"HOST\q\JOURNAL$",
                r"HOST\q\JOURNAL$",
                Computer("HOST"),
                public("q", None, true),
            ),
            (
                r"HOST\JOURNAL$",
                r"HOST\system$;JOURNAL",
                Computer("HOST"),
                QueueRef::System(SystemQueue::Journal),
            ),
            (
                r"HOST\deadletter$",
                r"HOST\system$;DEADLETTER",
                Computer("HOST"),
                QueueRef::System(SystemQueue::DeadLetter),
            ),
            (
                r".\XACTDEADLETTER$",
                r".\system$;DEADXACT",
                Local,
                QueueRef::System(SystemQueue::DeadXact),
            ),
            // The grammar is unambiguous here, so a private queue may be called `JOURNAL$`.
            (
                r"HOST\private$\JOURNAL$",
                r"HOST\private$\JOURNAL$",
                Computer("HOST"),
                private("JOURNAL$", None, false),
            ),
            // Only `system$` on its own or before `;` marks the system queues.
            (
                r"HOST\system$x",
                r"HOST\system$x",
                Computer("HOST"),
                public("system$x", None, false),
            ),
            (
                r"my-host.example.com\private$\a.b_c-d$",
                r"my-host.example.com\private$\a.b_c-d$",
                Computer("my-host.example.com"),
                private("a.b_c-d$", None, false),
            ),
            // Every punctuation character the queue-name grammar allows, including `/`.
            (
                r".\private$\q!#$%&'()*-./:<=>?@[]^_`{|}~",
                r".\private$\q!#$%&'()*-./:<=>?@[]^_`{|}~",
                Local,
                private("q!#$%&'()*-./:<=>?@[]^_`{|}~", None, false),
            ),
            // A computer name with `=` after a digit is still a path name.
            (
                r"a1=b\q",
                r"a1=b\q",
                Computer("a1=b"),
                public("q", None, false),
            ),
        ];
        for (input, display, host, queue) in cases {
            check(input, display, *host, *queue);
        }
    }

    #[test]
    fn direct_format_names() {
        use Host::{Computer, Local};
        use Protocol::{Http, Https, Tcp};
        let cases: &[(&str, &str, Host<'_>, QueueRef<'_>)] = &[
            (
                r"DIRECT=TCP:1.2.3.4\private$\q",
                r"DIRECT=TCP:1.2.3.4\private$\q",
                address(Tcp, "1.2.3.4"),
                private("q", None, false),
            ),
            (
                r"FormatName:DIRECT=TCP:1.2.3.4\private$\q",
                r"DIRECT=TCP:1.2.3.4\private$\q",
                address(Tcp, "1.2.3.4"),
                private("q", None, false),
            ),
            (
                r"formatname:direct=tcp:1.2.3.4\PRIVATE$\q",
                r"DIRECT=TCP:1.2.3.4\private$\q",
                address(Tcp, "1.2.3.4"),
                private("q", None, false),
            ),
            (
                r"DIRECT=OS:host\private$\q",
                r"DIRECT=OS:host\private$\q",
                Computer("host"),
                private("q", None, false),
            ),
            (
                r"Direct=Os:.\private$\q",
                r"DIRECT=OS:.\private$\q",
                Local,
                private("q", None, false),
            ),
            (
                r"DIRECT=OS:host\q",
                r"DIRECT=OS:host\q",
                Computer("host"),
                public("q", None, false),
            ),
            // Outside HTTP names `/` is an ordinary queue-name character.
            (
                r"DIRECT=OS:host\a/b",
                r"DIRECT=OS:host\a/b",
                Computer("host"),
                public("a/b", None, false),
            ),
            (
                "DIRECT=HTTP://host/msmq/private$/q",
                "DIRECT=HTTP://host/msmq/private$/q",
                address(Http, "host"),
                private("q", None, false),
            ),
            (
                "DIRECT=HTTPS://host:443/msmq/private$/q",
                "DIRECT=HTTPS://host:443/msmq/private$/q",
                address(Https, "host:443"),
                private("q", None, false),
            ),
            (
                r"DIRECT=http://host\MSMQ\private$\q",
                "DIRECT=HTTP://host/msmq/private$/q",
                address(Http, "host"),
                private("q", None, false),
            ),
            (
                "DIRECT=HTTP://host/msmq/q",
                "DIRECT=HTTP://host/msmq/q",
                address(Http, "host"),
                public("q", None, false),
            ),
            (
                "DIRECT=HTTP://[::1]:8080/msmq/private$/q;JOURNAL",
                "DIRECT=HTTP://[::1]:8080/msmq/private$/q;JOURNAL",
                address(Http, "[::1]:8080"),
                private("q", None, true),
            ),
            (
                "DIRECT=HTTPS://10.0.0.1/msmq/private$/q;poison",
                "DIRECT=HTTPS://10.0.0.1/msmq/private$/q;poison",
                address(Https, "10.0.0.1"),
                private("q", Some("poison"), false),
            ),
            (
                r"DIRECT=TCP:1.2.3.4\SYSTEM$;DEADXACT",
                r"DIRECT=TCP:1.2.3.4\system$;DEADXACT",
                address(Tcp, "1.2.3.4"),
                QueueRef::System(SystemQueue::DeadXact),
            ),
            (
                r"DIRECT=OS:host\system$;journal",
                r"DIRECT=OS:host\system$;JOURNAL",
                Computer("host"),
                QueueRef::System(SystemQueue::Journal),
            ),
            (
                "DIRECT=HTTP://host/msmq/system$;DEADLETTER",
                "DIRECT=HTTP://host/msmq/system$;DEADLETTER",
                address(Http, "host"),
                QueueRef::System(SystemQueue::DeadLetter),
            ),
            (
                r"DIRECT=OS:host\private$\q;poison",
                r"DIRECT=OS:host\private$\q;poison",
                Computer("host"),
                private("q", Some("poison"), false),
            ),
            (
                r"DIRECT=OS:host\private$\q;JOURNAL",
                r"DIRECT=OS:host\private$\q;JOURNAL",
                Computer("host"),
                private("q", None, true),
            ),
            (
                r"DIRECT=OS:host\q;journal",
                r"DIRECT=OS:host\q;JOURNAL",
                Computer("host"),
                public("q", None, true),
            ),
            (
                r"DIRECT=TCP:::1\private$\q",
                r"DIRECT=TCP:::1\private$\q",
                address(Tcp, "::1"),
                private("q", None, false),
            ),
            (
                r"DIRECT=TCP:[fe80::1]\q",
                r"DIRECT=TCP:[fe80::1]\q",
                address(Tcp, "[fe80::1]"),
                public("q", None, false),
            ),
        ];
        for (input, display, host, queue) in cases {
            check(input, display, *host, *queue);
        }
    }

    #[test]
    fn guid_format_names() {
        let private_id = |id, journal| QueueRef::PrivateId { id, journal };
        let public_guid = |journal| QueueRef::PublicGuid {
            guid: GUID,
            journal,
        };
        let cases: Vec<(String, String, Host<'_>, QueueRef<'_>)> = vec![
            (
                format!(r"PRIVATE={G}\1a"),
                format!(r"PRIVATE={G}\0000001a"),
                Host::Machine(GUID),
                private_id(0x1a, false),
            ),
            (
                format!(r"FormatName:private={G_BRACED}\FFFFFFFF;journal"),
                format!(r"PRIVATE={G}\ffffffff;JOURNAL"),
                Host::Machine(GUID),
                private_id(0xffff_ffff, true),
            ),
            (
                format!(r"PRIVATE={G}\00000004"),
                format!(r"PRIVATE={G}\00000004"),
                Host::Machine(GUID),
                private_id(4, false),
            ),
            (
                format!("PUBLIC={G}"),
                format!("PUBLIC={G}"),
                Host::Local,
                public_guid(false),
            ),
            (
                format!("Public={G_BRACED};JOURNAL"),
                format!("PUBLIC={G};JOURNAL"),
                Host::Local,
                public_guid(true),
            ),
            (
                format!("MACHINE={G};JOURNAL"),
                format!("MACHINE={G};JOURNAL"),
                Host::Machine(GUID),
                QueueRef::System(SystemQueue::Journal),
            ),
            (
                format!("MACHINE={G_BRACED};DeadLetter"),
                format!("MACHINE={G};DEADLETTER"),
                Host::Machine(GUID),
                QueueRef::System(SystemQueue::DeadLetter),
            ),
            (
                format!("machine={G};deadxact"),
                format!("MACHINE={G};DEADXACT"),
                Host::Machine(GUID),
                QueueRef::System(SystemQueue::DeadXact),
            ),
        ];
        for (input, display, host, queue) in &cases {
            check(input, display, *host, *queue);
        }
    }

    #[test]
    fn names_compare_and_hash_without_case() {
        let equal = [
            (r".\PRIVATE$\Orders", r".\private$\orders"),
            (r"HOST\Q;Poison", r"host\q;POISON"),
            (r"HOST\Q\journal$", r"host\q\JOURNAL$"),
            (r"HOST\JOURNAL$", r"host\system$;journal"),
            (r"DIRECT=OS:Host\PRIVATE$\Q", r"direct=os:host\private$\q"),
            (r"FormatName:DIRECT=OS:host\q", r"DIRECT=OS:host\q"),
            ("DIRECT=HTTP://Host/MSMQ/Q", "direct=http://host/msmq/q"),
            (
                "DIRECT=HTTP://host/msmq/private$/q",
                r"DIRECT=HTTP://host\msmq\private$\q",
            ),
            (&format!("PUBLIC={G_BRACED}"), &format!("PUBLIC={G}")),
            (
                &format!(r"PRIVATE={G}\A"),
                &format!(r"PRIVATE={G}\0000000a"),
            ),
        ];
        for (a, b) in equal {
            let (x, y) = (QueueName::parse(a).unwrap(), QueueName::parse(b).unwrap());
            assert_eq!(x, y, "`{a}` == `{b}`");
            assert_eq!(hash_of(&x), hash_of(&y), "hash of `{a}` == hash of `{b}`");
        }
        let different = [
            (r".\private$\q", r"DIRECT=OS:.\private$\q"),
            (r".\private$\q", r".\q"),
            (r".\private$\q", r".\private$\q;sub"),
            (r".\private$\q;a", r".\private$\q;b"),
            (r".\private$\q", r".\private$\q\JOURNAL$"),
            (r".\private$\q", r"HOST\private$\q"),
            (r"HOST\system$;JOURNAL", r"HOST\system$;DEADLETTER"),
            (r"DIRECT=OS:1.2.3.4\q", r"DIRECT=TCP:1.2.3.4\q"),
            ("DIRECT=HTTP://host/msmq/q", "DIRECT=HTTPS://host/msmq/q"),
            ("DIRECT=HTTP://host/msmq/q", "DIRECT=HTTP://host:80/msmq/q"),
            (&format!(r"PRIVATE={G}\1"), &format!(r"PRIVATE={G}\2")),
            (&format!("PUBLIC={G}"), &format!("PUBLIC={G};JOURNAL")),
            (&format!("MACHINE={G};JOURNAL"), r"HOST\system$;JOURNAL"),
        ];
        for (a, b) in different {
            let (x, y) = (QueueName::parse(a).unwrap(), QueueName::parse(b).unwrap());
            assert_ne!(x, y, "`{a}` != `{b}`");
        }
    }

    #[test]
    fn display_keeps_the_given_spelling() {
        let name = QueueName::parse(r"MyHost\PRIVATE$\Orders;Poison").unwrap();
        assert_eq!(name.to_string(), r"MyHost\private$\Orders;Poison");
        assert_eq!(name.host(), Host::Computer("MyHost"));
        assert_eq!(name.queue(), private("Orders", Some("Poison"), false));
    }

    /// Inputs `parse` must refuse, with the code and a fragment of the detail sentence.
    fn refused() -> Vec<(String, ErrorCode, &'static str)> {
        use ErrorCode::{IllegalFormatname as F, IllegalQueuePathname as P};
        let long = |n| "a".repeat(n);
        vec![
            // Path names.
            (String::new(), P, "the path name is empty"),
            (
                "q".into(),
                P,
                "no `\\` between the computer name and the queue name",
            ),
            (r"\private$\q".into(), P, "computer name is empty"),
            (r".\".into(), P, "queue name is missing"),
            (r".\private$\".into(), P, "ends with a separator"),
            (r".\private$\q\".into(), P, "ends with a separator"),
            (r".\\q".into(), P, "two separators in a row"),
            (r".\private$".into(), P, "`private$` must be followed"),
            (r".\private$\q;".into(), P, "subqueue name is empty"),
            (r".\private$\;sub".into(), P, "queue name is empty"),
            (r".\private$\a;b;c".into(), P, "more than one `;`"),
            (
                r".\private$\q;JOURNAL".into(),
                P,
                "suffix keyword and cannot name a subqueue",
            ),
            (
                r".\private$\q;deadletter".into(),
                P,
                "suffix keyword and cannot name a subqueue",
            ),
            (
                r".\private$\q;sub\JOURNAL$".into(),
                P,
                "a subqueue has no journal",
            ),
            (
                r"HOST\q;sub\JOURNAL$".into(),
                P,
                "a subqueue has no journal",
            ),
            (
                r"HOST\system$;JOURNAL;sub".into(),
                P,
                "system queues have no subqueues",
            ),
            (
                r"HOST\system$".into(),
                P,
                "`system$` must be followed by `;JOURNAL`",
            ),
            (r"HOST\system$;".into(), P, "`` is not a system queue"),
            (r"HOST\system$;FOO".into(), P, "`FOO` is not a system queue"),
            (
                r"HOST\system$;JOURNAL\JOURNAL$".into(),
                P,
                "system queues have no journal",
            ),
            (
                r"HOST\system$\JOURNAL$".into(),
                P,
                "system queues have no journal",
            ),
            (
                r"HOST\JOURNAL$\JOURNAL$".into(),
                P,
                "reserved in path names",
            ),
            (r"HOST\DEADLETTER$;x".into(), P, "reserved in path names"),
            (r"HOST\private$\q\x".into(), P, "`x` follows the queue name"),
            (r"HOST\q\x".into(), P, "`x` follows the queue name"),
            (
                r"HOST\a\b\c".into(),
                P,
                "`a` stands where only `private$` may",
            ),
            (r"HOST\private$\q\JOURNAL$\x".into(), P, "too many"),
            (
                format!(r".\private$\{}", long(125)),
                P,
                "queue name has 125 characters; the limit is 124",
            ),
            (
                format!(r".\{}\JOURNAL$", long(125)),
                P,
                "queue name has 125 characters; the limit is 124",
            ),
            (
                format!(r".\private$\q;{}", long(33)),
                P,
                "subqueue name has 33 characters; the limit is 32",
            ),
            (
                format!(r"{}\q", long(257)),
                P,
                "computer name has 257 characters; the limit is 256",
            ),
            (
                r".\private$\my queue".into(),
                P,
                "queue name contains a space",
            ),
            (r".\private$\a+b".into(), P, "queue name contains `+`"),
            (r".\private$\a,b".into(), P, "queue name contains `,`"),
            (".\\private$\\a\"b".into(), P, "queue name contains `\"`"),
            (".\\private$\\a\tb".into(), P, "queue name contains U+0009"),
            (
                ".\\private$\\caf\u{e9}".into(),
                P,
                "queue name contains U+00E9",
            ),
            (
                ".\\private$\\q;\u{1F600}".into(),
                P,
                "subqueue name contains U+1F600",
            ),
            ("h\u{e9}\\q".into(), P, "computer name contains U+00E9"),
            (r"my host\q".into(), P, "computer name contains a space"),
            // Format names.
            ("FormatName:".into(), F, "the format name is empty"),
            (r"FormatName:.\private$\q".into(), F, "there is no `=`"),
            ("DIRECT=".into(), F, "must be followed by a protocol"),
            (
                r"DIRECT=FOO:host\q".into(),
                F,
                "`FOO` is not a DIRECT protocol",
            ),
            (
                r"DIRECT=SPX:host\q".into(),
                F,
                "`SPX` is not a DIRECT protocol",
            ),
            (r"DIRECT=IPX:00000001:000000000001\q".into(), F, "IPX"),
            (
                "DIRECT=OS:host".into(),
                F,
                "no `\\` between the address and the queue name",
            ),
            (r"DIRECT=OS:\q".into(), F, "computer name is empty"),
            (r"DIRECT=OS:host\".into(), F, "queue name is missing"),
            (
                r"DIRECT=OS:host\private$\".into(),
                F,
                "ends with a separator",
            ),
            (
                r"DIRECT=OS:host\private$".into(),
                F,
                "`private$` must be followed",
            ),
            (
                r"DIRECT=OS:host\private$\q;poison;JOURNAL".into(),
                F,
                "a subqueue has no journal",
            ),
            (
                r"DIRECT=OS:host\private$\q;JOURNAL;poison".into(),
                F,
                "journal has no subqueues",
            ),
            (
                r"DIRECT=OS:host\private$\q;a;b;c".into(),
                F,
                "more than one `;` suffix",
            ),
            (
                r"DIRECT=OS:host\private$\q;DEADLETTER".into(),
                F,
                "does not apply to a queue",
            ),
            (
                r"DIRECT=OS:host\private$\q;".into(),
                F,
                "subqueue name is empty",
            ),
            (
                r"DIRECT=OS:host\private$\q;XactOnly".into(),
                F,
                "does not apply to a queue",
            ),
            (
                r"DIRECT=OS:host\system$;JOURNAL;sub".into(),
                F,
                "system queues have no subqueues",
            ),
            (
                r"DIRECT=OS:host\system$;BOGUS".into(),
                F,
                "`BOGUS` is not a system queue",
            ),
            (
                r"DIRECT=OS:host\x\q".into(),
                F,
                "`x` stands where only `private$` may",
            ),
            (r"DIRECT=OS:host\private$\q\JOURNAL$".into(), F, "too many"),
            (
                r"DIRECT=OS:host\system$".into(),
                F,
                "`system$` must be followed",
            ),
            (
                r"DIRECT=TCP:host\q".into(),
                F,
                "`host` is not an IP address",
            ),
            (r"DIRECT=TCP:1.2.3\q".into(), F, "not an IP address"),
            (r"DIRECT=TCP:1.2.3.4:1801\q".into(), F, "not an IP address"),
            (
                r"DIRECT=TCP:\q".into(),
                F,
                "the address after DIRECT=TCP: is empty",
            ),
            (
                "DIRECT=HTTP:host/msmq/q".into(),
                F,
                "must be followed by `//`",
            ),
            (
                "DIRECT=HTTP://host".into(),
                F,
                "`/msmq/` and a queue name must follow the host",
            ),
            (
                "DIRECT=HTTP://host/q".into(),
                F,
                "`/msmq/` must follow the host",
            ),
            (
                "DIRECT=HTTP://host/msmq".into(),
                F,
                "a queue name must follow `/msmq/`",
            ),
            (
                "DIRECT=HTTP://host/msmq/".into(),
                F,
                "ends with a separator",
            ),
            (
                "DIRECT=HTTP://host//msmq/q".into(),
                F,
                "two separators in a row",
            ),
            (
                "DIRECT=HTTP://host:99999/msmq/q".into(),
                F,
                "`99999` is not a port number",
            ),
            (
                "DIRECT=HTTP://host:/msmq/q".into(),
                F,
                "`` is not a port number",
            ),
            (
                "DIRECT=HTTP://host:8x/msmq/q".into(),
                F,
                "`8x` is not a port number",
            ),
            ("DIRECT=HTTP:///msmq/q".into(), F, "host name is empty"),
            ("DIRECT=HTTP://[zz]/msmq/q".into(), F, "not an IPv6 address"),
            ("DIRECT=HTTP://[::1/msmq/q".into(), F, "unmatched `[`"),
            (
                "DIRECT=HTTP://[::1]x/msmq/q".into(),
                F,
                "only `:port` may follow",
            ),
            (
                "DIRECT=HTTP://host/msmq/private$/q/JOURNAL$".into(),
                F,
                "too many",
            ),
            (
                "DIRECT=HTTP://host/msmq/x/q".into(),
                F,
                "`x` stands where only `private$` may",
            ),
            (
                format!("PRIVATE={G}"),
                F,
                "must be followed by the computer GUID, `\\`",
            ),
            (
                format!(r"PRIVATE={G}\"),
                F,
                "the private queue number after `\\` is empty",
            ),
            (
                format!(r"PRIVATE={G}\xyz"),
                F,
                "`xyz` is not a hexadecimal private queue number",
            ),
            (format!(r"PRIVATE={G}\+1"), F, "`+1` is not a hexadecimal"),
            (
                format!(r"PRIVATE={G}\123456789"),
                F,
                "has 9 digits; the limit is 8",
            ),
            (
                format!(r"PRIVATE={G}\1;poison"),
                F,
                "accept only the `;JOURNAL` suffix",
            ),
            (
                r"PRIVATE=not-a-guid\1".into(),
                F,
                "`not-a-guid` is not a GUID",
            ),
            (
                r"PRIVATE={01234567-89ab-cdef-0123-456789abcdef\1".into(),
                F,
                "is not a GUID",
            ),
            ("PUBLIC=".into(), F, "`` is not a GUID"),
            (
                format!("PUBLIC={G};sub"),
                F,
                "accept only the `;JOURNAL` suffix, not `;sub`",
            ),
            (format!("PUBLIC={G}}}"), F, "is not a GUID"),
            (
                "PUBLIC=0123456789abcdef0123456789abcdef".into(),
                F,
                "is not a GUID",
            ),
            (
                "PUBLIC=0123456g-89ab-cdef-0123-456789abcdef".into(),
                F,
                "is not a GUID",
            ),
            (
                format!("MACHINE={G}"),
                F,
                "MACHINE= names a queue only with a",
            ),
            (
                format!("MACHINE={G};FOO"),
                F,
                "`;FOO` is not a system queue",
            ),
            (format!("MACHINE={G};JOURNAL;x"), F, "is not a system queue"),
            (
                format!("DL={G}"),
                F,
                "DL= format names do not name one queue",
            ),
            (
                format!("connector={G}"),
                F,
                "CONNECTOR= format names do not name one queue",
            ),
            (
                "MULTICAST=234.1.1.1:8001".into(),
                F,
                "MULTICAST= format names",
            ),
            ("FOO=bar".into(), F, "`FOO=` is not a format name type"),
            (r"DIRECT=OS:a\q,DIRECT=OS:b\q".into(), F, "multiple-element"),
            (
                format!(r"DIRECT=OS:host\private$\{}", long(125)),
                F,
                "queue name has 125 characters; the limit is 124",
            ),
            (
                format!(r"DIRECT=OS:host\private$\q;{}", long(33)),
                F,
                "subqueue name has 33 characters; the limit is 32",
            ),
            (
                format!(r"DIRECT=OS:{}\q", long(257)),
                F,
                "computer name has 257 characters; the limit is 256",
            ),
            (
                format!("DIRECT=HTTP://{}/msmq/q", long(257)),
                F,
                "host name has 257 characters; the limit is 256",
            ),
            (
                r"DIRECT=OS:host\private$\my q".into(),
                F,
                "queue name contains a space",
            ),
            ("DIRECT=OS:host\\private$\\q\u{e9}".into(), F, "U+00E9"),
            (
                r"DIRECT=OS:host\private$".into(),
                F,
                "`private$` must be followed",
            ),
            (
                r"DIRECT=OS:host\system$x;JOURNAL;y".into(),
                F,
                "journal has no subqueues",
            ),
            (
                r"DIRECT=OS:host\JOURNAL$".into(),
                F,
                "reserved in path names",
            ),
        ]
    }

    #[test]
    fn refusals_carry_the_right_code_and_say_what_is_wrong() {
        for (input, code, fragment) in refused() {
            match QueueName::parse(&input) {
                Ok(name) => panic!("`{input}` must be refused, but parsed as `{name}`"),
                Err(e) => {
                    assert_eq!(e.code(), code, "code for `{input}`: {e}");
                    assert!(
                        e.detail().contains(fragment),
                        "detail for `{input}` should contain `{fragment}`: {}",
                        e.detail()
                    );
                    assert!(!e.detail().is_empty());
                }
            }
            // `parse_path` refuses the same text, always as a path name.
            let e = QueueName::parse_path(&input).expect_err(&input);
            assert_eq!(e.code(), ErrorCode::IllegalQueuePathname, "{input}");
        }
    }

    #[test]
    fn parse_path_refuses_format_names() {
        for input in [
            r"DIRECT=OS:host\q",
            r"FormatName:DIRECT=OS:host\q",
            r"formatname:.\private$\q",
            &format!("PUBLIC={G}"),
            &format!(r"PRIVATE={G}\1"),
            &format!("MACHINE={G};JOURNAL"),
        ] {
            let e = QueueName::parse_path(input).expect_err(input);
            assert_eq!(e.code(), ErrorCode::IllegalQueuePathname, "{input}");
            assert!(e.detail().contains("format name"), "{}", e.detail());
        }
        let name = QueueName::parse_path(r".\private$\q").unwrap();
        assert!(!name.is_format_name());
    }

    #[test]
    fn length_limits_hold_at_the_boundary() {
        let name_124 = "n".repeat(124);
        let sub_32 = "s".repeat(32);
        let computer_256 = "c".repeat(256);
        for ok in [
            format!(r".\private$\{name_124}"),
            format!(r".\{name_124}"),
            format!(r".\private$\{name_124}\JOURNAL$"),
            format!(r".\private$\{name_124};{sub_32}"),
            format!(r"{computer_256}\q"),
            format!(r"DIRECT=OS:host\private$\{name_124};{sub_32}"),
            format!(r"DIRECT=OS:{computer_256}\q"),
            format!("DIRECT=HTTP://{computer_256}:65535/msmq/{name_124}"),
            format!(r"PRIVATE={G}\12345678"),
        ] {
            let name = QueueName::parse(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(QueueName::parse(&name.to_string()).unwrap(), name);
        }
        let name = QueueName::parse(&format!(r".\private$\{name_124};{sub_32}")).unwrap();
        assert_eq!(name.queue(), private(&name_124, Some(&sub_32), false));
        for (bad, fragment) in [
            (
                format!(r".\private$\{name_124}x"),
                "queue name has 125 characters; the limit is 124",
            ),
            (
                format!(r".\private$\q;{sub_32}x"),
                "subqueue name has 33 characters; the limit is 32",
            ),
            (
                format!(r"{computer_256}x\q"),
                "computer name has 257 characters; the limit is 256",
            ),
            (
                format!(r"DIRECT=OS:h\{name_124}x;JOURNAL"),
                "queue name has 125 characters; the limit is 124",
            ),
            (
                format!(r"PRIVATE={G}\123456789"),
                "has 9 digits; the limit is 8",
            ),
        ] {
            let e = QueueName::parse(&bad).expect_err(&bad);
            assert!(e.detail().contains(fragment), "{}", e.detail());
        }
    }

    #[test]
    fn error_text_names_code_and_input() {
        let input = format!(r".\private$\{}", "a".repeat(125));
        let e = QueueName::parse(&input).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("MQ_ERROR_ILLEGAL_QUEUE_PATHNAME (0xC00E0014): path name `"));
        assert!(text.ends_with("`: queue name has 125 characters; the limit is 124"));
        // A huge input is quoted only in part, and control characters are escaped.
        let huge = format!("{}\u{7}\\q", "x".repeat(10_000));
        let e = QueueName::parse(&huge).unwrap_err();
        assert!(e.detail().len() < 400, "{}", e.detail());
        assert!(e.detail().contains("..."));
        let e = QueueName::parse("a\u{7}b\\q").unwrap_err();
        assert!(e.detail().contains(r"a\u{7}b"), "{}", e.detail());
    }

    #[test]
    fn with_subqueue_names_a_subqueue_of_the_same_queue() {
        let cases = [
            (r".\private$\orders", "poison", r".\private$\orders;poison"),
            (
                r".\private$\orders;poison",
                "retry",
                r".\private$\orders;retry",
            ),
            (r"HOST\q", "s", r"HOST\q;s"),
            (
                r"DIRECT=OS:host\private$\q",
                "poison",
                r"DIRECT=OS:host\private$\q;poison",
            ),
            (
                "DIRECT=HTTP://h/msmq/q",
                "poison",
                "DIRECT=HTTP://h/msmq/q;poison",
            ),
        ];
        for (input, subqueue, display) in cases {
            let name = QueueName::parse(input).unwrap();
            let sub = name.with_subqueue(subqueue).unwrap();
            assert_eq!(sub.to_string(), display);
            assert_eq!(QueueName::parse(display).unwrap(), sub);
            assert_eq!(sub.host(), name.host());
        }
        let sub = QueueName::private(".", "orders")
            .with_subqueue("poison")
            .unwrap();
        assert_eq!(sub.queue(), private("orders", Some("poison"), false));
    }

    #[test]
    fn with_subqueue_refusals() {
        use ErrorCode::{IllegalFormatname as F, IllegalQueuePathname as P};
        let sub_33 = "s".repeat(33);
        let cases: Vec<(String, &str, ErrorCode, &str)> = vec![
            (
                r"HOST\system$;JOURNAL".into(),
                "s",
                P,
                "system queues have no subqueues",
            ),
            (
                r"HOST\private$\q\JOURNAL$".into(),
                "s",
                P,
                "a queue journal has no subqueues",
            ),
            (
                r"DIRECT=OS:h\q;JOURNAL".into(),
                "s",
                F,
                "a queue journal has no subqueues",
            ),
            (
                r"DIRECT=OS:h\system$;DEADXACT".into(),
                "s",
                F,
                "system queues have no subqueues",
            ),
            (
                format!("MACHINE={G};DEADXACT"),
                "s",
                F,
                "system queues have no subqueues",
            ),
            (
                format!(r"PRIVATE={G}\1"),
                "s",
                F,
                "only in path names and DIRECT=",
            ),
            (
                format!("PUBLIC={G}"),
                "s",
                F,
                "only in path names and DIRECT=",
            ),
            (r".\private$\q".into(), "", P, "subqueue name is empty"),
            (
                r".\private$\q".into(),
                "a;b",
                P,
                "subqueue name contains `;`",
            ),
            (
                r".\private$\q".into(),
                "a\\b",
                P,
                "subqueue name contains `\\`",
            ),
            (
                r".\private$\q".into(),
                &sub_33,
                P,
                "subqueue name has 33 characters",
            ),
            (r".\private$\q".into(), "Journal", P, "suffix keyword"),
            (r"DIRECT=OS:h\q".into(), "JOURNAL", F, "suffix keyword"),
            (r"DIRECT=OS:h\q".into(), "caf\u{e9}", F, "U+00E9"),
        ];
        for (input, subqueue, code, fragment) in cases {
            let name = QueueName::parse(&input).unwrap();
            let e = name.with_subqueue(subqueue).expect_err(&input);
            assert_eq!(e.code(), code, "{input} with `{subqueue}`: {e}");
            assert!(e.detail().contains(fragment), "{}", e.detail());
        }
    }

    #[test]
    fn journal_names_the_queue_journal() {
        let cases = [
            (r".\private$\orders", r".\private$\orders\JOURNAL$"),
            (r".\private$\orders;poison", r".\private$\orders\JOURNAL$"),
            (r"HOST\q", r"HOST\q\JOURNAL$"),
            (r"DIRECT=OS:h\private$\q", r"DIRECT=OS:h\private$\q;JOURNAL"),
            (
                r"DIRECT=OS:h\private$\q;poison",
                r"DIRECT=OS:h\private$\q;JOURNAL",
            ),
            ("DIRECT=HTTPS://h/msmq/q", "DIRECT=HTTPS://h/msmq/q;JOURNAL"),
            (
                &format!(r"PRIVATE={G}\1f"),
                &format!(r"PRIVATE={G}\0000001f;JOURNAL"),
            ),
            (&format!("PUBLIC={G}"), &format!("PUBLIC={G};JOURNAL")),
            // Journals and system queues have no journal of their own.
            (r".\private$\q\JOURNAL$", r".\private$\q\JOURNAL$"),
            (r"HOST\DEADLETTER$", r"HOST\system$;DEADLETTER"),
            (
                r"DIRECT=TCP:1.2.3.4\system$;JOURNAL",
                r"DIRECT=TCP:1.2.3.4\system$;JOURNAL",
            ),
            (
                &format!("MACHINE={G};DEADXACT"),
                &format!("MACHINE={G};DEADXACT"),
            ),
        ];
        for (input, display) in cases {
            let journal = QueueName::parse(input).unwrap().journal();
            assert_eq!(journal.to_string(), display, "journal of `{input}`");
            assert_eq!(QueueName::parse(display).unwrap(), journal);
            assert_eq!(journal.journal(), journal, "journal() is idempotent");
        }
        let journal = QueueName::private(".", "orders").journal();
        assert_eq!(journal.queue(), private("orders", None, true));
        assert_eq!(journal.host(), Host::Local);
    }

    #[test]
    fn private_builds_a_local_path_name() {
        let name = QueueName::private(".", "orders");
        assert_eq!(name.to_string(), r".\private$\orders");
        assert_eq!(name, QueueName::parse(r".\PRIVATE$\ORDERS").unwrap());
        assert_eq!(name.host(), Host::Local);
        assert_eq!(name.queue(), private("orders", None, false));
        assert!(!name.is_format_name());
        let remote = QueueName::private("HOST", "q");
        assert_eq!(remote.host(), Host::Computer("HOST"));
        assert_eq!(QueueName::try_private("HOST", "q").unwrap(), remote);
        for (computer, queue, fragment) in [
            ("", "q", "computer name is empty"),
            ("my host", "q", "computer name contains a space"),
            (".", "", "queue name is empty"),
            (".", "a;b", "queue name contains `;`"),
            (".", "a\\b", "queue name contains `\\`"),
        ] {
            let e = QueueName::try_private(computer, queue).expect_err(queue);
            assert_eq!(e.code(), ErrorCode::IllegalQueuePathname);
            assert!(e.detail().contains(fragment), "{}", e.detail());
        }
        let e = QueueName::try_private(".", &"a".repeat(125)).unwrap_err();
        assert!(e
            .detail()
            .contains("queue name has 125 characters; the limit is 124"));
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        for input in [
            "\u{0}",
            "\\",
            "\\\\",
            ";",
            "=",
            "{",
            "}",
            "[",
            "\u{e9}\\\u{e9}",
            "\u{e9}=x",
            "FORMATNAM\u{e9}:",
            "FormatName\u{e9}DIRECT=OS:h\\q",
            "FormatName:\u{e9}",
            "DIRECT=\u{e9}",
            "DIRECT=OS:\u{e9}\\q",
            "DIRECT=TCP:\u{e9}\\q",
            "DIRECT=HTTP://\u{e9}/msmq/q",
            "DIRECT=HTTP://[\u{e9}]/msmq/q",
            "DIRECT=HTTP://[\u{e9}/msmq/q",
            "DIRECT=HTTP://h:\u{e9}/msmq/q",
            "DIRECT=HTTP://h/msm\u{e9}/q",
            "DIRECT=HTTP://",
            "DIRECT=HTTP:/",
            "DIRECT=:",
            "PRIVATE=\u{e9}\\\u{e9}",
            "PRIVATE={\u{e9}}\\1",
            "PRIVATE=\\",
            "PUBLIC={",
            "PUBLIC={}",
            "PUBLIC=}",
            "MACHINE=;",
            "h\\privat\u{e9}$\\q",
            "h\\system\u{e9};JOURNAL",
            "h\\system$;JOURNAL\u{e9}",
            "h\\q;\u{0}",
        ] {
            assert!(
                QueueName::parse(input).is_err(),
                "`{input}` must be refused"
            );
            assert!(
                QueueName::parse_path(input).is_err(),
                "`{input}` must be refused"
            );
        }
    }

    /// Text fragments that make random strings likely to be, or nearly be, queue names.
    const FRAGMENTS: &[&str] = &[
        "FormatName:",
        "DIRECT=",
        "TCP:",
        "OS:",
        "HTTP://",
        "HTTPS://",
        "PRIVATE=",
        "PUBLIC=",
        "MACHINE=",
        "\\",
        "/",
        ";",
        ":",
        "private$",
        "PRIVATE$",
        "system$",
        "SYSTEM$;",
        "JOURNAL",
        "journal",
        "JOURNAL$",
        "DEADLETTER",
        "DEADXACT",
        "DEADLETTER$",
        "XACTDEADLETTER$",
        "msmq",
        "MSMQ/",
        ".",
        "host",
        "1.2.3.4",
        "[::1]",
        ":443",
        "q",
        "Orders",
        "poison",
        "01234567-89ab-cdef-0123-456789abcdef",
        "{01234567-89AB-CDEF-0123-456789ABCDEF}",
        "1a",
        "0000000f",
        "\u{e9}",
        " ",
        ",",
        "=",
    ];

    /// Random text built mostly from grammar fragments.
    fn grammar_like() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            4 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
            1 => "[a-zA-Z0-9.:;$/\\\\{}=,-]{1,4}",
            1 => any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(fragment, 0..10).prop_map(|parts| parts.concat())
    }

    /// Random text shaped like the common forms, so that most of it parses.
    fn likely_valid() -> impl Strategy<Value = String> {
        let name = "[a-zA-Z0-9_.$-]{1,12}";
        let suffix = prop_oneof![
            Just(String::new()),
            "[a-zA-Z0-9_]{1,6}".prop_map(|s| format!(";{s}")),
            Just(";JOURNAL".to_owned()),
            Just("\\JOURNAL$".to_owned()),
        ];
        let prefix = prop::sample::select(vec![
            ".\\",
            "host\\",
            ".\\private$\\",
            "HOST\\PRIVATE$\\",
            "DIRECT=OS:host\\private$\\",
            "FormatName:direct=tcp:10.1.2.3\\",
            "DIRECT=HTTP://h:80/msmq/private$/",
            "DIRECT=HTTPS://h\\MSMQ\\",
        ]);
        let named = (prefix, name, suffix).prop_map(|(p, n, s)| format!("{p}{n}{s}"));
        let by_guid = (
            prop::sample::select(vec!["PRIVATE", "Public", "machine"]),
            prop::sample::select(vec![G, G_BRACED]),
            "[0-9a-fA-F]{1,9}",
            prop::sample::select(vec!["", ";JOURNAL", ";deadletter", ";DEADXACT", ";x"]),
        )
            .prop_map(|(kind, guid, id, suffix)| {
                if kind == "PRIVATE" {
                    format!("{kind}={guid}\\{id}{suffix}")
                } else {
                    format!("{kind}={guid}{suffix}")
                }
            });
        prop_oneof![3 => named, 1 => by_guid]
    }

    /// The properties every input must have: no panic, and if it parses, a canonical
    /// display that parses back to an equal name, insensitivity to case, and derived names
    /// that round-trip too.
    fn check_properties(text: &str) {
        let parsed = QueueName::parse(text);
        let as_path = QueueName::parse_path(text);
        let name = match parsed {
            Ok(name) => name,
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        ErrorCode::IllegalQueuePathname | ErrorCode::IllegalFormatname
                    ),
                    "{e}"
                );
                assert!(!e.detail().is_empty());
                assert!(as_path.is_err());
                return;
            }
        };
        assert_eq!(as_path.is_ok(), !name.is_format_name(), "`{text}`");
        let shown = name.to_string();
        let again = QueueName::parse(&shown).unwrap_or_else(|e| panic!("`{shown}`: {e}"));
        assert_eq!(again, name, "`{text}` displays as `{shown}`");
        assert_eq!(hash_of(&again), hash_of(&name));
        assert_eq!(again.to_string(), shown, "display is a fixed point");
        for variant in [text.to_ascii_uppercase(), text.to_ascii_lowercase()] {
            let other = QueueName::parse(&variant).unwrap_or_else(|e| panic!("`{variant}`: {e}"));
            assert_eq!(other, name, "`{variant}` == `{text}`");
            assert_eq!(hash_of(&other), hash_of(&name));
        }
        let journal = name.journal();
        assert_eq!(QueueName::parse(&journal.to_string()).ok(), Some(journal));
        if let Ok(sub) = name.with_subqueue("poison") {
            assert_eq!(QueueName::parse(&sub.to_string()).ok(), Some(sub));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            check_properties(&text);
        }

        #[test]
        fn grammar_like_text_round_trips(text in grammar_like()) {
            check_properties(&text);
        }

        #[test]
        fn likely_valid_text_round_trips(text in likely_valid()) {
            check_properties(&text);
        }
    }
}
