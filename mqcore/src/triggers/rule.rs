//! MSMQ Triggers' stored strings (rule conditions, actions and action parameters), read and
//! written exactly as MSMQ stores them, so definitions can be brought over from Windows.
//!
//! - A condition string is a list of `TOKEN=value` items, each ended by a TAB:
//!   `$MSG_LABEL_CONTAINS=Stage\t$MSG_PRIORITY_GREATER_THAN=3\t`. All items must hold (AND); an
//!   empty string always holds. trigadm's help spells two operators `_DOES_NOT_EQUAL`, while the
//!   service's own parser uses `_NOT_EQUAL`: both are read, `_NOT_EQUAL` is written.
//! - An action string is TAB-separated: `EXE\t<path>[\t<param>...]`,
//!   `COM\t<ProgID>\t<Method>[\t<param>...]`, or the mqemu extension `HTTP\t<url>[\t<param>...]`.
//! - A parameter is a token (`$MSG_LABEL`...), a string literal in double quotes, or a number.
//!
//! On trigadm's command line, items are separated by `;` instead of TAB; [`split_items`] reads
//! that form too when the string holds no TAB.
//!
//! Source: `shared/reference/msmq-facts.md` section 5.

use std::fmt;

use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::message::Message;

/// Longest rule name, in characters.
pub const MAX_RULE_NAME_LEN: usize = 128;
/// Longest rule description, in characters.
pub const MAX_RULE_DESCRIPTION_LEN: usize = 255;
/// Longest condition string, in characters.
pub const MAX_CONDITION_LEN: usize = 512;
/// Longest action string, in characters.
pub const MAX_ACTION_LEN: usize = 512;

/// The refusal for a malformed definition.
pub(crate) fn invalid(what: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, what.into())
}

/// The items of a condition or action string: TAB-separated, or `;`-separated (trigadm's command
/// line) when there is no TAB. Empty items (the TAB that ends each condition) are dropped.
pub fn split_items(text: &str) -> Vec<&str> {
    let sep = if text.contains('\t') { '\t' } else { ';' };
    text.split(sep).filter(|item| !item.is_empty()).collect()
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// `$MSG_LABEL_CONTAINS`: the label contains the text (case-sensitive).
    LabelContains(String),
    /// `$MSG_LABEL_DOES_NOT_CONTAIN`.
    LabelDoesNotContain(String),
    /// `$MSG_BODY_CONTAINS`: a string body contains the text; false for other body types.
    BodyContains(String),
    /// `$MSG_BODY_DOES_NOT_CONTAIN`: a string body lacks the text; false for other body types.
    BodyDoesNotContain(String),
    /// `$MSG_PRIORITY_EQUALS`.
    PriorityEquals(i64),
    /// `$MSG_PRIORITY_NOT_EQUAL`.
    PriorityNotEqual(i64),
    /// `$MSG_PRIORITY_GREATER_THAN`.
    PriorityGreaterThan(i64),
    /// `$MSG_PRIORITY_LESS_THAN`.
    PriorityLessThan(i64),
    /// `$MSG_APPSPECIFIC_EQUALS`.
    AppSpecificEquals(i64),
    /// `$MSG_APPSPECIFIC_NOT_EQUAL`.
    AppSpecificNotEqual(i64),
    /// `$MSG_APPSPECIFIC_GREATER_THAN`.
    AppSpecificGreaterThan(i64),
    /// `$MSG_APPSPECIFIC_LESS_THAN`.
    AppSpecificLessThan(i64),
    /// `$MSG_SRCMACHINEID_EQUALS`: the sending queue manager's GUID.
    SrcMachineIdEquals(Uuid),
    /// `$MSG_SRCMACHINEID_NOT_EQUAL`.
    SrcMachineIdNotEqual(Uuid),
}

/// The operators' tokens, in MSMQ's order.
const OPERATORS: [&str; 14] = [
    "$MSG_LABEL_CONTAINS",
    "$MSG_LABEL_DOES_NOT_CONTAIN",
    "$MSG_BODY_CONTAINS",
    "$MSG_BODY_DOES_NOT_CONTAIN",
    "$MSG_PRIORITY_EQUALS",
    "$MSG_PRIORITY_NOT_EQUAL",
    "$MSG_PRIORITY_GREATER_THAN",
    "$MSG_PRIORITY_LESS_THAN",
    "$MSG_APPSPECIFIC_EQUALS",
    "$MSG_APPSPECIFIC_NOT_EQUAL",
    "$MSG_APPSPECIFIC_GREATER_THAN",
    "$MSG_APPSPECIFIC_LESS_THAN",
    "$MSG_SRCMACHINEID_EQUALS",
    "$MSG_SRCMACHINEID_NOT_EQUAL",
];

