//! `QueryPushRules`: a user's effective push rules (the defaults with their changes merged in).

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::QueryPushRules;
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::UserApiError;
use crate::push_rules;
use ruma::push::Ruleset;

pub async fn handle(deps: &Deps, msg: QueryPushRules) -> Result<Ruleset, UserApiError> {
    let stored = account_data::select(
        &deps.db,
        &msg.localpart,
        None,
        push_rules::ACCOUNT_DATA_TYPE,
    )
    .await?;
    let user_id = user_id(deps, &msg.localpart)?;
    Ok(push_rules::effective(&user_id, parse(stored).as_ref()))
}

/// The full user ID of a local user.
pub(super) fn user_id(deps: &Deps, localpart: &str) -> Result<ruma::OwnedUserId, UserApiError> {
    ruma::UserId::parse(format!("@{localpart}:{}", deps.server_name))
        .map_err(|e| UserApiError::BadRequest(format!("invalid user ID: {e}")))
}

/// Stored account data as JSON (`None` when absent or not JSON).
pub(super) fn parse(stored: Option<String>) -> Option<serde_json::Value> {
    stored.and_then(|s| serde_json::from_str(&s).ok())
}
