//! Building our own events: [`PduBuilder`] -> the federation-format object, content-hashed and
//! signed with the server's key under the room version's redaction rules, with its event ID (the
//! reference hash; in versions 1 and 2 a random ID written into the event) and, for a version
//! 12 `m.room.create` event, the room ID derived from it.

use ruma::canonical_json::try_from_json_map;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion};
use ruma::signatures::{hash_and_sign_event, reference_hash, JsonError};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, ServerName, UInt,
};
use std::collections::HashMap;

use super::{check_format, rules, Pdu, PduError};
use crate::signing_key::SigningKey;

/// A new event of ours, before it is hashed, signed and identified. Every field is written as
/// given; the builder checks only what the room version and the PDU format demand.
#[derive(Debug, Clone)]
pub struct PduBuilder {
    /// The room's version: decides the redaction rules the signature covers and the ID formats.
    pub room_version: RoomVersionId,
    /// The room. `None` exactly for the `m.room.create` event of a version 12+ room.
    pub room_id: Option<OwnedRoomId>,
    /// The sender; must be on the server that signs.
    pub sender: OwnedUserId,
    /// The event type, e.g. `m.room.message`.
    pub event_type: TimelineEventType,
    /// `Some` for state events (`""` for most room state).
    pub state_key: Option<String>,
    /// A JSON object of canonical JSON values (no floats, integers within ±(2^53 - 1)).
    pub content: serde_json::Value,
    /// For `m.room.redaction`: the event redacted. Written at the top level, and also into the
    /// content for versions 11+, where the content field is the one that counts.
    pub redacts: Option<OwnedEventId>,
    /// The forward extremities this event follows (at most 20).
    pub prev_events: Vec<OwnedEventId>,
    /// The events that authorise this one (at most 10; never the create event in version 12+).
    pub auth_events: Vec<OwnedEventId>,
    /// Room versions 1 and 2 only: the reference hash ([`super::reference_hash_of`]) of every
    /// prev and auth event, written next to its ID. Later versions ignore it.
    pub reference_hashes: HashMap<OwnedEventId, String>,
    /// One more than the largest depth among `prev_events` (1 for the create event).
    pub depth: UInt,
    /// When the event was created on this server.
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
}

impl PduBuilder {
    /// Builds the event, adds its content hash, signs it as `origin` with `key`, checks it
    /// against the PDU format and derives its event ID (and room ID for a v12 create event).
    pub fn build(self, key: &SigningKey, origin: &ServerName) -> Result<Pdu, PduError> {
        let (_, rules) = rules(self.room_version.as_str())?;
        if self.sender.server_name() != origin {
            return Err(PduError::ForeignSender {
                sender: self.sender,
                origin: origin.to_owned(),
            });
        }
        let derives_room_id = rules.authorization.room_create_event_id_as_room_id
            && self.event_type == TimelineEventType::RoomCreate;
        match (derives_room_id, &self.room_id) {
            (true, Some(_)) => return Err(PduError::UnexpectedRoomId),
            (false, None) => return Err(PduError::MissingRoomId),
            _ => {}
        }
        let serde_json::Value::Object(content) = self.content else {
            return Err(PduError::ContentNotObject);
        };
        let mut content = try_from_json_map(content).map_err(PduError::InvalidContent)?;
        if let Some(redacts) = self
            .redacts
            .as_ref()
            .filter(|_| rules.redaction.content_field_redacts)
        {
            content.insert("redacts".to_owned(), redacts.as_str().into());
        }

        // Plain IDs, or in event format v1 `[id, {"sha256": reference hash}]` pairs.
        let hashes = &self.reference_hashes;
        let ids = |ids: Vec<OwnedEventId>| -> Result<CanonicalJsonValue, PduError> {
            let items = ids.into_iter().map(|id| {
                if rules.events_reference_format != EventsReferenceFormatVersion::V1 {
                    return Ok(id.as_str().into());
                }
                let hash = hashes
                    .get(&id)
                    .ok_or_else(|| PduError::MissingReferenceHash(id.clone()))?;
                let hashes =
                    CanonicalJsonObject::from([("sha256".to_owned(), hash.clone().into())]);
                Ok(vec![id.as_str().into(), hashes.into()].into())
            });
            Ok(items.collect::<Result<Vec<_>, PduError>>()?.into())
        };
        let mut json = CanonicalJsonObject::from([
            ("auth_events".to_owned(), ids(self.auth_events)?),
            ("content".to_owned(), content.into()),
            (
                "depth".to_owned(),
                CanonicalJsonValue::Integer(self.depth.into()),
            ),
            (
                "origin_server_ts".to_owned(),
                CanonicalJsonValue::Integer(self.origin_server_ts.0.into()),
            ),
            ("prev_events".to_owned(), ids(self.prev_events)?),
            ("sender".to_owned(), self.sender.as_str().into()),
            ("type".to_owned(), self.event_type.to_string().into()),
        ]);
        let optional = [
            (
                "room_id",
                self.room_id.as_ref().map(|id| id.as_str().to_owned()),
            ),
            ("state_key", self.state_key),
            ("redacts", self.redacts.map(|id| id.to_string())),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                json.insert(field.to_owned(), value.into());
            }
        }
        // Versions 1 and 2: the event carries its ID, chosen here, signed with the rest.
        let own_id = match rules.event_id_format {
            EventIdFormatVersion::V1 => {
                let id = EventId::new_v1(origin);
                json.insert("event_id".to_owned(), id.as_str().into());
                Some(id)
            }
            _ => None,
        };

