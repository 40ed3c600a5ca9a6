//! A session's counts in both directions (MS-MQQB 3.1.1.3.1) and the SessionAck packets that
//! report them, the same for an accepted session and an initiated one.

use crate::mqqb::packet::SessionHeader;
use crate::mqqb::{encode, Packet};

/// A session's counts (MS-MQQB 3.1.1.3.1).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// UserMessage packets received (MessageReceivedCount, 16 bits on the wire).
    pub(crate) received: u16,
    /// Recoverable ones received and stored.
    pub(crate) recoverable_received: u32,
    /// The last recoverable one a SessionAck flagged.
    pub(crate) recoverable_acked: u32,
    /// UserMessage packets sent (OrderAcks, FinalAcks).
    pub(crate) sent: u16,
    /// Recoverable ones sent (FinalAcks).
    pub(crate) recoverable_sent: u16,
}

/// SessionAcks for everything received, each flagging up to 32 recoverable messages stored
/// since the last one (MS-MQQB 2.2.6, 3.1.5.8.7).
pub(crate) fn session_acks(counts: &mut Counts, window: u16, out: &mut Vec<u8>) {
    loop {
        let pending = counts.recoverable_received - counts.recoverable_acked;
        let flagged = pending.min(32);
        let session = SessionHeader {
            ack_sequence: counts.received,
            recoverable_ack_sequence: match flagged {
                0 => 0,
                _ => (counts.recoverable_acked + 1) as u16,
            },
            recoverable_ack_flags: match flagged {
                32 => u32::MAX,
                n => (1u32 << n) - 1,
            },
            user_sequence: counts.sent,
            recoverable_sequence: counts.recoverable_sent,
            window_size: window,
            reserved: 0,
        };
        counts.recoverable_acked += flagged;
        encode(&Packet::session_ack(session), out);
        if counts.recoverable_received == counts.recoverable_acked {
            return;
        }
    }
}
