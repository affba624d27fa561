//! History visibility: the one rule that decides whether a user may see one of a room's
//! events (the client-server spec's "History visibility" section). It is pure: the syncapi
//! (`actors::syncapi::visibility`, by stream positions) and the roomserver
//! (`actors::roomserver::visibility`, by the state before each event) read its inputs from
//! their own storage and ask [`allows`].
//!
//! Stored data that cannot be read fails closed: an `m.room.history_visibility` event whose
//! setting is unreadable counts as `joined`, a member event whose membership is unreadable as
//! no membership. An unknown setting is `shared`, as the spec says. [`allows_server`] is the
//! rule for other servers (the federation API's reads).

use serde_json::Value;

/// A room's `m.room.history_visibility` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryVisibility {
    /// Anyone, member or not.
    WorldReadable,
    /// Whoever was joined when the event was sent, or joined at any point after it.
    Shared,
    /// Whoever was invited or joined when the event was sent.
    Invited,
    /// Whoever was joined when the event was sent.
    Joined,
}

impl Default for HistoryVisibility {
    /// A room without the setting: `shared` (the spec's default).
    fn default() -> Self {
        HistoryVisibility::Shared
    }
}

impl HistoryVisibility {
    /// The setting of an `m.room.history_visibility` event's `content`. An unknown value is
    /// `shared` (the spec); content that is not an object, or whose `history_visibility` is
    /// missing or not a string, is `joined` (bad data fails closed).
    pub fn from_content(content: &Value) -> Self {
        match content.get("history_visibility").and_then(Value::as_str) {
            Some("world_readable") => HistoryVisibility::WorldReadable,
            Some("invited") => HistoryVisibility::Invited,
            Some("joined") => HistoryVisibility::Joined,
            Some(_) => HistoryVisibility::Shared,
            None => HistoryVisibility::Joined,
        }
    }

    /// The setting of a stored `m.room.history_visibility` event (its JSON text, in any
    /// format with a `content`); unparsable JSON is `joined`.
    pub fn from_event_json(json: &str) -> Self {
        match serde_json::from_str::<Value>(json) {
            Ok(event) => Self::from_content(&event["content"]),
            Err(_) => HistoryVisibility::Joined,
        }
    }
}

/// The membership a stored `m.room.member` event (its JSON text) gives its user; `None` when
/// it cannot be read (unparsable JSON, no string `content.membership`).
pub fn membership_of_event(json: &str) -> Option<String> {
    let event: Value = serde_json::from_str(json).ok()?;
    event["content"]["membership"].as_str().map(str::to_owned)
}

/// Whether a user may see an event.
/// - `setting`: the room's history visibility in the state before the event;
/// - `membership_at_event`: the user's membership in the state before it (`None`: none, or
///   unreadable);
/// - `joined_later`: whether the user joined the room at any point after the event (only
///   `shared` asks);
/// - `own_membership_event`: whether the event is the user's own `m.room.member` event, which
///   they always see (so a room they were invited to, left or were kicked from shows how).
pub fn allows(
    setting: HistoryVisibility,
    membership_at_event: Option<&str>,
    joined_later: bool,
    own_membership_event: bool,
) -> bool {
    if own_membership_event {
        return true;
    }
    let joined = membership_at_event == Some("join");
    match setting {
        HistoryVisibility::WorldReadable => true,
        HistoryVisibility::Shared => joined || joined_later,
        HistoryVisibility::Invited => joined || membership_at_event == Some("invite"),
        HistoryVisibility::Joined => joined,
    }
}

/// Whether another server may see an event unredacted (the spec's history visibility for
/// servers; Synapse's `filter_events_for_server`):
/// - `setting`: the room's history visibility at the event (the state after it);
/// - `memberships`: the memberships, at the event, of that server's users (one per user with
///   a member event in that state).
///
/// `world_readable` and `shared`: any server (the caller has checked that it may read the
/// room at all); `invited`: one of its users invited or joined; `joined`: one joined.
pub fn allows_server<'a>(
    setting: HistoryVisibility,
    memberships: impl IntoIterator<Item = &'a str>,
) -> bool {
    match setting {
        HistoryVisibility::WorldReadable | HistoryVisibility::Shared => true,
        HistoryVisibility::Invited => memberships
            .into_iter()
            .any(|m| m == "join" || m == "invite"),
        HistoryVisibility::Joined => memberships.into_iter().any(|m| m == "join"),
    }
}

