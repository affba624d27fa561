//! `PerformRoomUpgradeCopy`: what a user had on a room that was upgraded follows them to its
//! replacement, as Synapse copies it: the room's tags, its place in `m.direct`, and the push
//! rules that name the room (a room rule, or override/underride rules matching its `room_id`).
//! One transaction holding the rows it changes; each change goes out on the `userapi` stream.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{PerformRoomUpgradeCopy, UserApiOutput};
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::{UserApiError, ACCOUNT_DATA_STREAM};
use crate::bus;
use crate::push_rules;
use crate::storage::Txn;
use ruma::push::{
    NewConditionalPushRule, NewPushRule, NewSimplePushRule, PushCondition, RuleKind, Ruleset,
};
use serde_json::{json, Value};

pub async fn handle(deps: &Deps, msg: PerformRoomUpgradeCopy) -> Result<(), UserApiError> {
    let user = super::query_push_rules::user_id(deps, &msg.localpart)?;
    let (old, new) = (msg.old_room_id.as_str(), msg.new_room_id.as_str());
    let txn = deps.db.begin().await?;
    let mut changes: Vec<(Option<String>, &'static str, Value)> = Vec::new();

    // Tags: the old room's, under whatever the new room has already.
    let old_tags = read(&txn, &msg.localpart, Some(old), "m.tag").await?;
    if let Some(tags) = old_tags.as_ref().and_then(|t| t["tags"].as_object()) {
        if !tags.is_empty() {
            let mut content = read(&txn, &msg.localpart, Some(new), "m.tag")
                .await?
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            if !content["tags"].is_object() {
                content["tags"] = json!({});
            }
            if let Some(into) = content["tags"].as_object_mut() {
                for (tag, info) in tags {
                    into.entry(tag.clone()).or_insert_with(|| info.clone());
                }
            }
            changes.push((Some(new.to_owned()), "m.tag", content));
        }
    }

    // m.direct: the new room next to the old one.
    if let Some(mut direct) = read(&txn, &msg.localpart, None, "m.direct").await? {
        let mut changed = false;
        if let Some(map) = direct.as_object_mut() {
            for rooms in map.values_mut().filter_map(Value::as_array_mut) {
                if rooms.iter().any(|r| r == old) && !rooms.iter().any(|r| r == new) {
                    rooms.push(json!(new));
                    changed = true;
                }
            }
        }
        if changed {
            changes.push((None, "m.direct", direct));
        }
    }

    // Push rules that name the old room.
    let stored = read(&txn, &msg.localpart, None, push_rules::ACCOUNT_DATA_TYPE).await?;
    let mut rules = push_rules::effective(&user, stored.as_ref());
    if copy_push_rules(&mut rules, old, new)? {
        changes.push((
            None,
            push_rules::ACCOUNT_DATA_TYPE,
            push_rules::content(&rules),
        ));
    }

    let user_id = user.to_string();
    let mut appended = Vec::with_capacity(changes.len());
    for (room, data_type, content) in changes {
        account_data::upsert(
            &txn,
            &msg.localpart,
            room.as_deref(),
            data_type,
            &content.to_string(),
        )
        .await?;
        let output = UserApiOutput::AccountData {
            user_id: user_id.clone(),
            room_id: room,
            data_type: data_type.to_owned(),
            content,
        };
        appended.push(bus::append(&txn, ACCOUNT_DATA_STREAM, &user_id, &output).await?);
    }
    deps.bus.commit(txn, &appended).await?;
    Ok(())
}

/// One piece of account data as JSON, its row held until the transaction ends.
async fn read(
    txn: &Txn,
    localpart: &str,
    room: Option<&str>,
    data_type: &str,
) -> Result<Option<Value>, UserApiError> {
    Ok(
        account_data::select_for_update(txn, localpart, room, data_type)
            .await?
            .and_then(|c| serde_json::from_str(&c).ok()),
    )
}

/// Copies the user-defined rules that name `old` to rules naming `new` (the rule ID with the
/// room ID replaced, enabled as the original). Whether anything was copied.
pub fn copy_push_rules(rules: &mut Ruleset, old: &str, new: &str) -> Result<bool, UserApiError> {
    let json = push_rules::to_json(rules);
    let mut copies: Vec<(NewPushRule, bool)> = Vec::new();
    let new_room = ruma::OwnedRoomId::try_from(new)
        .map_err(|_| UserApiError::BadRequest(format!("{new} is not a room ID")))?;
    for rule in json["room"].as_array().into_iter().flatten() {
        if rule["rule_id"] == old && rule["default"] != true {
            let actions = serde_json::from_value(rule["actions"].clone()).unwrap_or_default();
            copies.push((
                NewPushRule::Room(NewSimplePushRule::new(new_room.clone(), actions)),
                rule["enabled"] != false,
            ));
        }
    }
    for kind in ["override", "underride"] {
        for rule in json[kind].as_array().into_iter().flatten() {
            let names_old = rule["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["key"] == "room_id" && c["pattern"] == old)
            });
            if rule["default"] == true || !names_old {
                continue;
            }
            let mut conditions = rule["conditions"].clone();
            for c in conditions.as_array_mut().into_iter().flatten() {
                if c["key"] == "room_id" && c["pattern"] == old {
                    c["pattern"] = json!(new);
                }
            }
            let Ok(conditions) = serde_json::from_value::<Vec<PushCondition>>(conditions) else {
                continue;
            };
            let actions = serde_json::from_value(rule["actions"].clone()).unwrap_or_default();
            let id = rule["rule_id"]
                .as_str()
                .unwrap_or_default()
                .replace(old, new);
            let new_rule = NewConditionalPushRule::new(id, conditions, actions);
            let new_rule = if kind == "override" {
                NewPushRule::Override(new_rule)
            } else {
                NewPushRule::Underride(new_rule)
            };
            copies.push((new_rule, rule["enabled"] != false));
        }
    }
    let copied = !copies.is_empty();
    for (rule, enabled) in copies {
        let (kind, id): (RuleKind, String) = (rule.kind(), rule.rule_id().to_owned());
        rules
            .insert(rule, None, None)
            .map_err(|e| UserApiError::BadRequest(e.to_string()))?;
        let _ = rules.set_enabled(kind, id, enabled);
    }
    Ok(copied)
}
