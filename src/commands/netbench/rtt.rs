//! `--rtt`: single round trips against an mqemu server next to a raw loopback TCP ping-pong of
//! the same size, the echo of that baseline running in a child process (`mqemu echo-worker`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqemu::{Error, ErrorCode, Message};
use mqnet::Tx;
use serde_json::json;
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
/// slow; docs/performance.md, "Round trips"), and where the scheduler puts an unpinned echo
/// decides which one the baseline measures. The queue server answers from another CPU than the
/// client's (its figures do not move between runs), so the bench pins itself to one CPU and the
/// echo to another: the baseline pays what the server pays.
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

/// `--rtt`: one connection, one request at a time, in alternating blocks of raw TCP
/// ping-pongs, express sends and receives, so machine noise hits all three alike.
pub(super) async fn rtt(opts: &Options, addr: &str) -> mqemu::Result<()> {
    let client = connect_mqemu(addr, opts).await?;
    prepare_mqemu_queue(&client, Mode::Express).await?;
    let queue = within("open the bench queue", client.open(QUEUE)).await??;
    // The bench on CPU 0 and the echo on CPU 1 (see `Echo`); one CPU cannot be split so.
    let two_cpus = thread::available_parallelism().is_ok_and(|n| n.get() >= 2) && pin_to_cpu(0);
    let echo = start_echo(opts.size, two_cpus.then_some(1))?;
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
    drop(raw);
    drop(echo);
    report_rtt(opts, addr, done, &raw_h, &send_h, &receive_h);
    Ok(())
}

fn report_rtt(
    opts: &Options,
    addr: &str,
    n: u64,
    raw: &Latencies,
    send: &Latencies,
    receive: &Latencies,
) {
    let ratio = |l: &Latencies| {
        let r = raw.us(0.5);
        if r > 0.0 {
            ((l.us(0.5) / r) * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    if opts.json {
        println!(
            "{}",
            json!({
                "target": "mqemu",
                "rtt": true,
                "size": opts.size,
                "round_trips": n,
                "raw_tcp_us": raw.json(),
                "send_us": send.json(),
                "receive_us": receive.json(),
                "send_p50_over_raw_p50": ratio(send),
                "receive_p50_over_raw_p50": ratio(receive),
            })
        );
        return;
    }
    println!(
        "mqemu://{addr} round trips, one at a time, {} B, {n} of each kind (µs)",
        opts.size
    );
    let line = |name: &str, l: &Latencies| {
        println!(
            "  {name:<22} p50 {:>8.1}  p99 {:>8.1}",
            l.us(0.5),
            l.us(0.99)
        );
    };
    line("raw TCP ping-pong", raw);
    line("mqemu send (express)", send);
    line("mqemu receive", receive);
    println!(
        "  mqemu_send_p50/raw_p50 {:.2}, mqemu_receive_p50/raw_p50 {:.2}",
        ratio(send),
        ratio(receive)
    );
}
