//! The session of a host reached over MSMQ's binary protocol (a `[hosts]` address
//! `mqqb://ADDR[:PORT]`, port 1801 by default): MS-MQQB as its initiator runs it, so outgoing
//! queues deliver to a Windows queue manager, or to another mqemu's `--mqqb` listener.
//!
//! A session sends the outgoing queues' messages as user messages, at most the acceptor's
//! window unacknowledged, and lets each leave its outgoing queue on the answer MS-MQQB gives:
//! an express message when a SessionAck counts it, a recoverable one when a SessionAck flags
//! it as stored, a transactional one when an OrderAck of its sequence reaches its number (or a
//! FinalAck refuses it). Anything not answered within the resend time ends the session; the
//! next starts each queue again at its oldest unacknowledged message, as native links do.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use mqcore::message::MessageClass;
use mqcore::transfer::{OutgoingQueue, Reply, SendCursor, Seq, Verdict};
use mqcore::{Error, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::link::{settle, End, Task};
use crate::binary::outbound::{ordering_ack, sequence_id, user_message, OrderingAck};
use crate::binary::{session_acks, Counts, PacketReader};
use crate::mqqb::packet::{ConnectionParameters, EstablishConnection, SessionHeader};
use crate::mqqb::user::user_flags;
use crate::mqqb::{decode, encode, Packet};

/// MSMQ's port.
const MQQB_PORT: u16 = 1801;
/// The window this side offers: the acceptor's OrderAcks and FinalAcks it may have in flight.
const WINDOW: u16 = 64;

/// A message sent and not yet answered.
struct Sent {
    queue: OutgoingQueue,
    lookup: u64,
    seq: Option<Seq>,
    sequence_id: u64,
    /// Its place among the user packets sent on the session (from 1).
    user_no: u64,
    /// Its place among the recoverable ones (transactional ones included), if it is one.
    recoverable_no: Option<u64>,
}

fn failed(why: impl Into<String>) -> Error {
    Error::new(ErrorCode::RemoteMachineNotAvailable, why.into())
}

/// The 64-bit count whose low 16 bits are `wire`, at most `total`.
fn widen(total: u64, wire: u16) -> u64 {
    total.saturating_sub(u64::from((total as u16).wrapping_sub(wire)))
}

impl Task {
    /// The MS-MQQB address of this link's host, when the host map names one.
    pub(super) fn mqqb_address(&self) -> Option<String> {
        let rest = self
            .qm
            .address_of(&self.link.host)?
            .strip_prefix("mqqb://")?
            .trim_end_matches('/');
        let has_port = rest.rsplit_once(':').is_some_and(|(h, p)| {
            p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']'))
        });
        Some(match (has_port, rest.contains(':')) {
            (true, _) => rest.to_owned(),
            (false, true) => format!("[{rest}]:{MQQB_PORT}"),
            (false, false) => format!("{rest}:{MQQB_PORT}"),
        })
    }

    /// Connects to `address`, opens the session and streams until it fails, the service stops
    /// or nothing was sent for the idle time.
    pub(super) async fn mqqb_session(&mut self, address: String) -> End {
        let connect = tokio::time::timeout(self.config.connect_timeout, async {
            let stream = TcpStream::connect(&address)
                .await
                .map_err(|e| failed(format!("cannot connect to {address}: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (mut rd, mut wr) = stream.into_split();
            let mut reader = PacketReader::default();
            let window = handshake(&mut reader, &mut rd, &mut wr, self.qm.guid()).await?;
            Ok::<_, Error>((rd, wr, reader, window))
        });
        let (rd, wr, reader, window) = match connect.await {
            Err(_) => {
                return End::Failed(failed(format!(
                    "no MS-MQQB session with {address} within the connect time"
                )))
            }
            Ok(Err(e)) => return End::Failed(e),
            Ok(Ok(s)) => s,
        };
        self.set_connected(true);
        let end = self.mqqb_stream(rd, wr, reader, window.max(1)).await;
        self.set_connected(false);
        end
    }

    async fn mqqb_stream<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        mut rd: R,
        mut wr: W,
        mut reader: PacketReader,
        mut window: u16,
    ) -> End {
        let mut counts = Counts::default();
        let (mut sent_total, mut recoverable_total) = (0u64, 0u64);
        let (mut acked_total, mut stored_total) = (0u64, 0u64);
        let mut pending: VecDeque<Sent> = VecDeque::new();
        let mut cursors: HashMap<String, SendCursor> = HashMap::new();
        // Per sequence: the last number an OrderAck reached, and the refusals FinalAcks named.
        let mut ordered: HashMap<u64, u32> = HashMap::new();
        let mut refused: HashMap<(u64, u32), MessageClass> = HashMap::new();
        let mut last_busy = Instant::now();
        let mut last_answer = Instant::now();
        let mut turn = 0usize;
        let mut out = Vec::with_capacity(64 * 1024);
        loop {
            if *self.stop.borrow() {
                return End::Stopped;
            }
            // Fill the acceptor's window, taking the queues in turn.
            let queues = self.queues();
            let mut idle_round = 0;
            while !queues.is_empty() && idle_round < queues.len() {
                let room = u64::from(window).saturating_sub(sent_total - acked_total);
                if room == 0 {
                    break;
                }
                let q = &queues[turn % queues.len()];
                turn = turn.wrapping_add(1);
                let cursor = cursors
                    .entry(q.sequence().to_owned())
                    .or_insert_with(|| q.start());
                let batch = q.next_batch(cursor, room as usize, self.config.batch_bytes);
                if batch.is_empty() {
                    idle_round += 1;
                    continue;
                }
                idle_round = 0;
                let destination = q.sequence().strip_prefix("DIRECT=").unwrap_or(q.sequence());
                let id = sequence_id(q.sequence());
                // The previous number of the message after a withdrawn one (see below).
                let mut skip: Option<u64> = None;
                for b in batch {
                    if b.withdraw {
                        // MS-MQQB cannot withdraw a number: the message leaves as expired and
                        // the next one names the number before it as its previous (a receiver
                        // takes any previous number up to its last).
                        let reply = Reply {
                            last: 0,
                            verdicts: vec![Verdict::Withdrawn],
                        };
                        if let Err(e) = settle(q, &[(b.lookup, b.seq)], &reply) {
                            return End::Failed(e);
                        }
                        if let Some(s) = b.seq {
                            skip = Some(skip.map_or(s.prev, |k| k.min(s.prev)));
                        }
                        continue;
                    }
                    let tx = match b.seq {
                        Some(s) if s.n > u64::from(u32::MAX) => {
                            return End::Failed(failed(format!(
                                "{}: transactional number {} does not fit MS-MQQB's 32 bits",
                                q.sequence(),
                                s.n
                            )))
                        }
                        Some(s) => Some((
                            id,
                            Seq {
                                n: s.n,
                                prev: skip.take().map_or(s.prev, |k| k.min(s.prev)),
                            },
                        )),
                        None => None,
                    };
                    let m = user_message(&b.msg, destination, tx);
                    sent_total += 1;
                    // Transactional messages are recoverable too, and counted with them
                    // (MS-MQQB 3.1.1.3.1), though an OrderAck, not a SessionAck, lets them go.
                    let recoverable_no = (m.user.flags & user_flags::RECOVERABLE != 0).then(|| {
                        recoverable_total += 1;
                        recoverable_total
                    });
                    encode(&Packet::User(Box::new(m)), &mut out);
                    pending.push_back(Sent {
                        queue: q.clone(),
                        lookup: b.lookup,
                        seq: b.seq,
                        sequence_id: id,
                        user_no: sent_total,
                        recoverable_no,
                    });
                }
                if let Some(k) = skip {
                    cursor.prev = cursor.prev.min(k);
                }
            }
            counts.sent = sent_total as u16;
            counts.recoverable_sent = recoverable_total as u16;
            if !out.is_empty() {
                if let Err(e) = wr.write_all(&out).await {
                    return End::Failed(failed(format!("MS-MQQB session: {e}")));
                }
                out.clear();
                last_busy = Instant::now();
            }
            if pending.is_empty() {
                if let Some(end) = self.nothing_to_send(last_busy).await {
                    return end;
                }
                last_answer = Instant::now();
                continue;
            }
            let patience = self
                .config
                .delay(self.link.failures() + 1)
                .max(Duration::from_millis(100))
                .saturating_sub(last_answer.elapsed());
            let first = tokio::select! {
                p = reader.next(&mut rd) => match p {
                    Ok(p) => p,
                    Err(e) => return End::Failed(failed(format!("MS-MQQB session: {e}"))),
                },
                () = self.link.wake.notified() => continue,
                _ = self.stop.changed() => return End::Stopped,
                () = tokio::time::sleep(patience) => {
                    return End::Failed(Error::new(
                        ErrorCode::IoTimeout,
                        "the MS-MQQB receiver did not acknowledge within the resend time",
                    ));
                }
            };
            let mut next = Some(first);
            let mut received_user = false;
            while let Some(bytes) = next {
                match decode(&bytes) {
                    Ok(Packet::SessionAck { session, .. }) => {
                        // An acceptor short of memory lowers its window (MS-MQQB <15>).
                        window = session.window_size.max(1);
                        take_session_ack(
                            &session,
                            sent_total,
                            recoverable_total,
                            &mut acked_total,
                            &mut stored_total,
                        );
                    }
                    Ok(Packet::User(m)) => {
                        received_user = true;
                        counts.received = counts.received.wrapping_add(1);
                        if m.user.flags & user_flags::RECOVERABLE != 0 {
                            counts.recoverable_received += 1;
                        }
                        if let Some(s) = &m.session {
                            take_session_ack(
                                s,
                                sent_total,
                                recoverable_total,
                                &mut acked_total,
                                &mut stored_total,
                            );
                        }
                        match ordering_ack(&m) {
                            Some(OrderingAck::Order {
                                sequence_id,
                                number,
                            }) => {
                                let last = ordered.entry(sequence_id).or_default();
                                *last = (*last).max(number);
                            }
                            Some(OrderingAck::Final {
                                sequence_id,
                                number,
                                class,
                            }) => {
                                refused.insert((sequence_id, number), class);
                            }
                            None => tracing::debug!(
                                class = m.properties.class,
                                "a user message on an MS-MQQB session this side opened: ignored"
                            ),
                        }
                    }
                    Ok(_) => {
                        return End::Failed(failed(
                            "the MS-MQQB receiver sent session set-up packets on an open session",
                        ))
                    }
                    Err(e) => return End::Failed(failed(format!("MS-MQQB session: {e}"))),
                }
                next = match reader.has_packet() {
                    true => match reader.next(&mut rd).await {
                        Ok(p) => Some(p),
                        Err(e) => return End::Failed(failed(format!("MS-MQQB session: {e}"))),
                    },
                    false => None,
                };
            }
            if received_user {
                session_acks(&mut counts, WINDOW, &mut out);
            }
            let answers = Answers {
                acked_total,
                stored_total,
                ordered: &ordered,
            };
            match release(&mut pending, &answers, &mut refused) {
                Ok(false) => {}
                Ok(true) => {
                    last_answer = Instant::now();
                    self.link.answered();
                }
                Err(e) => return End::Failed(e),
            }
        }
    }
}

/// What the acceptor has answered so far on a session.
struct Answers<'a> {
    /// User packets it counted.
    acked_total: u64,
    /// Recoverable packets it flagged as stored (a run from the first).
    stored_total: u64,
    /// Per sequence, the last number an OrderAck reached.
    ordered: &'a HashMap<u64, u32>,
}

