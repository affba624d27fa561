//! `PerformAccountDataUpdate`: stores one piece of account data and announces it on the
//! `userapi` stream in the same transaction.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{PerformAccountDataUpdate, UserApiOutput};
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::UserApiError;
use crate::bus;
use crate::storage::Txn;

use crate::actors::userapi::ACCOUNT_DATA_STREAM as STREAM;
pub async fn handle(deps: &Deps, msg: PerformAccountDataUpdate) -> Result<(), UserApiError> {
    let content: serde_json::Value = serde_json::from_str(&msg.content)
        .map_err(|e| UserApiError::BadRequest(format!("account data is not JSON: {e}")))?;
    let txn = deps.db.begin().await?;
    account_data::upsert(
        &txn,
        &msg.localpart,
        msg.room_id.as_deref(),
        &msg.data_type,
        &msg.content,
    )
    .await?;
    announce(
        deps,
        txn,
        &msg.localpart,
        msg.room_id,
        msg.data_type,
        content,
    )
    .await
}

/// Appends the change to the `userapi` stream and commits `txn`.
pub async fn announce(
    deps: &Deps,
    txn: Txn,
    localpart: &str,
    room_id: Option<String>,
    data_type: String,
    content: serde_json::Value,
) -> Result<(), UserApiError> {
    let user_id = format!("@{localpart}:{}", deps.server_name);
    let output = UserApiOutput::AccountData {
        user_id: user_id.clone(),
        room_id,
        data_type,
        content,
    };
    let appended = bus::append(&txn, STREAM, &user_id, &output).await?;
    deps.bus.commit(txn, &[appended]).await?;
    Ok(())
}
