//! What other servers ask about this server's directory (signed requests): an alias of
//! ours (`/query/directory`) and the rooms published here (`/publicRooms`, GET and POST).

use crate::actors::roomserver::messages::{QueryJoinedServers, QueryRoomIdForAlias};
use crate::routing::client::directory::public_rooms;
use crate::routing::error::MatrixError;
use crate::routing::ruma::Ruma;
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::query::get_room_information;
use ruma::directory::RoomNetwork;
use ruma::UInt;
use serde_json::json;

/// # `GET /_matrix/federation/v1/query/directory`
///
/// The room an alias of this server points at and the servers in it (this one first, then
/// every server with a user joined, as Synapse lists them). 400 `M_INVALID_PARAM` for
/// another server's alias, 404 `M_NOT_FOUND` for an unknown one.
pub async fn get_room_information(
    state: web::Data<AppState>,
    req: Ruma<get_room_information::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let alias = &req.body.room_alias;
    let ours = state.server_name();
    if alias.server_name().as_str() != ours {
        return Err(MatrixError::invalid_param(
            "Room alias is not hosted on this homeserver",
        ));
    }
    let room_id = state
        .roomserver
        .send(QueryRoomIdForAlias {
            alias: alias.to_string(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found(format!("Room alias {alias} not found")))?;
    let joined = state
        .roomserver
        .send(QueryJoinedServers {
            room_id: room_id.clone(),
        })
        .await?
        .unwrap_or_default();
    let mut servers = vec![ours.to_owned()];
    servers.extend(joined.into_iter().filter(|s| s != ours));
    Ok(HttpResponse::Ok().json(json!({ "room_id": room_id, "servers": servers })))
}

/// Which rooms a `RoomNetwork` asks for: `true` for the Matrix rooms (all of them, or the
/// default network), `false` for one third-party network (this server bridges none, so
/// none), 400 for a network ID that is not `<appservice>|<network>` (Synapse's check).
fn matrix_rooms(network: &RoomNetwork) -> Result<bool, MatrixError> {
    match network {
        RoomNetwork::ThirdParty(id) => match id.split_once('|') {
            Some((service, network)) if !service.is_empty() && !network.is_empty() => Ok(false),
            _ => Err(MatrixError::invalid_param(format!(
                "Invalid third_party_instance_id {id}"
            ))),
        },
        _ => Ok(true),
    }
}

/// A limit as Synapse reads it for other servers: 0 means no limit.
fn limit_of(limit: Option<UInt>) -> Option<UInt> {
    limit.filter(|l| *l != UInt::MIN)
}

/// The empty page a third-party network gets.
fn no_rooms() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "chunk": [], "total_room_count_estimate": 0 }))
}

/// # `GET /_matrix/federation/v1/publicRooms`
///
/// The rooms published in this server's directory, paged (`limit`: none or 0 for all,
/// `since`), largest first.
pub async fn get_public_rooms(
    state: web::Data<AppState>,
    req: Ruma<get_public_rooms::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    if !matrix_rooms(&b.room_network)? {
        return Ok(no_rooms());
    }
    public_rooms(&state, limit_of(b.limit), b.since, None, &[]).await
}

/// # `POST /_matrix/federation/v1/publicRooms`
///
/// [`get_public_rooms`] with `filter.generic_search_term` (names, topics, aliases) and
/// `filter.room_types` (`null` in it: rooms without a type); the limit is 100 when not given,
/// as Synapse.
pub async fn get_public_rooms_filtered(
    state: web::Data<AppState>,
    req: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    if !matrix_rooms(&b.room_network)? {
        return Ok(no_rooms());
    }
    let limit = limit_of(Some(b.limit.unwrap_or(UInt::from(100u32))));
    public_rooms(
        &state,
        limit,
        b.since,
        b.filter.generic_search_term,
        &b.filter.room_types,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert!(matrix_rooms(&RoomNetwork::Matrix).unwrap());
        assert!(matrix_rooms(&RoomNetwork::All).unwrap());
        assert!(!matrix_rooms(&RoomNetwork::ThirdParty("irc|freenode".into())).unwrap());
        for bad in ["irc", "|x", "x|", ""] {
            assert!(
                matrix_rooms(&RoomNetwork::ThirdParty(bad.into())).is_err(),
                "{bad}"
            );
        }
        assert_eq!(limit_of(Some(UInt::MIN)), None);
        assert_eq!(limit_of(Some(UInt::from(5u32))), Some(UInt::from(5u32)));
        assert_eq!(limit_of(None), None);
    }
}
