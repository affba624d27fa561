//! `PerformGuestUpgrade`: a guest account becomes a full one, keeping its user ID.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformGuestUpgrade;
use crate::actors::userapi::storage::accounts;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformGuestUpgrade) -> Result<(), UserApiError> {
    let hash = super::perform_account_creation::hash_password(deps, msg.password).await?;
    if !accounts::upgrade_guest(&deps.db, &msg.localpart, &hash).await? {
        return Err(UserApiError::NotFound("No such guest account".into()));
    }
    // Cached token lookups still say "guest".
    deps.tokens.forget_user(&msg.localpart);
    tracing::info!(localpart = %msg.localpart, "guest account upgraded");
    Ok(())
}
