//! `QueryRemoteProfile`: another server's user's profile, asked of that server
//! (`GET /_matrix/federation/v1/query/profile`).

use super::membership::enc;
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::{QueryRemoteProfile, RemoteProfile};
use crate::actors::federationapi::FederationApiError;
use serde_json::Value;

pub async fn handle(
    deps: &Deps,
    msg: QueryRemoteProfile,
) -> Result<RemoteProfile, FederationApiError> {
    if let Some(field) = &msg.field {
        if field != "displayname" && field != "avatar_url" {
            return Err(FederationApiError::BadRequest(format!(
                "unknown profile field {field:?}"
            )));
        }
    }
    let server = msg.user_id.server_name();
    let mut path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(msg.user_id.as_str())
    );
    if let Some(field) = &msg.field {
        path.push_str("&field=");
        path.push_str(field);
    }
    let answer = deps.client.get(server, &path).await?;
    let text = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(RemoteProfile {
        displayname: text("displayname"),
        avatar_url: text("avatar_url"),
    })
}
