//! Profiles: display name and avatar, read by anyone, set by their owner.

use super::rooms::{current_state, send};
use super::{ensure_self, local_part};
use crate::actors::federationapi::messages::QueryRemoteProfile;
use crate::actors::roomserver::messages::QueryJoinedRooms;
use crate::actors::userapi::messages::{PerformProfileUpdate, Profile, ProfileField, QueryProfile};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, Ruma, RumaResponse, RumaResult};
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

/// A user's profile, or 404 M_NOT_FOUND: a local user's from the userapi, another server's
/// user's asked of that server (`field` narrows the question; its refusals relayed as
/// Synapse does, 502 when it cannot be reached).
async fn profile_of(
    state: &AppState,
    user_id: &UserId,
    field: Option<&str>,
) -> Result<Profile, MatrixError> {
    let Some(localpart) = local_part(state.server_name(), user_id) else {
        let remote = state
            .federationapi
            .send(QueryRemoteProfile {
                user_id: user_id.to_owned(),
                field: field.map(str::to_owned),
            })
            .await?;
        return Ok(Profile {
            displayname: remote.displayname,
            avatar_url: remote.avatar_url,
        });
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
    let profile = profile_of(&state, &req.body.user_id, None).await?;
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
    let profile = profile_of(&state, &req.body.user_id, Some("displayname")).await?;
    Ok(RumaResponse(get_display_name::v3::Response::new(
        profile.displayname,
    )))
}

/// # `GET /_matrix/client/v3/profile/{userId}/avatar_url`
pub async fn get_avatar_url(
    state: web::Data<AppState>,
    req: Ruma<get_avatar_url::v3::Request>,
) -> RumaResult<get_avatar_url::v3::Response> {
    let profile = profile_of(&state, &req.body.user_id, Some("avatar_url")).await?;
    Ok(RumaResponse(get_avatar_url::v3::Response::new(
        profile.avatar_url.map(OwnedMxcUri::from),
    )))
}

/// Sets one profile field, then carries it into every room the user is joined to.
async fn set(
    state: &AppState,
    sender: &Authed,
    field: ProfileField,
    value: Option<String>,
) -> Result<(), MatrixError> {
    let key = match field {
        ProfileField::DisplayName => "displayname",
        ProfileField::AvatarUrl => "avatar_url",
    };
    state
        .userapi
        .send(PerformProfileUpdate {
            localpart: sender.localpart.clone(),
            field,
            value: value.clone(),
        })
        .await?;
    update_rooms(state, sender, key, value.as_deref()).await
}

/// Sends an updated member event into each room `sender` is joined to, with `key` of its
/// content set to `value` (or removed), as Synapse does: room members see the new name or
/// avatar. A room whose member event already says so gets no event. A room that refuses the
/// event (say, a power level now forbids it) is logged and skipped: the profile has changed.
async fn update_rooms(
    state: &AppState,
    sender: &Authed,
    key: &str,
    value: Option<&str>,
) -> Result<(), MatrixError> {
    let user = sender.user_id.to_string();
    let rooms = state
        .roomserver
        .send(QueryJoinedRooms {
            user_id: user.clone(),
        })
        .await?;
    for room_id in rooms {
        let wanted = vec![("m.room.member".to_owned(), user.clone())];
        let Some(member) = current_state(state, &room_id, wanted).await?.pop() else {
            continue;
        };
        let mut content = member.json["content"].clone();
        if content["membership"] != "join" || content.get(key).and_then(|v| v.as_str()) == value {
            continue;
        }
        match (value, content.as_object_mut()) {
            (Some(v), Some(c)) => {
                c.insert(key.to_owned(), json!(v));
            }
            (None, Some(c)) => {
                c.remove(key);
            }
            (_, None) => continue,
        }
        if let Err(e) = send(
            state,
            sender,
            &room_id,
            "m.room.member",
            Some(&user),
            content,
            None,
        )
        .await
        {
            tracing::warn!(room_id = %room_id, errcode = e.errcode, error = %e.error,
                "profile change not carried into room");
        }
    }
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
    set(&state, &req.sender, ProfileField::DisplayName, name).await?;
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
    set(&state, &req.sender, ProfileField::AvatarUrl, url).await?;
    Ok(RumaResponse(set_avatar_url::v3::Response::new()))
}
