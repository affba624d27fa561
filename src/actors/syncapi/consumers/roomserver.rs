//! Reads the roomserver's stream into the syncapi's tables: each accepted event at its stream
//! position (with its client transaction, what it replaced, its relation), redactions (also
//! one that came before its target: the target's output names it), the
//! current-state changes it reports, history backfilled from other servers (below every
//! other position: see [`old_event`]), and rooms users forgot (a mark on their member row). Applied exactly once with the consumer's offset (see
//! `bus::run_consumer`); after each committed batch the notifier wakes who it concerns.

use super::super::format::relation_of;
use super::super::notifier::{Advance, Notifier};
use super::super::storage::{current_state, relations, room_events};
use super::super::token::Stream;
use crate::actors::roomserver::messages::RoomserverOutput;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::Txn;
use actix::Addr;
use serde_json::{json, Value};

/// The syncapi's consumer of the `roomserver` stream.
pub struct RoomserverConsumer {
    notifier: Option<Addr<Notifier>>,
    pending: Advance,
}

impl RoomserverConsumer {
    /// A consumer telling `notifier` (when given) of what it applied.
    pub fn new(notifier: Option<Addr<Notifier>>) -> RoomserverConsumer {
        RoomserverConsumer {
            notifier,
            pending: Advance::default(),
        }
    }
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_owned)
}

