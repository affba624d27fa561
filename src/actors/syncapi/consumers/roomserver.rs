//! Reads the roomserver's stream into the syncapi's tables: each accepted event at its stream
//! position, and the current-state changes it reports. Applied exactly once with the
//! consumer's offset (see `bus::run_consumer`).

use super::super::storage::{current_state, room_events};
use crate::actors::roomserver::messages::RoomserverOutput;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::Txn;

/// The syncapi's consumer of the `roomserver` stream.
pub struct RoomserverConsumer;

fn text(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_owned)
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
        let RoomserverOutput::NewRoomEvent {
            room_id,
            event_id,
            event,
            adds_state,
            removes_state,
        } = output;
        room_events::insert(
            txn,
            &room_events::RoomEvent {
                position,
                room_id: room_id.clone(),
                event_id,
                event_type: text(&event, "type").unwrap_or_default(),
                sender: text(&event, "sender").unwrap_or_default(),
                state_key: text(&event, "state_key"),
                json: event.to_string(),
            },
        )
        .await?;
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
            let json: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
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
        }
        Ok(())
    }
}