impl Condition {
    /// Every operator's token, in MSMQ's order.
    pub fn operators() -> &'static [&'static str] {
        &OPERATORS
    }

    /// This condition's operator token, such as `$MSG_LABEL_CONTAINS`.
    pub fn token(&self) -> &'static str {
        use Condition::*;
        OPERATORS[match self {
            LabelContains(_) => 0,
            LabelDoesNotContain(_) => 1,
            BodyContains(_) => 2,
            BodyDoesNotContain(_) => 3,
            PriorityEquals(_) => 4,
            PriorityNotEqual(_) => 5,
            PriorityGreaterThan(_) => 6,
            PriorityLessThan(_) => 7,
            AppSpecificEquals(_) => 8,
            AppSpecificNotEqual(_) => 9,
            AppSpecificGreaterThan(_) => 10,
            AppSpecificLessThan(_) => 11,
            SrcMachineIdEquals(_) => 12,
            SrcMachineIdNotEqual(_) => 13,
        }]
    }

    /// Reads one `TOKEN=value` item. The token is matched without regard to case.
    pub fn parse(item: &str) -> Result<Condition> {
        let (token, value) = item.split_once('=').ok_or_else(|| {
            invalid(format!(
                "condition {item:?} has no '=': conditions are written TOKEN=value"
            ))
        })?;
        let upper = token.trim().to_ascii_uppercase();
        let token = upper.replace("_DOES_NOT_EQUAL", "_NOT_EQUAL");
        let index = OPERATORS
            .iter()
            .position(|op| *op == token)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown condition {upper:?}; the operators are {}",
                    OPERATORS.join(", ")
                ))
            })?;
        let number = || -> Result<i64> {
            value.trim().parse::<i64>().map_err(|_| {
                invalid(format!(
                    "condition {token} needs a whole number, not {value:?}"
                ))
            })
        };
        let guid = || -> Result<Uuid> {
            let v = value.trim();
            let bare = v
                .strip_prefix('{')
                .and_then(|v| v.strip_suffix('}'))
                .unwrap_or(v);
            Uuid::parse_str(bare)
                .map_err(|_| invalid(format!("condition {token} needs a GUID, not {value:?}")))
        };
        let text = value.to_owned();
        use Condition::*;
        Ok(match index {
            0 => LabelContains(text),
            1 => LabelDoesNotContain(text),
            2 => BodyContains(text),
            3 => BodyDoesNotContain(text),
            4 => PriorityEquals(number()?),
            5 => PriorityNotEqual(number()?),
            6 => PriorityGreaterThan(number()?),
            7 => PriorityLessThan(number()?),
            8 => AppSpecificEquals(number()?),
            9 => AppSpecificNotEqual(number()?),
            10 => AppSpecificGreaterThan(number()?),
            11 => AppSpecificLessThan(number()?),
            12 => SrcMachineIdEquals(guid()?),
            _ => SrcMachineIdNotEqual(guid()?),
        })
    }

    /// Whether `msg` meets this condition.
    pub fn holds(&self, msg: &Message) -> bool {
        use Condition::*;
        let priority = i64::from(msg.priority);
        let app = i64::from(msg.app_specific);
        match self {
            LabelContains(t) => msg.label.contains(t.as_str()),
            LabelDoesNotContain(t) => !msg.label.contains(t.as_str()),
            BodyContains(t) => msg.body_text().is_some_and(|b| b.contains(t.as_str())),
            BodyDoesNotContain(t) => msg.body_text().is_some_and(|b| !b.contains(t.as_str())),
            PriorityEquals(n) => priority == *n,
            PriorityNotEqual(n) => priority != *n,
            PriorityGreaterThan(n) => priority > *n,
            PriorityLessThan(n) => priority < *n,
            AppSpecificEquals(n) => app == *n,
            AppSpecificNotEqual(n) => app != *n,
            AppSpecificGreaterThan(n) => app > *n,
            AppSpecificLessThan(n) => app < *n,
            SrcMachineIdEquals(g) => msg.source_machine() == *g,
            SrcMachineIdNotEqual(g) => msg.source_machine() != *g,
        }
    }

    fn check(&self) -> Result<()> {
        use Condition::*;
        match self {
            LabelContains(t) | LabelDoesNotContain(t) | BodyContains(t) | BodyDoesNotContain(t)
                if t.contains('\t') =>
            {
                Err(invalid(format!(
                    "condition {} value {t:?} contains a TAB, which ends a condition",
                    self.token()
                )))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Condition {
    /// The stored item, without its terminating TAB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Condition::*;
        write!(f, "{}=", self.token())?;
        match self {
            LabelContains(t) | LabelDoesNotContain(t) | BodyContains(t) | BodyDoesNotContain(t) => {
                f.write_str(t)
            }
            PriorityEquals(n)
            | PriorityNotEqual(n)
            | PriorityGreaterThan(n)
            | PriorityLessThan(n)
            | AppSpecificEquals(n)
            | AppSpecificNotEqual(n)
            | AppSpecificGreaterThan(n)
            | AppSpecificLessThan(n) => write!(f, "{n}"),
            SrcMachineIdEquals(g) | SrcMachineIdNotEqual(g) => write!(f, "{{{g}}}"),
        }
    }
}

/// Reads a whole condition string; empty means "always".
pub fn parse_conditions(text: &str) -> Result<Vec<Condition>> {
    if text.chars().count() > MAX_CONDITION_LEN {
        return Err(invalid(format!(
            "condition is {} characters long; the limit is {MAX_CONDITION_LEN}",
            text.chars().count()
        )));
    }
    let conditions = split_items(text)
        .into_iter()
        .map(Condition::parse)
        .collect::<Result<Vec<_>>>()?;
    // As stored, every item ends with a TAB: text that left out the last one may be a character
    // over the limit once stored (found by the `rule` fuzz target).
    let stored = format_conditions(&conditions).chars().count();
    if stored > MAX_CONDITION_LEN {
        return Err(invalid(format!(
            "condition is {stored} characters long as stored (each item ends with a TAB); the \
             limit is {MAX_CONDITION_LEN}"
        )));
    }
    Ok(conditions)
}

/// Writes conditions as MSMQ stores them: each item followed by a TAB.
pub fn format_conditions(conditions: &[Condition]) -> String {
    conditions.iter().map(|c| format!("{c}\t")).collect()
}

/// One parameter passed to an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `$MSG_ID`.
    MsgId,
    /// `$MSG_LABEL`.
    MsgLabel,
    /// `$MSG_BODY`: the body's bytes (as text for an executable).
    MsgBody,
    /// `$MSG_BODY_AS_STRING`.
    MsgBodyAsString,
    /// `$MSG_PRIORITY`.
    MsgPriority,
    /// `$MSG_ARRIVEDTIME`: seconds since 1970, as `PROPID_M_ARRIVEDTIME`.
    MsgArrivedTime,
    /// `$MSG_SENTTIME`: seconds since 1970, as `PROPID_M_SENTTIME`.
    MsgSentTime,
    /// `$MSG_CORRELATION_ID`.
    MsgCorrelationId,
    /// `$MSG_APPSPECIFIC`.
    MsgAppSpecific,
    /// `$MSG_QUEUE_PATHNAME`: the monitored queue's path name.
    MsgQueuePathname,
    /// `$MSG_QUEUE_FORMATNAME`: the monitored queue's format name.
    MsgQueueFormatname,
    /// `$MSG_RESPONSE_QUEUE_FORMATNAME`.
    MsgResponseQueueFormatname,
    /// `$MSG_DEST_QUEUE_FORMATNAME`.
    MsgDestQueueFormatname,
    /// `$MSG_ADMIN_QUEUE_FORMATNAME`.
    MsgAdminQueueFormatname,
    /// `$MSG_SRCMACHINEID`.
    MsgSrcMachineId,
    /// `$MSG_LOOKUP_ID`.
    MsgLookupId,
    /// `$TRIGGER_NAME`.
    TriggerName,
    /// `$TRIGGER_ID`.
    TriggerId,
    /// A string literal, written in double quotes; the text between them is taken as it is.
    Text(String),
    /// A numeric literal, kept as written (`42`, `-7`, `2.5`).
    Number(String),
}

/// The parameter tokens, in MSMQ's order, with what they read.
const PARAMS: [(&str, Param); 18] = [
    ("$MSG_ID", Param::MsgId),
    ("$MSG_LABEL", Param::MsgLabel),
    ("$MSG_BODY", Param::MsgBody),
    ("$MSG_BODY_AS_STRING", Param::MsgBodyAsString),
    ("$MSG_PRIORITY", Param::MsgPriority),
    ("$MSG_ARRIVEDTIME", Param::MsgArrivedTime),
    ("$MSG_SENTTIME", Param::MsgSentTime),
    ("$MSG_CORRELATION_ID", Param::MsgCorrelationId),
    ("$MSG_APPSPECIFIC", Param::MsgAppSpecific),
    ("$MSG_QUEUE_PATHNAME", Param::MsgQueuePathname),
    ("$MSG_QUEUE_FORMATNAME", Param::MsgQueueFormatname),
    (
        "$MSG_RESPONSE_QUEUE_FORMATNAME",
        Param::MsgResponseQueueFormatname,
    ),
    ("$MSG_DEST_QUEUE_FORMATNAME", Param::MsgDestQueueFormatname),
    (
        "$MSG_ADMIN_QUEUE_FORMATNAME",
        Param::MsgAdminQueueFormatname,
    ),
    ("$MSG_SRCMACHINEID", Param::MsgSrcMachineId),
    ("$MSG_LOOKUP_ID", Param::MsgLookupId),
    ("$TRIGGER_NAME", Param::TriggerName),
    ("$TRIGGER_ID", Param::TriggerId),
];

impl Param {
    /// Every parameter token, in MSMQ's order.
    pub fn tokens() -> impl Iterator<Item = &'static str> {
        PARAMS.iter().map(|(t, _)| *t)
    }

    /// Reads one parameter: a `$` token (any case), a `"quoted"` string, or a number.
    pub fn parse(item: &str) -> Result<Param> {
        let item = item.trim();
        if item.starts_with('$') {
            return PARAMS
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(item))
                .map(|(_, p)| p.clone())
                .ok_or_else(|| {
                    invalid(format!(
                        "unknown parameter {item:?}; the tokens are {}",
                        Param::tokens().collect::<Vec<_>>().join(", ")
                    ))
                });
        }
        if let Some(rest) = item.strip_prefix('"') {
            return rest
                .strip_suffix('"')
                .map(|t| Param::Text(t.to_owned()))
                .ok_or_else(|| invalid(format!("string literal {item} has no closing quote")));
        }
        if item.parse::<i64>().is_ok() || item.parse::<f64>().is_ok_and(f64::is_finite) {
            return Ok(Param::Number(item.to_owned()));
        }
        Err(invalid(format!(
            "parameter {item:?} is neither a $ token, a number nor a string literal; \
             write string literals in double quotes (\"{item}\")"
        )))
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Text(t) => write!(f, "\"{t}\""),
            Param::Number(n) => f.write_str(n),
            token => {
                let name = PARAMS
                    .iter()
                    .find(|(_, p)| p == token)
                    .map(|(t, _)| *t)
                    .unwrap_or_default();
                f.write_str(name)
            }
        }
    }
}

