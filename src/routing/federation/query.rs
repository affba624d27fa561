//! Queries other servers make about this one's users (signed requests).

use crate::actors::userapi::messages::QueryProfile;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::federation::query::get_profile_information;
use serde_json::Value;

/// # `GET /_matrix/federation/v1/query/profile`
///
/// A local user's display name and avatar (only `field` when given), as Synapse answers:
/// 400 for a user of another server, 404 for one who does not exist.
pub async fn get_profile_information(
    state: web::Data<AppState>,
    req: Ruma<get_profile_information::v1::Request>,
) -> RumaResult<get_profile_information::v1::Response> {
    let user_id = &req.body.user_id;
    if user_id.server_name().as_str() != state.server_name() {
        return Err(MatrixError::invalid_param(
            "User is not hosted on this homeserver",
        ));
    }
    let profile = state
        .userapi
        .send(QueryProfile {
            localpart: user_id.localpart().to_owned(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("Profile was not found"))?;
    let wanted = req.body.field.as_ref().map(|f| f.as_str().to_owned());
    let fields = [
        ("displayname", profile.displayname),
        ("avatar_url", profile.avatar_url),
    ];
    Ok(RumaResponse(
        fields
            .into_iter()
            .filter(|(name, _)| wanted.as_deref().is_none_or(|w| w == *name))
            .filter_map(|(name, value)| value.map(|v| (name.to_owned(), Value::String(v))))
            .collect(),
    ))
}
