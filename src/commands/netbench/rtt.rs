//! `--rtt`: single round trips against an mqemu server next to a raw loopback TCP ping-pong of
//! the same size, the echo of that baseline running in a child process (`mqemu echo-worker`),
//! both measured under the same CPU placement: all on one CPU, then the bench on one CPU and the
//! echo and the server on another.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqemu::{Error, ErrorCode, Message};
use mqnet::Tx;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::measure::Latencies;
use super::native::{connect_mqemu, prepare_mqemu_queue};
use super::{
    within, Mode, Options, ANSWER_TIMEOUT, CONNECT_TIMEOUT, QUEUE, RECEIVE_WAIT, RTT_BLOCK,
    RTT_MAX, RTT_WARMUP,
};

/// A loopback TCP echo server for one connection, in a child process (`mqemu echo-worker`): what
/// a round trip of the same payload costs on this machine with no queue server in the way.
///
/// A round trip between two CPUs costs several times one within a CPU (waking the other CPU is
/// slow; docs/performance.md, "Round trips"), so where the scheduler puts the echo and the server
/// decides what each side measures. The bench pins the echo and the server alike (see
/// [`Placement`]): a ratio compares like with like.
struct Echo {
    addr: String,
    child: std::process::Child,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the echo, pinned to `cpu` if given.
fn start_echo(size: usize, cpu: Option<usize>) -> mqemu::Result<Echo> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(
            ErrorCode::InsufficientResources,
            format!("cannot start the loopback echo server: {what}: {e}"),
        )
    };
    let exe = std::env::current_exe().map_err(|e| failed("find this program", &e))?;
    let mut command = std::process::Command::new(exe);
    command.args(["echo-worker", "--size", &size.to_string()]);
    if let Some(cpu) = cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed("spawn", &e))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    // From here on, dropping `echo` stops the child.
    let mut echo = Echo {
        addr: String::new(),
        child,
    };
    match (read, line.trim().strip_prefix("listening on ")) {
        (Ok(_), Some(addr)) => {
            echo.addr = addr.to_owned();
            Ok(echo)
        }
        (Err(e), _) => Err(failed("read its address", &e)),
        (Ok(_), None) => Err(failed("read its address", &format!("it said {line:?}"))),
    }
}

/// Pins the calling thread to one CPU; false where that cannot be done.
fn pin_to_cpu(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a plain bit set that lives across the call, and its size is passed
        // with it; pid 0 is the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

/// The calling thread's CPU set as it was, given back when dropped: a bench that measured one
/// target leaves the next one (`--rtt` with several) the whole machine to place itself on.
struct RestoreAffinity {
    #[cfg(target_os = "linux")]
    former: Option<libc::cpu_set_t>,
}

impl RestoreAffinity {
    fn save() -> RestoreAffinity {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `set` is a plain bit set that lives across the call, and its size is
            // passed with it; pid 0 is the calling thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                let ok =
                    libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
                        == 0;
                RestoreAffinity {
                    former: ok.then_some(set),
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        RestoreAffinity {}
    }
}

impl Drop for RestoreAffinity {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(set) = &self.former {
            // SAFETY: as in `save`.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
            }
        }
    }
}

/// What `mqemu echo-worker` is started with (by `start_echo`).
#[derive(clap::Args, Debug)]
pub struct EchoWorkerArgs {
    /// Bytes in each block.
    #[arg(long)]
    size: usize,
    /// Run on this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

/// `mqemu echo-worker`: echoes `size`-byte blocks on one connection, then exits (at the
/// connection's end, or when nothing comes for [`ANSWER_TIMEOUT`]). With `cpu`, it runs there.
pub fn echo_worker(args: &EchoWorkerArgs) -> mqemu::Result<()> {
    let (size, cpu) = (args.size, args.cpu);
    let failed = |what: &str, e: std::io::Error| {
        Error::new(ErrorCode::Error, format!("echo worker: {what}: {e}"))
    };
    if let Some(cpu) = cpu {
        if !pin_to_cpu(cpu) {
            return Err(failed("pin to a CPU", std::io::Error::last_os_error()));
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| failed("bind", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| failed("local address", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed("nonblocking", e))?;
    println!("listening on {addr}");
    std::io::stdout().flush().map_err(|e| failed("stdout", e))?;
    // Wait a bounded time for the bench to connect.
    let give_up = Instant::now() + CONNECT_TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(failed("accept", e)),
        }
    };
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(ANSWER_TIMEOUT)))
        .map_err(|e| failed("socket options", e))?;
    let mut buf = vec![0u8; size];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
    Ok(())
}

