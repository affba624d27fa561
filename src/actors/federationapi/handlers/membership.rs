//! What the membership handlers share: filling in and signing another server's membership
//! template (`make_join`, `make_leave`, `make_knock`; our own invite templates too), and
//! path encoding.

use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::FederationApiError;
use crate::pdu::{Pdu, PduBuilder};
use crate::room_versions::STABLE;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ruma::events::TimelineEventType;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId, UInt,
};
use serde_json::Value;
use std::collections::HashMap;

/// What stays as it is in a path segment (the spec's IDs are percent-encoded otherwise).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded for a path segment or query value.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// An answer that is not what the API promises, as the caller sees it.
pub fn bad_answer(server: &str, why: impl Into<String>) -> FederationApiError {
    FederationApiError::Remote {
        server: server.to_owned(),
        status: 0,
        errcode: String::new(),
        error: why.into(),
    }
}

/// The IDs of a template's `prev_events` or `auth_events`, with the reference hashes that
/// event format v1 writes next to them.
fn references(
    server: &str,
    template: &Value,
    field: &str,
    hashes: &mut HashMap<OwnedEventId, String>,
) -> Result<Vec<OwnedEventId>, FederationApiError> {
    let items = template[field]
        .as_array()
        .ok_or_else(|| bad_answer(server, format!("the template has no {field}")))?;
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let (id, hash) = match item {
            Value::String(id) => (id.as_str(), None),
            Value::Array(pair) => (
                pair.first().and_then(Value::as_str).unwrap_or_default(),
                pair.get(1).and_then(|h| h["sha256"].as_str()),
            ),
            _ => ("", None),
        };
        let id = OwnedEventId::try_from(id)
            .map_err(|_| bad_answer(server, format!("the template's {field} are not event IDs")))?;
        if let Some(hash) = hash {
            hashes.insert(id.clone(), hash.to_owned());
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Fills in a membership template from `server` and signs it: it must be an `m.room.member`
/// event of `room_id` by `sender` about `state_key`; `content` (a JSON object) gets
/// `membership`, and the event gets our timestamp. The template's references and depth are
/// kept; the room version's format decides the rest.
pub fn fill_template(
    deps: &Deps,
    server: &str,
    room_version: &str,
    template: &Value,
    expect: (&str, &str, &str),
    membership: &str,
    content: &Value,
) -> Result<Pdu, FederationApiError> {
    let (room_id, sender, state_key) = expect;
    if template["type"] != "m.room.member"
        || template["room_id"] != room_id
        || template["sender"] != sender
        || template["state_key"] != state_key
    {
        return Err(bad_answer(
            server,
            "the membership template is not for this room and user",
        ));
    }
    let mut hashes = HashMap::new();
    let prev_events = references(server, template, "prev_events", &mut hashes)?;
    let auth_events = references(server, template, "auth_events", &mut hashes)?;
    let depth = template["depth"]
        .as_u64()
        .and_then(|d| UInt::try_from(d).ok())
        .ok_or_else(|| bad_answer(server, "the template has no depth"))?;
    let mut content = match content {
        Value::Object(m) => m.clone(),
        _ => Default::default(),
    };
    content.insert("membership".to_owned(), membership.into());
    // A restricted room's resident server names the user who vouches for a join; the
    // field must stay as given (the resident server signs the event for it).
    if membership == "join" {
        if let Some(via) = template["content"]["join_authorised_via_users_server"].as_str() {
            content.insert("join_authorised_via_users_server".to_owned(), via.into());
        }
    }
    let bad = |e: &dyn std::fmt::Display| bad_answer(server, e.to_string());
    PduBuilder {
        room_version: RoomVersionId::try_from(room_version).map_err(|e| bad(&e))?,
        room_id: Some(OwnedRoomId::try_from(room_id).map_err(|e| bad(&e))?),
        sender: OwnedUserId::try_from(sender).map_err(|e| bad(&e))?,
        event_type: TimelineEventType::RoomMember,
        state_key: Some(state_key.to_owned()),
        content: Value::Object(content),
        redacts: None,
        prev_events,
        auth_events,
        reference_hashes: hashes,
        depth,
        origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
    }
    .build(&deps.key, &deps.server_name)
    .map_err(|e| bad_answer(server, format!("cannot build the event: {e}")))
}

/// What one membership exchange with a resident server gave: the room's version, our
/// signed event, it as JSON (what was sent), and the `send_*` answer.
pub struct Exchanged {
    pub room_version: String,
    pub pdu: Pdu,
    pub sent: Value,
    pub answer: Value,
}

/// One `make_{membership}` / `send_{membership}` exchange with `server` for `user_id` in
/// `room_id` (`query`: the make call's query string, e.g. the room versions offered): the
/// template asked for, its room version checked against the ones this server supports,
/// filled and signed ([`fill_template`]), and sent (`send_knock` is v1, the others v2).
pub async fn make_and_send(
    deps: &Deps,
    server: &ruma::ServerName,
    (room_id, user_id): (&str, &str),
    membership: &str,
    query: &str,
    content: &Value,
) -> Result<Exchanged, FederationApiError> {
    let name = server.as_str();
    let path = format!(
        "/_matrix/federation/v1/make_{membership}/{}/{}{query}",
        enc(room_id),
        enc(user_id),
    );
    let made = deps.client.get(server, &path).await?;
    let room_version = made["room_version"].as_str().unwrap_or("1").to_owned();
    if !STABLE.contains(&room_version.as_str()) {
        return Err(bad_answer(
            name,
            format!("room version {room_version} is not one this server supports"),
        ));
    }
    let pdu = fill_template(
        deps,
        name,
        &room_version,
        &made["event"],
        (room_id, user_id, user_id),
        membership,
        content,
    )?;
    let send_version = if membership == "knock" { "v1" } else { "v2" };
    let path = format!(
        "/_matrix/federation/{send_version}/send_{membership}/{}/{}",
        enc(room_id),
        enc(pdu.event_id.as_str())
    );
    let sent = serde_json::to_value(&pdu.json).map_err(|e| FederationApiError::internal(e))?;
    let answer = deps
        .client
        .json(http::Method::PUT, server, &path, Some(&sent), true, None)
        .await?;
    Ok(Exchanged {
        room_version,
        pdu,
        sent,
        answer,
    })
}

/// The servers to ask, in order, once each, without ours.
pub fn candidates(deps: &Deps, servers: &[String]) -> Vec<ruma::OwnedServerName> {
    let mut out: Vec<ruma::OwnedServerName> = Vec::new();
    for s in servers {
        if let Ok(name) = ruma::OwnedServerName::try_from(s.as_str()) {
            if name != deps.server_name && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// The error when no server could be asked.
pub fn no_server(what: &str) -> FederationApiError {
    FederationApiError::BadRequest(format!("no server to {what} through"))
}
