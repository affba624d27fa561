//! Reads the syncapi's presence stream (offset `federationapi.presence`) and queues each
//! presence change of one of our users as an `m.presence` EDU for the other servers that
//! share a room with them.

use super::super::sender::{enqueue, Queues};
use super::super::storage::joined_members;
use super::roomserver::server_of;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::Txn;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

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

impl Consumer for PresenceConsumer {
    type Output = Value;
    const STREAM: &'static str = crate::actors::syncapi::PRESENCE_STREAM;
    const NAME: &'static str = "federationapi.presence";

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        change: Value,
    ) -> Result<(), ConsumerError> {
        let (Some(user_id), Some(presence)) = (
            change.get("user_id").and_then(Value::as_str),
            change.get("presence").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        if server_of(user_id) != Some(self.server_name.as_str()) {
            return Ok(());
        }
        let mut targets: BTreeSet<String> = joined_members::select_servers_sharing(txn, user_id)
            .await?
            .into_iter()
            .collect();
        targets.remove(&self.server_name);
        if targets.is_empty() {
            return Ok(());
        }
        let mut update = json!({
            "user_id": user_id,
            "presence": presence,
            "last_active_ago": 0,
            "currently_active": presence == "online",
        });
        if let Some(msg) = change.get("status_msg").and_then(Value::as_str) {
            update["status_msg"] = json!(msg);
        }
        let edu = json!({"edu_type": "m.presence", "content": {"push": [update]}});
        enqueue(txn, &targets, false, &edu.to_string()).await?;
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
