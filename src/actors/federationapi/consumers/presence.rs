//! Reads the syncapi's presence stream (offset `federationapi.presence`) and queues each
//! presence change of one of our users as an `m.presence` EDU for the other servers that
//! share a room with them.

use super::super::sender::Queues;
use super::super::storage::joined_members;
use super::roomserver::server_of;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::{Conn, Db, Txn};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// An `m.presence` EDU (JSON text) with one user's presence, from `presence`'s
/// `presence`, `last_active_ago`, `currently_active` and `status_msg` (left out when not a
/// string), and the queue's collapse key for that user.
pub fn presence_edu(user_id: &str, presence: &Value) -> (String, String) {
    let mut update = json!({
        "user_id": user_id,
        "presence": presence.get("presence"),
        "last_active_ago": presence.get("last_active_ago").cloned().unwrap_or(json!(0)),
        "currently_active": presence.get("currently_active").cloned().unwrap_or(json!(false)),
    });
    if let Some(msg) = presence.get("status_msg").and_then(Value::as_str) {
        update["status_msg"] = json!(msg);
    }
    let edu = json!({"edu_type": "m.presence", "content": {"push": [update]}});
    (edu.to_string(), format!("m.presence|{user_id}"))
}

/// The federationapi's consumer of the `syncapi.presence` stream.
pub struct PresenceConsumer {
    server_name: String,
    queues: Queues,
    /// Per stream position in the batch being applied, the destinations it queued for.
    touched: BTreeMap<i64, BTreeSet<String>>,
}

impl PresenceConsumer {
    pub fn new(server_name: String, queues: Queues) -> Self {
        PresenceConsumer {
            server_name,
            queues,
            touched: BTreeMap::new(),
        }
    }
}

impl PresenceConsumer {
    /// The servers a presence change goes to: those sharing a room with the user, for one
    /// of our users; none otherwise.
    async fn destinations(
        &self,
        db: &impl Conn,
        change: &Value,
    ) -> Result<BTreeSet<String>, ConsumerError> {
        let (Some(user_id), Some(_)) = (
            change.get("user_id").and_then(Value::as_str),
            change.get("presence").and_then(Value::as_str),
        ) else {
            return Ok(BTreeSet::new());
        };
        if server_of(user_id) != Some(self.server_name.as_str()) {
            return Ok(BTreeSet::new());
        }
        let mut targets: BTreeSet<String> = joined_members::select_servers_sharing(db, user_id)
            .await?
            .into_iter()
            .collect();
        targets.remove(&self.server_name);
        Ok(targets)
    }
}

impl Consumer for PresenceConsumer {
    type Output = Value;
    const STREAM: &'static str = crate::actors::syncapi::PRESENCE_STREAM;
    const NAME: &'static str = "federationapi.presence";

    /// Only what never leaves the server is passed over (another server's user's presence):
    /// who shares a room with the user depends on the roomserver consumer's progress, which
    /// an output read again after a crash would see further on.
    async fn skip(&mut self, _db: &Db, change: &Value) -> Result<bool, ConsumerError> {
        let user_id = change.get("user_id").and_then(Value::as_str);
        Ok(user_id.and_then(server_of) != Some(self.server_name.as_str()))
    }

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        change: Value,
    ) -> Result<(), ConsumerError> {
        let targets = self.destinations(txn, &change).await?;
        if targets.is_empty() {
            return Ok(());
        }
        let text = |k: &str| change.get(k).and_then(Value::as_str).unwrap_or_default();
        let (user_id, presence) = (text("user_id"), text("presence"));
        let update = json!({
            "presence": presence,
            "last_active_ago": 0,
            "currently_active": presence == "online",
            "status_msg": change.get("status_msg"),
        });
        let (edu, key) = presence_edu(user_id, &update);
        self.queues
            .enqueue(txn, &targets, false, &edu, Some(key.as_str()))
            .await?;
        self.touched.insert(position, targets);
        Ok(())
    }

    fn applied(&mut self, position: i64) {
        self.queues.wake_applied(&mut self.touched, position);
    }
}
