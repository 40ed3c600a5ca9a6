//! TLS on the native protocol with certificates the tests make (rcgen): a client that trusts the
//! server's CA sends and receives; a plaintext client, a client trusting another CA and an
//! expired certificate are refused while the server goes on serving; a renewed certificate is
//! served after a reload while an open connection stays up; OpenSSL's own client negotiates
//! TLS 1.3; and nothing of the token or the bodies is readable on the wire.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqemu::{Message, QueueManager, QueueProps};
use mqnet::{Auth, Client, ClientOptions, ClientTls, Server, ServerConfig, ServerTls, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A certificate authority the tests trust (or not).
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// Writes the CA certificate to `dir/<file>` and returns its path.
    pub(crate) fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, self.cert.pem()).unwrap();
        p
    }

    /// A server certificate for 127.0.0.1 and localhost, named `cn`, written as `<stem>.crt` and
    /// `<stem>.key` in `dir`; `expired` makes one whose validity ended in 2001.
    pub(crate) fn issue(&self, dir: &Path, stem: &str, cn: &str, expired: bool) -> TlsFiles {
        self.issue_for(dir, stem, &["127.0.0.1", "localhost"], cn, expired)
    }

    /// A certificate for the names (DNS names or IP addresses) `names`, as [`Ca::issue`].
    pub(crate) fn issue_for(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        cn: &str,
        expired: bool,
    ) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            client_ca: None,
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

const TOKEN: &str = "a-secret-token-7f3c";