impl serde::Serialize for Param {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Param {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Param, D::Error> {
        let text = String::deserialize(d)?;
        Param::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a rule does when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `EXE`: runs an executable with the parameters as its arguments (no shell).
    Exe {
        /// The executable's path.
        path: String,
        /// Its arguments.
        #[serde(default)]
        params: Vec<Param>,
    },
    /// `COM`: calls the in-process handler registered for this ProgID and method.
    Com {
        /// The component's ProgID.
        prog_id: String,
        /// The method to call.
        method: String,
        /// The call's arguments.
        #[serde(default)]
        params: Vec<Param>,
    },
    /// `HTTP` (an mqemu extension): POSTs the message and the parameters to a URL.
    Http {
        /// An `http://` URL.
        url: String,
        /// Values sent along with the message.
        #[serde(default)]
        params: Vec<Param>,
    },
}

impl Action {
    /// Reads an action string (`EXE\t...`, `COM\t...`, `HTTP\t...`; trigadm's `;` form too).
    pub fn parse(text: &str) -> Result<Action> {
        if text.chars().count() > MAX_ACTION_LEN {
            return Err(invalid(format!(
                "action is {} characters long; the limit is {MAX_ACTION_LEN}",
                text.chars().count()
            )));
        }
        let items = split_items(text);
        let Some((kind, rest)) = items.split_first() else {
            return Err(invalid(
                "the action is empty: it starts with EXE, COM or HTTP",
            ));
        };
        let params = |items: &[&str]| -> Result<Vec<Param>> {
            items.iter().map(|p| Param::parse(p)).collect()
        };
        let kind = kind.trim().to_ascii_uppercase();
        let action = match (kind.as_str(), rest) {
            ("EXE", [path, ps @ ..]) => Action::Exe {
                path: path.trim().to_owned(),
                params: params(ps)?,
            },
            ("COM", [prog_id, method, ps @ ..]) => Action::Com {
                prog_id: prog_id.trim().to_owned(),
                method: method.trim().to_owned(),
                params: params(ps)?,
            },
            ("HTTP", [url, ps @ ..]) => Action::Http {
                url: url.trim().to_owned(),
                params: params(ps)?,
            },
            ("EXE", []) => return Err(invalid("an EXE action needs the executable's path")),
            ("COM", _) => return Err(invalid("a COM action needs a ProgID and a method")),
            ("HTTP", []) => return Err(invalid("an HTTP action needs a URL")),
            (other, _) => {
                return Err(invalid(format!(
                    "action kind {other:?} is not EXE, COM or HTTP"
                )))
            }
        };
        action.check()?;
        Ok(action)
    }

