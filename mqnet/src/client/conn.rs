//! One connection to a server: the outbox requests gather in, the writer task that writes them,
//! the reader task that hands each answer to the request waiting for it, and the handshake that
//! sets them up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use mqcore::{Compat, Error, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

use crate::frame;
use crate::proto::{self, Envelope, Request, Response, PROTOCOL_VERSION};

use super::{Client, ClientOptions};

/// Largest answer a client accepts (a list of many queues can exceed a message frame).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Frames of requests not yet written. A lone request (none other in flight) made while the
/// socket is free writes its frame at once; any other leaves its frame here, and the writer task
/// takes all that gathered in one write.
struct Outbox {
    frames: Vec<u8>,
    /// The writer task owns the socket until it finds `frames` empty. Only while this is false
    /// may a request write, and `frames` is then empty.
    writing: bool,
}

/// Requests waiting for answers, or why the connection ended.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Response>>,
    closed: Option<String>,
}

pub(super) struct Conn {
    /// Requests not yet written.
    outbox: Mutex<Outbox>,
    /// Both the requests (a write that does not wait) and the writer task write here; `None`
    /// over TLS, where only the writer task writes.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// Wakes the writer task when it has frames to write.
    wake_writer: Arc<Notify>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    pub(super) server: String,
    pub(super) compat: Compat,
    max_frame: usize,
    runtime: tokio::runtime::Handle,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Conn {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection is over: every waiting request fails with `why`, and so does every later one.
    fn close(&self, why: String) {
        let mut p = self.lock_pending();
        if p.closed.is_none() {
            p.closed = Some(why);
        }
        p.waiting.clear();
    }
}

pub(super) fn unreachable_server(addr: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::RemoteMachineNotAvailable,
        format!("cannot reach the queue server at {addr}: {why}"),
    )
}

fn lost(why: &str) -> Error {
    Error::new(
        ErrorCode::ServiceNotAvailable,
        format!("the connection to the queue server ended: {why}"),
    )
}

impl Client {
    pub(super) async fn handshake(addr: &str, options: &ClientOptions) -> Result<Client, Error> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable_server(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr): (Rd, Socket) = match &options.tls {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Socket::Plain(Arc::new(wr)))
            }
            Some(tls) => {
                let (rd, wr) = tokio::io::split(tls.connect(addr, stream).await?);
                (Box::new(rd), Socket::Tls(wr))
            }
        };
        let hello = Request::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            token: options.token.clone(),
            client: format!("mqnet {}", env!("CARGO_PKG_VERSION")),
        };
        wr.write_all(&proto::frame(0, &hello))
            .await
            .map_err(|e| unreachable_server(addr, e))?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let welcome = loop {
            match frame::decode(&mut buf, frame::DEFAULT_MAX_FRAME) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => return Err(unreachable_server(addr, e)),
            }
            let n = rd
                .read_buf(&mut buf)
                .await
                .map_err(|e| unreachable_server(addr, e))?;
            if n == 0 {
                return Err(unreachable_server(addr, "closed during the handshake"));
            }
        };
        let env: Envelope<Response> = proto::decode(&welcome)?;
        let Response::Welcome {
            server,
            compat,
            max_frame,
            ..
        } = Result::<Response, Error>::from(env.body)?
        else {
            return Err(unreachable_server(
                addr,
                "the server did not answer the handshake",
            ));
        };
        // The reader and the writer start once the connection they serve exists.
        let (start, started) = oneshot::channel::<std::sync::Weak<Conn>>();
        let reader = tokio::spawn(async move {
            let Ok(weak) = started.await else { return };
            let why = read_answers(rd, buf, &weak).await;
            if let Some(conn) = weak.upgrade() {
                conn.close(why);
            }
        });
        let (start_writer, writer_started) = oneshot::channel::<std::sync::Weak<Conn>>();
        let wake_writer = Arc::new(Notify::new());
        let woken = wake_writer.clone();
        // Requests write straight to a plain socket when it is free; a TLS session has one
        // writer, the task.
        let fast = match &wr {
            Socket::Plain(w) => Some(w.clone()),
            Socket::Tls(_) => None,
        };
        let mut socket = wr;
        let writer = tokio::spawn(async move {
            let Ok(weak) = writer_started.await else {
                return;
            };
            let why = write_requests(&mut socket, &weak, &woken).await;
            if let Some(conn) = weak.upgrade() {
                conn.close(why);
            }
        });
        let conn = Arc::new(Conn {
            outbox: Mutex::new(Outbox {
                frames: Vec::with_capacity(64 * 1024),
                writing: false,
            }),
            wr: fast,
            wake_writer,
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            server,
            compat,
            max_frame: max_frame as usize,
            runtime: tokio::runtime::Handle::current(),
            reader,
            writer,
        });
        let _ = start.send(Arc::downgrade(&conn));
        let _ = start_writer.send(Arc::downgrade(&conn));
        Ok(Client { conn })
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&self, req: Request) -> Result<Response, Error> {
        let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // A request with none before it in flight goes straight to the socket (a round trip
        // pays for no task switch); one made behind others joins them in the writer task's next
        // write (a pipeline pays one write for many requests, not one each).
        let alone = {
            let mut p = self.conn.lock_pending();
            if let Some(why) = &p.closed {
                return Err(lost(why));
            }
            p.waiting.insert(id, tx);
            p.waiting.len() == 1
        };
        {
            let mut out = self.conn.lock_outbox();
            let start = out.frames.len();
            let len = proto::frame_into(id, &req, &mut out.frames);
            if len > self.conn.max_frame {
                out.frames.truncate(start);
                drop(out);
                self.conn.lock_pending().waiting.remove(&id);
                return Err(Error::new(
                    ErrorCode::InsufficientResources,
                    format!(
                        "the request takes {len} bytes; the server accepts at most {}",
                        self.conn.max_frame
                    ),
                ));
            }
            if !out.writing && !alone {
                out.writing = true;
                self.conn.wake_writer.notify_one();
            } else if !out.writing {
                // The socket is free: write now, without waiting (and without a trip through
                // the writer task), and leave the writer whatever does not fit.
                let tried = match &self.conn.wr {
                    Some(wr) => wr.try_write(&out.frames),
                    None => Err(std::io::ErrorKind::WouldBlock.into()),
                };
                let written = match tried {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) => {
                        drop(out);
                        self.conn.close(e.to_string());
                        return Err(lost(&e.to_string()));
                    }
                };
                out.frames.drain(..written);
                if !out.frames.is_empty() {
                    out.writing = true;
                    self.conn.wake_writer.notify_one();
                }
            }
        }
        drop(req);
        match rx.await {
            Ok(r) => r.into(),
            Err(_) => {
                let why = self.conn.lock_pending().closed.clone();
                Err(lost(why.as_deref().unwrap_or("closed")))
            }
        }
    }

    /// Sends a request whose answer nobody waits for (cleanup from `Drop`).
    pub(super) fn fire(&self, req: Request) {
        let c = self.clone();
        self.conn.runtime.spawn(async move {
            let _ = c.request(req).await;
        });
    }
}

