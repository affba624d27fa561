//! `QueryDevice`: one device of a user.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{DeviceInfo, QueryDevice};
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryDevice) -> Result<Option<DeviceInfo>, UserApiError> {
    Ok(
        devices::select_one(&deps.db, &msg.localpart, &msg.device_id)
            .await?
            .map(super::query_devices::info),
    )
}
