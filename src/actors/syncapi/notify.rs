//! Unread counts: whether an event notifies a user, and whether it highlights, by the spec's
//! default push rules (`.m.rule.suppress_notices`, `.m.rule.invite_for_me`,
//! `.m.rule.is_user_mention`, `.m.rule.contains_display_name`, `.m.rule.is_room_mention`,
//! `.m.rule.roomnotif`, `.m.rule.message`, `.m.rule.encrypted`). A user's own push rules
//! arrive with the push gateway.
//!
//! The two room-mention rules carry the `sender_notification_permission` condition (key
//! `room`): an `@room` highlights only when its sender's power level reaches the room's
//! `notifications.room` (default 50). [`evaluate`] says when that check is needed
//! ([`Highlight::IfSenderMayNotifyRoom`]) and [`may_notify_room`] makes it against the power
//! levels the event was authorized with, as Synapse does.

use serde_json::Value;

/// Whether an event highlights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Highlight {
    No,
    Yes,
    /// A room mention: it highlights when the sender may notify the whole room.
    IfSenderMayNotifyRoom,
}

/// Whether `sender` may notify the whole room (`@room`): their power level, by the power
/// levels content `power_levels` (`Value::Null` when the room has none) and the room's create
/// event content and sender, reaches `notifications.room` (default 50). Creators of rooms
/// whose version privileges them (v12+: `creators_privileged`) always may.
pub fn may_notify_room(
    sender: &str,
    power_levels: &Value,
    create: Option<(&str, &Value)>,
    creators_privileged: bool,
) -> bool {
    let level = |v: &Value, default: i64| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .unwrap_or(default)
    };
    if let Some((creator, content)) = create {
        let additional = content["additional_creators"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(sender)));
        if creators_privileged && (creator == sender || additional) {
            return true;
        }
        if power_levels.is_null() {
            // Before any power levels, the creator has 100 (above the default 50) and
            // everyone else 0.
            return creator == sender;
        }
    }
    let have = match power_levels["users"].get(sender) {
        Some(v) => level(v, 0),
        None => level(&power_levels["users_default"], 0),
    };
    have >= level(&power_levels["notifications"]["room"], 50)
}

/// (notifies, highlights) of `event` for `user_id` (whose display name is `display_name`).
pub fn evaluate(event: &Value, user_id: &str, display_name: Option<&str>) -> (bool, Highlight) {
    let (no, yes) = (Highlight::No, Highlight::Yes);
    let ty = event["type"].as_str().unwrap_or_default();
    let content = &event["content"];
    if event["sender"].as_str() == Some(user_id) {
        return (false, no);
    }
    if ty == "m.room.member" {
        let me = event["state_key"].as_str() == Some(user_id);
        return (me && content["membership"] == "invite", no);
    }
    if content["m.relates_to"]["rel_type"] == "m.replace" {
        return (false, no);
    }
    if !matches!(
        ty,
        "m.room.message" | "m.room.encrypted" | "m.sticker" | "m.poll.start" | "m.call.invite"
    ) {
        return (false, no);
    }
    if content["msgtype"] == "m.notice" {
        return (false, no);
    }
    let mentions = &content["m.mentions"];
    if mentions.is_object() {
        let me = mentions["user_ids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i.as_str() == Some(user_id)));
        return match (me, mentions["room"] == true) {
            (true, _) => (true, yes),
            (false, true) => (true, Highlight::IfSenderMayNotifyRoom),
            _ => (true, no),
        };
    }
    let body = content["body"].as_str().unwrap_or_default().to_lowercase();
    let words = |needle: &str| -> bool {
        let needle = needle.to_lowercase();
        !needle.is_empty()
            && body.match_indices(&needle).any(|(at, _)| {
                let before = body[..at].chars().next_back();
                let after = body[at + needle.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            })
    };
    if display_name.is_some_and(words) {
        (true, yes)
    } else if body.contains("@room") {
        (true, Highlight::IfSenderMayNotifyRoom)
    } else {
        (true, no)
    }
}

#[cfg(test)]
mod tests {
    use super::Highlight::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn default_rules() {
        let msg = |body: &str| {
            json!({"type": "m.room.message", "sender": "@b:x",
                   "content": {"msgtype": "m.text", "body": body}})
        };
        assert_eq!(evaluate(&msg("hi"), "@a:x", Some("Alice")), (true, No));
        assert_eq!(
            evaluate(&msg("hi alice!"), "@a:x", Some("Alice")),
            (true, Yes)
        );
        assert_eq!(evaluate(&msg("malice"), "@a:x", Some("Alice")), (true, No));
        assert_eq!(
            evaluate(&msg("@room look"), "@a:x", None),
            (true, IfSenderMayNotifyRoom)
        );
        let own = json!({"type": "m.room.message", "sender": "@a:x", "content": {"body": "x"}});
        assert_eq!(evaluate(&own, "@a:x", None), (false, No));
        let notice = json!({"type": "m.room.message", "sender": "@b:x",
                            "content": {"msgtype": "m.notice", "body": "bot"}});
        assert_eq!(evaluate(&notice, "@a:x", None), (false, No));
        let mention = json!({"type": "m.room.message", "sender": "@b:x",
            "content": {"body": "x", "m.mentions": {"user_ids": ["@a:x"]}}});
        assert_eq!(evaluate(&mention, "@a:x", Some("x")), (true, Yes));
        let invite = json!({"type": "m.room.member", "sender": "@b:x", "state_key": "@a:x",
                            "content": {"membership": "invite"}});
        assert_eq!(evaluate(&invite, "@a:x", None), (true, No));
        let topic = json!({"type": "m.room.topic", "sender": "@b:x", "content": {}});
        assert_eq!(evaluate(&topic, "@a:x", None), (false, No));
    }

    #[test]
    fn room_notification_power() {
        let pl = json!({"users": {"@mod:x": 50, "@low:x": 10}, "users_default": 0});
        assert!(may_notify_room("@mod:x", &pl, None, false));
        assert!(!may_notify_room("@low:x", &pl, None, false));
        assert!(!may_notify_room("@other:x", &pl, None, false));
        let strict = json!({"users": {"@mod:x": 50}, "notifications": {"room": 60}});
        assert!(!may_notify_room("@mod:x", &strict, None, false));
        let create = json!({"additional_creators": ["@co:x"]});
        assert!(may_notify_room(
            "@co:x",
            &strict,
            Some(("@c:x", &create)),
            true
        ));
        assert!(!may_notify_room(
            "@co:x",
            &strict,
            Some(("@c:x", &create)),
            false
        ));
        assert!(may_notify_room(
            "@c:x",
            &Value::Null,
            Some(("@c:x", &create)),
            false
        ));
        assert!(!may_notify_room(
            "@o:x",
            &Value::Null,
            Some(("@c:x", &create)),
            false
        ));
    }
}
