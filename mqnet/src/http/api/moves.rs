//! The JSON API that moves messages: to a subqueue and back, and dead letters requeued to the
//! queue they were sent to.

use super::*;

/// Where to move a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    /// `;poison` for a subqueue of the message's queue, or a queue's name as in the path
    /// (`orders;poison`, or `orders` to move a message back to its main queue).
    pub to: String,
}

/// Moves a message between a queue and its subqueues (`MQMoveMessage`), under the transaction
/// `tx` names (the destination must belong to the same queue).
#[utoipa::path(post, path = "/api/queues/{name}/messages/{lookup_id}/move", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"),
        ("lookup_id" = u64, Path, description = "The message's lookup id"), TxParam),
    request_body = MoveTo,
    responses((status = 204), (status = 404, body = Problem), (status = 400, body = Problem)))]
pub(super) async fn move_message(
    State(state): Shared,
    caller: Caller,
    Path((name, lookup)): Path<(String, u64)>,
    Query(p): Query<TxParam>,
    body: Result<Json<MoveTo>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(to) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let name = queue_name(&name);
    caller.check(Right::Receive, &name)?;
    let from = state.qm.open(&name)?;
    let target = match to.to.strip_prefix(';') {
        // A subqueue of the queue the message is in.
        Some(sub) => {
            let main = name.split(';').next().unwrap_or(&name);
            format!("{main};{sub}")
        }
        None => queue_name(&to.to),
    };
    caller.check(Right::Receive, &target)?;
    let dest = state.qm.open(&target)?;
    let tx = HeldTx::resolve(&state, &caller, p.tx.as_deref())?;
    engine(|| from.move_message(lookup, &dest, tx.tx()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a requeued message went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Requeued {
    /// The queue it is back in.
    pub queue: String,
    /// Its id there: the same message moved back from a subqueue, a new message (same body and
    /// properties) sent again from a dead-letter queue.
    pub id: String,
}

/// Puts a dead letter back where it was going: a message in a subqueue (`;poison`) moves back
/// to its main queue; a message in a dead-letter queue (`DEADLETTER`, `DEADXACT`, or any queue
/// holding messages sent elsewhere) is sent again to its destination, a local queue, and
/// removed. From `DEADXACT` to a transactional queue both happen in one transaction; otherwise
/// the copy is sent first and the dead letter removed after, so a failure in between leaves a
/// duplicate rather than a loss.
#[utoipa::path(post, path = "/api/queues/{name}/messages/{lookup_id}/requeue", tag = "messages",
    params(("name" = String, Path, description = "The dead-letter queue or subqueue holding it (`DIRECT=OS:.\\SYSTEM$;DEADLETTER`, `orders;poison`)"),
        ("lookup_id" = u64, Path, description = "The message's lookup id")),
    responses((status = 200, body = Requeued), (status = 404, body = Problem), (status = 400, body = Problem)))]
pub(super) async fn requeue_message(
    State(state): Shared,
    caller: Caller,
    Path((name, lookup)): Path<(String, u64)>,
) -> ApiResult<Json<Requeued>> {
    let name = queue_name(&name);
    caller.check(Right::Receive, &name)?;
    let from = state.qm.open(&name)?;
    let subqueue = matches!(
        from.name().queue(),
        QueueRef::Private {
            subqueue: Some(_),
            ..
        } | QueueRef::Public {
            subqueue: Some(_),
            ..
        }
    );
    if let Some((main, _)) = name.rsplit_once(';').filter(|_| subqueue) {
        // A subqueue's message goes back to its main queue, keeping its id and position.
        let to = state.qm.open(main)?;
        let m = from.peek_by_lookup_id(LookupAction::Current(lookup))?;
        engine(|| from.move_message(lookup, &to, Tx::None))?;
        return Ok(Json(Requeued {
            queue: to.name().to_string(),
            id: m.id().to_string(),
        }));
    }
    let m = from.peek_by_lookup_id(LookupAction::Current(lookup))?;
    let Some(dest) = m.destination().cloned() else {
        return Err(ApiError::invalid(
            "the message names no destination to go back to",
        ));
    };
    let same = match (
        state.qm.queue_info(&name),
        state.qm.queue_info(&dest.to_string()),
    ) {
        (Ok(a), Ok(b)) => a.id == b.id,
        _ => false,
    };
    if same {
        return Err(ApiError(Error::new(
            ErrorCode::IllegalOperation,
            format!("the message is in its destination {dest} already"),
        )));
    }
    caller.check(Right::Send, &dest.to_string())?;
    let to = state.qm.open_name(&dest)?;
    let copy = m.sender_copy();
    let id = engine(|| -> Result<MessageId, Error> {
        if m.is_transactional() && from.is_transactional() {
            let t = state.qm.begin();
            from.receive_by_lookup_id(LookupAction::Current(lookup), Tx::In(&t))?;
            let id = to.send(copy, Tx::In(&t))?;
            t.commit()?;
            Ok(id)
        } else {
            let tx = if m.is_transactional() {
                Tx::Single
            } else {
                Tx::None
            };
            let id = to.send(copy, tx)?;
            from.receive_by_lookup_id(LookupAction::Current(lookup), Tx::None)?;
            Ok(id)
        }
    })?;
    Ok(Json(Requeued {
        queue: dest.to_string(),
        id: id.to_string(),
    }))
}
