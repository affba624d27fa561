//! `PerformRoomTagUpdate`: sets or removes one tag in a room's `m.tag` account data. The read
//! and the write happen in one transaction holding the row, so concurrent tag changes of the
//! same room do not lose each other.

use super::perform_account_data_update::announce;
use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformRoomTagUpdate;
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::UserApiError;
use serde_json::{json, Value};

pub async fn handle(deps: &Deps, msg: PerformRoomTagUpdate) -> Result<(), UserApiError> {
    let txn = deps.db.begin().await?;
    let room = Some(msg.room_id.as_str());
    let current = account_data::select_for_update(&txn, &msg.localpart, room, "m.tag").await?;
    let mut content: Value = current
        .and_then(|c| serde_json::from_str(&c).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if !content["tags"].is_object() {
        content["tags"] = json!({});
    }
    let tags = content["tags"]
        .as_object_mut()
        .ok_or_else(|| UserApiError::internal("m.tag without tags"))?;
    match msg.content {
        Some(c) => {
            tags.insert(msg.tag, c);
        }
        None => {
            tags.remove(&msg.tag);
        }
    }
    account_data::upsert(&txn, &msg.localpart, room, "m.tag", &content.to_string()).await?;
    announce(
        deps,
        txn,
        &msg.localpart,
        Some(msg.room_id),
        "m.tag".into(),
        content,
    )
    .await
}
