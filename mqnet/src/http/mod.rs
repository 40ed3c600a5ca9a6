//! The HTTP face of a server: a JSON API over the same queue manager, tokens and per-queue rights
//! as the native protocol, its OpenAPI document, health probes and Prometheus metrics.
//!
//! Any language reaches mqemu this way (curl included), where the native protocol needs a Rust
//! client. Each request names what it acts on; a transaction lives on the server between
//! requests under an id, with a time limit after which it aborts, since an HTTP client holds no
//! connection whose end could abort it.
//!
//! Routes are registered through utoipa-axum's `routes!`, which takes a handler together with its
//! `#[utoipa::path]` documentation: a route cannot be served without being in
//! `/api/openapi.json`. Bodies larger than [`HttpConfig::max_body`] are refused from their
//! `Content-Length` before they are read.
//!
//! Here: the configuration, the shared state, who a request acts for, and the listener with its
//! graceful shutdown. The API's handlers are in `api`, health and metrics in `ops`, errors as
//! problem answers in `problem`, transactions held between requests in `txs`, and the web
//! console's embedded files in `console`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::Router;
use mqcore::{Error, ErrorCode, QueueManager};
use tokio::net::{TcpListener, ToSocketAddrs};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{queue_key, Auth, Principal, Right};
use crate::server::TriggerService;
use crate::transfer::TransferService;

mod api;
mod console;
mod ops;
pub mod problem;
mod receipts;
pub mod srmp;
mod tls;
mod txs;

pub use problem::{status_of, ApiError, Problem};

/// What an HTTP listener serves and allows. The defaults suit a listener on loopback.
#[derive(Clone)]
pub struct HttpConfig {
    /// Who may call and what they may do: the native protocol's users, presenting their token
    /// as `Authorization: Bearer <token>`.
    pub auth: Auth,
    /// Largest request body accepted, checked before it is read (default: a 4 MiB message body,
    /// base64-encoded in JSON, with room for its properties).
    pub max_body: usize,
    /// A transaction begun over HTTP aborts if it is not committed within this time, unless its
    /// `begin` asked for another.
    pub tx_time_limit: Duration,
    /// Transactions open at once over HTTP; one more is refused with
    /// MQ_ERROR_INSUFFICIENT_RESOURCES.
    pub max_transactions: usize,
    /// The transfer service, whose outgoing queues the API lists and acts on.
    pub transfer: Option<TransferService>,
    /// The Triggers service, whose rules and triggers the API lists.
    pub triggers: TriggerService,
    /// When the server is a cluster's virtual server: the cluster's status (nodes, groups,
    /// their resources and owners), read on each request.
    pub cluster: Option<ClusterView>,
    /// The native-protocol server beside this listener, whose connections the metrics report.
    pub native: Option<crate::server::ServerCounts>,
    /// HTTPS: with a certificate the listener speaks only TLS (ALPN `http/1.1`), the
    /// native protocol's certificate as a rule ([`crate::tls`]).
    pub tls: Option<crate::tls::ServerTls>,
}

/// Reads a cluster's status as JSON (mqcluster's `ClusterStatus`), for `/api/cluster`.
pub type ClusterView = Arc<dyn Fn() -> Result<serde_json::Value, Error> + Send + Sync>;

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("max_body", &self.max_body)
            .field("tx_time_limit", &self.tx_time_limit)
            .field("max_transactions", &self.max_transactions)
            .field("clustered", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            auth: Auth::default(),
            max_body: 6 * 1024 * 1024,
            tx_time_limit: Duration::from_secs(60),
            max_transactions: 1024,
            transfer: None,
            triggers: TriggerService::default(),
            cluster: None,
            native: None,
            tls: None,
        }
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) qm: QueueManager,
    pub(crate) config: HttpConfig,
    pub(crate) txs: txs::Transactions,
    pub(crate) started: Instant,
    pub(crate) requests: AtomicU64,
    /// Set while the listener drains: `/readyz` answers 503 so load balancers stop sending.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// The SRMP receipts this face sends back to senders.
    pub(crate) receipts: receipts::Receipts,
}

