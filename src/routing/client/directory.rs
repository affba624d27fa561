//! Room aliases and the public room directories of this server and (through the federationapi) of others.

use super::rooms::ensure_can_read;
use crate::actors::federationapi::messages::{QueryRemoteAlias, QueryRemotePublicRooms};
use crate::actors::roomserver::messages::{
    PerformPublishRoom, PerformRemoveRoomAlias, PerformSetRoomAlias, PublicRoomsPage,
    QueryAliasesForRoom, QueryPublicRooms, QueryPublishedRoom, QueryRoomIdForAlias,
};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::{aliases, Visibility};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, ServerName};
use serde_json::{json, Value};

/// Refuses aliases of other servers: they are resolved over federation, which comes later.
fn ensure_local(state: &AppState, alias: &RoomAliasId) -> Result<(), MatrixError> {
    if alias.server_name().as_str() == state.server_name() {
        Ok(())
    } else {
        Err(MatrixError::not_found(format!(
            "Room alias {alias} is on another server; federation is not supported yet"
        )))
    }
}

/// The room an alias points at, with servers to join it through: ours for our aliases, the
/// alias's server's answer (`QueryRemoteAlias`, `/query/directory`) for another server's.
pub async fn resolve_with_servers(
    state: &AppState,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<String>), MatrixError> {
    let not_found = || MatrixError::not_found(format!("Room alias {alias} not found"));
    if alias.server_name().as_str() != state.server_name() {
        let remote = state
            .federationapi
            .send(QueryRemoteAlias {
                alias: alias.to_string(),
            })
            .await?
            .ok_or_else(not_found)?;
        let room_id =
            OwnedRoomId::try_from(remote.room_id).map_err(|e| MatrixError::internal(e))?;
        let mut servers = remote.servers;
        // The alias's own server knows the room, whatever it listed.
        let own = alias.server_name().to_string();
        if !servers.contains(&own) {
            servers.push(own);
        }
        return Ok((room_id, servers));
    }
    let room = state
        .roomserver
        .send(QueryRoomIdForAlias {
            alias: alias.to_string(),
        })
        .await?
        .ok_or_else(not_found)?;
    let room_id = OwnedRoomId::try_from(room).map_err(|e| MatrixError::internal(e))?;
    Ok((room_id, vec![state.server_name().to_owned()]))
}

/// # `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn create_alias(
    state: web::Data<AppState>,
    req: Ruma<create_alias::v3::Request>,
) -> RumaResult<create_alias::v3::Response> {
    let alias = &req.body.room_alias;
    if alias.server_name().as_str() != state.server_name() {
        return Err(MatrixError::invalid_param("Aliases must be on this server"));
    }
    state
        .roomserver
        .send(PerformSetRoomAlias {
            alias: alias.to_string(),
            room_id: req.body.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
        })
        .await?;
    Ok(RumaResponse(create_alias::v3::Response::new()))
}

/// # `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn get_alias(
    state: web::Data<AppState>,
    req: Ruma<get_alias::v3::Request>,
) -> RumaResult<get_alias::v3::Response> {
    let (room_id, servers) = resolve_with_servers(&state, &req.body.room_alias).await?;
    let servers = servers
        .iter()
        .filter_map(|s| OwnedServerName::try_from(s.as_str()).ok())
        .collect();
    Ok(RumaResponse(get_alias::v3::Response::new(room_id, servers)))
}

/// # `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn delete_alias(
    state: web::Data<AppState>,
    req: Ruma<delete_alias::v3::Request>,
) -> RumaResult<delete_alias::v3::Response> {
    ensure_local(&state, &req.body.room_alias)?;
    let alias = req.body.room_alias.to_string();
    let room = state
        .roomserver
        .send(QueryRoomIdForAlias {
            alias: alias.clone(),
        })
        .await?;
    state
        .roomserver
        .send(PerformRemoveRoomAlias {
            alias: alias.clone(),
            user_id: req.sender.user_id.to_string(),
        })
        .await?;
    if let Some(room) = room {
        drop_from_canonical_alias(&state, &req.sender, &room, &alias).await;
    }
    Ok(RumaResponse(delete_alias::v3::Response::new()))
}

/// Takes a deleted alias out of the room's `m.room.canonical_alias` (as Synapse), sent by the
/// user who deleted it; when they may not send it, the event stays as it is (logged).
async fn drop_from_canonical_alias(state: &AppState, sender: &Authed, room: &str, alias: &str) {
    let wanted = vec![("m.room.canonical_alias".to_owned(), String::new())];
    let Ok(events) = super::rooms::current_state(state, room, wanted).await else {
        return;
    };
    let Some(mut content) = events.into_iter().next().map(|e| e.json["content"].clone()) else {
        return;
    };
    let mut changed = false;
    if content["alias"] == alias {
        if let Some(c) = content.as_object_mut() {
            c.remove("alias");
        }
        changed = true;
    }
    if let Some(alt) = content["alt_aliases"].as_array_mut() {
        let before = alt.len();
        alt.retain(|a| a != alias);
        changed |= alt.len() != before;
    }
    if !changed {
        return;
    }
    let sent = super::rooms::send(
        state,
        sender,
        room,
        "m.room.canonical_alias",
        Some(""),
        content,
        None,
    )
    .await;
    if let Err(e) = sent {
        tracing::warn!(room_id = %room, errcode = e.errcode, "canonical alias not updated after alias deletion");
    }
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub async fn get_room_aliases(
    state: web::Data<AppState>,
    req: Ruma<aliases::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let room = req.body.room_id.as_str();
    ensure_can_read(&state, room, &req.sender).await?;
    let aliases = state
        .roomserver
        .send(QueryAliasesForRoom {
            room_id: room.to_owned(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "aliases": aliases })))
}

