//! `InputTyping`: a local user's typing notification, queued as an `m.typing` EDU for the
//! other servers joined to the room.

use super::super::actor::Deps;
use super::super::consumers::roomserver::server_of;
use super::super::messages::InputTyping;
use super::super::storage::joined_members;
use super::super::FederationApiError;
use serde_json::json;
use std::collections::BTreeSet;

pub async fn handle(deps: &Deps, msg: InputTyping) -> Result<(), FederationApiError> {
    if server_of(&msg.user_id) != Some(deps.server_name.as_str()) {
        return Err(FederationApiError::BadRequest(format!(
            "{} is not a user of this server",
            msg.user_id
        )));
    }
    let mut targets: BTreeSet<String> = joined_members::select_servers(&deps.db, &msg.room_id)
        .await?
        .into_iter()
        .collect();
    targets.remove(deps.server_name.as_str());
    if targets.is_empty() {
        return Ok(());
    }
    let edu = json!({
        "edu_type": "m.typing",
        "content": { "room_id": msg.room_id, "user_id": msg.user_id, "typing": msg.typing },
    });
    let key = format!("m.typing|{}|{}", msg.room_id, msg.user_id);
    let txn = deps.db.begin().await?;
    deps.queues
        .enqueue(&txn, &targets, false, &edu.to_string(), Some(&key))
        .await?;
    txn.commit().await?;
    for destination in &targets {
        deps.queues.wake(destination);
    }
    Ok(())
}
