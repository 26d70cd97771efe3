//! The janitor: dead-letters jobs whose worker died holding their last delivery.
//!
//! The server stops delivering a job after `max_deliver` deliveries but keeps it in a
//! work-queue stream for ever (counted as pending an ack), telling only an advisory,
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`, when it would have
//! delivered it again. A worker that fails a job on its last delivery dead-letters it
//! itself; one that died on it cannot, so every intake runs a janitor in a queue group (one
//! of them handles each advisory): it copies the job to the dead-letter stream (the same
//! `Nats-Msg-Id` as a worker's copy, so never twice) and deletes it from the work stream.
//!
//! An advisory sent while no intake of the queue runs is not seen; such a job stays
//! in the stream until removed by hand.

use std::sync::Arc;

use async_nats::jetstream::message::StreamMessage;
use futures::StreamExt;

use super::acker::publish_dead;
use super::dead::headers as dead_headers;
use super::error::{NO_MESSAGE_FOUND, js_code, no_message};
use super::state::Core;

/// Subscribes to the advisories; the returned task runs until aborted.
pub(crate) async fn start(
    core: Arc<Core>,
) -> Result<tokio::task::JoinHandle<()>, crate::NatsError> {
    let client = core.nats.client().clone();
    let mut advisories = client
        .queue_subscribe(
            core.names.max_deliveries_advisory(),
            format!("{}-janitor", core.names.stream),
        )
        .await
        .map_err(|e| crate::NatsError::subscribe("subscribe to max-deliveries advisories", &e))?;
    Ok(tokio::spawn(async move {
        while let Some(advisory) = advisories.next().await {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&advisory.payload) else {
                continue;
            };
            let Some(seq) = body.get("stream_seq").and_then(serde_json::Value::as_u64) else {
                continue;
            };
            let deliveries = body
                .get("deliveries")
                .and_then(serde_json::Value::as_u64)
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or(0);
            sweep(&core, seq, deliveries).await;
        }
    }))
}

/// Dead-letters job `seq` and deletes it from the work stream.
async fn sweep(core: &Core, seq: u64, deliveries: u32) {
    let original = match core.stream.get_raw_message(seq).await {
        Ok(message) => message,
        // Settled meanwhile (its worker was only late): nothing to do.
        Err(e) if no_message(&e) => return,
        Err(e) => {
            tracing::warn!(queue = %core.names.queue, seq, error = %e, "janitor cannot read an exhausted job");
            return;
        }
    };
    move_to_dead(
        core,
        &original,
        deliveries,
        "max deliveries",
        "delivered max_deliver times without being settled (its worker stopped answering)",
    )
    .await;
}

/// Dead-letters the work stream's `message` (its deliveries, why) and deletes it from the
/// work stream; whether this call deleted it (not when the dead letter could not be
/// published, nor when the job was gone already).
pub(crate) async fn move_to_dead(
    core: &Core,
    message: &StreamMessage,
    deliveries: u32,
    reason: &str,
    error: &str,
) -> bool {
    let seq = message.sequence;
    let headers = dead_headers(
        message.headers.clone(),
        &core.names.stream,
        seq,
        message.subject.as_str(),
        deliveries,
        reason,
        error,
    );
    if !publish_dead(core, headers, message.payload.clone()).await {
        return false;
    }
    match core.stream.delete_message(seq).await {
        Ok(_) => true,
        Err(e) if js_code(&e) == Some(NO_MESSAGE_FOUND) => false,
        Err(e) => {
            tracing::warn!(queue = %core.names.queue, seq, error = %e, "cannot delete a dead-lettered job");
            false
        }
    }
}