/// Writes requests as they gather in the outbox, all that are there in one write; returns why the
/// connection ended. A task of its own, so a request whose future is dropped mid-write cannot
/// leave half a frame on the wire.
async fn write_requests(wr: &mut Socket, conn: &std::sync::Weak<Conn>, woken: &Notify) -> String {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let Some(c) = conn.upgrade() else {
            return "the client was dropped".into();
        };
        {
            let mut out = c.lock_outbox();
            std::mem::swap(&mut batch, &mut out.frames);
            if batch.is_empty() {
                // The socket goes back to the requests.
                out.writing = false;
            }
        }
        drop(c);
        if batch.is_empty() {
            // A request that hands over frames after this look leaves a permit: no wake-up is
            // lost.
            woken.notified().await;
            continue;
        }
        if let Err(e) = wr.write_all(&batch).await {
            return e.to_string();
        }
        batch.clear();
    }
}

/// The reading half of a connection: a TCP socket's or a TLS session's.
type Rd = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// The writing half of a connection.
enum Socket {
    /// A TCP socket's, shared with requests that write without waiting.
    Plain(Arc<OwnedWriteHalf>),
    /// A TLS session's: the writer task's alone.
    Tls(tokio::io::WriteHalf<tokio_rustls::client::TlsStream<crate::tls::Transport>>),
}

impl Socket {
    async fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        match self {
            Socket::Plain(wr) => {
                while !buf.is_empty() {
                    wr.writable().await?;
                    match wr.try_write(buf) {
                        Ok(n) => buf = &buf[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Socket::Tls(wr) => {
                wr.write_all(buf).await?;
                wr.flush().await
            }
        }
    }
}

/// Reads answers and hands each to its waiting request; returns why the connection ended.
async fn read_answers(mut rd: Rd, mut buf: BytesMut, conn: &std::sync::Weak<Conn>) -> String {
    loop {
        loop {
            let f = match frame::decode(&mut buf, MAX_ANSWER) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return e.to_string(),
            };
            let env: Envelope<Response> = match proto::decode(&f) {
                Ok(env) => env,
                Err(e) => return e.to_string(),
            };
            let Some(conn) = conn.upgrade() else {
                return "the client was dropped".into();
            };
            if env.id == 0 {
                // The server's last word before it closes the connection.
                if let Response::Error { code, detail } = &env.body {
                    return format!("{detail} ({code:#010x})");
                }
            }
            let waiter = conn
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiting
                .remove(&env.id);
            if let Some(w) = waiter {
                let _ = w.send(env.body);
            }
        }
        frame::make_read_room(&mut buf);
        match rd.read_buf(&mut buf).await {
            Ok(0) => return "the server closed the connection".into(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
    }
}
