//! Profiles: display name and avatar, read by anyone, set by their owner.

use super::{ensure_self, local_part};
use crate::actors::userapi::messages::{PerformProfileUpdate, Profile, ProfileField, QueryProfile};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::profile::{
    get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name,
};
use ruma::{OwnedMxcUri, UserId};
use serde_json::json;

/// The longest display name accepted (as Synapse).
const MAX_DISPLAYNAME_LEN: usize = 256;
/// The longest avatar URL accepted (as Synapse).
const MAX_AVATAR_URL_LEN: usize = 1000;

/// A local user's profile, or 404 M_NOT_FOUND.
async fn profile_of(state: &AppState, user_id: &UserId) -> Result<Profile, MatrixError> {
    let Some(localpart) = local_part(state.server_name(), user_id) else {
        // Remote profiles arrive with federation.
        return Err(MatrixError::not_found(
            "Profile lookup over federation is not supported yet",
        ));
    };
    state
        .userapi
        .send(QueryProfile {
            localpart: localpart.to_owned(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("Profile not found"))
}

/// # `GET /_matrix/client/v3/profile/{userId}`
pub async fn get_profile(
    state: web::Data<AppState>,
    req: Ruma<get_profile::v3::Request>,
) -> RumaResult<get_profile::v3::Response> {
    let profile = profile_of(&state, &req.body.user_id).await?;
    let mut response = get_profile::v3::Response::new();
    if let Some(name) = profile.displayname {
        response.set("displayname".into(), json!(name));
    }
    if let Some(url) = profile.avatar_url {
        response.set("avatar_url".into(), json!(url));
    }
    Ok(RumaResponse(response))
}

/// # `GET /_matrix/client/v3/profile/{userId}/displayname`
pub async fn get_display_name(
    state: web::Data<AppState>,
    req: Ruma<get_display_name::v3::Request>,
) -> RumaResult<get_display_name::v3::Response> {
    let profile = profile_of(&state, &req.body.user_id).await?;
    Ok(RumaResponse(get_display_name::v3::Response::new(
        profile.displayname,
    )))
}

/// # `GET /_matrix/client/v3/profile/{userId}/avatar_url`
pub async fn get_avatar_url(
    state: web::Data<AppState>,
    req: Ruma<get_avatar_url::v3::Request>,
) -> RumaResult<get_avatar_url::v3::Response> {
    let profile = profile_of(&state, &req.body.user_id).await?;
    Ok(RumaResponse(get_avatar_url::v3::Response::new(
        profile.avatar_url.map(OwnedMxcUri::from),
    )))
}

async fn set(
    state: &AppState,
    localpart: &str,
    field: ProfileField,
    value: Option<String>,
) -> Result<(), MatrixError> {
    state
        .userapi
        .send(PerformProfileUpdate {
            localpart: localpart.to_owned(),
            field,
            value,
        })
        .await?;
    Ok(())
}

/// # `PUT /_matrix/client/v3/profile/{userId}/displayname`
pub async fn set_display_name(
    state: web::Data<AppState>,
    req: Ruma<set_display_name::v3::Request>,
) -> RumaResult<set_display_name::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "set display name")?;
    let name = req.body.displayname.filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > MAX_DISPLAYNAME_LEN) {
        return Err(MatrixError::invalid_param(format!(
            "Display name is too long (max {MAX_DISPLAYNAME_LEN})"
        )));
    }
    set(
        &state,
        &req.sender.localpart,
        ProfileField::DisplayName,
        name,
    )
    .await?;
    Ok(RumaResponse(set_display_name::v3::Response::new()))
}

/// # `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
pub async fn set_avatar_url(
    state: web::Data<AppState>,
    req: Ruma<set_avatar_url::v3::Request>,
) -> RumaResult<set_avatar_url::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "set avatar URL")?;
    let url = req.body.avatar_url.map(|u| u.to_string());
    if url.as_ref().is_some_and(|u| u.len() > MAX_AVATAR_URL_LEN) {
        return Err(MatrixError::invalid_param(format!(
            "Avatar URL is too long (max {MAX_AVATAR_URL_LEN})"
        )));
    }
    set(&state, &req.sender.localpart, ProfileField::AvatarUrl, url).await?;
    Ok(RumaResponse(set_avatar_url::v3::Response::new()))
}
