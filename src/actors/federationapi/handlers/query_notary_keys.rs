//! `QueryNotaryKeys`: this server as a notary. The key objects of each server asked about
//! (fetched when the cache cannot answer), with our signature added.

use super::query_local_server_keys::local_keys;
use super::query_server_keys::ensure;
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::QueryNotaryKeys;
use crate::actors::federationapi::FederationApiError;
use crate::federation::keys;
use serde_json::Value;
use std::collections::HashSet;

/// The most servers one notary query may name.
pub const MAX_SERVERS: usize = 100;

pub async fn handle(deps: &Deps, msg: QueryNotaryKeys) -> Result<Vec<Value>, FederationApiError> {
    if msg.servers.len() > MAX_SERVERS {
        return Err(FederationApiError::BadRequest(format!(
            "at most {MAX_SERVERS} servers per query"
        )));
    }
    let mut answer = Vec::new();
    for (server, query) in msg.servers {
        if server == deps.server_name {
            answer.push(local_keys(deps));
            continue;
        }
        let stored = ensure(deps, &server, &query.key_ids, query.minimum_valid_until_ts).await?;
        let mut seen = HashSet::new();
        for key in stored {
            if !seen.insert(key.key_json.clone()) {
                continue;
            }
            let signed = serde_json::from_str::<Value>(&key.key_json)
                .map_err(|e| e.to_string())
                .and_then(|object| keys::countersign(object, &deps.server_name, &deps.key));
            match signed {
                Ok(object) => answer.push(object),
                Err(error) => {
                    tracing::warn!(server = %server, error, "stored key object not served")
                }
            }
        }
    }
    Ok(answer)
}