/// Where the three parties of a round trip run.
#[derive(Clone, Copy)]
struct Placement {
    /// What the report calls it.
    name: &'static str,
    /// The key in the JSON report.
    key: &'static str,
    /// The bench's CPU.
    bench: usize,
    /// The echo's and the server's CPU.
    other: usize,
}

/// The placements one machine allows: all on CPU 0, and, with two CPUs or more, the echo and the
/// server on CPU 1 while the bench stays on CPU 0.
fn placements() -> Vec<Placement> {
    let one = Placement {
        name: "one CPU",
        key: "one_cpu",
        bench: 0,
        other: 0,
    };
    let across = Placement {
        name: "across CPUs",
        key: "across_cpus",
        bench: 0,
        other: 1,
    };
    if thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        vec![one, across]
    } else {
        vec![one]
    }
}

/// The server's threads pinned to one CPU until dropped, when each gets its former CPU set
/// back.
struct PinnedServer {
    pid: u32,
    #[cfg(target_os = "linux")]
    former: Vec<(libc::pid_t, libc::cpu_set_t)>,
}

impl PinnedServer {
    /// Pins every thread of the process listening on `addr` (on this computer) to `cpu`.
    #[cfg(target_os = "linux")]
    fn pin(addr: SocketAddr, cpu: usize) -> std::io::Result<PinnedServer> {
        let pid = listening_pid(addr)?;
        let mut pinned = PinnedServer {
            pid,
            former: Vec::new(),
        };
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Some(tid) = entry?
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            // SAFETY: `set` and `former` are plain bit sets that live across the calls, and
            // their size is passed with them.
            unsafe {
                let mut former: libc::cpu_set_t = std::mem::zeroed();
                if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut former)
                    != 0
                {
                    continue; // the thread is gone
                }
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                pinned.former.push((tid, former));
            }
        }
        Ok(pinned)
    }

    #[cfg(not(target_os = "linux"))]
    fn pin(_addr: SocketAddr, _cpu: usize) -> std::io::Result<PinnedServer> {
        Err(std::io::Error::other(
            "CPU pinning is implemented on Linux only",
        ))
    }
}

impl Drop for PinnedServer {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        for (tid, former) in &self.former {
            // SAFETY: as in `pin`.
            unsafe {
                libc::sched_setaffinity(*tid, std::mem::size_of::<libc::cpu_set_t>(), former);
            }
        }
    }
}

/// The process that listens on `addr`: the socket's inode from /proc/net/tcp{,6}, then the
/// process with a descriptor on it.
#[cfg(target_os = "linux")]
fn listening_pid(addr: SocketAddr) -> std::io::Result<u32> {
    let not_found = |why: String| std::io::Error::new(std::io::ErrorKind::NotFound, why);
    let inode = listening_inode(addr)?
        .ok_or_else(|| not_found(format!("no process of this computer listens on {addr}")))?;
    let wanted = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc")? {
        let proc_entry = proc_entry?;
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue; // another user's process, or gone
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                return Ok(pid);
            }
        }
    }
    Err(not_found(format!(
        "the process listening on {addr} is not readable by this user"
    )))
}

/// The inode of the listening TCP socket bound to `addr` (or to the wildcard address on its
/// port).
#[cfg(target_os = "linux")]
fn listening_inode(addr: SocketAddr) -> std::io::Result<Option<u64>> {
    const LISTEN: &str = "0A";
    let table = match addr {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table)?;
    let hex_ip = |ip: std::net::IpAddr| -> String {
        match ip {
            // /proc prints the address as the u32 in memory order, in hex.
            std::net::IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
            std::net::IpAddr::V6(v6) => v6
                .octets()
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes(c.try_into().expect("4 bytes"))))
                .collect(),
        }
    };
    let exact = format!("{}:{:04X}", hex_ip(addr.ip()), addr.port());
    let any_ip = match addr {
        SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let wildcard = format!("{}:{:04X}", hex_ip(any_ip), addr.port());
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() > 9 && cols[3] == LISTEN && (cols[1] == exact || cols[1] == wildcard) {
            return Ok(cols[9].parse().ok());
        }
    }
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
fn listening_pid(_addr: SocketAddr) -> std::io::Result<u32> {
    Err(std::io::Error::other(
        "finding a server's process is implemented on Linux only",
    ))
}