/// A server with TLS and one user, on 127.0.0.1.
async fn serve(tls: ServerTls) -> (QueueManager, SocketAddr, mqnet::Stopper) {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    let user: mqnet::User = serde_json::from_value(serde_json::json!({
        "name": "shop", "token": TOKEN, "admin": true
    }))
    .unwrap();
    let config = ServerConfig {
        tls: Some(tls),
        auth: Auth::new(vec![user]),
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", qm.clone(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stopper = server.stopper();
    tokio::spawn(server.run());
    (qm, addr, stopper)
}

fn options(tls: Option<ClientTls>) -> ClientOptions {
    ClientOptions {
        token: Some(TOKEN.to_owned()),
        tls,
        ..ClientOptions::default()
    }
}

async fn round_trip(c: &Client, body: &str) {
    let q = c.open(r".\private$\orders").await.unwrap();
    q.send(Message::new(body.to_owned()), mqnet::Tx::None)
        .await
        .unwrap();
    let m = q
        .receive(Duration::from_secs(5), mqnet::Tx::None)
        .await
        .unwrap();
    assert_eq!(m.body_str(), Some(body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_served_and_everyone_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue(dir.path(), "server", "first", false);
    let tls = ServerTls::load(files.clone()).unwrap();
    let (qm, addr, stopper) = serve(tls.clone()).await;
    let addr_text = addr.to_string();
    let trusted = ClientTls::with_ca(&ca_file).unwrap();

    // Trusted: served, through a connection that stays open.
    let c = Client::connect_with(&addr_text, &options(Some(trusted.clone())))
        .await
        .unwrap();
    round_trip(&c, "over TLS").await;

    // Plaintext to the TLS port: refused cleanly.
    let plain = Client::connect_with(&addr_text, &options(None)).await;
    assert!(plain.is_err(), "a plaintext client was served");

    // A client that trusts another CA refuses the server.
    let other = Ca::new("someone else's CA");
    let other_file = other.write(dir.path(), "other.crt");
    let e = Client::connect_with(
        &addr_text,
        &options(Some(ClientTls::with_ca(&other_file).unwrap())),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), mqemu::ErrorCode::RemoteMachineNotAvailable);
    assert!(e.detail().contains("TLS"), "{e}");

    // A wrong name is refused too, unless told the name to check.
    let e = Client::connect_with(
        &addr_text,
        &options(Some(trusted.clone().server_name("orders.example"))),
    )
    .await
    .unwrap_err();
    assert!(e.detail().contains("TLS"), "{e}");

    // The server went on serving through all that.
    round_trip(&c, "still here").await;

    // A renewed certificate (another name, another key) is served to new connections after a
    // reload, while the open one keeps working.
    let renewed = ca.issue(dir.path(), "renewed", "second", false);
    std::fs::copy(&renewed.cert, &files.cert).unwrap();
    std::fs::copy(&renewed.key, &files.key).unwrap();
    tls.reload().unwrap();
    let c2 = Client::connect_with(&addr_text, &options(Some(trusted.clone())))
        .await
        .unwrap();
    round_trip(&c2, "after the reload").await;
    round_trip(&c, "the old connection too").await;
    let seen = tokio::task::spawn_blocking(move || openssl_subject(addr))
        .await
        .unwrap();
    if let Some(subject) = seen {
        assert!(subject.contains("second"), "{subject}");
    }

    // A broken reload keeps the certificate that works.
    std::fs::write(&files.key, "not a key").unwrap();
    assert!(tls.reload().is_err());
    let c3 = Client::connect_with(&addr_text, &options(Some(trusted)))
        .await
        .unwrap();
    round_trip(&c3, "the working certificate stayed").await;
    drop((c, c2, c3));
    stopper.stop();
    drop(qm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue(dir.path(), "server", "expired", true);
    let (_qm, addr, stopper) = serve(ServerTls::load(files).unwrap()).await;
    let e = Client::connect_with(
        &addr.to_string(),
        &options(Some(ClientTls::with_ca(&ca_file).unwrap())),
    )
    .await
    .unwrap_err();
    assert!(e.detail().to_lowercase().contains("expired"), "{e}");
    stopper.stop();
}

/// A relay on loopback that forwards one connection both ways and keeps every byte it saw.
fn recording_relay(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(down) = conn else { return };
            let up = TcpStream::connect(upstream).unwrap();
            for (mut from, mut to) in [
                (down.try_clone().unwrap(), up.try_clone().unwrap()),
                (up, down),
            ] {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_readable_crosses_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue(dir.path(), "server", "wire", false);
    let (_qm, addr, stopper) = serve(ServerTls::load(files).unwrap()).await;
    let (relay, seen) = recording_relay(addr);
    let tls = ClientTls::with_ca(&ca_file)
        .unwrap()
        .server_name("127.0.0.1");
    let c = Client::connect_with(&relay.to_string(), &options(Some(tls)))
        .await
        .unwrap();
    let body = "the-body-nobody-may-read-4b1d";
    round_trip(&c, body).await;
    drop(c);
    let bytes = seen.lock().unwrap().clone();
    assert!(bytes.len() > 1000, "the relay saw the session");
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(TOKEN), "the token crossed in clear");
    assert!(!contains(body), "the body crossed in clear");
    assert!(!contains("orders"), "the queue's name crossed in clear");
    stopper.stop();
}

/// The subject OpenSSL's own client sees after negotiating TLS 1.3 with `addr`, or `None` (with
/// the reason printed) where Debian's openssl is not installed.
pub(crate) fn openssl_subject(addr: SocketAddr) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-tls1_3",
            "-alpn",
            "mqemu/1",
        ])
        .stdin(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: openssl is not installed");
        return None;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("TLSv1.3"),
        "openssl negotiated TLS 1.3:\n{text}"
    );
    assert!(
        text.contains("ALPN protocol: mqemu/1"),
        "the native protocol's ALPN name:\n{text}"
    );
    let subject = text
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_owned();
    Some(subject)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_negotiates_tls_1_3_and_sees_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let files = ca.issue(dir.path(), "server", "seen-by-openssl", false);
    let (_qm, addr, stopper) = serve(ServerTls::load(files).unwrap()).await;
    let subject = tokio::task::spawn_blocking(move || openssl_subject(addr))
        .await
        .unwrap();
    if let Some(subject) = subject {
        assert!(subject.contains("seen-by-openssl"), "{subject}");
    }
    stopper.stop();
}

