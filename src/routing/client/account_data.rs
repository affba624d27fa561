//! Account data, global and per room. Delivery through /sync comes with the syncapi.

use super::ensure_self;
use crate::actors::userapi::messages::{
    PerformAccountDataUpdate, QueryAccountData, QueryPushRules,
};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::serde::Raw;

/// The content a client stores must be a JSON object.
fn object_text(raw: &serde_json::value::RawValue) -> Result<String, MatrixError> {
    let text = raw.get();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_owned()),
        _ => Err(MatrixError::bad_json("Content must be a JSON object.")),
    }
}

/// Types that have an API of their own and may not be written here (as Synapse).
fn check_writable(data_type: &str) -> Result<(), MatrixError> {
    if data_type == "m.fully_read" {
        return Err(MatrixError::bad_json(
            "Cannot set m.fully_read through this API; use /read_markers",
        )
        .with_status(actix_web::http::StatusCode::METHOD_NOT_ALLOWED));
    }
    if data_type == crate::push_rules::ACCOUNT_DATA_TYPE {
        return Err(MatrixError::bad_json(
            "Cannot set m.push_rules through this API. Use /pushrules",
        )
        .with_status(actix_web::http::StatusCode::METHOD_NOT_ALLOWED));
    }
    Ok(())
}

async fn get(
    state: &AppState,
    localpart: &str,
    room_id: Option<String>,
    data_type: String,
) -> Result<String, MatrixError> {
    state
        .userapi
        .send(QueryAccountData {
            localpart: localpart.to_owned(),
            room_id,
            data_type,
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("Account data not found"))
}

async fn put(
    state: &AppState,
    localpart: &str,
    room_id: Option<String>,
    data_type: String,
    content: String,
) -> Result<(), MatrixError> {
    check_writable(&data_type)?;
    state
        .userapi
        .send(PerformAccountDataUpdate {
            localpart: localpart.to_owned(),
            room_id,
            data_type,
            content,
        })
        .await?;
    Ok(())
}

fn raw<T>(text: String) -> Result<Raw<T>, MatrixError> {
    Raw::from_json_string(text).map_err(|e| MatrixError::internal(e))
}

/// # `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn get_global_account_data(
    state: web::Data<AppState>,
    req: Ruma<get_global_account_data::v3::Request>,
) -> RumaResult<get_global_account_data::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "get account data")?;
    let data_type = req.body.event_type.to_string();
    // Push rules always exist (the defaults at least), as Synapse serves them here.
    let text = if data_type == crate::push_rules::ACCOUNT_DATA_TYPE {
        let rules = state
            .userapi
            .send(QueryPushRules {
                localpart: req.sender.localpart.clone(),
            })
            .await?;
        crate::push_rules::content(&rules).to_string()
    } else {
        get(&state, &req.sender.localpart, None, data_type).await?
    };
    Ok(RumaResponse(get_global_account_data::v3::Response::new(
        raw(text)?,
    )))
}

/// # `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn set_global_account_data(
    state: web::Data<AppState>,
    req: Ruma<set_global_account_data::v3::Request>,
) -> RumaResult<set_global_account_data::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "add account data")?;
    let content = object_text(req.body.data.json())?;
    put(
        &state,
        &req.sender.localpart,
        None,
        req.body.event_type.to_string(),
        content,
    )
    .await?;
    Ok(RumaResponse(set_global_account_data::v3::Response::new()))
}

/// # `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn get_room_account_data(
    state: web::Data<AppState>,
    req: Ruma<get_room_account_data::v3::Request>,
) -> RumaResult<get_room_account_data::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "get account data")?;
    let room = Some(req.body.room_id.to_string());
    let text = get(
        &state,
        &req.sender.localpart,
        room,
        req.body.event_type.to_string(),
    )
    .await?;
    Ok(RumaResponse(get_room_account_data::v3::Response::new(raw(
        text,
    )?)))
}

/// # `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn set_room_account_data(
    state: web::Data<AppState>,
    req: Ruma<set_room_account_data::v3::Request>,
) -> RumaResult<set_room_account_data::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "add account data")?;
    let content = object_text(req.body.data.json())?;
    let room = Some(req.body.room_id.to_string());
    put(
        &state,
        &req.sender.localpart,
        room,
        req.body.event_type.to_string(),
        content,
    )
    .await?;
    Ok(RumaResponse(set_room_account_data::v3::Response::new()))
}
