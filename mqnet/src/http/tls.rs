//! HTTPS for the HTTP face: a listener axum serves from that hands over connections once their
//! TLS handshake is done, with handshakes run side by side so one slow or hostile client cannot
//! hold up the others.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::tls::ServerTls;

/// Time a client has to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Connections that finished their handshake, for `axum::serve`.
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<crate::tls::Transport>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` and shakes hands with each connection on a task of its own; both
    /// end when the listener is dropped (graceful shutdown).
    pub(super) fn new(listener: TcpListener, tls: ServerTls) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "HTTPS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let acceptor = tls.acceptor_for(b"http/1.1");
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(
                        HANDSHAKE,
                        acceptor.accept(crate::tls::transport(stream)),
                    )
                    .await
                    {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "HTTPS handshake failed"),
                        Err(_) => tracing::info!(%peer, "HTTPS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<crate::tls::Transport>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (it never does while this listener lives): wait for
            // the shutdown that drops us.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Who is at the other end of a connection: the names of the client certificate it presented
/// and the server verified (none over plain HTTP or without one). With them, a request logs in
/// as the user naming the certificate, as on the native protocol.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    pub(crate) certificate: Option<Vec<String>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer {
            certificate: stream
                .io()
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(crate::tls::names_of),
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(_: axum::serve::IncomingStream<'_, TcpListener>) -> Peer {
        Peer::default()
    }
}
