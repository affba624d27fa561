//! `QueryAccountAvailability`: whether a localpart is free.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::QueryAccountAvailability;
use crate::actors::userapi::storage::accounts;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryAccountAvailability) -> Result<bool, UserApiError> {
    Ok(accounts::select(&deps.db, &msg.localpart).await?.is_none())
}
