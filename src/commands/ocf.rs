//! `mqemu ocf ACTION`: the OCF resource agent that lets Pacemaker run an MSMQ virtual server
//! (the shim `ocf/vserver` installs it as `ocf:mqemu:vserver`; docs/pacemaker.md).
//!
//! Pacemaker brings the address up (`ocf:heartbeat:IPaddr2`) and orders and places the group;
//! this agent runs the virtual server's queue manager on the node it is told to, with the
//! storage fencing of the cluster issue: the storage directory holds generations
//! (`mqcluster::disk::SharedDisk`), and a start after anything but a clean stop raises the old
//! generation's epoch and seals it, so a stale server elsewhere (no STONITH, a partition) can
//! acknowledge nothing the new one serves. Parameters come as `OCF_RESKEY_*`; exit codes are
//! OCF's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mqemu::cluster::coord::dir::write_atomic;
use mqemu::cluster::disk::SharedDisk;
use serde::{Deserialize, Serialize};

const SUCCESS: u8 = 0;
const ERR_GENERIC: u8 = 1;
const ERR_UNIMPLEMENTED: u8 = 3;
const ERR_PERM: u8 = 4;
const ERR_CONFIGURED: u8 = 6;
const NOT_RUNNING: u8 = 7;

/// The marker a clean stop leaves in the storage directory: the next start opens the same
/// generation instead of fencing it.
const RELEASED: &str = "RELEASED";

/// `mqemu ocf ACTION`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// start, stop, monitor, meta-data or validate-all (parameters in `OCF_RESKEY_*`); or
    /// `install`, which writes the agent's shim under $OCF_ROOT (/usr/lib/ocf).
    action: String,
}

/// The agent's parameters.
struct Params {
    name: Option<String>,
    storage: Option<PathBuf>,
    address: Option<String>,
    port: u16,
    config: Option<PathBuf>,
    state_dir: PathBuf,
    instance: String,
}

/// What a start leaves for monitor and stop.
#[derive(Serialize, Deserialize)]
struct State {
    pid: u32,
    /// The process's start time (`/proc/PID/stat` field 22): a reused pid is not our server.
    started: u64,
    generation: u64,
    listen: String,
}

fn param(name: &str) -> Option<String> {
    std::env::var(format!("OCF_RESKEY_{name}"))
        .ok()
        .filter(|v| !v.is_empty())
}

impl Params {
    fn from_env() -> Result<Params, String> {
        let port = match param("port") {
            Some(p) => p.parse().map_err(|_| format!("port {p:?} is not a port"))?,
            None => mqemu::net::DEFAULT_PORT,
        };
        let state_dir = param("state_dir")
            .or_else(|| std::env::var("HA_RSCTMP").ok())
            .map_or_else(|| PathBuf::from("/run/resource-agents"), PathBuf::from);
        Ok(Params {
            name: param("name"),
            storage: param("storage").map(PathBuf::from),
            address: param("address"),
            port,
            config: param("config").map(PathBuf::from),
            state_dir,
            instance: std::env::var("OCF_RESOURCE_INSTANCE").unwrap_or_else(|_| "mqemu".into()),
        })
    }

    fn listen(&self) -> String {
        let address = self.address.as_deref().unwrap_or("127.0.0.1");
        if address.contains(':') {
            format!("[{address}]:{}", self.port)
        } else {
            format!("{address}:{}", self.port)
        }
    }

    fn state_file(&self) -> PathBuf {
        let safe: String = self
            .instance
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.state_dir.join(format!("mqemu-{safe}.json"))
    }

    fn log_file(&self) -> PathBuf {
        self.state_file().with_extension("log")
    }
}

/// Runs the action; the process exits with its OCF code.
pub fn run(args: &Args) -> u8 {
    if args.action == "meta-data" {
        print!("{}", meta_data());
        return SUCCESS;
    }
    if args.action == "install" {
        return install();
    }
    let params = match Params::from_env() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("mqemu ocf: {why}");
            return ERR_CONFIGURED;
        }
    };
    match args.action.as_str() {
        "validate-all" => validate(&params),
        "start" => start(&params),
        "stop" => stop(&params),
        "monitor" | "status" => monitor(&params),
        other => {
            eprintln!("mqemu ocf: {other} is not implemented");
            ERR_UNIMPLEMENTED
        }
    }
}

