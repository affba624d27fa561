//! `QueryLocalServerKeys`: our own key object, self-signed.

use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::QueryLocalServerKeys;
use crate::actors::federationapi::FederationApiError;
use crate::federation::keys;
use serde_json::Value;

pub async fn handle(deps: &Deps, _: QueryLocalServerKeys) -> Result<Value, FederationApiError> {
    Ok(local_keys(deps))
}

/// Our key object, valid for `federation.key_validity` from now.
pub fn local_keys(deps: &Deps) -> Value {
    keys::own_server_keys(
        &deps.server_name,
        &deps.key,
        &deps.old_keys,
        valid_until(deps),
    )
}

/// Until when the keys we publish now are valid.
pub fn valid_until(deps: &Deps) -> i64 {
    crate::storage::now_ms()
        .saturating_add(i64::try_from(deps.key_validity.as_millis()).unwrap_or(i64::MAX))
}
