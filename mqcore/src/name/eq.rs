//! Equality and hashing of queue names that ignore ASCII case in names and keywords, as
//! MSMQ does, while the parsed value keeps the spelling it was given.

use std::hash::{Hash, Hasher};

use super::{QueuePart, Repr, Suffix};

/// Compares two names the way MSMQ does, ignoring ASCII case.
pub(super) fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Hashes a name so that names equal under [`eq_ci`] hash alike.
pub(super) fn hash_ci<H: Hasher>(text: &str, state: &mut H) {
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

impl PartialEq for QueuePart {
    fn eq(&self, other: &QueuePart) -> bool {
        match (self, other) {
            (
                QueuePart::Named {
                    scope: sa,
                    name: na,
                    suffix: xa,
                },
                QueuePart::Named {
                    scope: sb,
                    name: nb,
                    suffix: xb,
                },
            ) => sa == sb && eq_ci(na, nb) && xa == xb,
            (QueuePart::System(a), QueuePart::System(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for QueuePart {}

impl Hash for QueuePart {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            QueuePart::Named {
                scope,
                name,
                suffix,
            } => {
                scope.hash(state);
                hash_ci(name, state);
                suffix.hash(state);
            }
            QueuePart::System(system) => system.hash(state),
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
