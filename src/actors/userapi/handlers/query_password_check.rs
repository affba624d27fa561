//! `QueryPasswordCheck`: verifies a password on the hasher threads.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::hasher::VerifyPassword;
use crate::actors::userapi::messages::{PasswordCheck, QueryPasswordCheck};
use crate::actors::userapi::storage::accounts;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryPasswordCheck) -> Result<PasswordCheck, UserApiError> {
    let account = accounts::select(&deps.db, &msg.localpart).await?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    // Verify against a dummy hash when there is none, so timing does not reveal accounts.
    let verified = deps
        .hasher
        .send(VerifyPassword {
            hash: hash.clone().unwrap_or_else(|| deps.dummy_hash.to_string()),
            password: msg.password,
        })
        .await
        .map_err(|e| UserApiError::internal(e))?;
    // Deactivation removes the password, so it is reported only to whoever still knows it
    // (an account deactivated by an admin keeping the hash); no one else learns of it.
    let verified = verified && hash.is_some();
    Ok(match account {
        Some(a) if a.deactivated && verified => PasswordCheck::Deactivated,
        Some(a) if !a.deactivated && verified => PasswordCheck::Valid {
            user_id: format!("@{}:{}", msg.localpart, deps.server_name),
            password_fingerprint: crate::actors::userapi::tokens::hash(
                hash.as_deref().unwrap_or_default(),
            ),
        },
        _ => PasswordCheck::Invalid,
    })
}
