//! A TCP proxy that breaks the network on command, so a test can put an unreliable link between
//! a client and a server (or two servers) on loopback and check what each end makes of it.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use mqemu::testing::{Direction, FaultyProxy};
//!
//! // A one-connection echo server.
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! let upstream = server.local_addr()?;
//! std::thread::spawn(move || {
//!     let (mut s, _) = server.accept().unwrap();
//!     let mut buf = [0; 1024];
//!     while let Ok(n @ 1..) = s.read(&mut buf) {
//!         if s.write_all(&buf[..n]).is_err() {
//!             break;
//!         }
//!     }
//! });
//!
//! let proxy = FaultyProxy::start(upstream)?;
//! let mut c = TcpStream::connect(proxy.addr())?;
//! c.write_all(b"ping")?;
//! let mut echo = [0; 4];
//! c.read_exact(&mut echo)?;
//! assert_eq!(&echo, b"ping");
//!
//! proxy.cut_after(Direction::ToServer, 2); // "po" reaches the server, then the link is cut
//! c.write_all(b"pong")?;
//! let mut rest = Vec::new();
//! let _ = c.read_to_end(&mut rest); // ends: the proxy closed the connection
//! assert_eq!(proxy.stats().cut, 1);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The proxy runs on a thread of its own with a current-thread tokio runtime, so a plain `#[test]`
//! and a test inside another runtime use it alike. Its faults act on what it has read, never on
//! timing: a stalled byte is held until [`FaultyProxy::resume`], a cut happens after an exact
//! count of bytes, and only [`FaultyProxy::delay`] involves the clock.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes one direction of a connection reads ahead of what it has forwarded (while stalled or
/// delayed) before it stops reading and leaves the sender to TCP's flow control.
const HOLD_LIMIT: usize = 1 << 20;

/// The most one read takes: a *chunk*, the unit [`FaultyProxy::delay`] delays.
const CHUNK: usize = 64 * 1024;

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the connecting client to the upstream server.
    ToServer,
    /// From the upstream server back to the client.
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// What a [`FaultyProxy`] has done so far (see [`FaultyProxy::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections the listener accepted, refused ones included.
    pub accepted: u64,
    /// Connections being proxied now.
    pub open: u64,
    /// Connections closed at once because [`FaultyProxy::refuse`] was on.
    pub refused: u64,
    /// Connections dropped by [`FaultyProxy::cut_after`] or [`FaultyProxy::cut_all`].
    pub cut: u64,
    /// Bytes written to the server.
    pub to_server: u64,
    /// Bytes written to clients.
    pub to_client: u64,
    /// Bytes read from clients and not yet written to the server (stalled or delayed).
    pub held_to_server: u64,
    /// Bytes read from the server and not yet written to clients (stalled or delayed).
    pub held_to_client: u64,
}

/// The counters behind [`ProxyStats`]. Each is a count on its own, publishing nothing else, so
/// every access is `Relaxed`.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    refused: AtomicU64,
    cut: AtomicU64,
    /// Bytes written, by [`Direction::index`].
    forwarded: [AtomicU64; 2],
    /// Bytes read and not yet written, by [`Direction::index`].
    held: [AtomicU64; 2],
}

/// A pending [`FaultyProxy::cut_after`].
#[derive(Debug, Clone, Copy)]
struct CutPlan {
    /// Tells a connection that has already counted down this plan from a newer one.
    id: u64,
    /// Bytes a connection forwards in the direction before it is cut.
    bytes: u64,
}

/// The faults in force, shared with the proxy's thread through a `watch` channel, so every
/// connection re-reads them as soon as they change.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// New connections are closed at once.
    refuse: bool,
    /// Each chunk is held this long after it was read.
    delay: Duration,
    /// Nothing is forwarded.
    stalled: bool,
    /// The pending cut of each direction, by [`Direction::index`].
    cut: [Option<CutPlan>; 2],
    /// The last [`CutPlan::id`] given.
    last_cut_id: u64,
    /// Bumped by [`FaultyProxy::cut_all`]: a connection opened under an older value is dropped.
    cut_all: u64,
    /// The proxy is stopping: the listener closes and every connection with it.
    stopping: bool,
}

