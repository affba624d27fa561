//! The public keys the roomserver checks events from elsewhere with. Our own key is always
//! known; other servers' keys come from the federationapi (`QueryServerKeys`: its cache, the
//! server itself, then the trusted notaries), which a node attaches once it has started (the
//! federationapi in turn sends the roomserver the events it receives, so neither can be
//! started with the other's handle).

use super::error::RoomserverError;
use crate::actors::federationapi::messages::{QueryServerKeys, ServerKey};
use crate::actors::federationapi::FederationApiHandle;
use crate::signing_key::SigningKey;
use ruma::room_version_rules::RoomVersionRules;
use ruma::serde::Base64;
use ruma::signatures::{required_server_signatures_to_verify_event, PublicKeyMap};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, OwnedServerSigningKeyId};
use std::sync::{Arc, OnceLock};

/// Where other servers' keys come from: the federationapi, once attached. Cheap to clone; the
/// clones share the attachment.
#[derive(Clone, Default)]
pub struct Keyring(Arc<OnceLock<FederationApiHandle>>);

impl Keyring {
    /// Attaches the federationapi (once; later calls are ignored).
    pub fn attach(&self, federationapi: FederationApiHandle) {
        let _ = self.0.set(federationapi);
    }

    /// The federationapi, once attached (`None` on a node without federation).
    pub fn federation(&self) -> Option<&FederationApiHandle> {
        self.0.get()
    }

    /// The keys to verify `pdu` with: for each server whose signature the room version
    /// requires (the sender's; the event ID's in versions 1 and 2; the authorising server of a
    /// restricted join), the keys named in its signatures that were valid when the event was
    /// sent (by its `origin_server_ts`; in versions 1 to 4, which do not enforce key validity,
    /// any key known). A server whose keys cannot be had is left out, so the verification
    /// fails naming it.
    pub async fn keys_for(
        &self,
        pdu: &CanonicalJsonObject,
        rules: &RoomVersionRules,
        own_name: &OwnedServerName,
        own_key: &SigningKey,
    ) -> Result<PublicKeyMap, RoomserverError> {
        let servers = required_server_signatures_to_verify_event(pdu, &rules.signatures)
            .map_err(|e| RoomserverError::BadRequest(format!("cannot verify the event: {e}")))?;
        let sent_at = pdu
            .get("origin_server_ts")
            .and_then(CanonicalJsonValue::as_integer)
            .map_or(0, i64::from);
        let mut map = PublicKeyMap::new();
        for server in servers {
            if server == *own_name {
                map.extend(own_key.public_key_map(own_name));
                continue;
            }
            let key_ids = signing_key_ids(pdu, &server);
            if key_ids.is_empty() {
                continue;
            }
            let Some(federationapi) = self.0.get() else {
                return Err(RoomserverError::BadRequest(format!(
                    "the signing keys of {server} cannot be fetched (no federation here)"
                )));
            };
            let known = federationapi
                .send(QueryServerKeys {
                    server_name: server.clone(),
                    key_ids,
                    minimum_valid_until_ts: sent_at,
                })
                .await
                .map_err(|e| {
                    RoomserverError::BadRequest(format!(
                        "the signing keys of {server} cannot be had: {e}"
                    ))
                })?;
            let usable: std::collections::BTreeMap<String, Base64> = known
                .keys
                .into_iter()
                .filter(|(_, k)| !rules.enforce_key_validity || valid_at(k, sent_at))
                .filter_map(|(id, k)| Base64::parse(&k.key).ok().map(|b| (id, b)))
                .collect();
            if !usable.is_empty() {
                map.insert(server.to_string(), usable);
            }
        }
        Ok(map)
    }
}

/// Whether a key could sign an event sent at `sent_at` (ms): a current key until its
/// `valid_until_ts`, an old key until it expired.
fn valid_at(key: &ServerKey, sent_at: i64) -> bool {
    match key.expired_ts {
        Some(expired) => sent_at < expired,
        None => sent_at <= key.valid_until_ts,
    }
}

/// The ed25519 key IDs `server` signed the event with (at most a few: the rest is ignored).
fn signing_key_ids(
    pdu: &CanonicalJsonObject,
    server: &OwnedServerName,
) -> Vec<OwnedServerSigningKeyId> {
    const MAX_KEYS: usize = 4;
    pdu.get("signatures")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|s| s.get(server.as_str()))
        .and_then(CanonicalJsonValue::as_object)
        .map(|keys| {
            keys.keys()
                .filter(|id| id.starts_with("ed25519:"))
                .filter_map(|id| OwnedServerSigningKeyId::try_from(id.as_str()).ok())
                .take(MAX_KEYS)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(valid_until_ts: i64, expired_ts: Option<i64>) -> ServerKey {
        ServerKey {
            key: String::new(),
            valid_until_ts,
            expired_ts,
        }
    }

    #[test]
    fn keys_are_valid_for_events_sent_while_they_were() {
        assert!(valid_at(&key(100, None), 100));
        assert!(!valid_at(&key(100, None), 101));
        assert!(valid_at(&key(50, Some(50)), 49));
        assert!(!valid_at(&key(50, Some(50)), 50));
    }

    #[test]
    fn only_ed25519_signatures_of_the_server_are_asked_for() {
        let pdu: CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "signatures": {
                "b.test": {"ed25519:a": "x", "curve:b": "y", "ed25519:c": "z"},
                "c.test": {"ed25519:d": "w"}
            }
        }))
        .unwrap();
        let server: OwnedServerName = "b.test".try_into().unwrap();
        let ids: Vec<String> = signing_key_ids(&pdu, &server)
            .into_iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(ids, ["ed25519:a", "ed25519:c"]);
        let none: OwnedServerName = "e.test".try_into().unwrap();
        assert!(signing_key_ids(&pdu, &none).is_empty());
    }
}
