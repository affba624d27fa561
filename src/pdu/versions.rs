//! Room versions: the string a room or request names -> ruma's rules for it, for the versions
//! this server supports ([`crate::room_versions::STABLE`]).

use ruma::room_version_rules::RoomVersionRules;
use ruma::RoomVersionId;

use super::PduError;
use crate::room_versions::STABLE;

/// The version's ID and rules, or [`PduError::UnsupportedRoomVersion`] for a version this server
/// does not support (older, unstable, unknown or custom).
pub fn rules(version: &str) -> Result<(RoomVersionId, RoomVersionRules), PduError> {
    let unsupported = || PduError::UnsupportedRoomVersion(version.to_owned());
    if !STABLE.contains(&version) {
        return Err(unsupported());
    }
    let id = RoomVersionId::try_from(version).map_err(|_| unsupported())?;
    let rules = id.rules().ok_or_else(unsupported)?;
    Ok((id, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::room_version_rules::{EventIdFormatVersion, RoomIdFormatVersion};

    #[test]
    fn supported_versions() {
        // (version, supported, room IDs derived from the create event)
        let cases = [
            ("1", true, false),
            ("2", true, false),
            ("3", true, false),
            ("4", true, false),
            ("5", true, false),
            ("6", true, false),
            ("9", true, false),
            ("11", true, false),
            ("12", true, true),
            ("0", false, false),
            ("13", false, false),
            ("org.matrix.msc2870", false, false),
            ("foo", false, false),
            ("", false, false),
        ];
        for (version, supported, v2_room_ids) in cases {
            match rules(version) {
                Ok((id, rules)) => {
                    assert!(supported, "{version} accepted");
                    assert_eq!(id.as_str(), version);
                    // v1 and v2 event IDs are `$random:server`, v3's standard base64, later
                    // versions' URL-safe.
                    let format = match version {
                        "1" | "2" => EventIdFormatVersion::V1,
                        "3" => EventIdFormatVersion::V2,
                        _ => EventIdFormatVersion::V3,
                    };
                    assert_eq!(rules.event_id_format, format);
                    assert_eq!(rules.room_id_format == RoomIdFormatVersion::V2, v2_room_ids);
                }
                Err(PduError::UnsupportedRoomVersion(v)) => {
                    assert!(!supported, "{version} refused");
                    assert_eq!(v, version);
                }
                Err(e) => panic!("{version}: {e}"),
            }
        }
    }

    #[test]
    fn every_advertised_version_has_rules() {
        for version in STABLE {
            assert!(rules(version).is_ok(), "{version}");
        }
    }
}
