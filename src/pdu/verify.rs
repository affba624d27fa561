//! Checking events from anywhere (ours or received over federation) by their room version:
//! format and signatures ([`verify()`]), the redaction algorithm ([`redact`]), the event ID
//! ([`event_id_of`]) and the reference hash ([`reference_hash_of`]).

use ruma::room_version_rules::EventIdFormatVersion;
use ruma::signatures::{reference_hash, verify_event, PublicKeyMap, Verified};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId};

use super::{check_format, rules, PduError};

/// Checks the PDU format, then the signatures of every server that must have signed the event
/// (the sender's, and in version 8+ the one of `join_authorised_via_users_server`), then the
/// content hash. `key_map` must hold those servers' keys; key validity is not checked here.
///
/// A wrong signature is an error. A wrong content hash is [`Verified::Signatures`]: the event
/// must then be redacted ([`redact`]) before it is used.
pub fn verify(
    pdu: &CanonicalJsonObject,
    version: &str,
    key_map: &PublicKeyMap,
) -> Result<Verified, PduError> {
    let (_, rules) = rules(version)?;
    check_format(pdu, &rules)?;
    Ok(verify_event(key_map, pdu, &rules)?)
}

/// The event as the version's redaction algorithm leaves it: only the essential top-level keys
/// and content keys, no `unsigned`. Signatures and hashes stay, so it still verifies.
pub fn redact(pdu: CanonicalJsonObject, version: &str) -> Result<CanonicalJsonObject, PduError> {
    let (_, rules) = rules(version)?;
    Ok(ruma::canonical_json::redact(pdu, &rules.redaction, None)?)
}

/// The event ID of a PDU: in versions 3+ `$` + its reference hash (the event does not carry
/// it), in versions 1 and 2 its own `event_id` field. Redacting the event does not change it.
pub fn event_id_of(pdu: &CanonicalJsonObject, version: &str) -> Result<OwnedEventId, PduError> {
    let (_, rules) = rules(version)?;
    if rules.event_id_format == EventIdFormatVersion::V1 {
        return pdu
            .get("event_id")
            .and_then(CanonicalJsonValue::as_str)
            .and_then(|id| OwnedEventId::try_from(id).ok())
            .filter(|id| id.server_name().is_some())
            .ok_or_else(|| PduError::Format("event has no valid `event_id`".into()));
    }
    Ok(EventId::new_v2_or_v3(&reference_hash(pdu, &rules)?)?)
}

