//! `QueryServerKeys`: another server's keys, from the cache, else fetched from the server
//! itself, else through each trusted notary in turn until the keys asked for are known.

use super::query_local_server_keys::valid_until;
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::{QueryServerKeys, ServerKey, ServerKeys};
use crate::actors::federationapi::storage::server_keys::{self, NewKey, StoredKey};
use crate::actors::federationapi::FederationApiError;
use crate::config::TrustedKeyServer;
use crate::federation::keys::{self, CheckedKeys};
use crate::storage::now_ms;
use ruma::{OwnedServerSigningKeyId, ServerName};
use serde_json::{json, Map, Value};

/// The largest key answer read (a key object is a few hundred bytes; a notary's answer
/// holds a handful).
pub const KEY_RESPONSE_LIMIT: usize = 1024 * 1024;

pub async fn handle(deps: &Deps, msg: QueryServerKeys) -> Result<ServerKeys, FederationApiError> {
    if msg.server_name == deps.server_name {
        return Ok(own_keys(deps));
    }
    let stored = ensure(
        deps,
        &msg.server_name,
        &msg.key_ids,
        msg.minimum_valid_until_ts,
    )
    .await?;
    Ok(ServerKeys {
        keys: stored
            .into_iter()
            .map(|k| {
                (
                    k.key_id,
                    ServerKey {
                        key: k.public_key,
                        valid_until_ts: k.valid_until_ts,
                        expired_ts: k.expired_ts,
                    },
                )
            })
            .collect(),
    })
}

/// Our own keys, as we publish them.
fn own_keys(deps: &Deps) -> ServerKeys {
    let mut keys: std::collections::BTreeMap<String, ServerKey> = deps
        .old_keys
        .iter()
        .map(|(id, k)| {
            let expired = i64::try_from(k.expired_ts).unwrap_or(i64::MAX);
            (
                id.clone(),
                ServerKey {
                    key: k.key.clone(),
                    valid_until_ts: expired,
                    expired_ts: Some(expired),
                },
            )
        })
        .collect();
    keys.insert(
        deps.key.key_id().to_string(),
        ServerKey {
            key: deps.key.public_key_base64(),
            valid_until_ts: valid_until(deps),
            expired_ts: None,
        },
    );
    ServerKeys { keys }
}

/// Whether the stored keys answer the query: each key asked for is known (a current key
/// valid until `min`, or an old key), or with none asked for, some current key is.
fn satisfied(stored: &[StoredKey], key_ids: &[OwnedServerSigningKeyId], min: i64) -> bool {
    let usable = |k: &StoredKey| k.expired_ts.is_some() || k.valid_until_ts >= min;
    if key_ids.is_empty() {
        return stored
            .iter()
            .any(|k| k.expired_ts.is_none() && k.valid_until_ts >= min);
    }
    key_ids
        .iter()
        .all(|id| stored.iter().any(|k| k.key_id == id.as_str() && usable(k)))
}

/// The stored keys of `server` after fetching them if the cache does not answer (and the
/// server was not fetched moments ago).
pub async fn ensure(
    deps: &Deps,
    server: &ruma::OwnedServerName,
    key_ids: &[OwnedServerSigningKeyId],
    min: i64,
) -> Result<Vec<StoredKey>, FederationApiError> {
    let mut stored = server_keys::select_for_server(&deps.db, server.as_str()).await?;
    if satisfied(&stored, key_ids, min) {
        return Ok(stored);
    }
    // One fetch per server at a time: a query arriving during a fetch (a join verifying the
    // room's events while the server's first transaction comes in) waits for it and reads
    // what it stored; without this it found nothing, the refetch being rate-limited.
    let lock = deps.key_fetch_lock(server);
    let _fetching = lock.lock().await;
    stored = server_keys::select_for_server(&deps.db, server.as_str()).await?;
    if satisfied(&stored, key_ids, min) || !deps.may_fetch(server) {
        return Ok(stored);
    }
    match fetch_direct(deps, server).await {
        Ok(()) => stored = server_keys::select_for_server(&deps.db, server.as_str()).await?,
        Err(error) => {
            tracing::info!(server = %server, error, "fetching server keys directly failed");
        }
    }
    for notary in deps.notaries.iter() {
        if satisfied(&stored, key_ids, min) {
            break;
        }
        match fetch_via_notary(deps, notary, server, key_ids, min).await {
            Ok(()) => stored = server_keys::select_for_server(&deps.db, server.as_str()).await?,
            Err(error) => tracing::info!(
                server = %server,
                notary = %notary.server_name,
                error,
                "fetching server keys through a notary failed"
            ),
        }
    }
    Ok(stored)
}