/// What one placement measured.
pub(super) struct Measured {
    placement: Placement,
    /// The server's process, pinned with the echo; or why it could not be.
    server: Result<u32, String>,
    round_trips: u64,
    raw: Latencies,
    send: Latencies,
    receive: Latencies,
}

/// `--rtt`: one connection, one request at a time, in alternating blocks of raw TCP
/// ping-pongs, express sends and receives, so machine noise hits all three alike; once per
/// [`Placement`], the echo and the server pinned alike.
/// One target's round trips, under each placement: what [`side_by_side`] compares.
pub(super) type RttResults = Vec<Measured>;

pub(super) async fn rtt(opts: &Options, addr: &str) -> mqemu::Result<RttResults> {
    let client = connect_mqemu(addr, opts).await?;
    prepare_mqemu_queue(&client, Mode::Express).await?;
    let queue = within("open the bench queue", client.open(QUEUE)).await??;
    let server_addr = tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next());
    let mut results = Vec::new();
    let _restore = RestoreAffinity::save();
    for placement in placements() {
        if !pin_to_cpu(placement.bench) {
            return Err(Error::new(
                ErrorCode::Error,
                format!(
                    "cannot pin the bench to CPU {}: {}",
                    placement.bench,
                    std::io::Error::last_os_error()
                ),
            ));
        }
        let pinned = match server_addr {
            Some(a) => PinnedServer::pin(a, placement.other).map_err(|e| e.to_string()),
            None => Err(format!("cannot resolve {addr}")),
        };
        let echo = start_echo(opts.size, Some(placement.other))?;
        let (round_trips, raw, send, receive) = measure(opts, &queue, &echo).await?;
        drop(echo);
        results.push(Measured {
            placement,
            server: pinned.as_ref().map(|p| p.pid).map_err(Clone::clone),
            round_trips,
            raw,
            send,
            receive,
        });
        drop(pinned);
    }
    report_rtt(opts, addr, &results);
    Ok(results)
}

/// Several targets measured in one run (plaintext and TLS): each one's p50s over the first's,
/// placement by placement. Raw loopback moves between runs across CPUs, so the ratio of the
/// ratios to raw is shown too.
pub(super) fn side_by_side(names: &[String], all: &[RttResults]) {
    let (Some(first), Some(base)) = (names.first(), all.first()) else {
        return;
    };
    println!("side by side, p50 over {first}'s (and over it with each beside its own raw TCP):");
    for (name, results) in names.iter().zip(all).skip(1) {
        for (m, b) in results.iter().zip(base) {
            println!(
                "  {name}, {}: send {:.2}x ({:.2}x), receive {:.2}x ({:.2}x)",
                m.placement.name,
                ratio(&m.send, &b.send),
                ratio(&m.send, &m.raw) / ratio(&b.send, &b.raw),
                ratio(&m.receive, &b.receive),
                ratio(&m.receive, &m.raw) / ratio(&b.receive, &b.raw),
            );
        }
    }
}

