//! MS-MQQB, MSMQ's own binary protocol (TCP 1801, UDP ping 3527): the codecs for its packets,
//! pure functions over bytes with no I/O and no runtime, so the listener, the initiator, the
//! capture decoder and the tests share one parser.
//!
//! The parser faces the network (CVE-2023-21554, "QueueJumper", was remote code execution in
//! exactly this parser on Windows): every length and offset is checked against the bytes
//! present before it is used ([`cursor`]), and nothing is allocated from a size the packet
//! declares until the bytes it covers are there.
//!
//! - [`packet`]: the BaseHeader that frames every packet ([`packet::frame_len`]), the internal
//!   packets (EstablishConnection, ConnectionParameters, SessionAck) and the UDP ping.
//! - [`user`]: the UserMessage packet and its headers (the rarer ones read in `optional`).

mod cursor;
mod optional;
pub mod packet;
pub mod user;

pub use cursor::Malformed;
pub use packet::{decode, encode, frame_len, Packet};
pub use user::UserMessage;
