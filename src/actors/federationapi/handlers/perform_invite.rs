//! `PerformInvite`: invites another server's user (`PUT /_matrix/federation/v2/invite`),
//! checking the invitee's server's signature on what it returns.

use super::membership::{bad_answer, enc, fill_template};
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::{PerformInvite, QueryServerKeys};
use crate::actors::federationapi::FederationApiError;
use ruma::serde::Base64;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, OwnedServerSigningKeyId};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub async fn handle(deps: &Deps, msg: PerformInvite) -> Result<Value, FederationApiError> {
    let text = |k: &str| msg.template[k].as_str().unwrap_or_default().to_owned();
    let (room_id, sender, invitee) = (text("room_id"), text("sender"), text("state_key"));
    let server: OwnedServerName = invitee
        .split_once(':')
        .and_then(|(_, s)| OwnedServerName::try_from(s).ok())
        .ok_or_else(|| FederationApiError::BadRequest(format!("{invitee} is not a user ID")))?;
    let name = server.as_str();
    let content = msg.template["content"].clone();
    let pdu = fill_template(
        deps,
        deps.server_name.as_str(),
        &msg.room_version,
        &msg.template,
        (&room_id, &sender, &invitee),
        "invite",
        &content,
    )?;
    let path = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        enc(&room_id),
        enc(pdu.event_id.as_str())
    );
    let body = json!({
        "room_version": msg.room_version,
        "event": pdu.json,
        "invite_room_state": msg.invite_room_state,
    });
    let answer = deps
        .client
        .json(http::Method::PUT, &server, &path, Some(&body), true, None)
        .await?;
    let returned: CanonicalJsonObject = serde_json::from_value(answer["event"].clone())
        .map_err(|_| bad_answer(name, "the invite answer has no event"))?;
    // The same event (its ID covers everything but signatures and unsigned data)...
    let id = crate::pdu::event_id_of(&returned, &msg.room_version)
        .map_err(|e| bad_answer(name, e.to_string()))?;
    if id != pdu.event_id {
        return Err(bad_answer(name, "the returned invite is another event"));
    }
    // ...signed by the invitee's server.
    check_signature(deps, &returned, &server, &msg.room_version).await?;
    serde_json::to_value(&returned).map_err(|e| FederationApiError::internal(e))
}

/// The event's signature by `server` verifies with that server's keys (fetched as for
/// requests, valid now: the invite was signed just now).
async fn check_signature(
    deps: &Deps,
    event: &CanonicalJsonObject,
    server: &OwnedServerName,
    room_version: &str,
) -> Result<(), FederationApiError> {
    let name = server.as_str();
    let signatures = event
        .get("signatures")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|s| s.get(name))
        .and_then(CanonicalJsonValue::as_object)
        .cloned()
        .ok_or_else(|| {
            bad_answer(
                name,
                "the returned invite is not signed by the invitee's server",
            )
        })?;
    let key_ids: Vec<OwnedServerSigningKeyId> = signatures
        .keys()
        .filter_map(|k| OwnedServerSigningKeyId::try_from(k.as_str()).ok())
        .collect();
    let now = crate::storage::now_ms();
    let keys = super::query_server_keys::handle(
        deps,
        QueryServerKeys {
            server_name: server.clone(),
            key_ids,
            minimum_valid_until_ts: now,
        },
    )
    .await?;
    let mut map = BTreeMap::new();
    for (id, key) in keys.keys {
        if key.expired_ts.is_none_or(|t| t >= now) {
            if let Ok(k) = Base64::parse(&key.key) {
                map.insert(id, k);
            }
        }
    }
    let key_map = BTreeMap::from([(name.to_owned(), map)]);
    // Only that server's signature, over the redacted event.
    let mut redacted = crate::pdu::redact(event.clone(), room_version)
        .map_err(|e| bad_answer(name, e.to_string()))?;
    redacted.insert(
        "signatures".to_owned(),
        CanonicalJsonValue::Object(CanonicalJsonObject::from([(
            name.to_owned(),
            CanonicalJsonValue::Object(signatures),
        )])),
    );
    ruma::signatures::verify_json(&key_map, &redacted).map_err(|e| {
        bad_answer(
            name,
            format!("the invitee's server's signature does not verify: {e}"),
        )
    })
}