/// A fault-injecting TCP proxy on a loopback address, in front of an upstream server.
///
/// Faults apply to open connections and to new ones until they are lifted ([`FaultyProxy::heal`]
/// lifts them all). Dropping the proxy (or [`FaultyProxy::stop`]) closes its listener and every
/// connection, and returns once its thread has ended.
pub struct FaultyProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// Where the proxy connects for each client.
    upstream: SocketAddr,
    /// The faults in force; the proxy's thread holds the receivers.
    faults: watch::Sender<Faults>,
    /// Shared with the proxy's thread.
    counters: Arc<Counters>,
    /// The proxy's thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultyProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("faults", &*self.faults.borrow())
            .field("stats", &self.stats())
            .finish()
    }
}

fn not_loopback(what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the faulty proxy works on loopback only; its {what} {addr} is not"),
    )
}

impl FaultyProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) in front of `upstream`, a loopback address.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultyProxy> {
        FaultyProxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream)
    }

    /// Starts a proxy listening on `listen`, an address in `127.0.0.0/8` (port 0 for a free
    /// one), in front of `upstream`, a loopback address. Any other address is refused with
    /// [`io::ErrorKind::InvalidInput`]: these tests never send traffic off the machine.
    pub fn start_on(listen: SocketAddr, upstream: SocketAddr) -> io::Result<FaultyProxy> {
        if !matches!(listen.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
            return Err(not_loopback("listen address", listen));
        }
        if !upstream.ip().is_loopback() {
            return Err(not_loopback("upstream", upstream));
        }
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (faults, watcher) = watch::channel(Faults::default());
        let counters = Arc::new(Counters::default());
        let (ready, is_ready) = std::sync::mpsc::channel();
        let shared = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("faulty-proxy {addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let _ = ready.send(Ok(()));
                            accept_loop(listener, upstream, watcher, shared).await;
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    }
                });
                // Dropping the runtime drops every connection task, and their sockets with them.
                drop(runtime);
            })?;
        let proxy = FaultyProxy {
            addr,
            upstream,
            faults,
            counters,
            thread: Some(thread),
        };
        is_ready
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the faulty proxy's thread ended early")))?;
        Ok(proxy)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy connects each client to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// While `on`, every new connection is accepted and closed at once, without connecting
    /// upstream: the client sees what a dead peer gives (end of stream, or a reset). Open
    /// connections go on.
    pub fn refuse(&self, on: bool) {
        self.faults.send_modify(|f| f.refuse = on);
    }

    /// Holds each chunk the proxy reads for `delay` from when it was read before forwarding it,
    /// in both directions, keeping the order. The delay in force when a chunk is due counts, so
    /// `delay(Duration::ZERO)` releases held chunks at once.
    pub fn delay(&self, delay: Duration) {
        self.faults.send_modify(|f| f.delay = delay);
    }

    /// Holds every byte in both directions, of open and new connections, until
    /// [`FaultyProxy::resume`]: the proxy goes on reading (up to 1 MiB per direction of a
    /// connection, then TCP's flow control holds the sender) and forwards nothing, not even an
    /// end of stream. A write already handed to the kernel is not taken back. Nothing is lost.
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Ends a [`FaultyProxy::stall`]: held bytes go on in order.
    pub fn resume(&self) {
        self.faults.send_modify(|f| f.stalled = false);
    }

    /// After exactly `bytes` more bytes in `direction`, forwards that prefix and drops both
    /// sides of the connection: how a test cuts a frame in the middle. Each open connection
    /// counts from now, each new one from its first byte; `0` cuts open connections at once
    /// (in that direction's turn). A later call replaces the count; [`FaultyProxy::heal`] lifts it.
    pub fn cut_after(&self, direction: Direction, bytes: u64) {
        self.faults.send_modify(|f| {
            f.last_cut_id += 1;
            f.cut[direction.index()] = Some(CutPlan {
                id: f.last_cut_id,
                bytes,
            });
        });
    }

    /// Drops every open connection now, as if the link went down; new ones are proxied as usual.
    pub fn cut_all(&self) {
        self.faults.send_modify(|f| f.cut_all += 1);
    }

    /// Lifts every fault: no refusal, no delay, no stall (held bytes go on), no pending cut.
    pub fn heal(&self) {
        self.faults.send_modify(|f| {
            f.refuse = false;
            f.delay = Duration::ZERO;
            f.stalled = false;
            f.cut = [None; 2];
        });
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Relaxed),
            open: c.open.load(Relaxed),
            refused: c.refused.load(Relaxed),
            cut: c.cut.load(Relaxed),
            to_server: c.forwarded[0].load(Relaxed),
            to_client: c.forwarded[1].load(Relaxed),
            held_to_server: c.held[0].load(Relaxed),
            held_to_client: c.held[1].load(Relaxed),
        }
    }

    /// Closes the listener and every connection, and waits for the proxy's thread to end (what
    /// dropping the proxy does).
    pub fn stop(self) {}
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.faults.send_modify(|f| f.stopping = true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the faulty proxy's thread panicked");
            }
        }
    }
}

