//! `PerformDeviceUpdate`: renames a device.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformDeviceUpdate;
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformDeviceUpdate) -> Result<(), UserApiError> {
    let found = devices::update_display_name(
        &deps.db,
        &msg.localpart,
        &msg.device_id,
        msg.display_name.as_deref(),
    )
    .await?;
    if found {
        Ok(())
    } else {
        Err(UserApiError::NotFound(format!(
            "no device {}",
            msg.device_id
        )))
    }
}
