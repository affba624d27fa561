//! Reads the roomserver's stream (offset `federationapi.roomserver`): keeps who is joined to
//! each room (`federationapi_joined_members`, in stream order) and queues every event this
//! server originated (its sender is one of our users), or accepted on another server's behalf
//! (`send_on_behalf_of`: a `send_join`/`send_leave`, sent on to everyone but that server), for
//! each other server in the room at
//! the event: the servers with joined members before it, plus, for a membership change of
//! another server's user, that user's server (so a kicked, banned or uninvited server hears
//! of it). Queued items commit with the consumer's offset; after each batch the senders of
//! the destinations it touched are woken.
//!
//! The membership table follows the output's `adds_state` and `removes_state`: the event
//! itself when it is a member event that entered the state, and the other member events a
//! fork resolution brought in (read with `QueryEvent`) or pushed out.

use super::super::sender::{enqueue, Queues};
use super::super::storage::joined_members;
use crate::actors::roomserver::messages::{QueryEvent, RoomserverOutput};
use crate::actors::roomserver::RoomserverHandle;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::Txn;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The federationapi's consumer of the `roomserver` stream.
pub struct RoomserverConsumer {
    /// This server's name: events of its users are sent, and it is never a destination.
    server_name: String,
    roomserver: RoomserverHandle,
    queues: Queues,
    /// Per stream position in the batch being applied, the destinations it queued for
    /// (a rolled-back batch applied again writes the same entries).
    touched: BTreeMap<i64, BTreeSet<String>>,
}

impl RoomserverConsumer {
    pub fn new(server_name: String, roomserver: RoomserverHandle, queues: Queues) -> Self {
        RoomserverConsumer {
            server_name,
            roomserver,
            queues,
            touched: BTreeMap::new(),
        }
    }

    /// A member event's effect on the joined members: the user joined, or not any more.
    async fn apply_member(
        &self,
        txn: &Txn,
        room_id: &str,
        event_id: &str,
        event: &Value,
    ) -> Result<(), ConsumerError> {
        if event.get("type").and_then(Value::as_str) != Some("m.room.member") {
            return Ok(());
        }
        let Some(user_id) = event.get("state_key").and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(server) = server_of(user_id) else {
            return Ok(());
        };
        let membership = event
            .get("content")
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str);
        if membership == Some("join") {
            joined_members::upsert(txn, room_id, user_id, server, event_id).await?;
        } else {
            joined_members::delete(txn, room_id, user_id).await?;
        }
        Ok(())
    }
}

/// The server part of a user ID.
pub fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

impl Consumer for RoomserverConsumer {
    type Output = RoomserverOutput;
    const STREAM: &'static str = crate::actors::roomserver::input::STREAM;
    const NAME: &'static str = "federationapi.roomserver";

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
            send_on_behalf_of,
            ..
        } = output
        else {
            return Ok(());
        };
        let before = joined_members::select_servers(txn, &room_id).await?;
        for id in &removes_state {
            joined_members::delete_by_event(txn, &room_id, id).await?;
        }
        for id in &adds_state {
            if *id == event_id {
                self.apply_member(txn, &room_id, id, &event).await?;
                continue;
            }
            let stored = self
                .roomserver
                .send(QueryEvent {
                    event_id: id.clone(),
                })
                .await
                .map_err(|e| ConsumerError::Apply(format!("reading state event {id}: {e}")))?;
            if let Some(stored) = stored {
                self.apply_member(txn, &room_id, id, &stored.json).await?;
            }
        }
        let sender = event.get("sender").and_then(Value::as_str).unwrap_or("");
        if server_of(sender) != Some(self.server_name.as_str()) && send_on_behalf_of.is_none() {
            return Ok(());
        }
        let mut targets: BTreeSet<String> = before.into_iter().collect();
        if event.get("type").and_then(Value::as_str) == Some("m.room.member") {
            if let Some(server) = event
                .get("state_key")
                .and_then(Value::as_str)
                .and_then(server_of)
            {
                targets.insert(server.to_owned());
            }
        }
        targets.remove(&self.server_name);
        // A join or leave sent on another server's behalf: that server has it already.
        if let Some(origin) = &send_on_behalf_of {
            targets.remove(origin);
        }
        if targets.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(&event)
            .map_err(|e| ConsumerError::Apply(format!("event {event_id}: {e}")))?;
        enqueue(txn, &targets, true, &json).await?;
        self.touched.insert(position, targets);
        Ok(())
    }

    fn applied(&mut self, position: i64) {
        let later = self.touched.split_off(&(position + 1));
        let done = std::mem::replace(&mut self.touched, later);
        let woken: BTreeSet<String> = done.into_values().flatten().collect();
        for destination in woken {
            self.queues.wake(&destination);
        }
    }
}