/// Round trips of each kind, in alternating blocks; returns how many of each, and their
/// latencies: raw, send, receive.
async fn measure(
    opts: &Options,
    queue: &mqnet::RemoteQueue,
    echo: &Echo,
) -> mqemu::Result<(u64, Latencies, Latencies, Latencies)> {
    let raw_failed = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorCode::Error,
            format!("loopback echo server: cannot {what}: {e}"),
        )
    };
    let mut raw = within(
        "connect to the echo server",
        tokio::net::TcpStream::connect(&echo.addr),
    )
    .await?
    .map_err(|e| raw_failed("connect", e))?;
    raw.set_nodelay(true)
        .map_err(|e| raw_failed("set TCP_NODELAY", e))?;
    let payload = Bytes::from(vec![0x5a; opts.size]);
    let mut echoed = vec![0u8; opts.size];
    let (mut raw_h, mut send_h, mut receive_h) =
        (Latencies::new(), Latencies::new(), Latencies::new());
    let n = opts.count.min(RTT_MAX);
    let deadline = Instant::now() + opts.secs();

    // One block of `b` round trips of each kind; `record` is false for the warm-up.
    let mut block = async |b: u64, record: bool| -> mqemu::Result<()> {
        for _ in 0..b {
            let t0 = Instant::now();
            within("echo", raw.write_all(&payload))
                .await?
                .map_err(|e| raw_failed("write", e))?;
            within("echo", raw.read_exact(&mut echoed))
                .await?
                .map_err(|e| raw_failed("read", e))?;
            if record {
                raw_h.record(t0.elapsed());
            }
        }
        for _ in 0..b {
            let msg = Message::new(payload.clone());
            let t0 = Instant::now();
            within("send", queue.send(msg, Tx::None)).await??;
            if record {
                send_h.record(t0.elapsed());
            }
        }
        for _ in 0..b {
            let t0 = Instant::now();
            within("receive", queue.receive(RECEIVE_WAIT, Tx::None)).await??;
            if record {
                receive_h.record(t0.elapsed());
            }
        }
        Ok(())
    };
    block(RTT_WARMUP, false).await?;
    let mut done = 0;
    while done < n && Instant::now() < deadline {
        let b = RTT_BLOCK.min(n - done);
        block(b, true).await?;
        done += b;
    }
    Ok((done, raw_h, send_h, receive_h))
}

/// `l`'s median over the raw baseline's, to two places.
fn ratio(l: &Latencies, raw: &Latencies) -> f64 {
    let r = raw.us(0.5);
    if r > 0.0 {
        ((l.us(0.5) / r) * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// How a placement put the parties, in words.
fn describe(m: &Measured) -> String {
    let p = m.placement;
    let server = match &m.server {
        Ok(pid) => format!("the server (pid {pid}) on CPU {}", p.other),
        Err(why) => format!("the server unpinned ({why}: its ratio is not like for like)"),
    };
    format!(
        "bench on CPU {}, echo on CPU {}, {server}",
        p.bench, p.other
    )
}

fn report_rtt(opts: &Options, addr: &str, results: &[Measured]) {
    if opts.json {
        let mut placements = serde_json::Map::new();
        for m in results {
            placements.insert(
                m.placement.key.to_owned(),
                json!({
                    "bench_cpu": m.placement.bench,
                    "echo_cpu": m.placement.other,
                    "server_cpu": m.server.as_ref().ok().map(|_| m.placement.other),
                    "server_pid": m.server.as_ref().ok(),
                    "server_not_pinned": m.server.as_ref().err(),
                    "round_trips": m.round_trips,
                    "raw_tcp_us": m.raw.json(),
                    "send_us": m.send.json(),
                    "receive_us": m.receive.json(),
                    "send_p50_over_raw_p50": ratio(&m.send, &m.raw),
                    "receive_p50_over_raw_p50": ratio(&m.receive, &m.raw),
                }),
            );
        }
        println!(
            "{}",
            json!({
                "target": "mqemu",
                "rtt": true,
                "size": opts.size,
                "placements": Value::Object(placements),
            })
        );
        return;
    }
    let scheme = if opts.use_tls { "mqemu+tls" } else { "mqemu" };
    println!(
        "{scheme}://{addr} round trips, one at a time, {} B (µs); the echo and the server pinned alike",
        opts.size
    );
    let line = |name: &str, l: &Latencies| {
        println!(
            "    {name:<22} p50 {:>8.1}  p99 {:>8.1}",
            l.us(0.5),
            l.us(0.99)
        );
    };
    for m in results {
        println!(
            "  {}: {}, {} of each kind",
            m.placement.name,
            describe(m),
            m.round_trips
        );
        line("raw TCP ping-pong", &m.raw);
        line("mqemu send (express)", &m.send);
        line("mqemu receive", &m.receive);
        println!(
            "    mqemu_send_p50/raw_p50 {:.2}, mqemu_receive_p50/raw_p50 {:.2}",
            ratio(&m.send, &m.raw),
            ratio(&m.receive, &m.raw)
        );
    }
}