    /// The parameters passed to the action.
    pub fn params(&self) -> &[Param] {
        match self {
            Action::Exe { params, .. }
            | Action::Com { params, .. }
            | Action::Http { params, .. } => params,
        }
    }

    fn check(&self) -> Result<()> {
        let fields: Vec<&str> = match self {
            Action::Exe { path, .. } => vec![path],
            Action::Com {
                prog_id, method, ..
            } => vec![prog_id, method],
            Action::Http { url, .. } => {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(invalid(format!("HTTP action URL {url:?} is not http://")));
                }
                vec![url]
            }
        };
        if fields.iter().any(|f| f.is_empty() || f.contains('\t')) {
            return Err(invalid(format!(
                "action {self} has an empty field or a TAB inside one"
            )));
        }
        if self.params().iter().any(|p| match p {
            Param::Text(t) => t.contains('\t'),
            _ => false,
        }) {
            return Err(invalid("a string literal of the action contains a TAB"));
        }
        Ok(())
    }
}

impl fmt::Display for Action {
    /// The stored form: TAB-separated, no trailing TAB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Exe { path, .. } => write!(f, "EXE\t{path}")?,
            Action::Com {
                prog_id, method, ..
            } => write!(f, "COM\t{prog_id}\t{method}")?,
            Action::Http { url, .. } => write!(f, "HTTP\t{url}")?,
        }
        for p in self.params() {
            write!(f, "\t{p}")?;
        }
        Ok(())
    }
}

/// Checks a rule's name, description and parts against MSMQ's limits.
pub(crate) fn check_rule(
    name: &str,
    description: &str,
    conditions: &[Condition],
    action: &Action,
) -> Result<()> {
    let name_len = name.chars().count();
    if name.trim().is_empty() || name_len > MAX_RULE_NAME_LEN {
        return Err(invalid(format!(
            "rule name {name:?} must have 1 to {MAX_RULE_NAME_LEN} characters (it has {name_len})"
        )));
    }
    let d = description.chars().count();
    if d > MAX_RULE_DESCRIPTION_LEN {
        return Err(invalid(format!(
            "rule description has {d} characters; the limit is {MAX_RULE_DESCRIPTION_LEN}"
        )));
    }
    for c in conditions {
        c.check()?;
    }
    let cond = format_conditions(conditions).chars().count();
    if cond > MAX_CONDITION_LEN {
        return Err(invalid(format!(
            "condition is {cond} characters long; the limit is {MAX_CONDITION_LEN}"
        )));
    }
    action.check()?;
    let act = action.to_string().chars().count();
    if act > MAX_ACTION_LEN {
        return Err(invalid(format!(
            "action is {act} characters long; the limit is {MAX_ACTION_LEN}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