        hash_and_sign_event(origin.as_str(), key.key_pair(), &mut json, &rules.redaction).map_err(
            |e| match e {
                JsonError::PduTooLarge => PduError::TooLarge,
                e => e.into(),
            },
        )?;
        check_format(&json, &rules)?;
        let event_id = match own_id {
            Some(id) => id,
            None => EventId::new_v2_or_v3(&reference_hash(&json, &rules)?)?,
        };
        let room_id = match self.room_id {
            Some(room_id) => room_id,
            None => RoomId::new_v2(event_id.localpart())?,
        };
        Ok(Pdu {
            event_id,
            room_id,
            json,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use ruma::{owned_event_id, owned_room_id, owned_user_id, server_name, uint};
    use serde_json::json;

    /// `@alice:example.org` sends `event_type` in `version`; no room ID for a v12 create event.
    pub(in crate::pdu) fn event(
        version: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: serde_json::Value,
    ) -> PduBuilder {
        let room_version = RoomVersionId::try_from(version).unwrap();
        let v12_create = event_type == "m.room.create" && version == "12";
        PduBuilder {
            room_id: (!v12_create).then(|| owned_room_id!("!room:example.org")),
            room_version,
            sender: owned_user_id!("@alice:example.org"),
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            content,
            redacts: None,
            prev_events: vec![],
            auth_events: vec![],
            reference_hashes: HashMap::new(),
            depth: uint!(1),
            origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(1_700_000_000_000).unwrap()),
        }
    }

    pub(in crate::pdu) fn build(builder: PduBuilder) -> Result<Pdu, PduError> {
        builder.build(&SigningKey::for_tests(), server_name!("example.org"))
    }

    #[test]
    fn fields_are_the_federation_format() {
        let create = build(event("11", "m.room.create", Some(""), json!({}))).unwrap();
        let keys: Vec<_> = create.json.keys().map(String::as_str).collect();
        let expected = [
            "auth_events",
            "content",
            "depth",
            "hashes",
            "origin_server_ts",
            "prev_events",
            "room_id",
            "sender",
            "signatures",
            "state_key",
            "type",
        ];
        assert_eq!(keys, expected);
        let v12 = build(event("12", "m.room.create", Some(""), json!({}))).unwrap();
        assert!(!v12.json.contains_key("room_id"));
        let message = build(event("12", "m.room.message", None, json!({}))).unwrap();
        assert!(!message.json.contains_key("state_key"));
    }

    #[test]
    fn redacts_is_placed_per_version() {
        let target = owned_event_id!("$target");
        for (version, in_content) in [("10", false), ("11", true), ("12", true)] {
            let mut redaction = event(version, "m.room.redaction", None, json!({}));
            redaction.redacts = Some(target.clone());
            let pdu = build(redaction).unwrap();
            assert_eq!(
                pdu.json["redacts"].as_str(),
                Some(target.as_str()),
                "{version}"
            );
            let content = pdu.json["content"].as_object().unwrap();
            assert_eq!(content.contains_key("redacts"), in_content, "{version}");
        }
    }

    #[test]
    fn events_up_to_the_spec_limit_are_accepted() {
        let sized = |n: usize| {
            build(event(
                "11",
                "m.room.message",
                None,
                json!({"body": "x".repeat(n)}),
            ))
            .map(|p| serde_json::to_vec(&p.json).unwrap().len())
        };
        let probe = sized(60_000).unwrap();
        let exact = 60_000 + crate::pdu::MAX_PDU_BYTES - probe;
        assert_eq!(sized(exact).unwrap(), 65_536);
        assert!(matches!(sized(exact + 1), Err(PduError::TooLarge)));
    }

    #[test]
    fn refused_events() {
        let message = |content| event("11", "m.room.message", None, content);
        let create = |version| event(version, "m.room.create", Some(""), json!({}));
        // (the error's Debug form starts with, builder)
        let cases = [
            ("InvalidContent", message(json!({"n": 1.5}))),
            ("InvalidContent", message(json!({"n": 1u64 << 53}))),
            ("ContentNotObject", message(json!(["body"]))),
            ("TooLarge", message(json!({"body": "x".repeat(70_000)}))),
            (
                "MissingRoomId",
                PduBuilder {
                    room_id: None,
                    ..create("11")
                },
            ),
            (
                "MissingRoomId",
                PduBuilder {
                    room_id: None,
                    ..event("12", "m.room.message", None, json!({}))
                },
            ),
            (
                "UnexpectedRoomId",
                PduBuilder {
                    room_id: Some(owned_room_id!("!room:example.org")),
                    ..create("12")
                },
            ),
            (
                "ForeignSender",
                PduBuilder {
                    sender: owned_user_id!("@bob:elsewhere.org"),
                    ..message(json!({}))
                },
            ),
            (
                "UnsupportedRoomVersion(\"13\")",
                PduBuilder {
                    room_version: RoomVersionId::try_from("13").unwrap(),
                    ..message(json!({}))
                },
            ),
            (
                "MissingReferenceHash",
                PduBuilder {
                    prev_events: vec![owned_event_id!("$prev:example.org")],
                    ..event("1", "m.room.message", None, json!({}))
                },
            ),
            (
                "Format",
                PduBuilder {
                    auth_events: (0..11)
                        .map(|i| format!("$e{i}").try_into().unwrap())
                        .collect(),
                    ..message(json!({}))
                },
            ),
        ];
        for (expected, builder) in cases {
            let err = build(builder).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(expected),
                "{expected}: {err:?}"
            );
        }
    }

