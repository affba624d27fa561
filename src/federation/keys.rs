//! Server keys as JSON: what this server publishes (`/_matrix/key/v2/server`), and the checks
//! on what other servers and notaries answer. Pure functions: no network, no storage.
//!
//! - [`own_server_keys`]: our current key in `verify_keys`, `federation.old_signing_keys` in
//!   `old_verify_keys`, `valid_until_ts`, signed by us.
//! - [`check_server_keys`]: another server's key object, accepted only if its `server_name`
//!   is the server asked about and it is signed by one of its own `verify_keys` (every such
//!   signature must verify). Its validity is capped at 7 days from now, as the spec requires.
//! - [`check_signed_by`]: a notary's answer must carry a valid signature by one of the keys
//!   configured for it.
//! - [`countersign`]: a notary (this server) adds its own signature to a key object.

use crate::config::OldSigningKey;
use crate::signing_key::SigningKey;
use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName, SigningKeyAlgorithm};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The longest a fetched key is trusted, whatever its `valid_until_ts` says (the spec).
pub const MAX_KEY_VALIDITY_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Another server's keys, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedKeys {
    /// `valid_until_ts`, capped at 7 days after `now`.
    pub valid_until_ts: i64,
    /// Key ID -> unpadded base64 public key.
    pub verify_keys: BTreeMap<String, String>,
    /// Key ID -> (public key, `expired_ts`).
    pub old_verify_keys: BTreeMap<String, (String, i64)>,
    /// The object with only the server's own signatures (others, a notary's, dropped): what
    /// this server serves again as a notary.
    pub json: Value,
}

/// Our key object: current key, old keys, validity, our signature.
pub fn own_server_keys(
    server_name: &ServerName,
    key: &SigningKey,
    old_keys: &BTreeMap<String, OldSigningKey>,
    valid_until_ts: i64,
) -> Value {
    let old: serde_json::Map<String, Value> = old_keys
        .iter()
        .filter(|(id, _)| id.as_str() != key.key_id().as_str())
        .map(|(id, k)| {
            (
                id.clone(),
                json!({ "key": k.key, "expired_ts": k.expired_ts }),
            )
        })
        .collect();
    let unsigned = json!({
        "server_name": server_name,
        "verify_keys": { key.key_id().as_str(): { "key": key.public_key_base64() } },
        "old_verify_keys": old,
        "valid_until_ts": valid_until_ts,
    });
    countersign(unsigned, server_name, key).unwrap_or(Value::Null)
}

/// Adds `server_name`'s signature to a JSON object (keeping the signatures it has).
pub fn countersign(
    object: Value,
    server_name: &ServerName,
    key: &SigningKey,
) -> Result<Value, String> {
    let mut canonical: CanonicalJsonObject =
        serde_json::from_value(object).map_err(|e| format!("not canonical JSON: {e}"))?;
    ruma::signatures::sign_json(server_name.as_str(), key.key_pair(), &mut canonical)
        .map_err(|e| e.to_string())?;
    serde_json::to_value(canonical).map_err(|e| e.to_string())
}

/// Checks `entity`'s signatures on `object` against `keys` (key ID -> base64 public key):
/// every signature by a key in `keys` must verify, and at least one must be there.
pub fn check_signed_by(
    object: &Value,
    entity: &str,
    keys: &BTreeMap<String, String>,
) -> Result<(), String> {
    let canonical: CanonicalJsonObject =
        serde_json::from_value(object.clone()).map_err(|e| format!("not canonical JSON: {e}"))?;
    let Some(CanonicalJsonValue::Object(signatures)) = canonical
        .get("signatures")
        .and_then(|s| match s {
            CanonicalJsonValue::Object(o) => o.get(entity),
            _ => None,
        })
        .cloned()
    else {
        return Err(format!("not signed by {entity}"));
    };
    let signed = to_canonical_json_string_for_signing(&canonical).map_err(|e| e.to_string())?;
    let mut verified = 0;
    for (key_id, signature) in &signatures {
        let Some(public) = keys.get(key_id) else {
            continue;
        };
        let CanonicalJsonValue::String(signature) = signature else {
            return Err(format!("signature {key_id} of {entity} is not a string"));
        };
        let public = Base64::<Standard, Vec<u8>>::parse(public)
            .map_err(|_| format!("key {key_id} of {entity} is not base64"))?;
        let signature = Base64::<Standard, Vec<u8>>::parse(signature)
            .map_err(|_| format!("signature {key_id} of {entity} is not base64"))?;
        if !key_id.starts_with("ed25519:") {
            continue;
        }
        verify_canonical_json_bytes(
            &SigningKeyAlgorithm::Ed25519,
            public.as_bytes(),
            signature.as_bytes(),
            signed.as_bytes(),
        )
        .map_err(|_| format!("signature {key_id} of {entity} does not verify"))?;
        verified += 1;
    }
    if verified == 0 {
        return Err(format!("not signed by a known key of {entity}"));
    }
    Ok(())
}

