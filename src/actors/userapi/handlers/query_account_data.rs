//! `QueryAccountData`: one piece of account data.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::QueryAccountData;
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryAccountData) -> Result<Option<String>, UserApiError> {
    Ok(account_data::select(
        &deps.db,
        &msg.localpart,
        msg.room_id.as_deref(),
        &msg.data_type,
    )
    .await?)
}
