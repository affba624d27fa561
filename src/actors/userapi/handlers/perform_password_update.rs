//! `PerformPasswordUpdate`: a new password, and optionally every other session logged out.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformPasswordUpdate;
use crate::actors::userapi::storage::{accounts, devices};
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformPasswordUpdate) -> Result<(), UserApiError> {
    let hash = super::perform_account_creation::hash_password(deps, msg.new_password).await?;
    let txn = deps.db.begin().await?;
    // The update itself locks the account row, ordering it against session creations.
    accounts::update_password(&txn, &msg.localpart, &hash).await?;
    if msg.logout_devices {
        devices::delete_all(&txn, &msg.localpart, msg.keep_device.as_deref()).await?;
    }
    txn.commit().await?;
    deps.tokens.forget_user(&msg.localpart);
    Ok(())
}
