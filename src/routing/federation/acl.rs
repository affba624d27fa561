//! The server ACL check every federation endpoint that names a room makes for the request's
//! origin: the room's current `m.room.server_acl` (fetched from the roomserver) judged by
//! [`ServerAcl`](crate::federation::acl::ServerAcl). Endpoints call [`ensure_allowed`]
//! before anything else about the room; code outside routing that holds a roomserver
//! handle (a transaction's PDUs, say) calls [`server_allowed`] itself.

pub use crate::federation::acl::server_allowed;
use crate::routing::error::MatrixError;
use crate::routing::AppState;

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
