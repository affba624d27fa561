//! `PerformDeviceCreation`: a device and its fresh tokens (login and registration).

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{NewSession, PerformDeviceCreation};
use crate::actors::userapi::storage::{accounts, devices};
use crate::actors::userapi::{tokens, UserApiError};

pub async fn handle(deps: &Deps, msg: PerformDeviceCreation) -> Result<NewSession, UserApiError> {
    let txn = deps.db.begin().await?;
    accounts::lock(&txn, &msg.localpart).await?;
    let account = accounts::select(&txn, &msg.localpart).await?;
    if let (Some(expected), Some(a)) = (&msg.password_fingerprint, &account) {
        if tokens::hash(a.password_hash.as_deref().unwrap_or_default()) != *expected {
            return Err(UserApiError::CredentialsChanged);
        }
    }
    if account.is_none_or(|a| a.deactivated) {
        return Err(UserApiError::NotFound(format!(
            "no active account {}",
            msg.localpart
        )));
    }
    let device_id = msg.device_id.unwrap_or_else(tokens::random_device_id);
    let access_token = tokens::random_token("mya_");
    let refresh_token = msg.refresh_token.then(|| tokens::random_token("myr_"));
    let now = crate::storage::now_ms();
    let expires_in_ms = refresh_token
        .as_ref()
        .map(|_| deps.access_token_lifetime_ms);
    let access_hash = tokens::hash(&access_token);
    let refresh_hash = refresh_token.as_deref().map(tokens::hash);
    devices::upsert(
        &txn,
        &devices::NewDevice {
            localpart: &msg.localpart,
            device_id: &device_id,
            display_name: msg.display_name.as_deref(),
            access_token_hash: &access_hash,
            access_expires_ts: expires_in_ms.map(|ms| now + ms as i64),
            refresh_token_hash: refresh_hash.as_deref(),
            now,
            ip: msg.ip.as_deref(),
            user_agent: msg.user_agent.as_deref(),
        },
    )
    .await?;
    txn.commit().await?;
    // The device's earlier token (if it existed) is gone.
    deps.tokens.forget_user(&msg.localpart);
    Ok(NewSession {
        user_id: format!("@{}:{}", msg.localpart, deps.server_name),
        device_id,
        access_token,
        refresh_token,
        expires_in_ms,
    })
}
