//! `PerformAccountDataUpdate`: stores one piece of account data.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformAccountDataUpdate;
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformAccountDataUpdate) -> Result<(), UserApiError> {
    account_data::upsert(
        &deps.db,
        &msg.localpart,
        msg.room_id.as_deref(),
        &msg.data_type,
        &msg.content,
    )
    .await?;
    Ok(())
}