/// Accepts connections until the proxy stops, then returns (the caller drops the connections).
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
) {
    loop {
        if faults.borrow_and_update().stopping {
            return;
        }
        tokio::select! {
            biased;
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = listener.accept() => {
                // An accept error (a client that reset before it was accepted) leaves the
                // listener as it was.
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Relaxed);
                let (refuse, cut_all) = {
                    let f = faults.borrow();
                    (f.refuse, f.cut_all)
                };
                if refuse {
                    counters.refused.fetch_add(1, Relaxed);
                    drop(client);
                    continue;
                }
                let open = Open::new(counters.clone());
                tokio::spawn(connection(client, upstream, faults.clone(), cut_all, open));
            }
        }
    }
}

/// Counts a connection in [`ProxyStats::open`] while it lives, however it ends.
struct Open(Arc<Counters>);

impl Open {
    fn new(counters: Arc<Counters>) -> Open {
        counters.open.fetch_add(1, Relaxed);
        Open(counters)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// How one direction of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The sender ended its stream and everything was forwarded, the end included.
    Finished,
    /// A fault cut the connection.
    Cut,
    /// A socket failed (a reset, a peer gone).
    Failed,
}

/// Proxies one client: connects upstream, then runs both directions until both finish, or one
/// is cut or fails; then both sockets are dropped. `cut_all` is [`Faults::cut_all`] when the
/// client was accepted.
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    cut_all: u64,
    open: Open,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let counters = &open.0;
    let (from_client, to_client) = client.split();
    let (from_server, to_server) = server.split();
    let mut up = pin!(pump(
        Direction::ToServer,
        from_client,
        to_server,
        faults.clone(),
        cut_all,
        counters,
    ));
    let mut down = pin!(pump(
        Direction::ToClient,
        from_server,
        to_client,
        faults,
        cut_all,
        counters,
    ));
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        let (end, up_end) = tokio::select! {
            end = &mut up, if !up_done => (end, true),
            end = &mut down, if !down_done => (end, false),
        };
        if end != End::Finished {
            break end;
        }
        if up_end {
            up_done = true;
        } else {
            down_done = true;
        }
        if up_done && down_done {
            break End::Finished;
        }
    };
    if end == End::Cut {
        counters.cut.fetch_add(1, Relaxed);
    }
}

/// A chunk read and not yet (entirely) forwarded.
struct Chunk {
    bytes: Vec<u8>,
    /// How much of `bytes` is forwarded.
    sent: usize,
    read_at: Instant,
}

/// The chunks one direction holds, kept in its [`Counters::held`] count, which forgets them
/// however the direction ends.
struct HeldBytes<'a> {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    counter: &'a AtomicU64,
}

