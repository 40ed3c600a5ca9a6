//! Unmodified .NET System.Messaging code against the AMQP face: tests/amqp/SystemMessaging.cs,
//! compiled with Mono's mcs and run with mono through Mono's stock RabbitMQ provider (AMQP 0-8),
//! with only a server started. Debian's mono-mcs, mono-runtime, libmono-system-messaging4.0-cil
//! and libmono-messaging-rabbitmq4.0-cil; skipped without them unless MQEMU_REQUIRE_MONO is set,
//! as CI sets it.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use mqemu::{Message, QueueManager, QueueProps, Tx};
use mqnet::amqp::{AmqpConfig, AmqpServer};

/// What Mono's MessagingProviderLocator is told to load.
const PROVIDER: &str = "Mono.Messaging.RabbitMQ.RabbitMQMessagingProvider,Mono.Messaging.RabbitMQ";

/// The System.Messaging program, compiled once per test run, or why not.
fn program() -> Option<&'static PathBuf> {
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    EXE.get_or_init(|| {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/amqp/SystemMessaging.cs");
        let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("SystemMessaging.exe");
        let built = Command::new("mcs")
            .args(["-nowarn:612", "-r:System.Messaging.dll"])
            .arg(format!("-out:{}", exe.display()))
            .arg(source)
            .output();
        match built {
            Ok(o) if o.status.success() => Some(exe),
            Ok(o) => panic!(
                "mcs failed on {source}:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => {
                assert!(
                    std::env::var_os("MQEMU_REQUIRE_MONO").is_none(),
                    "MQEMU_REQUIRE_MONO is set but mcs cannot run ({e}): apt-get install mono-mcs \
                     mono-runtime libmono-system-messaging4.0-cil libmono-messaging-rabbitmq4.0-cil"
                );
                eprintln!("skipped: Mono's mcs is not installed ({e})");
                None
            }
        }
    })
    .as_ref()
}

/// An AMQP listener on port 5672, where Mono's provider connects to the computer a queue path
/// names, on a loopback address of this test's own so tests and a local RabbitMQ run side by
/// side. Returns the address; dropping the sender stops the listener.
async fn serve_on_5672(qm: QueueManager) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let base = std::process::id() % 200;
    let mut last = None;
    for i in 0..50u32 {
        let ip = format!("127.0.{}.{}", 100 + (base + i) % 100, 2 + i);
        match AmqpServer::bind(&format!("{ip}:5672"), qm.clone(), AmqpConfig::default()).await {
            Ok(server) => {
                let addr = server.local_addr().unwrap();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(server.run(async {
                    let _ = stopped.await;
                }));
                return (addr, stop);
            }
            Err(e) => last = Some(e),
        }
    }
    panic!("no loopback address free on port 5672: {last:?}");
}

/// Runs the program with `args` after the host; its standard output, or a panic with all of it.
/// A program still running after 2 minutes is killed.
async fn mono(exe: &PathBuf, host: SocketAddr, args: &[&str]) -> String {
    let mut cmd = Command::new("mono");
    cmd.arg(exe)
        .arg(host.ip().to_string())
        .args(args)
        .env("MONO_MESSAGING_PROVIDER", PROVIDER)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("mono runs");
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(120)).is_err() {
                // SAFETY: kill(2) on the child's pid, which is not reaped until wait returns.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        let _ = done.send(());
        watchdog.join().unwrap();
        assert!(
            status.success(),
            "mono {args:?} failed ({status}):\n{stdout}\n{stderr}"
        );
        stdout
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_messaging_programs_run_unmodified_against_mqemu() {
    let Some(exe) = program() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Durable, so commits and aborts go through the log as a real server's do.
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    // The one queue the program needs made as an administrator would: not transactional,
    // which Mono's provider has no way to ask for.
    qm.create_queue(r".\private$\sm_prio", QueueProps::default())
        .unwrap();
    let (addr, _stop) = serve_on_5672(qm.clone()).await;
    let out = mono(exe, addr, &["checks"]).await;
    let passed: Vec<&str> = out.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(passed.len(), 10, "every check passes:\n{out}");
    assert!(!out.contains("FAILED"), "{out}");
    // The program's queue.delete reached the server; its other queues are here and empty.
    assert!(qm.open(r".\private$\sm_admin").is_err());
    assert_eq!(qm.open(r".\private$\sm_tx").unwrap().len().unwrap(), 0);
    assert!(qm.open(r".\private$\sm_tx").unwrap().is_transactional());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_between_system_messaging_and_the_rust_client() {
    let Some(exe) = program() else { return };
    let qm = QueueManager::new();
    let (addr, _stop) = serve_on_5672(qm.clone()).await;

    // System.Messaging to Rust: the label, app-specific value and the body's bytes (the
    // XmlMessageFormatter's XML) arrive as sent.
    let out = mono(exe, addr, &["send-cross", "to_rust"]).await;
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("body "))
        .unwrap_or_else(|| panic!("the program prints the body it sent:\n{out}"));
    let sent: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let path = r".\private$\to_rust";
    let got = super::amqp::receive_within_5s(&qm, path).await;
    assert_eq!(got.label, "mono label");
    assert_eq!(got.app_specific, 5);
    assert_eq!(&got.body[..], &sent[..]);
    assert!(String::from_utf8_lossy(&sent).contains("from System.Messaging"));

    // Rust to System.Messaging: a message whose body is what XmlMessageFormatter reads, with a
    // label and a correlation id, read by the stock provider.
    qm.create_queue(r".\private$\from_rust", QueueProps::transactional())
        .unwrap();
    let mut m = Message::new(&b"<?xml version=\"1.0\"?>\r\n<string>from Rust</string>"[..]);
    m.label = "rust label".into();
    m.correlation_id = Some(got.id());
    qm.send(r".\private$\from_rust", m, Tx::Single).unwrap();
    // Messages behind it: Mono's receive consumes, keeps the first and closes, and the ones
    // pushed to it meanwhile come back with their abort counts untouched, as MSMQ leaves them.
    for i in 0..20 {
        let later = Message::new(format!("later {i}").into_bytes());
        qm.send(r".\private$\from_rust", later, Tx::Single).unwrap();
    }
    let out = mono(
        exe,
        addr,
        &["receive-cross", "from_rust", "rust label", "from Rust"],
    )
    .await;
    assert!(
        out.contains(&format!("ok received rust label {}", got.id())),
        "the correlation id arrives as MSMQ writes it:\n{out}"
    );
    let rest = qm
        .open(r".\private$\from_rust")
        .unwrap()
        .messages()
        .unwrap();
    assert_eq!(rest.len(), 20);
    assert!(
        rest.iter().all(|m| m.abort_count() == 0),
        "a System.Messaging receive raised other messages' abort counts: {:?}",
        rest.iter().map(|m| m.abort_count()).collect::<Vec<_>>()
    );
}