/// Messages of one outgoing queue answered, in the order sent, and the reply for `settle`.
struct Answered {
    queue: OutgoingQueue,
    sent: Vec<(u64, Option<Seq>)>,
    reply: Reply,
}

/// Settles, per outgoing queue and in the order sent, every pending message its answer lets
/// go of (a refusal FinalAcks named is taken from `refused`); whether any went.
fn release(
    pending: &mut VecDeque<Sent>,
    answers: &Answers<'_>,
    refused: &mut HashMap<(u64, u32), MessageClass>,
) -> Result<bool, Error> {
    let mut done: Vec<Answered> = Vec::new();
    pending.retain(|s| {
        let (verdict, last) = match s.seq {
            Some(seq) => {
                let n = seq.n as u32;
                match answers.ordered.get(&s.sequence_id) {
                    Some(&last) if last >= n => (
                        refused
                            .remove(&(s.sequence_id, n))
                            .map_or(Verdict::Accepted, Verdict::Rejected),
                        u64::from(last),
                    ),
                    _ => return true,
                }
            }
            None => {
                let answered = match s.recoverable_no {
                    Some(r) => r <= answers.stored_total,
                    None => s.user_no <= answers.acked_total,
                };
                if !answered {
                    return true;
                }
                (Verdict::Accepted, 0)
            }
        };
        let item = (s.lookup, s.seq);
        match done
            .iter_mut()
            .find(|a| a.queue.sequence() == s.queue.sequence())
        {
            Some(a) => {
                a.sent.push(item);
                a.reply.verdicts.push(verdict);
                a.reply.last = a.reply.last.max(last);
            }
            None => done.push(Answered {
                queue: s.queue.clone(),
                sent: vec![item],
                reply: Reply {
                    last,
                    verdicts: vec![verdict],
                },
            }),
        }
        false
    });
    for a in &done {
        settle(&a.queue, &a.sent, &a.reply)?;
    }
    Ok(!done.is_empty())
}

