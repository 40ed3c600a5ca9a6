//! Who a connection is, and what it may do to which queue.
//!
//! With no users configured the server is open: every connection may do everything (the default
//! for a server bound to loopback). With users, a connection must present one of their tokens in
//! its handshake, and each request is checked against that user's rights on the queue it names:
//! send, receive, peek, admin, given per queue name or for `*`. A refusal is
//! `MQ_ERROR_ACCESS_DENIED`, as MSMQ's security descriptors give.

use std::collections::BTreeMap;
use std::sync::Arc;

use mqcore::name::QueueRef;
use mqcore::{Error, ErrorCode, QueueName};
use serde::{Deserialize, Serialize};

/// One right on a queue (MSMQ's MQSEC_* access rights, grouped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// MQSEC_WRITE_MESSAGE.
    Send,
    /// MQSEC_RECEIVE_MESSAGE (and MQSEC_RECEIVE_JOURNAL_MESSAGE).
    Receive,
    /// MQSEC_PEEK_MESSAGE.
    Peek,
    /// Create, delete, purge, set properties (MQSEC_QUEUE_GENERIC_ALL less the message rights).
    Admin,
}

/// A user of the server: a token and its rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Shown in logs.
    pub name: String,
    /// The secret the client presents in its handshake; none for a user who logs in only by
    /// `certificate`.
    #[serde(default)]
    pub token: Option<String>,
    /// Every right on every queue, plus the queue manager's own administration (create,
    /// in-doubt resolution).
    #[serde(default)]
    pub admin: bool,
    /// Rights by queue name (the name after `private$\`, any case) or `*` for every queue.
    #[serde(default)]
    pub queues: BTreeMap<String, Vec<Right>>,
    /// A client certificate's common name or alternative name (DNS or e-mail) that logs in as
    /// this user over TLS with a client CA, instead of the token.
    #[serde(default)]
    pub certificate: Option<String>,
}

/// The users, or none (open access).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    users: Vec<Arc<User>>,
}

impl Auth {
    /// Access control over these users; open access when there are none. A user with neither a
    /// token nor a certificate cannot log in: [`Auth::check`] says so.
    pub fn new(users: Vec<User>) -> Auth {
        Auth {
            users: users.into_iter().map(Arc::new).collect(),
        }
    }

