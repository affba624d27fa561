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

/// Writes the server-default rules as Synapse serves them, checked side by side
/// (`tests/vs_synapse.rs`): the same actions in the same order with `highlight: false` written
/// out where Synapse writes it (unless the user changed a rule's actions), the one-to-one
/// rules' conditions in its order, and its `.im.vector.jitsi` underride rule (Element's Jitsi
/// widgets) last. Clients compare rule sets, so the shape matters. ruma's `Ruleset` keeps its
/// own shape for these rules, so this is done on the JSON.
fn as_synapse_serves_them(v: &mut Value) {
    let notify = json!("notify");
    let highlight = json!({"set_tweak": "highlight"});
    let no_highlight = json!({"set_tweak": "highlight", "value": false});
    let sound = json!({"set_tweak": "sound", "value": "default"});
    let ring = json!({"set_tweak": "sound", "value": "ring"});
    // (rule, Synapse's actions, the same actions as ruma writes them)
    let actions: [(&str, Value, Value); 9] = [
        (
            ".m.rule.invite_for_me",
            json!([notify, no_highlight, sound]),
            json!([notify, sound]),
        ),
        (
            ".m.rule.is_user_mention",
            json!([notify, highlight, sound]),
            json!([notify, sound, highlight]),
        ),
        (
            ".m.rule.contains_display_name",
            json!([notify, highlight, sound]),
            json!([notify, sound, highlight]),
        ),
        (
            ".m.rule.contains_user_name",
            json!([notify, highlight, sound]),
            json!([notify, sound, highlight]),
        ),
        (
            ".m.rule.call",
            json!([notify, ring, no_highlight]),
            json!([notify, ring]),
        ),
        (
            ".m.rule.encrypted_room_one_to_one",
            json!([notify, sound, no_highlight]),
            json!([notify, sound]),
        ),
        (
            ".m.rule.room_one_to_one",
            json!([notify, sound, no_highlight]),
            json!([notify, sound]),
        ),
        (
            ".m.rule.message",
            json!([notify, no_highlight]),
            json!([notify]),
        ),
        (
            ".m.rule.encrypted",
            json!([notify, no_highlight]),
            json!([notify]),
        ),
    ];
    for kind in KINDS {
        for rule in v[kind].as_array_mut().into_iter().flatten() {
            if rule["default"] != true {
                continue;
            }
            let id = rule["rule_id"].as_str().unwrap_or_default().to_owned();
            if let Some((_, synapse, ruma)) = actions.iter().find(|(r, _, _)| *r == id) {
                if rule["actions"] == *ruma {
                    rule["actions"] = synapse.clone();
                }
            }
            // Synapse lists the event type before the member count.
            if id.ends_with("room_one_to_one") {
                if let Some(c) = rule["conditions"].as_array_mut() {
                    c.sort_by_key(|c| c["kind"] != "event_match");
                }
            }
        }
    }
    if let Some(under) = v["underride"].as_array_mut() {
        if !under.iter().any(|r| r["rule_id"] == ".im.vector.jitsi") {
            under.push(json!({
                "rule_id": ".im.vector.jitsi",
                "default": true,
                "enabled": true,
                "conditions": [
                    {"kind": "event_match", "key": "type", "pattern": "im.vector.modular.widgets"},
                    {"kind": "event_match", "key": "content.type", "pattern": "jitsi"},
                    {"kind": "event_match", "key": "state_key", "pattern": "*"}
                ],
                "actions": [notify, no_highlight],
            }));
        }
    }
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

/// Kinds written out empty besides [`KINDS`]: `postcontent` (MSC4306), which Synapse lists
/// and myelin has no rules of yet.
const EMPTY_KINDS: [&str; 1] = ["postcontent"];

/// A rule set as JSON with every kind present, empty ones too (ruma leaves those out; Synapse
/// and the clients written against it do not).
pub fn to_json(rules: &Ruleset) -> Value {
    let mut v = serde_json::to_value(rules).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        for kind in KINDS.iter().chain(&EMPTY_KINDS) {
            o.entry(*kind).or_insert_with(|| json!([]));
        }
    }
    as_synapse_serves_them(&mut v);
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
                ".m.rule.encrypted",
                ".im.vector.jitsi"
            ]
        );
        assert_eq!(
            content(&rules)["global"]["underride"][3]["actions"],
            json!(["notify", {"set_tweak": "highlight", "value": false}])
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
        assert_eq!(ids(&bad, "underride").len(), 6);
    }
}
