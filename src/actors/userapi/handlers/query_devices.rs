//! `QueryDevices`: every device of a user.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{DeviceInfo, QueryDevices};
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryDevices) -> Result<Vec<DeviceInfo>, UserApiError> {
    Ok(devices::select_all(&deps.db, &msg.localpart)
        .await?
        .into_iter()
        .map(info)
        .collect())
}

/// The API shape of a stored device.
pub fn info(d: devices::Device) -> DeviceInfo {
    DeviceInfo {
        device_id: d.device_id,
        display_name: d.display_name,
        last_seen_ip: d.last_seen_ip,
        last_seen_ts: d.last_seen_ts,
    }
}