/// Who a request acts for: the user its connection's client certificate names, else the user
/// whose bearer token it carries, or everyone on an open server. A missing or unknown token (or
/// a certificate that names no user) on a server with users is refused with 401.
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.requests.fetch_add(1, Ordering::Relaxed);
        // A verified client certificate is the identity; without one, the bearer token.
        let certificate = parts
            .extensions
            .get::<axum::extract::ConnectInfo<tls::Peer>>()
            .and_then(|p| p.0.certificate.as_deref());
        let login = match certificate {
            Some(names) => state.config.auth.login_certificate(names),
            None => state.config.auth.login(bearer(&parts.headers)),
        };
        login.map(Caller).map_err(|e| {
            ApiError(Error::new(
                ErrorCode::MessageNotAuthenticated,
                e.detail().to_owned(),
            ))
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl Caller {
    /// Refuses with MQ_ERROR_ACCESS_DENIED unless the caller has `right` on the queue `name`.
    pub(crate) fn check(&self, right: Right, name: &str) -> Result<(), ApiError> {
        Ok(self.0.check(right, &queue_key(name), name)?)
    }

    /// Whether the caller has any right on `name` (enough to see it in lists).
    pub(crate) fn sees(&self, key: &str) -> bool {
        [Right::Peek, Right::Receive, Right::Send, Right::Admin]
            .iter()
            .any(|&r| self.0.may(r, key))
    }

    /// Refuses unless the caller administers the whole queue manager.
    pub(crate) fn check_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            return Ok(());
        }
        Err(ApiError(Error::new(
            ErrorCode::AccessDenied,
            format!("{} does not administer this queue manager", self.0.name()),
        )))
    }
}

/// The API's OpenAPI document: its title and version; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mqemu HTTP API",
        description = "MSMQ queues, messages and transactions over HTTP. Errors are RFC 9457 problem documents carrying MSMQ's error name and HRESULT."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The router and the OpenAPI document of its routes.
fn router(state: Arc<AppState>) -> (Router, utoipa::openapi::OpenApi) {
    let max_body = state.config.max_body;
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(srmp::routes())
        .split_for_parts();
    let doc_json = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let router = router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    (router, doc)
}

/// The OpenAPI document of every route the listener serves (without a server running).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = OpenApiRouter::<Arc<AppState>>::with_openapi(ApiDoc::openapi())
        .merge(api::routes())
        .merge(ops::routes())
        .merge(srmp::routes())
        .split_for_parts();
    doc
}

/// An HTTP listener bound to an address, serving one queue manager.
pub struct HttpServer {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl HttpServer {
    /// Binds `addr` for `qm`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        qm: QueueManager,
        config: HttpConfig,
    ) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let state = Arc::new(AppState {
            receipts: receipts::Receipts::new(qm.guid()),
            qm,
            txs: txs::Transactions::new(config.max_transactions),
            config,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(HttpServer { listener, state })
    }

    /// The address it listens on (the port, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` completes, then stops accepting, lets requests in progress finish,
    /// and aborts the transactions still open.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let HttpServer { listener, state } = self;
        let reaper = tokio::spawn(txs::reap(state.clone()));
        let (router, _) = router(state.clone());
        let draining = state.clone();
        let stopping = async move {
            stop.await;
            draining.draining.store(true, Ordering::SeqCst);
        };
        let result = match state.config.tls.clone() {
            None => {
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<tls::Peer>(),
                )
                .with_graceful_shutdown(stopping)
                .await
            }
            Some(tls) => {
                axum::serve(
                    tls::TlsListener::new(listener, tls),
                    router.into_make_service_with_connect_info::<tls::Peer>(),
                )
                .with_graceful_shutdown(stopping)
                .await
            }
        };
        reaper.abort();
        state.txs.abort_all();
        result
    }
}
