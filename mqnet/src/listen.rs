//! The accept loop the extra listeners share (AMQP, MS-MQQB): at most `max` connections served
//! at once, each on a task of its own, until `stop` completes; then every connection is told to
//! quit through the watch channel its task was given.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Accepts on `listener` until `stop`, handing each connection (with Nagle off) to `serve`,
/// whose future runs on a task of its own; `what` names the listener in the log.
pub(crate) async fn serve_connections<F, Fut>(
    listener: &TcpListener,
    max: usize,
    what: &'static str,
    stop: impl Future<Output = ()>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (quit_tx, quit) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(max.max(1)));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            () = &mut stop => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let task = serve(stream, peer, quit.clone());
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }
    let _ = quit_tx.send(true);
}
