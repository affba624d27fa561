//! What the roomserver stops keeping after a while, and the record that lets the bus outbox
//! go: a redacted event keeps its original content for `rooms.redaction_retention` (7 days by
//! default, as Synapse: moderators may still look at it), then its stored JSON, and its copy
//! in the outbox if the outbox still holds it, become the redacted form for good. The
//! syncapi's copy is redacted when the redaction arrives, so nothing else holds the content.
//!
//! Each event's output position is kept on the event (`stream_position`), so reading a room
//! as of a stream position (`/members?at=`) never needs the outbox, which `bus::prune` empties
//! behind its consumers. Events stored before that column existed get it from the outbox once
//! at start ([`backfill_stream_positions`]).

use super::input::STREAM;
use super::messages::RoomserverOutput;
use super::storage::events;
use crate::bus;
use crate::storage::{Conn, Db, StorageError};
use std::time::Duration;

/// Redacted events pruned per transaction.
const PAGE: i64 = 100;

/// The consumer name under which the backfill records how far it got (in `bus_offsets`; it
/// reads the roomserver stream like a consumer, once).
const BACKFILL: &str = "roomserver.stream_positions";

/// Prunes the original content of every event redacted before `cutoff_ms`; how many.
pub async fn prune_redacted(db: &Db, cutoff_ms: i64) -> Result<usize, StorageError> {
    let mut pruned = 0;
    loop {
        let txn = db.begin().await?;
        let page = events::select_prunable(&txn, cutoff_ms, PAGE).await?;
        if page.is_empty() {
            return Ok(pruned);
        }
        for e in &page {
            let redacted = redacted_json(&e.json, &e.room_version);
            events::set_pruned(&txn, e.event_nid, &redacted).await?;
            if let Some(position) = e.stream_position {
                prune_output(&txn, position, &redacted).await?;
            }
        }
        txn.commit().await?;
        pruned += page.len();
    }
}

/// The redacted form of a stored event. Stored JSON that does not parse cannot be redacted
/// by the rules: it is replaced by an empty object rather than kept.
fn redacted_json(json: &str, room_version: &str) -> String {
    serde_json::from_str::<ruma::CanonicalJsonObject>(json)
        .ok()
        .and_then(|object| crate::pdu::redact(object, room_version).ok())
        .and_then(|r| serde_json::to_string(&r).ok())
        .unwrap_or_else(|| {
            tracing::error!("a redacted event's stored JSON is unreadable; pruning it whole");
            "{}".to_owned()
        })
}

/// Replaces the event in its output, if the outbox still holds it.
async fn prune_output(db: &impl Conn, position: i64, redacted: &str) -> Result<(), StorageError> {
    let Some(payload) = bus::payload(db, STREAM, position).await? else {
        return Ok(());
    };
    let Ok(RoomserverOutput::NewRoomEvent {
        room_id,
        event_id,
        adds_state,
        removes_state,
        redacts,
        redacted_by,
        transaction,
        send_on_behalf_of,
        ..
    }) = serde_json::from_str(&payload)
    else {
        // Not this event's output after all; rewriting it could stop a consumer.
        tracing::error!(
            position,
            "the output of a redacted event is not readable; left alone"
        );
        return Ok(());
    };
    let output = RoomserverOutput::NewRoomEvent {
        room_id,
        event_id,
        event: serde_json::from_str(redacted).unwrap_or_default(),
        adds_state,
        removes_state,
        redacts,
        redacted_by,
        transaction,
        send_on_behalf_of,
    };
    let text = serde_json::to_string(&output).map_err(|e| StorageError::Decode {
        column: 0,
        reason: e.to_string(),
    })?;
    bus::replace_payload(db, STREAM, position, &text).await
}

/// Gives events stored before `stream_position` existed their position, from the outbox (up
/// to the head when it runs; later events get theirs when stored). Records how far it got,
/// so it does the work once.
pub async fn backfill_stream_positions(db: &Db) -> Result<(), StorageError> {
    let mut from = bus::offset_of(db, BACKFILL).await?;
    loop {
        let rows = bus::read_batch(db, STREAM, from).await?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(());
        };
        let txn = db.begin_relaxed().await?;
        for (position, payload) in &rows {
            if let Ok(RoomserverOutput::NewRoomEvent { event_id, .. }) =
                serde_json::from_str(payload)
            {
                events::backfill_stream_position(&txn, &event_id, *position).await?;
            }
        }
        // Its own stream name: it must not hold back the pruning of the real one.
        bus::store_offset(&txn, BACKFILL, BACKFILL, last).await?;
        txn.commit().await?;
        from = last;
    }
}

/// Runs the backfill once, then prunes redacted content every `bus::prune_interval` of the
/// retention, for as long as the current arbiter runs. Failures are logged and retried at the
/// next turn.
pub async fn run(db: Db, retention: Duration) {
    if let Err(e) = backfill_stream_positions(&db).await {
        tracing::error!(error = %e, "backfilling stream positions failed");
    }
    let every = bus::prune_interval(retention);
    loop {
        let cutoff = crate::storage::now_ms() - retention.as_millis() as i64;
        match prune_redacted(&db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned the content of redacted events"),
            Err(e) => tracing::error!(error = %e, "pruning redacted events failed"),
        }
        actix_web::rt::time::sleep(every).await;
    }
}