    #[test]
    fn v1_events_carry_their_id_and_hashed_references() {
        for version in ["1", "2"] {
            let create = build(event(version, "m.room.create", Some(""), json!({}))).unwrap();
            // `$<18 random characters>:<the server that built it>`, written into the event.
            let id = create.event_id.as_str();
            assert_eq!(create.json["event_id"].as_str(), Some(id), "v{version}");
            assert_eq!(create.event_id.server_name().unwrap(), "example.org");
            assert_eq!(create.event_id.localpart().len(), 18, "{id}");
            assert_eq!(
                create.json["prev_events"],
                CanonicalJsonValue::Array(vec![])
            );
            let hash = crate::pdu::reference_hash_of(&create.json, version).unwrap();
            let message = build(PduBuilder {
                prev_events: vec![create.event_id.clone()],
                auth_events: vec![create.event_id.clone()],
                reference_hashes: HashMap::from([(create.event_id.clone(), hash.clone())]),
                ..event(version, "m.room.message", None, json!({"body": "hi"}))
            })
            .unwrap();
            let pair = serde_json::json!([[id, {"sha256": hash}]]);
            for field in ["prev_events", "auth_events"] {
                assert_eq!(
                    serde_json::to_value(&message.json[field]).unwrap(),
                    pair,
                    "v{version} {field}"
                );
            }
            // Two builds of the same event get distinct IDs: the ID is not a hash.
            let again = build(event(version, "m.room.create", Some(""), json!({}))).unwrap();
            assert_ne!(again.event_id, create.event_id);
        }
    }

    #[test]
    fn v12_create_event_cannot_be_in_auth_events() {
        let create = build(event("12", "m.room.create", Some(""), json!({}))).unwrap();
        let message = PduBuilder {
            room_id: Some(create.room_id.clone()),
            auth_events: vec![create.event_id.clone()],
            ..event("12", "m.room.message", None, json!({}))
        };
        assert!(matches!(build(message), Err(PduError::Format(_))));
    }
}
