//! The path-name grammar: `computer\queue`, `computer\private$\queue`,
//! `computer\system$;X`, with a subqueue or the System.Messaging suffixes (MS-MQMQ
//! section 2.1.1).

use super::check::{
    after_system_mark, check_computer, check_queue_name, check_subqueue, components, system_suffix,
    Ctx,
};
use super::eq::eq_ci;
use super::{
    QueueName, QueuePart, Repr, Scope, Suffix, SystemQueue, JOURNAL_PATH_SUFFIX, PRIVATE_MARK,
    SUBQUEUE_HAS_NO_JOURNAL,
};
use crate::error::{Error, Result};

/// Parses a path name: `computer\queue`, `computer\private$\queue`, `computer\system$;X`,
/// with `;subqueue` or the System.Messaging suffixes.
pub(super) fn parse_path_text(input: &str) -> Result<QueueName> {
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
    Ok(QueueName::from_repr(Repr::Path {
        computer: computer.to_owned(),
        target,
    }))
}

/// The refusal of a path-name part that follows the queue name but is not `JOURNAL$`.
pub(super) fn misplaced_extra(ctx: &Ctx<'_>, extra: &str) -> Error {
    ctx.err(format!(
        "`{extra}` follows the queue name, where only `\\JOURNAL$` may"
    ))
}

/// Parses the one part after the computer in a path name: a public queue or a system queue.
pub(super) fn path_single(ctx: &Ctx<'_>, part: &str) -> Result<QueuePart> {
    if eq_ci(part, PRIVATE_MARK) {
        return Err(ctx.err("`private$` must be followed by `\\` and a queue name"));
    }
    if let Some(system) = SystemQueue::from_path_suffix(part) {
        return Ok(QueuePart::System(system));
    }
    if let Some(rest) = after_system_mark(part) {
        return system_suffix(ctx, rest).map(QueuePart::System);
    }
    path_named(ctx, Scope::Public, part)
}

/// Parses `queue` or `queue;subqueue` in a path name.
pub(super) fn path_named(ctx: &Ctx<'_>, scope: Scope, text: &str) -> Result<QueuePart> {
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
    Ok(QueuePart::Named {
        scope,
        name: name.to_owned(),
        suffix,
    })
}

/// Parses the queue before a `\JOURNAL$` path suffix.
pub(super) fn path_journal(ctx: &Ctx<'_>, scope: Scope, queue: &str) -> Result<QueuePart> {
    if scope == Scope::Public && after_system_mark(queue).is_some() {
        return Err(ctx.err("system queues have no journal"));
    }
    if queue.contains(';') {
        return Err(ctx.err(SUBQUEUE_HAS_NO_JOURNAL));
    }
    check_queue_name(ctx, scope, queue)?;
    Ok(QueuePart::Named {
        scope,
        name: queue.to_owned(),
        suffix: Suffix::Journal,
    })
}
