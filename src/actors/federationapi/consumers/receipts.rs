//! Reads the syncapi's receipts stream (offset `federationapi.receipts`) and queues each
//! public receipt (`m.read`) of one of our users as an `m.receipt` EDU for the other servers
//! joined to its room. Private receipts (`m.read.private`) never leave the server. The
//! receipt's `ts` is when it is queued (the stream does not carry it).

use super::super::sender::{enqueue, Queues};
use super::super::storage::joined_members;
use super::roomserver::server_of;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::{now_ms, Txn};
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

impl Consumer for ReceiptsConsumer {
    type Output = Value;
    const STREAM: &'static str = crate::actors::syncapi::RECEIPTS_STREAM;
    const NAME: &'static str = "federationapi.receipts";

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        receipt: Value,
    ) -> Result<(), ConsumerError> {
        let text = |k: &str| receipt.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(room_id), Some(user_id), Some(receipt_type), Some(event_id)) = (
            text("room_id"),
            text("user_id"),
            text("receipt_type"),
            text("event_id"),
        ) else {
            return Ok(());
        };
        let private = receipt.get("private").and_then(Value::as_bool) != Some(false);
        if private
            || receipt_type != "m.read"
            || server_of(&user_id) != Some(self.server_name.as_str())
        {
            return Ok(());
        }
        let mut targets: BTreeSet<String> = joined_members::select_servers(txn, &room_id)
            .await?
            .into_iter()
            .collect();
        targets.remove(&self.server_name);
        if targets.is_empty() {
            return Ok(());
        }
        let mut data = json!({ "ts": now_ms() });
        if let Some(thread) = text("thread_id") {
            data["thread_id"] = json!(thread);
        }
        let edu = json!({
            "edu_type": "m.receipt",
            "content": {
                room_id: { "m.read": { user_id: { "event_ids": [event_id], "data": data } } }
            },
        });
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
