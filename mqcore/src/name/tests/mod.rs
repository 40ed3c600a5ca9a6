//! Tests of the queue-name grammar, by concept: accepted names and their parts, refusals,
//! derived names, and the round-trip property `parse(display(x)) == x` on random text.
//! The helpers here are shared by all of them.

mod accepted;
mod properties;
mod refused;
mod related;

use super::*;
use proptest::prelude::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::error::ErrorCode;

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
    let again =
        QueueName::parse(display).unwrap_or_else(|e| panic!("display `{display}` must parse: {e}"));
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
