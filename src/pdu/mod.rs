//! Events (PDUs) per room version: building, content-hashing and signing our own events, and
//! checking, redacting and identifying anyone's. The roomserver builds events with it; federation
//! verifies received ones with it.
//!
//! Everything here is keyed by the room version (see [`rules`]): it decides the redaction
//! algorithm (hence what the signatures cover), the event format and, from version 12, that a
//! room's ID is derived from its `m.room.create` event. Only the versions in
//! [`crate::room_versions::STABLE`] are accepted.
//!
//! # Event formats
//! - **v1** (room versions 1 and 2): the event carries its own `event_id`, `$<random>:<server>`
//!   chosen by the server that creates it (and that server must sign it), and `prev_events`
//!   and `auth_events` are `[event_id, {"sha256": <reference hash>}]` pairs.
//! - **v2 and later** (room versions 3+): no `event_id` field; the ID is `$` + the reference
//!   hash, and `prev_events` and `auth_events` are plain lists of IDs.
//!
//! # Layout
//! - [`versions`]: room version string -> ruma's rules, or [`PduError::UnsupportedRoomVersion`].
//! - [`builder`]: [`PduBuilder`] -> a signed [`Pdu`] with its event ID (and room ID).
//! - [`verify`]: [`verify()`], [`redact`], [`event_id_of`] and [`reference_hash_of`] for events
//!   from anywhere.

pub mod builder;
pub mod event;
pub mod verify;
pub mod versions;

pub use builder::PduBuilder;
pub use event::PduEvent;
pub use ruma::signatures::{PublicKeyMap, Verified};
pub use verify::{event_id_of, redact, reference_hash_of, verify};
pub use versions::rules;

use ruma::canonical_json::{CanonicalJsonError, CanonicalJsonFieldError};
use ruma::room_version_rules::{EventsReferenceFormatVersion, RoomVersionRules};
use ruma::signatures::{JsonError, VerificationError};
use ruma::state_res::check_pdu_format;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, IdParseError, OwnedEventId, OwnedRoomId,
    OwnedServerName, OwnedUserId,
};

/// A signed event in federation format, with the IDs derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pdu {
    /// The event's ID: in room versions 3+ `$` + its reference hash (the event carries no
    /// `event_id`); in versions 1 and 2 the random `$<opaque>:<server>` written into the event.
    pub event_id: OwnedEventId,
    /// The room; for a version 12 `m.room.create` event, derived from the event itself.
    pub room_id: OwnedRoomId,
    /// The event as sent over federation: hashed and signed, without `unsigned`.
    pub json: CanonicalJsonObject,
}

/// Why an event could not be built, checked or redacted. Semantic variants, no HTTP codes
/// (routing maps [`PduError::UnsupportedRoomVersion`] to 400 `M_UNSUPPORTED_ROOM_VERSION`).
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    /// Not one of the room versions this server supports.
    #[error("unsupported room version `{0}`")]
    UnsupportedRoomVersion(String),
    /// Every event names its room, except the `m.room.create` event of a version 12+ room.
    #[error("the event needs a room ID")]
    MissingRoomId,
    /// A version 12+ `m.room.create` event has no room ID: the room ID is derived from it.
    #[error("an m.room.create event in this room version has no room ID")]
    UnexpectedRoomId,
    /// We only sign events whose sender is on this server.
    #[error("sender {sender} is not on this server ({origin})")]
    ForeignSender {
        sender: OwnedUserId,
        origin: OwnedServerName,
    },
    /// The event content is not a JSON object.
    #[error("event content must be a JSON object")]
    ContentNotObject,
    /// The content is not canonical JSON (a float, or an integer outside ±(2^53 - 1)).
    #[error("event content is not canonical JSON: {0}")]
    InvalidContent(#[source] CanonicalJsonError),
    /// The event is larger than the 65535 bytes of canonical JSON that the spec allows.
    #[error("the event is larger than {MAX_PDU_BYTES} bytes")]
    TooLarge,
    /// The event breaks the PDU format rules: too many prev or auth events, a field
    /// too long or missing, a create event in a version 12 `auth_events`, ...
    #[error("malformed PDU: {0}")]
    Format(String),
    /// Hashing or signing failed on the event's JSON.
    #[error("cannot hash or sign the PDU: {0}")]
    Json(#[from] JsonError),
    /// A field the redaction algorithm looks at has the wrong type.
    #[error("cannot redact the PDU: {0}")]
    Redaction(#[from] CanonicalJsonFieldError),
    /// A signature is missing or wrong (the content hash is reported by [`Verified`] instead).
    #[error("PDU verification failed: {0}")]
    Verification(#[from] VerificationError),
    /// A reference hash did not make a valid event or room ID.
    #[error("invalid ID: {0}")]
    Id(#[from] IdParseError),
    /// Event format v1: a prev or auth event whose reference hash the builder was not given.
    #[error("no reference hash for {0}")]
    MissingReferenceHash(OwnedEventId),
}

/// The largest PDU the spec allows, in bytes of canonical JSON (signatures included).
pub const MAX_PDU_BYTES: usize = 65_536;

/// Checks the PDU format rules of the room version, with the size as its own error.
fn check_format(pdu: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(), PduError> {
    check_references(pdu, rules)?;
    let len = serde_json::to_vec(pdu).map_err(JsonError::Serde)?.len();
    if len > MAX_PDU_BYTES {
        return Err(PduError::TooLarge);
    }
    if len == MAX_PDU_BYTES {
        // ruma's format check refuses one byte below the spec's limit; the rest of its checks
        // do not read `content`, so they run on the event without it.
        let mut without_content = pdu.clone();
        without_content.remove("content");
        return check_pdu_format(&without_content, &rules.event_format).map_err(PduError::Format);
    }
    check_pdu_format(pdu, &rules.event_format).map_err(PduError::Format)
}

/// Checks the items of `prev_events` and `auth_events` (which ruma's format check leaves alone):
/// event IDs in room versions 3+, `[event_id, {"sha256": hash}]` pairs in versions 1 and 2.
fn check_references(pdu: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<(), PduError> {
    let v1 = rules.events_reference_format == EventsReferenceFormatVersion::V1;
    for field in ["prev_events", "auth_events"] {
        let Some(items) = pdu.get(field).and_then(CanonicalJsonValue::as_array) else {
            continue; // missing or not an array: ruma's check names it
        };
        for item in items {
            let id = if v1 {
                match item.as_array() {
                    Some([id, hashes])
                        if hashes
                            .as_object()
                            .and_then(|h| h.get("sha256"))
                            .is_some_and(|h| h.as_str().is_some()) =>
                    {
                        id.as_str()
                    }
                    _ => None,
                }
            } else {
                item.as_str()
            };
            if id.and_then(|id| OwnedEventId::try_from(id).ok()).is_none() {
                let expected = if v1 {
                    "[event ID, {\"sha256\": hash}] pairs"
                } else {
                    "event IDs"
                };
                return Err(PduError::Format(format!(
                    "`{field}` must be a list of {expected}"
                )));
            }
        }
    }
    Ok(())
}
