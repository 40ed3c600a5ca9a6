//! The servers a run drives: `--target` URLs parsed into an mqemu server or an AMQP broker.

use super::{invalid, AMQP_PORT};

/// The server a run drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// An mqemu server at `host:port`; with `to`, producers send through it to the queue on the
    /// server at `to` (same port), which consumers read: queue-manager transfer. `tls`
    /// (`mqemu+tls://`): over TLS, trusting the global `--tls-ca`.
    Mqemu {
        addr: String,
        to: Option<String>,
        tls: bool,
    },
    /// An AMQP 0-9-1 broker.
    Amqp(AmqpTarget),
    /// mqemu's HTTP API, or RabbitMQ's management API.
    Http(super::http::HttpTarget),
}

impl Target {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Target::Mqemu { .. } => "mqemu",
            Target::Amqp(_) => "amqp",
            Target::Http(h) => h.kind(),
        }
    }
}

/// The target as a report shows it: without the password.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mqemu { addr, to, tls } => {
                let scheme = if *tls { "mqemu+tls" } else { "mqemu" };
                match to {
                    None => write!(f, "{scheme}://{addr}"),
                    Some(to) => write!(f, "{scheme}://{addr}?to={to}"),
                }
            }
            Target::Amqp(t) => write!(
                f,
                "amqp://{}@{}:{} (vhost {:?}){}",
                t.user,
                t.host,
                t.port,
                t.vhost,
                if t.shovel { " through a shovel" } else { "" }
            ),
            Target::Http(h) => match &h.rabbit {
                None => write!(f, "{} (mqemu's HTTP API)", h.base),
                Some((user, _, vhost)) => write!(
                    f,
                    "{} (RabbitMQ's management API as {user}, vhost {vhost:?})",
                    h.base
                ),
            },
        }
    }
}

/// Where and as whom to reach an AMQP broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AmqpTarget {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) vhost: String,
    /// Producers publish to `<queue>.src`, which a shovel (declared on the broker beforehand)
    /// moves to `<queue>`, which consumers read: RabbitMQ's counterpart of transfer.
    pub(super) shovel: bool,
}

/// Parses `mqemu://HOST[:PORT][?to=HOST]` or `amqp://[USER[:PASS]@]HOST[:PORT][/VHOST][?shovel]`
/// (user and password default to guest, the vhost to `/`; `%2f` in it is `/`).
pub(super) fn parse_target(url: &str) -> mqemu::Result<Target> {
    if let Some(http) = super::http::parse(url) {
        return http.map(Target::Http);
    }
    let bad = |why: &str| invalid(format!("--target {url:?}: {why}"));
    let (url_base, query) = url.split_once('?').unwrap_or((url, ""));
    let mqemu = url_base
        .strip_prefix("mqemu://")
        .map(|r| (r, false))
        .or_else(|| url_base.strip_prefix("mqemu+tls://").map(|r| (r, true)));
    if let Some((rest, tls)) = mqemu {
        let to = match query.split_once('=') {
            Some(("to", host)) if !host.is_empty() => Some(host.to_owned()),
            None if query.is_empty() => None,
            _ => return Err(bad("the only option of an mqemu target is ?to=HOST")),
        };
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') || addr.contains('@') {
            return Err(bad("expected mqemu://HOST:PORT"));
        }
        let addr = match split_port(addr) {
            (_, Some(Err(()))) => return Err(bad("the port is not a number from 1 to 65535")),
            (_, Some(Ok(_))) => addr.to_owned(),
            (host, None) => format!("{host}:{}", mqnet::DEFAULT_PORT),
        };
        return Ok(Target::Mqemu { addr, to, tls });
    }
    let shovel = match query {
        "" => false,
        "shovel" => true,
        _ => return Err(bad("the only option of an amqp target is ?shovel")),
    };
    let Some(rest) = url_base.strip_prefix("amqp://") else {
        return Err(bad(
            "expected mqemu://HOST:PORT, amqp://USER:PASS@HOST:PORT/VHOST (amqps is not supported), http://HOST:PORT or rabbitmq-http://USER:PASS@HOST:PORT/VHOST",
        ));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (percent_decode(user, url)?, percent_decode(pass, url)?)
        }
        None => ("guest".to_owned(), "guest".to_owned()),
    };
    let (host, port) = match split_port(hostport) {
        (_, Some(Err(()))) => return Err(bad("the port is not a number from 1 to 65535")),
        (host, Some(Ok(port))) => (host, port),
        (host, None) => (host, AMQP_PORT),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let vhost = match percent_decode(path, url)? {
        v if v.is_empty() => "/".to_owned(),
        v => v,
    };
    Ok(Target::Amqp(AmqpTarget {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        user,
        password,
        vhost,
        shovel,
    }))
}

