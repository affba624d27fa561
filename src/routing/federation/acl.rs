//! The server ACL check every federation endpoint that names a room makes for the request's
//! origin: the room's current `m.room.server_acl` (fetched from the roomserver) judged by
//! [`ServerAcl`](crate::federation::acl::ServerAcl). Endpoints call [`ensure_allowed`]
//! before anything else about the room; code outside routing that holds a roomserver
//! handle (a transaction's PDUs, say) calls [`server_allowed`].

use crate::actors::roomserver::messages::QueryCurrentState;
use crate::actors::roomserver::{RoomserverError, RoomserverHandle};
use crate::federation::acl::ServerAcl;
use crate::routing::error::MatrixError;
use crate::routing::AppState;

/// Whether the room's current server ACL lets `server_name` take part; `true` for a room
/// without an ACL, and for a room unknown here (the caller answers for that).
pub async fn server_allowed(
    roomserver: &RoomserverHandle,
    room_id: &str,
    server_name: &str,
) -> Result<bool, RoomserverError> {
    let acl = roomserver
        .send(QueryCurrentState {
            room_id: room_id.to_owned(),
            types: vec![("m.room.server_acl".to_owned(), String::new())],
        })
        .await?
        .and_then(|events| events.into_iter().next());
    Ok(acl.is_none_or(|event| ServerAcl::from_content(&event.json["content"]).allows(server_name)))
}

/// 403 `M_FORBIDDEN` when the room's server ACL refuses the request's origin (Synapse's
/// `check_server_matches_acl`).
pub async fn ensure_allowed(
    state: &AppState,
    room_id: &str,
    origin: &str,
) -> Result<(), MatrixError> {
    if server_allowed(&state.roomserver, room_id, origin).await? {
        Ok(())
    } else {
        tracing::info!(room_id, origin, "request refused by the room's server ACL");
        Err(MatrixError::forbidden("Server is banned from room"))
    }
}