/// The reference hash of a PDU (unpadded base64 of the SHA-256 of its redacted form without
/// signatures): the ID of a version 3+ event, and in versions 1 and 2 the `sha256` that
/// events referring to it write next to its ID in `prev_events` and `auth_events`.
pub fn reference_hash_of(pdu: &CanonicalJsonObject, version: &str) -> Result<String, PduError> {
    let (_, rules) = rules(version)?;
    Ok(reference_hash(pdu, &rules)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::builder::tests::{build, event};
    use crate::pdu::{PduBuilder, MAX_PDU_BYTES};
    use crate::room_versions::STABLE;
    use crate::signing_key::SigningKey;
    use ruma::{server_name, CanonicalJsonValue};
    use serde_json::json;

    /// A reference hash in unpadded base64: standard in room versions 1 to 3, URL-safe after.
    fn is_reference_hash(s: &str, version: &str) -> bool {
        let (a, b) = if ["1", "2", "3"].contains(&version) {
            (b'+', b'/')
        } else {
            (b'-', b'_')
        };
        s.len() == 43
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == a || c == b)
    }

    #[test]
    fn every_version_builds_verifiable_events() {
        let keys = SigningKey::for_tests().public_key_map(server_name!("example.org"));
        let other_keys = SigningKey::for_tests().public_key_map(server_name!("other.org"));
        for &version in STABLE {
            let v12 = version == "12";
            let v1_format = ["1", "2"].contains(&version);
            let mut create_content = json!({ "room_version": version });
            if !["11", "12"].contains(&version) {
                create_content["creator"] = json!("@alice:example.org");
            }
            let create = build(event(version, "m.room.create", Some(""), create_content)).unwrap();
            if v12 {
                assert!(!create.json.contains_key("room_id"));
                assert_eq!(create.room_id.strip_sigil(), create.event_id.localpart());
                assert!(
                    is_reference_hash(create.room_id.strip_sigil(), version),
                    "{}",
                    create.room_id
                );
            } else {
                assert_eq!(create.room_id, "!room:example.org");
            }
            let message = build(PduBuilder {
                room_id: Some(create.room_id.clone()),
                prev_events: vec![create.event_id.clone()],
                auth_events: if v12 {
                    vec![]
                } else {
                    vec![create.event_id.clone()]
                },
                reference_hashes: [(
                    create.event_id.clone(),
                    reference_hash_of(&create.json, version).unwrap(),
                )]
                .into(),
                ..event(
                    version,
                    "m.room.message",
                    None,
                    json!({"body": "hi", "msgtype": "m.text"}),
                )
            })
            .unwrap();
            assert_eq!(
                message.json["room_id"].as_str(),
                Some(create.room_id.as_str())
            );

            for pdu in [&create, &message] {
                let context = format!("v{version} {}", pdu.json["type"]);
                let hash = reference_hash_of(&pdu.json, version).unwrap();
                assert!(is_reference_hash(&hash, version), "{context}: {hash}");
                if v1_format {
                    // The event carries its own ID, which is not its hash.
                    assert_eq!(
                        pdu.json["event_id"].as_str(),
                        Some(pdu.event_id.as_str()),
                        "{context}"
                    );
                    assert_eq!(pdu.event_id.server_name().unwrap(), "example.org");
                } else {
                    assert_eq!(pdu.event_id.localpart(), hash, "{context}");
                    assert!(!pdu.json.contains_key("event_id"), "{context}");
                }
                let hash = &pdu.json["hashes"].as_object().unwrap()["sha256"];
                assert!(
                    matches!(hash, CanonicalJsonValue::String(h) if h.len() == 43),
                    "{context}"
                );
                assert_eq!(
                    verify(&pdu.json, version, &keys).unwrap(),
                    Verified::All,
                    "{context}"
                );
                assert!(
                    verify(&pdu.json, version, &other_keys).is_err(),
                    "{context}"
                );
                assert_eq!(
                    event_id_of(&pdu.json, version).unwrap(),
                    pdu.event_id,
                    "{context}"
                );
            }

            // A changed content breaks only the content hash: the signature covers the
            // redacted event, which has no message content.
            let mut tampered = message.json.clone();
            tampered.insert(
                "content".to_owned(),
                json!({"body": "bye"}).try_into().unwrap(),
            );
            assert_eq!(
                verify(&tampered, version, &keys).unwrap(),
                Verified::Signatures
            );
            let redacted = redact(message.json.clone(), version).unwrap();
            assert_eq!(
                verify(&redacted, version, &keys).unwrap(),
                Verified::Signatures
            );
            assert_eq!(event_id_of(&redacted, version).unwrap(), message.event_id);
            assert_eq!(
                reference_hash_of(&redacted, version).unwrap(),
                reference_hash_of(&message.json, version).unwrap()
            );
            // A changed signed field breaks the signature.
            let mut tampered = message.json.clone();
            tampered.insert("depth".to_owned(), CanonicalJsonValue::Integer(99.into()));
            let err = verify(&tampered, version, &keys).unwrap_err();
            assert!(
                matches!(err, PduError::Verification(_)),
                "v{version}: {err}"
            );
            assert_ne!(
                reference_hash_of(&tampered, version).unwrap(),
                reference_hash_of(&message.json, version).unwrap()
            );
            if v1_format {
                // The ID is signed too: another event ID breaks the signature, and the
                // ID's server must be one that signed.
                let mut renamed = message.json.clone();
                renamed.insert("event_id".to_owned(), "$other:example.org".into());
                assert!(verify(&renamed, version, &keys).is_err(), "v{version}");
                let mut missing = message.json.clone();
                missing.remove("event_id");
                assert!(matches!(
                    verify(&missing, version, &keys),
                    Err(PduError::Format(_))
                ));
                assert!(matches!(
                    event_id_of(&missing, version),
                    Err(PduError::Format(_))
                ));
            } else {
                assert_ne!(event_id_of(&tampered, version).unwrap(), message.event_id);
            }
        }
    }

    #[test]
    fn references_must_have_the_format_of_the_version() {
        let keys = SigningKey::for_tests().public_key_map(server_name!("example.org"));
        let pair = json!([["$a:example.org", {"sha256": "abc"}]]);
        let plain = json!(["$a:example.org"]);
        // (version, prev_events, accepted)
        let cases = [
            ("1", pair.clone(), true),
            ("2", pair.clone(), true),
            ("1", plain.clone(), false),
            ("1", json!([["$a:example.org"]]), false),
            ("1", json!([["$a:example.org", {"sha1": "abc"}]]), false),
            ("1", json!([["not an id", {"sha256": "abc"}]]), false),
            ("3", plain.clone(), true),
            ("11", plain, true),
            ("11", pair, false),
        ];
        for (version, prev, accepted) in cases {
            let mut json = build(event(version, "m.room.message", None, json!({})))
                .unwrap()
                .json;
            json.insert("prev_events".to_owned(), prev.clone().try_into().unwrap());
            let result = verify(&json, version, &keys);
            assert_eq!(
                !matches!(result, Err(PduError::Format(_))),
                accepted,
                "v{version} {prev}: {result:?}"
            );
        }
    }

    #[test]
    fn redaction_follows_the_room_version() {
        // (event type, content, content keys always kept, (key kept from version N on))
        let cases = [
            (
                "m.room.message",
                json!({"body": "hi", "msgtype": "m.text"}),
                &[][..],
                None,
            ),
            (
                "m.room.aliases",
                json!({"aliases": ["#a:example.org"]}),
                &[],
                Some(("aliases", 0)),
            ),
            (
                "m.room.member",
                json!({"membership": "join", "displayname": "A", "join_authorised_via_users_server": "@a:x.org"}),
                &["membership"],
                Some(("join_authorised_via_users_server", 9)),
            ),
            (
                "m.room.join_rules",
                json!({"join_rule": "restricted", "allow": []}),
                &["join_rule"],
                Some(("allow", 8)),
            ),
            (
                "m.room.create",
                json!({"creator": "@alice:example.org", "m.federate": false}),
                &["creator"],
                Some(("m.federate", 11)),
            ),
            (
                "m.room.power_levels",
                json!({"ban": 50, "invite": 0, "notifications": {}}),
                &["ban"],
                Some(("invite", 11)),
            ),
        ];
        for (event_type, content, always, since) in cases {
            for &version in STABLE {
                let number: u8 = version.parse().unwrap();
                // `aliases` of m.room.aliases: kept up to version 5 only.
                let kept = |key: &str| {
                    always.contains(&key)
                        || since.is_some_and(|(k, n)| {
                            k == key && if n == 0 { number < 6 } else { number >= n }
                        })
                };
                let mut expected = content.clone();
                expected.as_object_mut().unwrap().retain(|key, _| kept(key));
                let state_key = (event_type != "m.room.message").then_some("");
                let mut json = build(event(version, event_type, state_key, content.clone()))
                    .unwrap()
                    .json;
                json.insert("origin".to_owned(), "example.org".into());
                json.insert("unsigned".to_owned(), json!({"age": 1}).try_into().unwrap());
                let redacted = redact(json, version).unwrap();
                let context = format!("v{version} {event_type}");
                assert_eq!(
                    redacted["content"],
                    CanonicalJsonValue::try_from(expected).unwrap(),
                    "{context}"
                );
                // Top level: `origin` is kept before version 11, `unsigned` never.
                assert_eq!(redacted.contains_key("origin"), number < 11, "{context}");
                assert!(!redacted.contains_key("unsigned"), "{context}");
                // Versions 1 and 2 keep the event's own ID.
                assert_eq!(redacted.contains_key("event_id"), number < 3, "{context}");
                assert!(redacted.contains_key("signatures") && redacted.contains_key("hashes"));
            }
        }
    }

    #[test]
    fn oversized_pdus_are_refused() {
        let keys = SigningKey::for_tests().public_key_map(server_name!("example.org"));
        let mut json = build(event("11", "m.room.message", None, json!({})))
            .unwrap()
            .json;
        let padding = json!({"padding": "x".repeat(MAX_PDU_BYTES)});
        json.insert("unsigned".to_owned(), padding.try_into().unwrap());
        assert!(matches!(
            verify(&json, "11", &keys),
            Err(PduError::TooLarge)
        ));
    }

    #[test]
    fn unsupported_versions_are_refused_everywhere() {
        let json = build(event("11", "m.room.message", None, json!({})))
            .unwrap()
            .json;
        let keys = PublicKeyMap::new();
        for version in ["0", "13", "foo"] {
            let refused =
                |r: Result<(), PduError>| matches!(r, Err(PduError::UnsupportedRoomVersion(_)));
            assert!(
                refused(verify(&json, version, &keys).map(drop)),
                "{version}"
            );
            assert!(
                refused(redact(json.clone(), version).map(drop)),
                "{version}"
            );
            assert!(refused(event_id_of(&json, version).map(drop)), "{version}");
        }
    }
}
