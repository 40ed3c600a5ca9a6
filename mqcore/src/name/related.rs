//! Names derived from another name: the same queue's subqueue, and the queue's journal.

use super::check::{check_subqueue, Ctx};
use super::{QueueName, QueuePart, Repr, Suffix};
use crate::error::{ErrorCode, Result};

impl QueueName {
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
        Ok(QueueName::from_repr(repr))
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
        QueueName::from_repr(repr)
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

impl QueuePart {
    /// The same named queue's subqueue `subqueue`; system queues and journals have none.
    fn with_subqueue(&self, ctx: &Ctx<'_>, subqueue: &str) -> Result<QueuePart> {
        match self {
            QueuePart::Named {
                suffix: Suffix::Journal,
                ..
            } => Err(ctx.err("a queue journal has no subqueues")),
            QueuePart::Named { scope, name, .. } => {
                check_subqueue(ctx, subqueue)?;
                Ok(QueuePart::Named {
                    scope: *scope,
                    name: name.clone(),
                    suffix: Suffix::Subqueue(subqueue.to_owned()),
                })
            }
            QueuePart::System(_) => Err(ctx.err("system queues have no subqueues")),
        }
    }

    /// The journal of this target: a named queue's journal, or the target itself otherwise.
    fn journal(&self) -> QueuePart {
        match self {
            QueuePart::Named { scope, name, .. } => QueuePart::Named {
                scope: *scope,
                name: name.clone(),
                suffix: Suffix::Journal,
            },
            QueuePart::System(system) => QueuePart::System(*system),
        }
    }
}