/// `GET /_matrix/key/v2/server` of the server itself.
async fn fetch_direct(deps: &Deps, server: &ServerName) -> Result<(), String> {
    let answer = deps
        .client
        .json(
            http::Method::GET,
            server,
            "/_matrix/key/v2/server",
            None,
            false,
            Some(KEY_RESPONSE_LIMIT),
        )
        .await
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    let checked = keys::check_server_keys(&answer, server, now)?;
    store(deps, server, server.as_str(), &checked, now).await
}

/// `POST /_matrix/key/v2/query` of a notary; each key object must carry the notary's
/// signature (by a configured key) and the server's own.
async fn fetch_via_notary(
    deps: &Deps,
    notary: &TrustedKeyServer,
    server: &ServerName,
    key_ids: &[OwnedServerSigningKeyId],
    min: i64,
) -> Result<(), String> {
    let notary_name =
        <&ServerName>::try_from(notary.server_name.as_str()).map_err(|e| e.to_string())?;
    let criteria: Map<String, Value> = key_ids
        .iter()
        .map(|id| (id.to_string(), json!({ "minimum_valid_until_ts": min })))
        .collect();
    let body = json!({ "server_keys": { server.as_str(): criteria } });
    let answer = deps
        .client
        .json(
            http::Method::POST,
            notary_name,
            "/_matrix/key/v2/query",
            Some(&body),
            false,
            Some(KEY_RESPONSE_LIMIT),
        )
        .await
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    let mut stored = 0;
    for object in answer
        .get("server_keys")
        .and_then(Value::as_array)
        .ok_or("no server_keys in the answer")?
    {
        if object.get("server_name").and_then(Value::as_str) != Some(server.as_str()) {
            continue;
        }
        keys::check_signed_by(object, notary_name.as_str(), &notary.verify_keys)?;
        let checked = keys::check_server_keys(object, server, now)?;
        store(deps, server, notary_name.as_str(), &checked, now).await?;
        stored += 1;
    }
    if stored == 0 {
        return Err("the notary knows no keys of the server".into());
    }
    Ok(())
}

/// Stores every key of a checked key object.
async fn store(
    deps: &Deps,
    server: &ServerName,
    from: &str,
    checked: &CheckedKeys,
    now: i64,
) -> Result<(), String> {
    let json = checked.json.to_string();
    let current = checked
        .verify_keys
        .iter()
        .map(|(id, key)| (id, key, checked.valid_until_ts, None));
    let old = checked
        .old_verify_keys
        .iter()
        .map(|(id, (key, expired))| (id, key, *expired, Some(*expired)));
    for (id, key, valid_until_ts, expired_ts) in current.chain(old) {
        server_keys::upsert(
            &deps.db,
            &NewKey {
                server_name: server.as_str(),
                key_id: id,
                public_key: key,
                valid_until_ts,
                expired_ts,
                fetched_at: now,
                fetched_from: from,
                key_json: &json,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, until: i64, expired: Option<i64>) -> StoredKey {
        StoredKey {
            key_id: id.into(),
            public_key: "K".into(),
            valid_until_ts: until,
            expired_ts: expired,
            fetched_at: 0,
            key_json: "{}".into(),
        }
    }

    #[test]
    fn the_cache_answers_only_for_known_valid_keys() {
        let id = |s: &str| OwnedServerSigningKeyId::try_from(s).unwrap();
        let keys = [
            stored("ed25519:a", 100, None),
            stored("ed25519:old", 5, Some(5)),
        ];
        assert!(satisfied(&keys, &[], 100));
        assert!(!satisfied(&keys, &[], 101));
        assert!(satisfied(&keys, &[id("ed25519:a")], 50));
        assert!(!satisfied(&keys, &[id("ed25519:a")], 150));
        assert!(
            satisfied(&keys, &[id("ed25519:old")], 150),
            "old keys stay known"
        );
        assert!(!satisfied(&keys, &[id("ed25519:a"), id("ed25519:b")], 50));
        assert!(!satisfied(&[], &[], 0));
    }
}
