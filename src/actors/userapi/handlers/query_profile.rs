//! `QueryProfile`: a user's display name and avatar.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{Profile, QueryProfile};
use crate::actors::userapi::storage::profiles;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryProfile) -> Result<Option<Profile>, UserApiError> {
    Ok(profiles::select(&deps.db, &msg.localpart)
        .await?
        .map(|(displayname, avatar_url)| Profile {
            displayname,
            avatar_url,
        }))
}
