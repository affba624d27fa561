//! Unread counts: whether an event notifies a user, and whether it highlights, by the spec's
//! default push rules (`.m.rule.suppress_notices`, `.m.rule.invite_for_me`,
//! `.m.rule.is_user_mention`, `.m.rule.contains_display_name`, `.m.rule.is_room_mention`,
//! `.m.rule.roomnotif`, `.m.rule.message`, `.m.rule.encrypted`). A user's own push rules
//! arrive with the push gateway.

use serde_json::Value;

/// (notifies, highlights) of `event` for `user_id` (whose display name is `display_name`).
pub fn evaluate(event: &Value, user_id: &str, display_name: Option<&str>) -> (bool, bool) {
    let ty = event["type"].as_str().unwrap_or_default();
    let content = &event["content"];
    if event["sender"].as_str() == Some(user_id) {
        return (false, false);
    }
    if ty == "m.room.member" {
        let me = event["state_key"].as_str() == Some(user_id);
        return (me && content["membership"] == "invite", false);
    }
    if content["m.relates_to"]["rel_type"] == "m.replace" {
        return (false, false);
    }
    if !matches!(
        ty,
        "m.room.message" | "m.room.encrypted" | "m.sticker" | "m.poll.start" | "m.call.invite"
    ) {
        return (false, false);
    }
    if content["msgtype"] == "m.notice" {
        return (false, false);
    }
    let mentions = &content["m.mentions"];
    if mentions.is_object() {
        let me = mentions["user_ids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i.as_str() == Some(user_id)));
        return (true, me || mentions["room"] == true);
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
    let highlight = display_name.is_some_and(words) || body.contains("@room");
    (true, highlight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_rules() {
        let msg = |body: &str| {
            json!({"type": "m.room.message", "sender": "@b:x",
                   "content": {"msgtype": "m.text", "body": body}})
        };
        assert_eq!(evaluate(&msg("hi"), "@a:x", Some("Alice")), (true, false));
        assert_eq!(
            evaluate(&msg("hi alice!"), "@a:x", Some("Alice")),
            (true, true)
        );
        assert_eq!(
            evaluate(&msg("malice"), "@a:x", Some("Alice")),
            (true, false)
        );
        assert_eq!(evaluate(&msg("@room look"), "@a:x", None), (true, true));
        let own = json!({"type": "m.room.message", "sender": "@a:x", "content": {"body": "x"}});
        assert_eq!(evaluate(&own, "@a:x", None), (false, false));
        let notice = json!({"type": "m.room.message", "sender": "@b:x",
                            "content": {"msgtype": "m.notice", "body": "bot"}});
        assert_eq!(evaluate(&notice, "@a:x", None), (false, false));
        let mention = json!({"type": "m.room.message", "sender": "@b:x",
            "content": {"body": "x", "m.mentions": {"user_ids": ["@a:x"]}}});
        assert_eq!(evaluate(&mention, "@a:x", Some("x")), (true, true));
        let invite = json!({"type": "m.room.member", "sender": "@b:x", "state_key": "@a:x",
                            "content": {"membership": "invite"}});
        assert_eq!(evaluate(&invite, "@a:x", None), (true, false));
        let topic = json!({"type": "m.room.topic", "sender": "@b:x", "content": {}});
        assert_eq!(evaluate(&topic, "@a:x", None), (false, false));
    }
}
