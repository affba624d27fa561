//! `PerformDeviceDeletion`: deletes devices and with them their tokens.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformDeviceDeletion;
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformDeviceDeletion) -> Result<(), UserApiError> {
    match msg.device_ids {
        None => devices::delete_all(&deps.db, &msg.localpart, msg.except.as_deref()).await?,
        Some(ids) => {
            let txn = deps.db.begin().await?;
            for id in ids
                .iter()
                .filter(|id| Some(id.as_str()) != msg.except.as_deref())
            {
                devices::delete_one(&txn, &msg.localpart, id).await?;
            }
            txn.commit().await?;
        }
    }
    deps.tokens.forget_user(&msg.localpart);
    Ok(())
}