#[cfg(test)]
mod tests {
    use super::HistoryVisibility::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn every_setting_against_every_membership() {
        let memberships = [
            None,
            Some("join"),
            Some("invite"),
            Some("leave"),
            Some("ban"),
            Some("knock"),
            Some("bogus"),
        ];
        for setting in [WorldReadable, Shared, Invited, Joined] {
            for m in memberships {
                for later in [false, true] {
                    let expected = match setting {
                        WorldReadable => true,
                        Shared => m == Some("join") || later,
                        Invited => m == Some("join") || m == Some("invite"),
                        Joined => m == Some("join"),
                    };
                    assert_eq!(
                        allows(setting, m, later, false),
                        expected,
                        "{setting:?} {m:?} joined later: {later}"
                    );
                    assert!(allows(setting, m, later, true), "own membership event");
                }
            }
        }
        // The cases the spec spells out.
        assert!(
            allows(Shared, None, true, false),
            "shared: joined afterwards"
        );
        assert!(
            !allows(Shared, Some("invite"), false, false),
            "shared: invited only"
        );
        assert!(
            !allows(Shared, Some("leave"), false, false),
            "shared: left, never back"
        );
        assert!(allows(Invited, Some("invite"), false, false));
        assert!(
            !allows(Invited, None, true, false),
            "invited: a later join is not enough"
        );
        assert!(!allows(Joined, Some("invite"), true, false));
        assert!(allows(WorldReadable, None, false, false));
    }

    #[test]
    fn settings_are_read_and_bad_data_fails_closed() {
        for (content, setting) in [
            (
                json!({"history_visibility": "world_readable"}),
                WorldReadable,
            ),
            (json!({"history_visibility": "shared"}), Shared),
            (json!({"history_visibility": "invited"}), Invited),
            (json!({"history_visibility": "joined"}), Joined),
            // Unknown values are shared (the spec).
            (json!({"history_visibility": "everyone_ever"}), Shared),
            (json!({"history_visibility": ""}), Shared),
            // Unreadable: joined.
            (json!({"history_visibility": 1}), Joined),
            (json!({"history_visibility": null}), Joined),
            (json!({"history_visibility": ["world_readable"]}), Joined),
            (json!({}), Joined),
            (json!("world_readable"), Joined),
            (json!(null), Joined),
        ] {
            assert_eq!(
                HistoryVisibility::from_content(&content),
                setting,
                "{content}"
            );
            let event = json!({"type": "m.room.history_visibility", "content": content});
            assert_eq!(
                HistoryVisibility::from_event_json(&event.to_string()),
                setting
            );
        }
        assert_eq!(HistoryVisibility::from_event_json("{not json"), Joined);
        assert_eq!(HistoryVisibility::from_event_json(""), Joined);
        assert_eq!(HistoryVisibility::default(), Shared, "no setting at all");
    }

    #[test]
    fn unreadable_memberships_are_none() {
        let m = |content: Value| membership_of_event(&json!({"content": content}).to_string());
        assert_eq!(m(json!({"membership": "join"})).as_deref(), Some("join"));
        assert_eq!(m(json!({"membership": 1})), None);
        assert_eq!(m(json!({})), None);
        assert_eq!(m(json!("join")), None);
        assert_eq!(membership_of_event("{"), None);
        // An unreadable membership sees what a non-member sees.
        assert!(!allows(
            Joined,
            m(json!({"membership": ["join"]})).as_deref(),
            false,
            false
        ));
    }

    #[test]
    fn servers_see_by_their_users_memberships() {
        for setting in [WorldReadable, Shared] {
            assert!(allows_server(setting, []), "{setting:?}");
        }
        assert!(!allows_server(Invited, []));
        assert!(!allows_server(Invited, ["leave", "ban", "knock"]));
        assert!(allows_server(Invited, ["leave", "invite"]));
        assert!(allows_server(Invited, ["join"]));
        assert!(!allows_server(Joined, []));
        assert!(!allows_server(Joined, ["invite", "leave"]));
        assert!(allows_server(Joined, ["leave", "join"]));
    }
}
