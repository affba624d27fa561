//! Devices: list, show, rename, delete (behind user-interactive auth).

use super::super::uia::{self, PasswordOwner};
use crate::actors::userapi::messages::{
    DeviceInfo, PerformDeviceDeletion, PerformDeviceUpdate, QueryDevice, QueryDevices,
};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::device::{
    delete_device, delete_devices, get_device, get_devices, update_device, Device,
};
use ruma::{MilliSecondsSinceUnixEpoch, UInt};

fn device(d: DeviceInfo) -> Device {
    let mut out = Device::new(d.device_id.into());
    out.display_name = d.display_name;
    out.last_seen_ip = d.last_seen_ip;
    out.last_seen_ts = d
        .last_seen_ts
        .and_then(|ts| UInt::try_from(ts).ok())
        .map(MilliSecondsSinceUnixEpoch);
    out
}

/// # `GET /_matrix/client/v3/devices`
pub async fn get_devices(
    state: web::Data<AppState>,
    req: Ruma<get_devices::v3::Request>,
) -> RumaResult<get_devices::v3::Response> {
    let devices = state
        .userapi
        .send(QueryDevices {
            localpart: req.sender.localpart.clone(),
        })
        .await?;
    Ok(RumaResponse(get_devices::v3::Response::new(
        devices.into_iter().map(device).collect(),
    )))
}

/// # `GET /_matrix/client/v3/devices/{deviceId}`
pub async fn get_device(
    state: web::Data<AppState>,
    req: Ruma<get_device::v3::Request>,
) -> RumaResult<get_device::v3::Response> {
    let found = state
        .userapi
        .send(QueryDevice {
            localpart: req.sender.localpart.clone(),
            device_id: req.body.device_id.to_string(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("Device not found"))?;
    Ok(RumaResponse(get_device::v3::Response::new(device(found))))
}

/// # `PUT /_matrix/client/v3/devices/{deviceId}`
pub async fn update_device(
    state: web::Data<AppState>,
    req: Ruma<update_device::v3::Request>,
) -> RumaResult<update_device::v3::Response> {
    if req
        .body
        .display_name
        .as_ref()
        .is_some_and(|n| n.len() > 100)
    {
        return Err(MatrixError::invalid_param(
            "Device display name is too long (max 100)",
        ));
    }
    state
        .userapi
        .send(PerformDeviceUpdate {
            localpart: req.sender.localpart.clone(),
            device_id: req.body.device_id.to_string(),
            display_name: req.body.display_name,
        })
        .await?;
    Ok(RumaResponse(update_device::v3::Response::new()))
}

/// # `DELETE /_matrix/client/v3/devices/{deviceId}`
pub async fn delete_device(
    state: web::Data<AppState>,
    req: Ruma<delete_device::v3::Request>,
) -> RumaResult<delete_device::v3::Response> {
    let sender = &req.sender;
    let device_id = req.body.device_id.to_string();
    let exists = state
        .userapi
        .send(QueryDevice {
            localpart: sender.localpart.clone(),
            device_id: device_id.clone(),
        })
        .await?
        .is_some();
    if !exists {
        return Err(MatrixError::not_found("Device not found"));
    }
    let user_id = sender.user_id.to_string();
    state
        .uia
        .check(
            &state,
            req.body.auth.as_ref(),
            &[&[uia::PASSWORD]],
            &format!("delete_device:{user_id}:{device_id}"),
            Some(PasswordOwner {
                localpart: &sender.localpart,
                user_id: &user_id,
            }),
        )
        .await?;
    state
        .userapi
        .send(PerformDeviceDeletion {
            localpart: sender.localpart.clone(),
            device_ids: Some(vec![device_id]),
            except: None,
        })
        .await?;
    Ok(RumaResponse(delete_device::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/delete_devices`
pub async fn delete_devices(
    state: web::Data<AppState>,
    req: Ruma<delete_devices::v3::Request>,
) -> RumaResult<delete_devices::v3::Response> {
    let sender = &req.sender;
    let user_id = sender.user_id.to_string();
    let mut ids: Vec<String> = req.body.devices.iter().map(|d| d.to_string()).collect();
    ids.sort();
    state
        .uia
        .check(
            &state,
            req.body.auth.as_ref(),
            &[&[uia::PASSWORD]],
            &format!("delete_devices:{user_id}:{}", ids.join(",")),
            Some(PasswordOwner {
                localpart: &sender.localpart,
                user_id: &user_id,
            }),
        )
        .await?;
    state
        .userapi
        .send(PerformDeviceDeletion {
            localpart: sender.localpart.clone(),
            device_ids: Some(ids),
            except: None,
        })
        .await?;
    Ok(RumaResponse(delete_devices::v3::Response::new()))
}
