//! `InputDeviceActivity`: records when and from where a device was last used.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::InputDeviceActivity;
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::UserApiError;

/// A device's last-seen row is rewritten at most this often unless its IP changes.
pub const COALESCE_MS: i64 = 60_000;

pub async fn handle(deps: &Deps, msg: InputDeviceActivity, now: i64) -> Result<(), UserApiError> {
    devices::update_last_seen(
        &deps.db,
        &msg.localpart,
        &msg.device_id,
        now,
        msg.ip.as_deref(),
        msg.user_agent.as_deref(),
    )
    .await?;
    Ok(())
}