/// `mqemu ocf install`: writes the shim `ocf:mqemu:vserver` under `$OCF_ROOT/resource.d/mqemu/`
/// (`/usr/lib/ocf` by default), running this binary by its absolute path, so that Pacemaker
/// (and `ocf-tester`, which runs `meta-data` as `nobody`) find it whatever their PATH.
fn install() -> u8 {
    let root = std::env::var("OCF_ROOT").unwrap_or_else(|_| "/usr/lib/ocf".into());
    let dir = Path::new(&root).join("resource.d").join("mqemu");
    let Ok(exe) = std::env::current_exe() else {
        return ERR_GENERIC;
    };
    let shim = format!(
        "#!/bin/sh\n# ocf:mqemu:vserver, written by `mqemu ocf install` (docs/pacemaker.md).\n\
         exec \"${{OCF_RESKEY_binary:-{}}}\" ocf \"$1\"\n",
        exe.display()
    );
    let path = dir.join("vserver");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, shim))
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        });
    match written {
        Ok(()) => {
            println!("wrote {}", path.display());
            SUCCESS
        }
        Err(e) => {
            eprintln!("mqemu ocf install: {}: {e}", path.display());
            ERR_PERM
        }
    }
}

fn validate(p: &Params) -> u8 {
    let mut missing = Vec::new();
    if p.name.is_none() {
        missing.push("name");
    }
    if p.storage.is_none() {
        missing.push("storage");
    }
    if p.address.is_none() {
        missing.push("address");
    }
    if !missing.is_empty() {
        eprintln!("mqemu ocf: missing parameters: {}", missing.join(", "));
        return ERR_CONFIGURED;
    }
    if let Some(name) = &p.name {
        if let Err(e) = mqemu::name::QueueName::try_private(name, "q") {
            eprintln!("mqemu ocf: name {name:?} is not a computer name: {e}");
            return ERR_CONFIGURED;
        }
    }
    if p.listen().parse::<SocketAddr>().is_err() {
        eprintln!("mqemu ocf: address {:?} is not an IP address", p.address);
        return ERR_CONFIGURED;
    }
    if let Some(c) = &p.config {
        if let Err(e) = mqemu::config::load(c) {
            eprintln!("mqemu ocf: {e}");
            return ERR_CONFIGURED;
        }
    }
    SUCCESS
}