/// Splits `host:port` (or `[v6]:port`) into the host and the port if there is one.
fn split_port(hostport: &str) -> (&str, Option<Result<u16, ()>>) {
    match hostport.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            Some(port.parse::<u16>().ok().filter(|p| *p != 0).ok_or(())),
        ),
        _ => (hostport, None),
    }
}

/// Decodes `%XX` escapes (a URL's user, password or vhost).
fn percent_decode(s: &str, url: &str) -> mqemu::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("--target {url:?}: a bad %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("--target {url:?}: not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mqemu_targets() {
        assert_eq!(
            parse_target("mqemu://127.0.0.1:18600").unwrap(),
            Target::Mqemu {
                addr: "127.0.0.1:18600".into(),
                to: None,
                tls: false,
            }
        );
        assert_eq!(
            parse_target("mqemu://127.0.0.2:18600?to=127.0.0.3").unwrap(),
            Target::Mqemu {
                addr: "127.0.0.2:18600".into(),
                to: Some("127.0.0.3".into()),
                tls: false,
            }
        );
        assert!(parse_target("mqemu://h:1?from=x").is_err());
        assert_eq!(
            parse_target("mqemu://localhost/").unwrap(),
            Target::Mqemu {
                addr: format!("localhost:{}", mqnet::DEFAULT_PORT),
                to: None,
                tls: false,
            }
        );
        assert!(parse_target("mqemu://host:0").is_err());
        assert!(parse_target("mqemu://").is_err());
        assert!(parse_target("ftp://host").is_err());
        assert_eq!(
            parse_target("mqemu+tls://127.0.0.1:18620").unwrap(),
            Target::Mqemu {
                addr: "127.0.0.1:18620".into(),
                to: None,
                tls: true,
            }
        );
    }

    #[test]
    fn parses_http_targets() {
        let Target::Http(h) = parse_target("http://127.0.0.1:18080/").unwrap() else {
            panic!("an http:// target is mqemu's HTTP face");
        };
        assert_eq!(h.kind(), "http");
        assert!(parse_target("http://").is_err());
        assert!(parse_target("http://h:1/api").is_err());
        let Target::Http(r) = parse_target("rabbitmq-http://u:p@h/%2f").unwrap() else {
            panic!("a rabbitmq-http:// target is RabbitMQ's management API");
        };
        assert_eq!(r.kind(), "rabbitmq-http");
    }

    #[test]
    fn parses_amqp_targets() {
        assert_eq!(
            parse_target("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            Target::Amqp(AmqpTarget {
                host: "127.0.0.1".into(),
                port: 5672,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
                shovel: false,
            })
        );
        let Target::Amqp(t) = parse_target("amqp://h/%2f?shovel").unwrap() else {
            panic!("an amqp target");
        };
        assert!(t.shovel);
        let Target::Amqp(t) = parse_target("amqp://u%40x:p%3Aw@broker/prod").unwrap() else {
            panic!("an amqp target");
        };
        assert_eq!(
            (t.user.as_str(), t.password.as_str(), t.port),
            ("u@x", "p:w", 5672)
        );
        assert_eq!(t.vhost, "prod");
        assert!(parse_target("amqp://host:99999/").is_err());
        assert!(parse_target("amqp://host/%zz").is_err());
        assert!(parse_target("amqps://host/").is_err());
    }
}
