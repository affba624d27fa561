//! Reads the syncapi's receipts stream (offset `federationapi.receipts`) and queues each
//! public receipt (`m.read`) of one of our users as an `m.receipt` EDU for the other servers
//! joined to its room. Private receipts (`m.read.private`) never leave the server; they and
//! other servers' receipts are passed over without a write.

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
    /// Whether a receipt may leave this server: a public read receipt of one of our users.
    fn is_sent(&self, receipt: &Value) -> bool {
        let text = |k: &str| receipt.get(k).and_then(Value::as_str);
        let private = receipt.get("private").and_then(Value::as_bool) != Some(false);
        text("room_id").is_some()
            && text("event_id").is_some()
            && !private
            && text("receipt_type") == Some("m.read")
            && text("user_id").and_then(server_of) == Some(self.server_name.as_str())
    }

    /// The servers a receipt goes to: the room's other servers, for a receipt that may leave
    /// this server; none otherwise.
    async fn destinations(
        &self,
        db: &impl Conn,
        receipt: &Value,
    ) -> Result<BTreeSet<String>, ConsumerError> {
        if !self.is_sent(receipt) {
            return Ok(BTreeSet::new());
        }
        let room_id = receipt
            .get("room_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
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

    /// Only what never leaves the server is passed over: whether a room has other servers
    /// depends on the roomserver consumer's progress, which an output read again after a
    /// crash would see further on (and send what was not sent before).
    async fn skip(&mut self, _db: &Db, receipt: &Value) -> Result<bool, ConsumerError> {
        Ok(!self.is_sent(receipt))
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
        self.queues.wake_applied(&mut self.touched, position);
    }
}
