//! Push rules: the server-default rule set and a user's effective rules.
//!
//! A user's rules are kept as the content of their `m.push_rules` global account data,
//! `{"global": <ruleset>}`, written by the userapi (`PerformPushRuleUpdate`) and delivered by
//! the syncapi like any account data. What is stored is the ruleset as last written; what a
//! client sees is [`effective`]: the stored user-defined rules and the stored `enabled` /
//! `actions` of server-default rules, merged into the server defaults of this version. So a
//! user who never touched their rules has no row at all, and a server upgrade that adds or
//! changes a default rule reaches every user.
//!
//! The defaults are the spec's (ruma's `Ruleset::server_default`) plus the three rules the
//! spec deprecated in v1.7 that Synapse still serves and older clients still look for:
//! `.m.rule.contains_display_name`, `.m.rule.roomnotif` (override) and
//! `.m.rule.contains_user_name` (content), in Synapse's places.

use ruma::push::{ConditionalPushRule, PatternedPushRule, Ruleset};
use ruma::UserId;
use serde_json::{json, Value};

/// The account-data type that holds a user's push rules.
pub const ACCOUNT_DATA_TYPE: &str = "m.push_rules";

/// The server-default rule set of `user_id`, in the spec's order.
pub fn server_default(user_id: &UserId) -> Ruleset {
    let mut rules = Ruleset::server_default(user_id);
    let highlight_sound = json!([
        "notify",
        {"set_tweak": "sound", "value": "default"},
        {"set_tweak": "highlight"}
    ]);
    let contains_display_name = conditional(json!({
        "rule_id": ".m.rule.contains_display_name",
        "default": true,
        "enabled": true,
        "conditions": [{"kind": "contains_display_name"}],
        "actions": highlight_sound,
    }));
    let roomnotif = conditional(json!({
        "rule_id": ".m.rule.roomnotif",
        "default": true,
        "enabled": true,
        "conditions": [
            {"kind": "sender_notification_permission", "key": "room"},
            {"kind": "event_match", "key": "content.body", "pattern": "@room"}
        ],
        "actions": ["notify", {"set_tweak": "highlight"}],
    }));
    let mut extra = vec![
        (".m.rule.is_user_mention", contains_display_name),
        (".m.rule.is_room_mention", roomnotif),
    ];
    for rule in std::mem::take(&mut rules.override_) {
        let after = rule.rule_id.clone();
        rules.override_.insert(rule);
        if let Some(i) = extra.iter().position(|(id, _)| *id == after) {
            if let (_, Some(r)) = extra.remove(i) {
                rules.override_.insert(r);
            }
        }
    }
    if let Ok(rule) = serde_json::from_value::<PatternedPushRule>(json!({
        "rule_id": ".m.rule.contains_user_name",
        "default": true,
        "enabled": true,
        "pattern": user_id.localpart(),
        "actions": highlight_sound,
    })) {
        rules.content.insert(rule);
    }
    rules
}

fn conditional(v: Value) -> Option<ConditionalPushRule> {
    serde_json::from_value(v).ok()
}

/// The rules a user has, given the stored content of their `m.push_rules` account data.
/// Content that does not parse counts as none (the defaults).
pub fn effective(user_id: &UserId, stored: Option<&Value>) -> Ruleset {
    let defaults = server_default(user_id);
    match stored
        .and_then(|c| c.get("global"))
        .and_then(|g| serde_json::from_value::<Ruleset>(g.clone()).ok())
    {
        Some(mut rules) => {
            rules.update_with_server_default(defaults);
            rules
        }
        None => defaults,
    }
}

/// The kinds of rules of the `global` scope, in the spec's order of evaluation.
pub const KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];

/// A rule set as JSON with every kind present, empty ones too (ruma leaves those out; Synapse
/// and the clients written against it do not).
pub fn to_json(rules: &Ruleset) -> Value {
    let mut v = serde_json::to_value(rules).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        for kind in KINDS {
            o.entry(kind).or_insert_with(|| json!([]));
        }
    }
    v
}