fn read_state(p: &Params) -> Option<State> {
    let text = std::fs::read_to_string(p.state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// The start time (field 22 of `/proc/PID/stat`) of `pid` while it runs (a zombie does not).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(rest.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    rest.get(19)?.parse().ok()
}

/// Whether the server a start left still runs: the same pid, started at the same time.
fn alive(state: &State) -> bool {
    start_time(state.pid) == Some(state.started)
}

/// Whether a server answers on `listen`. A handshake refused for want of a token answers too:
/// a server configured with users is up.
fn answers(listen: &str) -> bool {
    let options = mqemu::net::ClientOptions {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    match mqemu::net::BlockingClient::connect_with(listen, &options) {
        Ok(_) => true,
        Err(e) => e.code() == mqemu::ErrorCode::AccessDenied,
    }
}

fn monitor(p: &Params) -> u8 {
    let Some(state) = read_state(p) else {
        return NOT_RUNNING;
    };
    if !alive(&state) {
        eprintln!("mqemu ocf: the server (pid {}) is gone", state.pid);
        return ERR_GENERIC;
    }
    if let Some(storage) = &p.storage {
        match SharedDisk::new(storage).current() {
            Ok(g) if g == state.generation => {}
            Ok(g) => {
                eprintln!(
                    "mqemu ocf: the storage is generation {g} now, taken over from ours ({})",
                    state.generation
                );
                return ERR_GENERIC;
            }
            Err(e) => {
                eprintln!("mqemu ocf: storage: {e}");
                return ERR_GENERIC;
            }
        }
    }
    if answers(&state.listen) {
        SUCCESS
    } else {
        eprintln!("mqemu ocf: the server does not answer on {}", state.listen);
        ERR_GENERIC
    }
}

fn start(p: &Params) -> u8 {
    let valid = validate(p);
    if valid != SUCCESS {
        return valid;
    }
    match monitor(p) {
        SUCCESS => return SUCCESS,
        NOT_RUNNING => {}
        // Crashed or fenced: clean up what is left, then start again; never beside a server
        // that would not stop.
        _ => {
            if !stop_server(p, false) {
                eprintln!("mqemu ocf: the previous server does not stop");
                return ERR_GENERIC;
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(&p.state_dir) {
        eprintln!("mqemu ocf: {}: {e}", p.state_dir.display());
        return ERR_PERM;
    }
    let storage = p.storage.as_deref().expect("validated");
    let disk = SharedDisk::new(storage);
    let released = storage.join(RELEASED);
    let mounted = match disk.mount(released.exists()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mqemu ocf: mounting {}: {e}", storage.display());
            return ERR_GENERIC;
        }
    };
    let _ = std::fs::remove_file(&released);
    let _ = std::fs::File::open(storage).and_then(|d| d.sync_all());
    let listen = p.listen();
    let Ok(exe) = std::env::current_exe() else {
        return ERR_GENERIC;
    };
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p.log_file())
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mqemu ocf: {}: {e}", p.log_file().display());
            return ERR_PERM;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .args(["--listen", &listen])
        .arg("--data")
        .arg(&mounted.root)
        .args(["--name", p.name.as_deref().expect("validated")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a log file handle"))
        .stderr(log);
    if let Some(c) = &p.config {
        cmd.arg("--config").arg(c);
    }
    // Its own session: it outlives this agent process, as Pacemaker expects of a daemon.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mqemu ocf: starting the server: {e}");
            return ERR_GENERIC;
        }
    };
    let Some(started) = start_time(child.id()) else {
        eprintln!(
            "mqemu ocf: the server exited at once; see {}",
            p.log_file().display()
        );
        return ERR_GENERIC;
    };
    let state = State {
        pid: child.id(),
        started,
        generation: mounted.generation,
        listen: listen.clone(),
    };
    // Whole or not at all: a torn state file would read as "not running" while it runs.
    let json = serde_json::to_vec(&state).expect("plain data");
    if let Err(e) = write_atomic(&p.state_file(), &json, true) {
        eprintln!("mqemu ocf: {}: {e}", p.state_file().display());
        return ERR_GENERIC;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !alive(&state) {
            eprintln!(
                "mqemu ocf: the server exited; see {}",
                p.log_file().display()
            );
            let _ = std::fs::remove_file(p.state_file());
            return ERR_GENERIC;
        }
        if answers(&listen) {
            return SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("mqemu ocf: the server did not answer on {listen} in time");
    ERR_GENERIC
}

fn stop(p: &Params) -> u8 {
    if stop_server(p, true) {
        SUCCESS
    } else {
        ERR_GENERIC
    }
}

/// Stops the server a start left, if any; `clean`: a stop that completes leaves the storage
/// released (the next start needs no fencing). Whether it is stopped.
fn stop_server(p: &Params, clean: bool) -> bool {
    let Some(state) = read_state(p) else {
        return true;
    };
    let pid = state.pid as libc::pid_t;
    let mut stopped_cleanly = false;
    if alive(&state) {
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(&state) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(&state) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(&state) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            stopped_cleanly = true;
        }
    }
    if alive(&state) {
        return false;
    }
    // Only a server that shut down on our signal released the storage; one that had crashed,
    // or was fenced, did not.
    let ours = p.storage.as_deref().is_some_and(|s| {
        SharedDisk::new(s)
            .current()
            .is_ok_and(|g| g == state.generation)
    });
    if clean && stopped_cleanly && ours {
        if let Some(s) = &p.storage {
            let _ = write_atomic(&s.join(RELEASED), b"", true);
        }
    }
    let _ = std::fs::remove_file(p.state_file());
    true
}

fn meta_data() -> String {
    r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="vserver" version="0.1">
<version>1.0</version>
<longdesc lang="en">
Runs an MSMQ virtual server with mqemu: a queue manager named after the virtual server, whose
storage directory moves between nodes. A start after anything but a clean stop fences the
storage (raises its owner epoch and seals it), so a stale server can acknowledge nothing the
new one serves. Put it in a group after ocf:heartbeat:IPaddr2 for its address.
</longdesc>
<shortdesc lang="en">mqemu MSMQ virtual server</shortdesc>
<parameters>
<parameter name="name" unique="1" required="1">
<longdesc lang="en">The virtual server's name: the queue manager's computer name.</longdesc>
<shortdesc lang="en">Virtual server name</shortdesc>
<content type="string"/>
</parameter>
<parameter name="storage" unique="1" required="1">
<longdesc lang="en">The storage directory (on the shared disk) holding the queue manager's generations.</longdesc>
<shortdesc lang="en">Storage directory</shortdesc>
<content type="string"/>
</parameter>
<parameter name="address" required="1">
<longdesc lang="en">The IP address the server listens on (brought up by IPaddr2).</longdesc>
<shortdesc lang="en">IP address</shortdesc>
<content type="string"/>
</parameter>
<parameter name="port">
<longdesc lang="en">The port of the native protocol.</longdesc>
<shortdesc lang="en">Port</shortdesc>
<content type="integer" default="18010"/>
</parameter>
<parameter name="config">
<longdesc lang="en">A configuration file of mqemu serve (users, limits, queues, triggers).</longdesc>
<shortdesc lang="en">Configuration file</shortdesc>
<content type="string"/>
</parameter>
<parameter name="state_dir">
<longdesc lang="en">Where the agent keeps the server's pid and log (default: $HA_RSCTMP).</longdesc>
<shortdesc lang="en">State directory</shortdesc>
<content type="string"/>
</parameter>
<parameter name="binary">
<longdesc lang="en">The mqemu binary the shim runs.</longdesc>
<shortdesc lang="en">mqemu binary</shortdesc>
<content type="string" default="mqemu"/>
</parameter>
</parameters>
<actions>
<action name="start" timeout="60s"/>
<action name="stop" timeout="60s"/>
<action name="monitor" timeout="20s" interval="10s" depth="0"/>
<action name="meta-data" timeout="5s"/>
<action name="validate-all" timeout="20s"/>
</actions>
</resource-agent>
"#
    .to_owned()
}