/// # `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn get_room_visibility(
    state: web::Data<AppState>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let published = state
        .roomserver
        .send(QueryPublishedRoom {
            room_id: req.body.room_id.to_string(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))?;
    let visibility = if published { "public" } else { "private" };
    Ok(HttpResponse::Ok().json(json!({ "visibility": visibility })))
}

/// # `PUT /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn set_room_visibility(
    state: web::Data<AppState>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> RumaResult<set_room_visibility::v3::Response> {
    let publish = match req.body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => {
            return Err(MatrixError::invalid_param(
                "visibility must be public or private",
            ))
        }
    };
    state
        .roomserver
        .send(PerformPublishRoom {
            room_id: req.body.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            publish,
        })
        .await?;
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}

fn page_json(page: PublicRoomsPage) -> Value {
    let chunk: Vec<Value> = page
        .chunk
        .into_iter()
        .map(|r| {
            let mut v = json!({
                "room_id": r.room_id,
                "num_joined_members": r.num_joined_members,
                "world_readable": r.world_readable,
                "guest_can_join": r.guest_can_join,
            });
            for (k, val) in [
                ("name", r.name),
                ("topic", r.topic),
                ("canonical_alias", r.canonical_alias),
                ("avatar_url", r.avatar_url),
                ("join_rule", r.join_rule),
                ("room_type", r.room_type),
            ] {
                if let Some(val) = val {
                    v[k] = json!(val);
                }
            }
            v
        })
        .collect();
    let mut out = json!({ "chunk": chunk, "total_room_count_estimate": page.total });
    if let Some(n) = page.next_batch {
        out["next_batch"] = json!(n);
    }
    if let Some(p) = page.prev_batch {
        out["prev_batch"] = json!(p);
    }
    out
}

/// A page of this server's public room directory, as the client and federation APIs answer.
pub(crate) async fn public_rooms(
    state: &AppState,
    limit: Option<ruma::UInt>,
    since: Option<String>,
    search: Option<String>,
    room_types: &[ruma::directory::RoomTypeFilter],
) -> Result<HttpResponse, MatrixError> {
    let room_types = (!room_types.is_empty()).then(|| {
        room_types
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect()
    });
    let page = state
        .roomserver
        .send(QueryPublicRooms {
            limit: limit.map(|l| u32::try_from(u64::from(l)).unwrap_or(u32::MAX)),
            since,
            search,
            room_types,
        })
        .await
        .map_err(|e| match e {
            crate::actors::roomserver::RoomserverError::BadRequest(why) => {
                MatrixError::invalid_param(why)
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(page_json(page)))
}

/// Another server's directory, asked through the federationapi for a signed-in user (as
/// Synapse, which lists its own rooms to anyone but proxies only for its users).
async fn remote_public_rooms(
    state: &AppState,
    signed_in: bool,
    msg: QueryRemotePublicRooms,
) -> Result<HttpResponse, MatrixError> {
    if !signed_in {
        return Err(MatrixError::new(
            "M_MISSING_TOKEN",
            "Listing another server's rooms needs an access token",
        ));
    }
    let page = state.federationapi.send(msg).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// The server a `/publicRooms` request names, when it is not this one.
fn other_server<'a>(state: &AppState, server: Option<&'a ServerName>) -> Option<&'a ServerName> {
    server.filter(|s| s.as_str() != state.server_name())
}

/// `room_network` as the federation API says it: (`include_all_networks`,
/// `third_party_instance_id`).
fn network(n: &ruma::directory::RoomNetwork) -> (bool, Option<String>) {
    match n {
        ruma::directory::RoomNetwork::All => (true, None),
        ruma::directory::RoomNetwork::ThirdParty(id) => (false, Some(id.clone())),
        _ => (false, None),
    }
}

/// # `GET /_matrix/client/v3/publicRooms`
pub async fn get_public_rooms(
    state: web::Data<AppState>,
    http: HttpRequest,
    req: Ruma<get_public_rooms::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    if let Some(server) = other_server(&state, b.server.as_deref()) {
        let msg = QueryRemotePublicRooms {
            server: server.to_owned(),
            limit: b.limit.map(u64::from),
            since: b.since,
            filter: None,
            include_all_networks: false,
            third_party_instance_id: None,
        };
        let signed_in = crate::routing::ruma::signed_in(&state, &http, &req.client).await?;
        return remote_public_rooms(&state, signed_in, msg).await;
    }
    public_rooms(&state, b.limit, b.since, None, &[]).await
}

/// # `POST /_matrix/client/v3/publicRooms`
pub async fn get_public_rooms_filtered(
    state: web::Data<AppState>,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    if let Some(server) = other_server(&state, b.server.as_deref()) {
        let mut filter = serde_json::Map::new();
        if let Some(term) = &b.filter.generic_search_term {
            filter.insert("generic_search_term".into(), json!(term));
        }
        if !b.filter.room_types.is_empty() {
            let types: Vec<Value> = b
                .filter
                .room_types
                .iter()
                .map(|t| json!(t.as_str()))
                .collect();
            filter.insert("room_types".into(), json!(types));
        }
        let (include_all_networks, third_party_instance_id) = network(&b.room_network);
        let msg = QueryRemotePublicRooms {
            server: server.to_owned(),
            limit: b.limit.map(u64::from),
            since: b.since,
            filter: (!filter.is_empty()).then_some(Value::Object(filter)),
            include_all_networks,
            third_party_instance_id,
        };
        return remote_public_rooms(&state, true, msg).await;
    }
    public_rooms(
        &state,
        b.limit,
        b.since,
        b.filter.generic_search_term,
        &b.filter.room_types,
    )
    .await
}
