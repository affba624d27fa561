//! Memberships as the roomserver keeps them (`roomserver_memberships`): reading one, and
//! forgetting a room a user left. A forget is announced on the `roomserver` stream
//! (`RoomForgotten`, in the transaction that marks it), so the syncapi hides the room from
//! the user's reads in the stream's order.

use super::error::RoomserverError;
use super::input::{Deps, STREAM};
use super::messages::{MembershipState, RoomserverOutput};
use super::storage::memberships;
use crate::bus;
use crate::storage::Db;

/// A user's membership of a room and whether they forgot it.
pub async fn query(
    db: &Db,
    room_id: &str,
    user_id: &str,
) -> Result<Option<MembershipState>, RoomserverError> {
    Ok(memberships::select(db, room_id, user_id)
        .await?
        .map(|(membership, forgotten)| MembershipState {
            membership,
            forgotten,
        }))
}

/// Forgets a room for a user who is no longer in it, and says so on the stream.
pub async fn forget(deps: &Deps, room_id: &str, user_id: &str) -> Result<(), RoomserverError> {
    let in_room = |m: &str| {
        RoomserverError::BadState(format!(
            "{user_id} is still in the room ({m}); leave it first"
        ))
    };
    match memberships::select(&deps.db, room_id, user_id).await? {
        None => return Err(RoomserverError::NoRoom),
        Some((m, _)) if m == "join" || m == "invite" || m == "knock" => return Err(in_room(&m)),
        Some((_, true)) => return Ok(()),
        Some(_) => {}
    }
    let txn = deps.db.begin().await?;
    // Conditional on the membership, so a join that committed since the read above wins.
    if !memberships::forget(&txn, room_id, user_id).await? {
        drop(txn);
        return match memberships::select(&deps.db, room_id, user_id).await? {
            Some((_, true)) => Ok(()),
            Some((m, _)) => Err(in_room(&m)),
            None => Err(RoomserverError::NoRoom),
        };
    }
    let output = RoomserverOutput::RoomForgotten {
        room_id: room_id.to_owned(),
        user_id: user_id.to_owned(),
    };
    let appended = bus::append(&txn, STREAM, room_id, &output).await?;
    deps.bus.commit(txn, &[appended]).await?;
    Ok(())
}