/// Moves the counts a SessionAck reports: packets received by the acceptor, and recoverable
/// ones stored (the run of flags from bit 0).
fn take_session_ack(
    s: &SessionHeader,
    sent_total: u64,
    recoverable_total: u64,
    acked_total: &mut u64,
    stored_total: &mut u64,
) {
    *acked_total = (*acked_total).max(widen(sent_total, s.ack_sequence));
    let run = u64::from(s.recoverable_ack_flags.trailing_ones());
    if s.recoverable_ack_sequence != 0 && run > 0 {
        let first = widen(recoverable_total, s.recoverable_ack_sequence);
        *stored_total = (*stored_total).max((first + run - 1).min(recoverable_total));
    }
}

/// EstablishConnection and ConnectionParameters as the initiator; the acceptor's window.
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut PacketReader,
    rd: &mut R,
    wr: &mut W,
    own: Uuid,
) -> Result<u16, Error> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u32);
    let request = Packet::establish_connection(
        EstablishConnection {
            client: own,
            // A direct format name: the acceptor's GUID is not known.
            server: Uuid::nil(),
            timestamp,
            // RE, and SE: no ping was sent first.
            operating_system: 0x0110,
            reserved: 0,
        },
        false,
    );
    match exchange(reader, rd, wr, &request).await? {
        Packet::EstablishConnection { internal, .. } if internal.refused() => {
            return Err(failed("the MS-MQQB receiver refused the session"))
        }
        Packet::EstablishConnection { header, .. } if header.client == own => {}
        _ => {
            return Err(failed(
                "the MS-MQQB receiver did not answer EstablishConnection",
            ))
        }
    }
    let request = Packet::connection_parameters(
        ConnectionParameters {
            recoverable_ack_timeout: 500,
            ack_timeout: 120_000,
            reserved: 0,
            window_size: WINDOW,
        },
        false,
    );
    match exchange(reader, rd, wr, &request).await? {
        Packet::ConnectionParameters { internal, .. } if internal.refused() => {
            Err(failed("the MS-MQQB receiver refused the session"))
        }
        Packet::ConnectionParameters { params, .. } => Ok(params.window_size),
        _ => Err(failed(
            "the MS-MQQB receiver did not answer ConnectionParameters",
        )),
    }
}

/// Sends `request` and reads the packet that answers it.
async fn exchange<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut PacketReader,
    rd: &mut R,
    wr: &mut W,
    request: &Packet,
) -> Result<Packet, Error> {
    let mut out = Vec::new();
    encode(request, &mut out);
    wr.write_all(&out)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let answer = reader.next(rd).await.map_err(|e| failed(e.to_string()))?;
    decode(&answer).map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::widen;

    #[test]
    fn counts_widen_across_the_16_bit_wrap() {
        assert_eq!(widen(10, 10), 10);
        assert_eq!(widen(10, 7), 7);
        assert_eq!(widen(70_000, 70_000u64 as u16), 70_000);
        assert_eq!(widen(70_000, (69_990u64) as u16), 69_990);
        // Across the wrap: sent 65,540, acknowledged 65,534.
        assert_eq!(widen(65_540, 65_534), 65_534);
        assert_eq!(widen(0, 0), 0);
    }
}