    /// Refuses users who could never log in (no token and no certificate) and tokens that two
    /// users share (a login could not tell them apart).
    pub fn check(&self) -> Result<(), Error> {
        for (i, u) in self.users.iter().enumerate() {
            if u.token.is_none() && u.certificate.is_none() {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    format!("user {:?} has neither a token nor a certificate", u.name),
                ));
            }
            if let Some(t) = &u.token {
                if let Some(o) = self.users[..i].iter().find(|o| o.token.as_ref() == Some(t)) {
                    return Err(Error::new(
                        ErrorCode::InvalidParameter,
                        format!("users {:?} and {:?} have the same token", o.name, u.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether any token is required.
    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// The principal a handshake's token names.
    pub fn login(&self, token: Option<&str>) -> Result<Principal, Error> {
        if self.is_open() {
            return Ok(Principal::Everyone);
        }
        let Some(token) = token else {
            return Err(Error::new(
                ErrorCode::AccessDenied,
                "this server requires an authentication token",
            ));
        };
        self.users
            .iter()
            // Compare every byte, whatever the first difference, so timing tells nothing.
            .find(|u| {
                u.token
                    .as_deref()
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
            })
            .map(|u| Principal::User(u.clone()))
            .ok_or_else(|| Error::new(ErrorCode::AccessDenied, "the token is not valid"))
    }
}

impl Auth {
    /// The user a verified client certificate names: the first whose `certificate` is one of
    /// `names` (the certificate's common names and alternative names). A certificate that names
    /// no user is refused with MQ_ERROR_ACCESS_DENIED, on an open server too: it claimed an
    /// identity the server does not know.
    pub fn login_certificate(&self, names: &[String]) -> Result<Principal, Error> {
        self.users
            .iter()
            .find(|u| {
                u.certificate
                    .as_deref()
                    .is_some_and(|c| names.iter().any(|n| n == c))
            })
            .map(|u| Principal::User(u.clone()))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::AccessDenied,
                    format!(
                        "the client certificate ({}) names no user",
                        names.join(", ")
                    ),
                )
            })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who a connection acts for.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Open access.
    Everyone,
    /// A configured user.
    User(Arc<User>),
}

impl Principal {
    /// The name for logs.
    pub fn name(&self) -> &str {
        match self {
            Principal::Everyone => "anonymous",
            Principal::User(u) => &u.name,
        }
    }

    /// Whether the connection proved who it is (logged in with a token): only then are its
    /// messages authenticated, as a queue with `authenticate` set asks.
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Principal::User(_))
    }

    /// Whether this principal administers the whole queue manager.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Everyone => true,
            Principal::User(u) => u.admin,
        }
    }

    /// Whether this principal has `right` on the queue keyed `key` (see [`queue_key`]).
    pub fn may(&self, right: Right, key: &str) -> bool {
        match self {
            Principal::Everyone => true,
            Principal::User(u) if u.admin => true,
            Principal::User(u) => {
                let has = |k: &str| {
                    u.queues.iter().any(|(name, rights)| {
                        name.eq_ignore_ascii_case(k)
                            && (rights.contains(&right) || rights.contains(&Right::Admin))
                    })
                };
                has(key) || has("*")
            }
        }
    }

    /// Refuses with MQ_ERROR_ACCESS_DENIED unless [`Principal::may`].
    pub fn check(&self, right: Right, key: &str, name: &str) -> Result<(), Error> {
        if self.may(right, key) {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::AccessDenied,
            format!(
                "{} has no {} right on {name}",
                self.name(),
                format!("{right:?}").to_lowercase()
            ),
        ))
    }
}

/// The key rights are given by: the private queue's name in lower case (its journal and
/// subqueues share it), `system$` for the system queues, the name itself otherwise.
pub fn queue_key(name: &str) -> String {
    match QueueName::parse(name) {
        Ok(n) => key_of(&n),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// [`queue_key`] of a name already parsed.
pub fn key_of(name: &QueueName) -> String {
    match name.queue() {
        QueueRef::Private { name, .. } | QueueRef::Public { name, .. } => name.to_ascii_lowercase(),
        QueueRef::System(_) => "system$".to_owned(),
        _ => name.to_string().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool, queues: &[(&str, &[Right])]) -> User {
        User {
            name: "u".into(),
            token: Some("t".into()),
            admin,
            queues: queues
                .iter()
                .map(|(q, r)| (q.to_string(), r.to_vec()))
                .collect(),
            certificate: None,
        }
    }

    #[test]
    fn rights() {
        let auth = Auth::new(vec![user(
            false,
            &[("Orders", &[Right::Send]), ("*", &[Right::Peek])],
        )]);
        assert_eq!(
            auth.login(None).unwrap_err().code(),
            ErrorCode::AccessDenied
        );
        assert_eq!(
            auth.login(Some("x")).unwrap_err().code(),
            ErrorCode::AccessDenied
        );
        let p = auth.login(Some("t")).unwrap();
        let key = queue_key(r".\private$\orders;poison");
        assert_eq!(key, "orders");
        assert!(p.may(Right::Send, &key));
        assert!(p.may(Right::Peek, &key));
        assert!(!p.may(Right::Receive, &key));
        assert!(!p.may(Right::Send, "other"));
        assert!(!p.is_admin());
        let e = p.check(Right::Receive, &key, "orders").unwrap_err();
        assert_eq!(e.code(), ErrorCode::AccessDenied);
        assert!(Auth::default().login(None).unwrap().may(Right::Admin, "x"));
    }
}