/// What a state event replaced, for its `unsigned`.
async fn prev_state(
    txn: &Txn,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<Option<String>, ConsumerError> {
    let Some(holder) = current_state::select_holder(txn, room_id, event_type, state_key).await?
    else {
        return Ok(None);
    };
    let Some(prev) = room_events::select_by_id(txn, &holder).await? else {
        return Ok(None);
    };
    let j: Value = serde_json::from_str(&prev.json).unwrap_or_default();
    Ok(Some(
        json!({
            "prev_content": j["content"],
            "prev_sender": prev.sender,
            "replaces_state": prev.event_id,
        })
        .to_string(),
    ))
}

/// Applies a redaction to the syncapi's copy of the event.
async fn redact(
    txn: &Txn,
    room_id: &str,
    target: &str,
    redaction: &Value,
    redaction_id: &str,
) -> Result<(), ConsumerError> {
    let Some(e) = room_events::select_by_id(txn, target).await? else {
        return Ok(());
    };
    let version = room_events::room_version(txn, room_id)
        .await?
        .unwrap_or_else(|| "1".into());
    let object: ruma::CanonicalJsonObject =
        serde_json::from_str(&e.json).map_err(|e| ConsumerError::Apply(e.to_string()))?;
    let redacted = crate::pdu::redact(object, &version)
        .map_err(|e| ConsumerError::Apply(format!("cannot redact {target}: {e}")))?;
    let mut because = redaction.clone();
    because["event_id"] = json!(redaction_id);
    let redacted =
        serde_json::to_string(&redacted).map_err(|e| ConsumerError::Apply(e.to_string()))?;
    room_events::redact(txn, target, &redacted, &because.to_string()).await?;
    relations::delete(txn, target).await?;
    Ok(())
}

/// An event of the room's history from before what this server held (`OldRoomEvent`):
/// stored below every position there is (the outputs of one backfill come newest first,
/// so the history reads in order), with its relation; no state changes and nobody is woken.
/// An event stored already at a position above 0 (a state event of the room as it was
/// joined) moves down there; one stored below 0 stays.
async fn old_event(
    txn: &Txn,
    room_id: String,
    event_id: String,
    event: Value,
) -> Result<(), ConsumerError> {
    let position = room_events::min_position(txn).await? - 1;
    if let Some(held) = room_events::select_by_id(txn, &event_id).await? {
        if held.position > 0 {
            room_events::move_to(txn, &event_id, position).await?;
            relations::set_position(txn, &event_id, position).await?;
        }
        return Ok(());
    }
    let state_key = text(&event, "state_key");
    room_events::insert(
        txn,
        &room_events::RoomEvent {
            position,
            room_id: room_id.clone(),
            event_id: event_id.clone(),
            event_type: text(&event, "type").unwrap_or_default(),
            sender: text(&event, "sender").unwrap_or_default(),
            state_key: state_key.clone(),
            json: event.to_string(),
            ..Default::default()
        },
    )
    .await?;
    if let (Some((target, rel_type)), None) = (relation_of(&event), &state_key) {
        let same_room = room_events::select_by_id(txn, &target)
            .await?
            .is_some_and(|t| t.room_id == room_id);
        if same_room {
            relations::insert(
                txn,
                &relations::Relation {
                    event_id,
                    room_id,
                    relates_to: target,
                    rel_type,
                    event_type: text(&event, "type").unwrap_or_default(),
                    sender: text(&event, "sender").unwrap_or_default(),
                    position,
                },
            )
            .await?;
        }
    }
    Ok(())
}

impl Consumer for RoomserverConsumer {
    type Output = RoomserverOutput;
    const STREAM: &'static str = crate::actors::roomserver::input::STREAM;
    const NAME: &'static str = "syncapi.roomserver";

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        output: RoomserverOutput,
    ) -> Result<(), ConsumerError> {
        let (
            room_id,
            event_id,
            event,
            adds_state,
            removes_state,
            redacts,
            redacted_by,
            transaction,
        ) = match output {
            RoomserverOutput::NewRoomEvent {
                room_id,
                event_id,
                event,
                adds_state,
                removes_state,
                redacts,
                redacted_by,
                transaction,
                ..
            } => (
                room_id,
                event_id,
                event,
                adds_state,
                removes_state,
                redacts,
                redacted_by,
                transaction,
            ),
            RoomserverOutput::RoomForgotten { room_id, user_id } => {
                current_state::forget(txn, &room_id, &user_id).await?;
                return Ok(());
            }
            RoomserverOutput::OldRoomEvent {
                room_id,
                event_id,
                event,
            } => return old_event(txn, room_id, event_id, event).await,
        };
        let event_type = text(&event, "type").unwrap_or_default();
        let sender = text(&event, "sender").unwrap_or_default();
        let state_key = text(&event, "state_key");
        let prev = match &state_key {
            Some(k) if adds_state.contains(&event_id) => {
                prev_state(txn, &room_id, &event_type, k).await?
            }
            _ => None,
        };
        let (sender_device, txn_id) = transaction.unzip();
        room_events::insert(
            txn,
            &room_events::RoomEvent {
                position,
                room_id: room_id.clone(),
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                sender: sender.clone(),
                state_key: state_key.clone(),
                json: event.to_string(),
                sender_device,
                txn_id,
                redacted_because: None,
                prev_state: prev,
            },
        )
        .await?;
        if let Some((target, rel_type)) = relation_of(&event) {
            // Only relations within the room count (an event of another room cannot attach
            // itself to this one's events).
            let same_room = room_events::select_by_id(txn, &target)
                .await?
                .is_some_and(|t| t.room_id == room_id);
            if state_key.is_none() && same_room {
                relations::insert(
                    txn,
                    &relations::Relation {
                        event_id: event_id.clone(),
                        room_id: room_id.clone(),
                        relates_to: target,
                        rel_type,
                        event_type: event_type.clone(),
                        sender: sender.clone(),
                        position,
                    },
                )
                .await?;
            }
        }
        if let Some(target) = &redacts {
            redact(txn, &room_id, target, &event, &event_id).await?;
        }
        if let Some(redaction_id) = &redacted_by {
            // The redaction came first (and was output then); it applies now.
            let Some(r) = room_events::select_by_id(txn, redaction_id).await? else {
                return Err(ConsumerError::Apply(format!(
                    "redaction {redaction_id} of {event_id} was never output"
                )));
            };
            let redaction: Value =
                serde_json::from_str(&r.json).map_err(|e| ConsumerError::Apply(e.to_string()))?;
            redact(txn, &room_id, &event_id, &redaction, redaction_id).await?;
        }
        for gone in &removes_state {
            current_state::delete_event(txn, gone).await?;
        }
        for added in &adds_state {
            // Every accepted event was output before or with this one.
            let Some(e) = room_events::select_by_id(txn, added).await? else {
                return Err(ConsumerError::Apply(format!(
                    "state event {added} was never output"
                )));
            };
            let Some(key) = &e.state_key else { continue };
            let json: Value = serde_json::from_str(&e.json).unwrap_or_default();
            let membership = (e.event_type == "m.room.member")
                .then(|| json["content"]["membership"].as_str().map(str::to_owned))
                .flatten();
            current_state::upsert(
                txn,
                &room_id,
                &e.event_type,
                key,
                &e.event_id,
                membership.as_deref(),
                position,
            )
            .await?;
            if let Some(m) = membership {
                self.pending
                    .memberships
                    .push((room_id.clone(), key.clone(), m));
            }
        }
        if !self.pending.rooms.contains(&room_id) {
            self.pending.rooms.push(room_id);
        }
        Ok(())
    }

    fn applied(&mut self, position: i64) {
        let mut advance = std::mem::take(&mut self.pending);
        advance.stream = Some(Stream::Pdu);
        advance.position = position;
        if let Some(n) = &self.notifier {
            n.do_send(advance);
        }
    }
}
