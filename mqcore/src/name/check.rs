//! What the path-name and format-name grammars share: the refusal context that gives every
//! refusal its code and quotes the input, and the checks on computer, queue and subqueue
//! names (MS-MQMQ section 2.1.1) and on the separated parts of a queue.

use std::fmt::{self, Write as _};

use super::eq::eq_ci;
use super::{
    Scope, SystemQueue, MAX_COMPUTER_NAME_LEN, MAX_QUEUE_NAME_LEN, MAX_SUBQUEUE_NAME_LEN,
    RESERVED_PUBLIC_NAMES, SHOWN_INPUT_LIMIT, SUFFIX_KEYWORDS, SYSTEM_MARK,
};
use crate::error::{Error, ErrorCode, Result};

/// What is being parsed, so that every refusal carries the right code and quotes the input.
pub(super) struct Ctx<'a> {
    /// The code every refusal carries.
    pub(super) code: ErrorCode,
    /// What the input is, for the detail sentence ("path name", "format name").
    pub(super) what: &'static str,
    /// The whole input, quoted in the detail sentence.
    pub(super) input: &'a str,
}

impl<'a> Ctx<'a> {
    /// The context for parsing `input` as a path name.
    pub(super) fn path(input: &'a str) -> Ctx<'a> {
        Ctx {
            code: ErrorCode::IllegalQueuePathname,
            what: "path name",
            input,
        }
    }

    /// The context for parsing `input` as a format name.
    pub(super) fn format(input: &'a str) -> Ctx<'a> {
        Ctx {
            code: ErrorCode::IllegalFormatname,
            what: "format name",
            input,
        }
    }

    /// A refusal whose detail names the input and then `problem`.
    pub(super) fn err(&self, problem: impl fmt::Display) -> Error {
        let detail = if self.input.is_empty() {
            format!("{problem}")
        } else {
            format!("{} `{}`: {problem}", self.what, Shown(self.input))
        };
        Error::new(self.code, detail)
    }
}

/// Input quoted in an error detail: cut short if long, with control characters escaped.
pub(super) struct Shown<'a>(pub(super) &'a str);

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
pub(super) fn describe(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_ascii_graphic() {
        format!("`{c}`")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// `text` without `prefix`, if it starts with `prefix` in any ASCII case.
pub(super) fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        // The matched bytes equal an ASCII prefix, so the cut falls on a character boundary;
        // `get` still guards it rather than slicing.
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Whether MSMQ allows `c` in a queue or subqueue name (MS-MQMQ section 2.1.1):
/// %x21 / %x23-2A / %x2D-3A / %x3C-5B / %x5D-7F, which leaves out space, `"`, `+`, `,`,
/// `;`, `\` and everything outside ASCII.
pub(super) fn is_name_char(c: char) -> bool {
    matches!(u32::from(c), 0x21 | 0x23..=0x2A | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7F)
}

/// Checks a queue or subqueue name (`what`) against the grammar and a length limit.
pub(super) fn check_name(ctx: &Ctx<'_>, what: &str, name: &str, limit: usize) -> Result<()> {
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
pub(super) fn check_queue_name(ctx: &Ctx<'_>, scope: Scope, name: &str) -> Result<()> {
    check_name(ctx, "queue name", name, MAX_QUEUE_NAME_LEN)?;
    if scope == Scope::Public && RESERVED_PUBLIC_NAMES.iter().any(|word| eq_ci(word, name)) {
        return Err(ctx.err(format!(
            "`{name}` is reserved in path names and cannot name a public queue"
        )));
    }
    Ok(())
}

/// Checks a subqueue name, which must also not be a format-name suffix keyword.
pub(super) fn check_subqueue(ctx: &Ctx<'_>, subqueue: &str) -> Result<()> {
    check_name(ctx, "subqueue name", subqueue, MAX_SUBQUEUE_NAME_LEN)?;
    if SUFFIX_KEYWORDS.iter().any(|word| eq_ci(word, subqueue)) {
        return Err(ctx.err(format!(
            "`{subqueue}` is a format-name suffix keyword and cannot name a subqueue"
        )));
    }
    Ok(())
}

/// Checks a computer name (`what`): 1 to 256 visible ASCII characters.
pub(super) fn check_computer(ctx: &Ctx<'_>, what: &str, computer: &str) -> Result<()> {
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
pub(super) fn components<'a>(
    ctx: &Ctx<'_>,
    text: &'a str,
    separators: &[char],
) -> Result<Vec<&'a str>> {
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
pub(super) fn system_suffix(ctx: &Ctx<'_>, rest: &str) -> Result<SystemQueue> {
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
pub(super) fn after_system_mark(part: &str) -> Option<&str> {
    strip_prefix_ci(part, SYSTEM_MARK).filter(|rest| rest.is_empty() || rest.starts_with(';'))
}