/// The account-data content of a rule set: `{"global": ruleset}`.
pub fn content(rules: &Ruleset) -> Value {
    json!({ "global": to_json(rules) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::push::{NewPushRule, NewSimplePushRule, RuleKind};
    use ruma::user_id;

    fn ids(rules: &Ruleset, kind: &str) -> Vec<String> {
        content(rules)["global"][kind]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["rule_id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn defaults_follow_the_spec_order_with_the_deprecated_rules() {
        let rules = server_default(user_id!("@alice:example.org"));
        let over = ids(&rules, "override");
        assert_eq!(over.first().map(String::as_str), Some(".m.rule.master"));
        for id in [
            ".m.rule.suppress_notices",
            ".m.rule.invite_for_me",
            ".m.rule.member_event",
            ".m.rule.is_user_mention",
            ".m.rule.contains_display_name",
            ".m.rule.is_room_mention",
            ".m.rule.roomnotif",
            ".m.rule.tombstone",
            ".m.rule.reaction",
            ".m.rule.room.server_acl",
            ".m.rule.suppress_edits",
        ] {
            assert!(over.contains(&id.to_owned()), "{id} missing from {over:?}");
        }
        let pos = |id: &str| over.iter().position(|r| r == id);
        assert_eq!(
            pos(".m.rule.contains_display_name"),
            pos(".m.rule.is_user_mention").map(|p| p + 1)
        );
        assert_eq!(ids(&rules, "content"), vec![".m.rule.contains_user_name"]);
        assert_eq!(
            ids(&rules, "underride"),
            vec![
                ".m.rule.call",
                ".m.rule.encrypted_room_one_to_one",
                ".m.rule.room_one_to_one",
                ".m.rule.message",
                ".m.rule.encrypted"
            ]
        );
        let c = content(&rules);
        assert_eq!(c["global"]["content"][0]["pattern"], "alice");
        assert_eq!(c["global"]["override"][0]["enabled"], false);
    }

    #[test]
    fn stored_changes_survive_a_merge_with_the_defaults() {
        let user = user_id!("@bob:example.org");
        let mut rules = server_default(user);
        rules
            .set_enabled(RuleKind::Override, ".m.rule.master", true)
            .expect("master exists");
        rules
            .insert(
                NewPushRule::Sender(NewSimplePushRule::new(
                    user_id!("@spam:example.org").to_owned(),
                    vec![],
                )),
                None,
                None,
            )
            .expect("insert");
        // A stored set from an older version that lacks a default rule and keeps a retired one.
        let mut stored = content(&rules);
        let over = stored["global"]["override"].as_array_mut().expect("array");
        over.retain(|r| r["rule_id"] != ".m.rule.tombstone");
        over.push(
            json!({"rule_id": ".m.rule.retired", "default": true, "enabled": true,
            "conditions": [], "actions": []}),
        );
        let merged = effective(user, Some(&stored));
        let c = content(&merged);
        assert_eq!(c["global"]["override"][0]["rule_id"], ".m.rule.master");
        assert_eq!(c["global"]["override"][0]["enabled"], true);
        let over = ids(&merged, "override");
        assert!(over.contains(&".m.rule.tombstone".to_owned()));
        assert!(!over.contains(&".m.rule.retired".to_owned()));
        assert_eq!(ids(&merged, "sender"), vec!["@spam:example.org"]);
        assert_eq!(c["global"]["sender"][0]["actions"], json!([]));
        // Nothing stored, or garbage: the defaults.
        let fresh = effective(user, None);
        assert_eq!(
            ids(&fresh, "override"),
            ids(&server_default(user), "override")
        );
        let bad = effective(user, Some(&json!({"global": 3})));
        assert_eq!(ids(&bad, "underride").len(), 5);
    }
}