/// With a client CA, a certificate it signed logs in as the user that names it, with exactly
/// that user's rights; an unknown subject is refused with MQ_ERROR_ACCESS_DENIED; a certificate
/// from another CA is refused at the handshake; a connection without one logs in by token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_log_in_as_their_users() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let clients = Ca::new("client CA");
    let clients_file = clients.write(dir.path(), "clients.crt");
    let mut files = ca.issue(dir.path(), "server", "server", false);
    files.client_ca = Some(clients_file);
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    qm.send(
        r".\private$\orders",
        Message::new("to peek"),
        mqemu::Tx::None,
    )
    .unwrap();
    let users: Vec<mqnet::User> = serde_json::from_value(serde_json::json!([
        {"name": "reader", "token": "reader-token", "certificate": "reader.example",
         "queues": {"orders": ["peek"]}},
        {"name": "ops", "token": TOKEN, "admin": true},
    ]))
    .unwrap();
    let config = ServerConfig {
        tls: Some(ServerTls::load(files).unwrap()),
        auth: Auth::new(users),
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", qm.clone(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let stopper = server.stopper();
    tokio::spawn(server.run());
    let with_cert = |issuer: &Ca, cn: &str| {
        let id = issuer.issue(dir.path(), cn, cn, false);
        let tls = ClientTls::with_ca_and_certificate(&ca_file, Some((&id.cert, &id.key))).unwrap();
        ClientOptions {
            // No token: the certificate is the identity.
            tls: Some(tls),
            ..ClientOptions::default()
        }
    };

    // The reader's certificate: peek, and nothing else.
    let reader = Client::connect_with(&addr, &with_cert(&clients, "reader.example"))
        .await
        .unwrap();
    let q = reader.open(r".\private$\orders").await.unwrap();
    let m = q.peek(Duration::ZERO).await.unwrap();
    assert_eq!(m.body_str(), Some("to peek"));
    let e = q
        .send(Message::new("not allowed"), mqnet::Tx::None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), mqemu::ErrorCode::AccessDenied);

    // A certificate of the right CA that names no user.
    let e = Client::connect_with(&addr, &with_cert(&clients, "stranger.example"))
        .await
        .unwrap_err();
    assert!(
        e.detail().contains("ACCESS_DENIED") || e.detail().contains("names no user"),
        "{e}"
    );

    // A certificate from a CA the server does not take: refused at the handshake.
    let e = Client::connect_with(&addr, &with_cert(&ca, "reader.example"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), mqemu::ErrorCode::RemoteMachineNotAvailable, "{e}");

    // No certificate: the token, as before.
    let ops = Client::connect_with(&addr, &options(Some(ClientTls::with_ca(&ca_file).unwrap())))
        .await
        .unwrap();
    let m = ops
        .open(r".\private$\orders")
        .await
        .unwrap()
        .receive(Duration::ZERO, mqnet::Tx::None)
        .await
        .unwrap();
    assert_eq!(m.body_str(), Some("to peek"), "an administrator by token");
    stopper.stop();
}

/// An HTTPS request over one connection: `request` written as is, the whole answer read back
/// (the request says `Connection: close`).
async fn https(addr: SocketAddr, ca: &Path, request: &str) -> std::io::Result<String> {
    https_named(addr, ca, "127.0.0.1", request).await
}

/// [`https`] checking the certificate against `name` rather than the address.
pub(crate) async fn https_named(
    addr: SocketAddr,
    ca: &Path,
    name: &str,
    request: &str,
) -> std::io::Result<String> {
    https_as(addr, ca, name, None, request).await
}

