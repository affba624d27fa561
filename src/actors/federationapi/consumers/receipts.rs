//! Reads the syncapi's receipts stream (offset `federationapi.receipts`) and queues each
//! public receipt (`m.read`) of one of our users as an `m.receipt` EDU for the other servers
//! joined to its room. Private receipts (`m.read.private`) never leave the server. A receipt
//! going nowhere (a room without other servers) is passed over without a write.

use super::super::sender::Queues;
use super::super::storage::joined_members;
use super::roomserver::server_of;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::{now_ms, Conn, Db, Txn};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The federationapi's consumer of the `syncapi.receipts` stream.
pub struct ReceiptsConsumer {
    server_name: String,
    queues: Queues,
    /// Per stream position in the batch being applied, the destinations it queued for.
    touched: BTreeMap<i64, BTreeSet<String>>,
}

impl ReceiptsConsumer {
    pub fn new(server_name: String, queues: Queues) -> Self {
        ReceiptsConsumer {
            server_name,
            queues,
            touched: BTreeMap::new(),
        }
    }
}

impl ReceiptsConsumer {
    /// The servers a receipt goes to: the room's other servers, for a public read receipt
    /// of one of our users; none otherwise.
    async fn destinations(
        &self,
        db: &impl Conn,
        receipt: &Value,
    ) -> Result<BTreeSet<String>, ConsumerError> {
        let text = |k: &str| receipt.get(k).and_then(Value::as_str);
        let (Some(room_id), Some(user_id), Some(receipt_type), Some(_)) = (
            text("room_id"),
            text("user_id"),
            text("receipt_type"),
            text("event_id"),
        ) else {
            return Ok(BTreeSet::new());
        };
        let private = receipt.get("private").and_then(Value::as_bool) != Some(false);
        if private || receipt_type != "m.read" || server_of(user_id) != Some(&self.server_name) {
            return Ok(BTreeSet::new());
        }
        let mut targets: BTreeSet<String> = joined_members::select_servers(db, room_id)
            .await?
            .into_iter()
            .collect();
        targets.remove(&self.server_name);
        Ok(targets)
    }
}

impl Consumer for ReceiptsConsumer {
    type Output = Value;
    const STREAM: &'static str = crate::actors::syncapi::RECEIPTS_STREAM;
    const NAME: &'static str = "federationapi.receipts";

    async fn skip(&mut self, db: &Db, receipt: &Value) -> Result<bool, ConsumerError> {
        Ok(self.destinations(db, receipt).await?.is_empty())
    }

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        receipt: Value,
    ) -> Result<(), ConsumerError> {
        let targets = self.destinations(txn, &receipt).await?;
        if targets.is_empty() {
            return Ok(());
        }
        let text = |k: &str| receipt.get(k).and_then(Value::as_str).unwrap_or_default();
        let (room_id, user_id, event_id) = (text("room_id"), text("user_id"), text("event_id"));
        // When the receipt was made (older outputs do not say: when it is queued).
        let ts = receipt
            .get("ts")
            .and_then(Value::as_i64)
            .unwrap_or_else(now_ms);
        let mut data = json!({ "ts": ts });
        if let Some(thread) = receipt.get("thread_id").and_then(Value::as_str) {
            data["thread_id"] = json!(thread);
        }
        let edu = json!({
            "edu_type": "m.receipt",
            "content": {
                room_id: { "m.read": { user_id: { "event_ids": [event_id], "data": data } } }
            },
        });
        self.queues
            .enqueue(
                txn,
                &targets,
                false,
                &edu.to_string(),
                Some(format!("m.receipt|{room_id}|{user_id}").as_str()),
            )
            .await?;
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