impl HeldBytes<'_> {
    fn push(&mut self, chunk: Chunk) {
        self.bytes += chunk.bytes.len();
        self.counter.fetch_add(chunk.bytes.len() as u64, Relaxed);
        self.chunks.push_back(chunk);
    }

    /// `n` bytes of the first chunk were forwarded.
    fn forwarded(&mut self, n: usize) {
        let front = self.chunks.front_mut().expect("a write of held bytes");
        front.sent += n;
        if front.sent == front.bytes.len() {
            self.chunks.pop_front();
        }
        self.bytes -= n;
        self.counter.fetch_sub(n as u64, Relaxed);
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes as u64, Relaxed);
    }
}

/// What woke a direction's loop.
enum Event {
    Changed(Result<(), watch::error::RecvError>),
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
    Due,
}

/// One direction of a connection: reads from `src` into chunks, forwards them to `dst` as the
/// faults allow. Every wait is in one `select!` whose branches are cancel-safe (a read or write
/// that loses the race has moved no byte), so a change of faults is seen at once even while a
/// socket is blocked.
async fn pump(
    direction: Direction,
    mut src: impl AsyncRead + Unpin,
    mut dst: impl AsyncWrite + Unpin,
    mut faults: watch::Receiver<Faults>,
    cut_all: u64,
    counters: &Counters,
) -> End {
    let i = direction.index();
    let mut held = HeldBytes {
        chunks: VecDeque::new(),
        bytes: 0,
        counter: &counters.held[i],
    };
    let mut buf = vec![0; CHUNK];
    let mut eof = false;
    // The cut plan this direction counts down, and the bytes it has left.
    let mut cut_id = 0;
    let mut budget: Option<u64> = None;
    loop {
        let (stalled, delay) = {
            let f = faults.borrow_and_update();
            if f.cut_all != cut_all {
                return End::Cut;
            }
            match f.cut[i] {
                None => budget = None,
                Some(plan) if plan.id != cut_id => {
                    cut_id = plan.id;
                    budget = Some(plan.bytes);
                }
                Some(_) => {}
            }
            (f.stalled, f.delay)
        };
        if budget == Some(0) {
            return End::Cut;
        }
        if eof && held.chunks.is_empty() && !stalled {
            let _ = dst.shutdown().await;
            return End::Finished;
        }
        let now = Instant::now();
        let due = match held.chunks.front() {
            Some(c) if !stalled => Some(c.read_at + delay),
            _ => None,
        };
        let pending: &[u8] = match held.chunks.front() {
            Some(c) => {
                let left = c.bytes.len() - c.sent;
                let n = budget.map_or(left, |b| left.min(usize::try_from(b).unwrap_or(left)));
                &c.bytes[c.sent..c.sent + n]
            }
            None => &[],
        };
        let ready = due.is_some_and(|d| d <= now);
        let can_read = !eof && held.bytes < HOLD_LIMIT;
        let event = tokio::select! {
            biased;
            changed = faults.changed() => Event::Changed(changed),
            wrote = dst.write(pending), if ready => Event::Wrote(wrote),
            () = tokio::time::sleep_until(due.unwrap_or(now)), if due.is_some() && !ready => {
                Event::Due
            }
            read = src.read(&mut buf), if can_read => Event::Read(read),
        };
        match event {
            Event::Changed(Ok(())) | Event::Due => {}
            Event::Changed(Err(_)) | Event::Read(Err(_)) | Event::Wrote(Err(_) | Ok(0)) => {
                return End::Failed;
            }
            Event::Read(Ok(0)) => eof = true,
            Event::Read(Ok(n)) => held.push(Chunk {
                bytes: buf[..n].to_vec(),
                sent: 0,
                read_at: Instant::now(),
            }),
            Event::Wrote(Ok(n)) => {
                held.forwarded(n);
                counters.forwarded[i].fetch_add(n as u64, Relaxed);
                if let Some(b) = &mut budget {
                    *b -= n as u64;
                }
            }
        }
    }
}
