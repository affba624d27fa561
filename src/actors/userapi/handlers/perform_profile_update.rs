//! `PerformProfileUpdate`: sets or clears the display name or avatar.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{PerformProfileUpdate, ProfileField};
use crate::actors::userapi::storage::profiles;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformProfileUpdate) -> Result<(), UserApiError> {
    let value = msg.value.as_deref();
    let found = match msg.field {
        ProfileField::DisplayName => {
            profiles::set_display_name(&deps.db, &msg.localpart, value).await?
        }
        ProfileField::AvatarUrl => {
            profiles::set_avatar_url(&deps.db, &msg.localpart, value).await?
        }
    };
    if found {
        Ok(())
    } else {
        Err(UserApiError::NotFound(format!(
            "no profile for {}",
            msg.localpart
        )))
    }
}
