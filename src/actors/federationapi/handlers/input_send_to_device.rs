//! `InputSendToDevice`: a local user's to-device messages for other servers' users, queued as
//! one `m.direct_to_device` EDU per destination server.

use super::super::actor::Deps;
use super::super::consumers::roomserver::server_of;
use super::super::messages::InputSendToDevice;
use super::super::FederationApiError;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub async fn handle(deps: &Deps, msg: InputSendToDevice) -> Result<(), FederationApiError> {
    let ours = deps.server_name.as_str();
    if server_of(&msg.sender) != Some(ours) {
        return Err(FederationApiError::BadRequest(format!(
            "{} is not a user of this server",
            msg.sender
        )));
    }
    let mut by_server: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (user, devices) in msg.messages {
        let Some(server) = server_of(&user).filter(|s| *s != ours).map(str::to_owned) else {
            return Err(FederationApiError::BadRequest(format!(
                "{user} is not a user of another server"
            )));
        };
        by_server
            .entry(server)
            .or_default()
            .insert(user, json!(devices));
    }
    let txn = deps.db.begin().await?;
    for (server, messages) in &by_server {
        let edu = json!({
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": msg.sender,
                "type": msg.event_type,
                "message_id": msg.message_id,
                "messages": messages,
            },
        });
        deps.queues
            .enqueue(&txn, [server], false, &edu.to_string(), None)
            .await?;
    }
    txn.commit().await?;
    for server in by_server.keys() {
        deps.queues.wake(server);
    }
    Ok(())
}
