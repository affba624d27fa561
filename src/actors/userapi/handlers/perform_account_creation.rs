//! `PerformAccountCreation`: a new account and its profile, in one transaction.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::hasher::HashPassword;
use crate::actors::userapi::messages::PerformAccountCreation;
use crate::actors::userapi::storage::{accounts, profiles};
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformAccountCreation) -> Result<(), UserApiError> {
    let hash = match msg.password {
        Some(p) => Some(hash_password(deps, p).await?),
        None => None,
    };
    let txn = deps.db.begin().await?;
    let now = crate::storage::now_ms();
    if !accounts::insert(&txn, &msg.localpart, hash.as_deref(), msg.is_guest, now).await? {
        return Err(UserApiError::UserInUse);
    }
    profiles::insert(&txn, &msg.localpart, msg.display_name.as_deref()).await?;
    txn.commit().await?;
    tracing::info!(localpart = %msg.localpart, guest = msg.is_guest, "account created");
    Ok(())
}

/// Hashes a password on the hasher threads.
pub async fn hash_password(deps: &Deps, password: String) -> Result<String, UserApiError> {
    deps.hasher
        .send(HashPassword(password))
        .await
        .map_err(|e| UserApiError::internal(e))?
        .map_err(|e| UserApiError::internal(format_args!("hashing a password failed: {e}")))
}