/// [`https_named`] presenting the client certificate `identity`, if any.
async fn https_as(
    addr: SocketAddr,
    ca: &Path,
    name: &str,
    identity: Option<&TlsFiles>,
    request: &str,
) -> std::io::Result<String> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        #[allow(deprecated)]
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        None => config.with_no_client_auth(),
        Some(id) => {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(&id.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&id.key).unwrap();
            config.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    // A peer that closes without close_notify still said everything it had to.
    let _ = s.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The HTTP face with a certificate speaks only HTTPS: the API and health answer over TLS 1.3
/// (OpenSSL agrees, with ALPN http/1.1), a plaintext request gets no answer, and the server goes
/// on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_face_speaks_https() {
    use mqnet::http::{HttpConfig, HttpServer};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue(dir.path(), "server", "https-face", false);
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    let config = HttpConfig {
        tls: Some(ServerTls::load(files).unwrap()),
        ..HttpConfig::default()
    };
    let server = HttpServer::bind("127.0.0.1:0", qm.clone(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let health = https(
        addr,
        &ca_file,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Plaintext to the HTTPS port: no HTTP answer.
    let plain = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain).contains("HTTP/1.1 200"),
        "plaintext was served"
    );

    // A send through the API over TLS lands in the queue.
    let body = r#"{"body": "over HTTPS"}"#;
    let sent = https(
        addr,
        &ca_file,
        &format!(
            "POST /api/queues/orders/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
    .unwrap();
    assert!(sent.starts_with("HTTP/1.1 201"), "{sent}");
    let got = qm
        .receive(r".\private$\orders", Duration::ZERO, mqemu::Tx::None)
        .unwrap();
    assert_eq!(got.body_str(), Some("over HTTPS"));

    // OpenSSL's own client: TLS 1.3, ALPN http/1.1, the configured certificate.
    let seen = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-tls1_3",
                "-alpn",
                "http/1.1",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .unwrap();
    match seen {
        Some(text) => {
            assert!(text.contains("TLSv1.3"), "{text}");
            assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
            assert!(text.contains("https-face"), "{text}");
        }
        None => eprintln!("skipped: openssl is not installed"),
    }
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

/// Client certificates log in over HTTPS too: the certificate's user gets exactly its rights
/// (401 for a certificate naming no user), and a request without one still logs in by token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_face_logs_client_certificates_in() {
    use mqnet::http::{HttpConfig, HttpServer};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let clients = Ca::new("client CA");
    let mut files = ca.issue(dir.path(), "server", "https-face", false);
    files.client_ca = Some(clients.write(dir.path(), "clients.crt"));
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    let users: Vec<mqnet::User> = serde_json::from_value(serde_json::json!([
        {"name": "writer", "certificate": "writer.example", "queues": {"orders": ["send"]}},
        {"name": "ops", "token": TOKEN, "admin": true},
    ]))
    .unwrap();
    let config = HttpConfig {
        tls: Some(ServerTls::load(files).unwrap()),
        auth: Auth::new(users),
        ..HttpConfig::default()
    };
    let server = HttpServer::bind("127.0.0.1:0", qm.clone(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let body = r#"{"body": "by certificate"}"#;
    let send = format!(
        "POST /api/queues/orders/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let peek =
        "GET /api/queues/orders/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let writer = clients.issue_for(
        dir.path(),
        "writer",
        &["writer.example"],
        "writer.example",
        false,
    );
    let stranger = clients.issue_for(
        dir.path(),
        "stranger",
        &["stranger.example"],
        "stranger.example",
        false,
    );
    let ask = |id: Option<&TlsFiles>, request: &str| {
        let (ca_file, id, request) = (ca_file.clone(), id.cloned(), request.to_owned());
        async move {
            https_as(addr, &ca_file, "127.0.0.1", id.as_ref(), &request)
                .await
                .unwrap()
        }
    };

    // The writer's certificate: send, and nothing else.
    let sent = ask(Some(&writer), &send).await;
    assert!(sent.starts_with("HTTP/1.1 201"), "{sent}");
    let peeked = ask(Some(&writer), peek).await;
    assert!(peeked.starts_with("HTTP/1.1 403"), "{peeked}");
    // A certificate of the client CA that names no user.
    let refused = ask(Some(&stranger), &send).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    // No certificate and no token: 401; the administrator's token: served.
    let refused = ask(None, peek).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let by_token = peek.replace(
        "Connection: close",
        &format!("Connection: close\r\nAuthorization: Bearer {TOKEN}"),
    );
    let listed = ask(None, &by_token).await;
    assert!(
        listed.starts_with("HTTP/1.1 200") && listed.contains("by certificate"),
        "{listed}"
    );
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
