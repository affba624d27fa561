//! `PerformDeviceDeletion`: deletes devices and with them their tokens, and announces it on
//! the `userapi` stream (their queued to-device messages go too).

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{PerformDeviceDeletion, UserApiOutput};
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::{UserApiError, ACCOUNT_DATA_STREAM};
use crate::bus;

pub async fn handle(deps: &Deps, msg: PerformDeviceDeletion) -> Result<(), UserApiError> {
    let txn = deps.db.begin().await?;
    match &msg.device_ids {
        None => devices::delete_all(&txn, &msg.localpart, msg.except.as_deref()).await?,
        Some(ids) => {
            for id in ids
                .iter()
                .filter(|id| Some(id.as_str()) != msg.except.as_deref())
            {
                devices::delete_one(&txn, &msg.localpart, id).await?;
            }
        }
    }
    let user_id = format!("@{}:{}", msg.localpart, deps.server_name);
    let output = UserApiOutput::DevicesDeleted {
        user_id: user_id.clone(),
        device_ids: msg.device_ids,
        except: msg.except,
    };
    let appended = bus::append(&txn, ACCOUNT_DATA_STREAM, &user_id, &output).await?;
    deps.bus.commit(txn, &[appended]).await?;
    deps.tokens.forget_user(&msg.localpart);
    Ok(())
}