/// Checks a key object another server (or a notary, for it) answered for `expected`.
pub fn check_server_keys(
    object: &Value,
    expected: &ServerName,
    now: i64,
) -> Result<CheckedKeys, String> {
    let server_name = object
        .get("server_name")
        .and_then(Value::as_str)
        .ok_or("no server_name")?;
    if server_name != expected.as_str() {
        return Err(format!(
            "keys of {server_name} where {expected}'s were asked for"
        ));
    }
    let valid_until_ts = object
        .get("valid_until_ts")
        .and_then(Value::as_i64)
        .ok_or("no valid_until_ts")?;
    let key_of = |v: &Value| v.get("key").and_then(Value::as_str).map(str::to_owned);
    let mut verify_keys = BTreeMap::new();
    for (id, v) in object
        .get("verify_keys")
        .and_then(Value::as_object)
        .ok_or("no verify_keys")?
    {
        let key = key_of(v).ok_or_else(|| format!("verify key {id} has no key"))?;
        ruma::OwnedServerSigningKeyId::try_from(id.as_str())
            .map_err(|_| format!("{id:?} is not a key ID"))?;
        verify_keys.insert(id.clone(), key);
    }
    let mut old_verify_keys = BTreeMap::new();
    if let Some(old) = object.get("old_verify_keys").and_then(Value::as_object) {
        for (id, v) in old {
            let key = key_of(v).ok_or_else(|| format!("old verify key {id} has no key"))?;
            let expired = v
                .get("expired_ts")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("old verify key {id} has no expired_ts"))?;
            ruma::OwnedServerSigningKeyId::try_from(id.as_str())
                .map_err(|_| format!("{id:?} is not a key ID"))?;
            old_verify_keys.insert(id.clone(), (key, expired));
        }
    }
    check_signed_by(object, expected.as_str(), &verify_keys)?;
    // Keep only the server's own signatures.
    let mut json = object.clone();
    if let Some(Value::Object(signatures)) = json.get_mut("signatures") {
        signatures.retain(|entity, _| entity == expected.as_str());
    }
    Ok(CheckedKeys {
        valid_until_ts: valid_until_ts.min(now.saturating_add(MAX_KEY_VALIDITY_MS)),
        verify_keys,
        old_verify_keys,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other_key() -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        SigningKey::load_or_generate(dir.path()).unwrap()
    }

    #[test]
    fn own_keys_are_self_signed_and_pass_the_check() {
        let key = SigningKey::for_tests();
        let name = ruma::server_name!("a.test");
        let old = BTreeMap::from([(
            "ed25519:old".to_owned(),
            OldSigningKey {
                key: other_key().public_key_base64(),
                expired_ts: 5,
            },
        )]);
        let now = 1_000_000;
        let json = own_server_keys(name, &key, &old, now + 3_600_000);
        let checked = check_server_keys(&json, name, now).unwrap();
        assert_eq!(checked.valid_until_ts, now + 3_600_000);
        assert_eq!(
            checked.verify_keys,
            BTreeMap::from([(key.key_id().to_string(), key.public_key_base64())])
        );
        assert_eq!(checked.old_verify_keys["ed25519:old"].1, 5);
        // Validity is capped at 7 days.
        let long = own_server_keys(name, &key, &old, now + 100 * MAX_KEY_VALIDITY_MS);
        assert_eq!(
            check_server_keys(&long, name, now).unwrap().valid_until_ts,
            now + MAX_KEY_VALIDITY_MS
        );
    }

    #[test]
    fn forged_or_misattributed_keys_are_refused() {
        let key = SigningKey::for_tests();
        let name = ruma::server_name!("a.test");
        let json = own_server_keys(name, &key, &BTreeMap::new(), 10);
        // Asked for another server.
        let err = check_server_keys(&json, ruma::server_name!("b.test"), 0).unwrap_err();
        assert!(err.contains("b.test"), "{err}");
        // A key swapped after signing.
        let mut swapped = json.clone();
        swapped["verify_keys"][key.key_id().as_str()]["key"] =
            Value::String(other_key().public_key_base64());
        assert!(check_server_keys(&swapped, name, 0).is_err());
        // A changed validity.
        let mut extended = json.clone();
        extended["valid_until_ts"] = json!(99);
        assert!(check_server_keys(&extended, name, 0).is_err());
        // Signed only by someone else.
        let mut unsigned = json.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        let by_other = countersign(unsigned, ruma::server_name!("c.test"), &other_key()).unwrap();
        assert!(check_server_keys(&by_other, name, 0).is_err());
    }

    #[test]
    fn notary_signatures_are_checked_and_dropped_from_what_is_kept() {
        let key = SigningKey::for_tests();
        let notary = other_key();
        let name = ruma::server_name!("a.test");
        let notary_name = ruma::server_name!("notary.test");
        let json = own_server_keys(name, &key, &BTreeMap::new(), 10);
        let signed = countersign(json.clone(), notary_name, &notary).unwrap();
        let notary_keys =
            BTreeMap::from([(notary.key_id().to_string(), notary.public_key_base64())]);
        check_signed_by(&signed, "notary.test", &notary_keys).unwrap();
        // The notary's signature does not verify with another key, nor without one.
        let wrong = BTreeMap::from([(notary.key_id().to_string(), key.public_key_base64())]);
        assert!(check_signed_by(&signed, "notary.test", &wrong).is_err());
        assert!(check_signed_by(&json, "notary.test", &notary_keys).is_err());
        let checked = check_server_keys(&signed, name, 0).unwrap();
        assert_eq!(checked.json, json);
    }
}
