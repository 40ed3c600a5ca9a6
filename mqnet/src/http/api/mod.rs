//! The JSON API's handlers: queues, messages (send, peek, receive, browse by lookup id, move),
//! transactions and outgoing queues, each checked against the caller's rights as the native
//! protocol checks them.
//!
//! A queue is named in the path by its path or format name (URL-encoded: `.%5Cprivate$%5Corders`)
//! or, for a private queue of this computer, by its bare name (`orders`, `orders;poison` for a
//! subqueue).

mod admin;
mod messages;
mod moves;
mod queues;

use admin::*;
use messages::*;
use moves::*;
use queues::*;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use mqcore::blocking::Hooked;
use mqcore::message::{Acknowledge, Delivery, JournalFlags};
use mqcore::name::QueueRef;
use mqcore::{
    Error, ErrorCode, LookupAction, Message, MessageId, QueueInfo, QueueName, QueueProps, Tx,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, Problem};
use super::{AppState, Caller};
use crate::auth::{key_of, Right};
use crate::proto::OutgoingAction;

pub(super) type Shared = State<Arc<AppState>>;
pub(super) type ApiResult<T> = Result<T, ApiError>;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_queues, create_queue))
        .routes(routes!(show_queue, delete_queue))
        .routes(routes!(purge_queue))
        .routes(routes!(send_message, browse_messages))
        .routes(routes!(peek_head))
        .routes(routes!(receive_head))
        .routes(routes!(peek_message, receive_message))
        .routes(routes!(move_message))
        .routes(routes!(requeue_message))
        .routes(routes!(list_triggers))
        .routes(routes!(begin_transaction))
        .routes(routes!(commit_transaction))
        .routes(routes!(abort_transaction))
        .routes(routes!(list_outgoing))
        .routes(routes!(act_on_outgoing))
}

/// The hook that moves a call that waits on the log off the runtime's thread, and engine calls
/// run under it: the same as the native server's.
pub(super) use crate::steps::{blocking_hook as hook, engine};

/// The queue a path segment names: a path or format name as is, a bare name as a private queue
/// of this computer.
pub(super) fn queue_name(segment: &str) -> String {
    if segment.contains('\\') || segment.contains('=') {
        segment.to_owned()
    } else {
        format!(r".\private$\{segment}")
    }
}
