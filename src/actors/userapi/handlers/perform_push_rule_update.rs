//! `PerformPushRuleUpdate`: changes one push rule. The user's `m.push_rules` account data is
//! read and written in one transaction holding its row, so concurrent changes do not lose
//! each other; the new rule set goes out on the `userapi` stream with the commit.

use super::perform_account_data_update::announce;
use super::query_push_rules::{parse, user_id};
use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{PerformPushRuleUpdate, PushRuleChange};
use crate::actors::userapi::storage::account_data;
use crate::actors::userapi::UserApiError;
use crate::push_rules;
use ruma::push::{
    InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
    NewSimplePushRule, RemovePushRuleError, RuleKind, Ruleset,
};

pub async fn handle(deps: &Deps, msg: PerformPushRuleUpdate) -> Result<(), UserApiError> {
    let user = user_id(deps, &msg.localpart)?;
    let txn = deps.db.begin().await?;
    let stored =
        account_data::select_for_update(&txn, &msg.localpart, None, push_rules::ACCOUNT_DATA_TYPE)
            .await?;
    let mut rules = push_rules::effective(&user, parse(stored).as_ref());
    apply(&mut rules, msg.change)?;
    let content = push_rules::content(&rules);
    account_data::upsert(
        &txn,
        &msg.localpart,
        None,
        push_rules::ACCOUNT_DATA_TYPE,
        &content.to_string(),
    )
    .await?;
    announce(
        deps,
        txn,
        &msg.localpart,
        None,
        push_rules::ACCOUNT_DATA_TYPE.to_owned(),
        content,
    )
    .await
}

fn not_found(kind: &RuleKind, rule_id: &str) -> UserApiError {
    UserApiError::NotFound(format!("Unknown push rule {kind}/{rule_id}"))
}

/// Applies one change to a rule set.
pub fn apply(rules: &mut Ruleset, change: PushRuleChange) -> Result<(), UserApiError> {
    match change {
        PushRuleChange::Set {
            kind,
            rule_id,
            actions,
            conditions,
            pattern,
            before,
            after,
        } => {
            // A rule set again takes its new place (the top of its kind without before or
            // after, as Synapse), keeping whether it was enabled.
            let enabled = rules.get(kind.clone(), &rule_id).map(|r| r.enabled());
            if enabled.is_some() && !rule_id.starts_with('.') {
                let _ = rules.remove(kind.clone(), &rule_id);
            }
            let rule = new_rule(&kind, rule_id.clone(), actions, conditions, pattern)?;
            rules
                .insert(rule, after.as_deref(), before.as_deref())
                .map_err(|e| match e {
                    // As Synapse: 400, the request (not a rule in the path) names it.
                    InsertPushRuleError::UnknownRuleId => UserApiError::BadRequest(
                        "The rule named by before or after does not exist".into(),
                    ),
                    other => UserApiError::BadRequest(other.to_string()),
                })?;
            if enabled == Some(false) {
                let _ = rules.set_enabled(kind, &rule_id, false);
            }
            Ok(())
        }
        PushRuleChange::Delete { kind, rule_id } => {
            rules.remove(kind.clone(), &rule_id).map_err(|e| match e {
                RemovePushRuleError::ServerDefault => UserApiError::NotFound(format!(
                    "{rule_id} is a server-default rule: it cannot be deleted, only disabled"
                )),
                _ => not_found(&kind, &rule_id),
            })
        }
        PushRuleChange::Enabled {
            kind,
            rule_id,
            enabled,
        } => rules
            .set_enabled(kind.clone(), &rule_id, enabled)
            .map_err(|_| not_found(&kind, &rule_id)),
        PushRuleChange::Actions {
            kind,
            rule_id,
            actions,
        } => rules
            .set_actions(kind.clone(), &rule_id, actions)
            .map_err(|_| not_found(&kind, &rule_id)),
    }
}

/// The rule a `Set` asks for, checked for the fields its kind needs.
fn new_rule(
    kind: &RuleKind,
    rule_id: String,
    actions: Vec<ruma::push::Action>,
    conditions: Option<Vec<ruma::push::PushCondition>>,
    pattern: Option<String>,
) -> Result<NewPushRule, UserApiError> {
    let bad = |what: &str| UserApiError::BadRequest(what.to_owned());
    Ok(match kind {
        RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
            rule_id,
            conditions.ok_or_else(|| bad("Missing 'conditions'"))?,
            actions,
        )),
        RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
            rule_id,
            conditions.ok_or_else(|| bad("Missing 'conditions'"))?,
            actions,
        )),
        RuleKind::Content => NewPushRule::Content(NewPatternedPushRule::new(
            rule_id,
            pattern.ok_or_else(|| bad("Content rule missing 'pattern'"))?,
            actions,
        )),
        RuleKind::Room => NewPushRule::Room(NewSimplePushRule::new(
            ruma::OwnedRoomId::try_from(rule_id)
                .map_err(|_| bad("A room rule's ID must be a room ID"))?,
            actions,
        )),
        RuleKind::Sender => NewPushRule::Sender(NewSimplePushRule::new(
            ruma::OwnedUserId::try_from(rule_id)
                .map_err(|_| bad("A sender rule's ID must be a user ID"))?,
            actions,
        )),
        other => return Err(bad(&format!("Unknown push rule kind: {other}"))),
    })
}
