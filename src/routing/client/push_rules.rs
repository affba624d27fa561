//! Push rules: `/pushrules/...`. The rules live in the userapi (`QueryPushRules`,
//! `PerformPushRuleUpdate`) and reach clients through `/sync` as `m.push_rules` account data.
//! Evaluating them (notification counts, pushers) is not here.

use crate::actors::userapi::messages::{PerformPushRuleUpdate, PushRuleChange, QueryPushRules};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, RawAuthed, Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use ruma::api::client::push::{
    delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all,
    get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
};
use ruma::push::{NewPushRule, RuleKind, Ruleset};

/// 400 M_UNRECOGNIZED, as Synapse answers a push-rule path it does not know (another scope,
/// another kind, no rule ID).
fn unrecognized(what: &str) -> MatrixError {
    MatrixError::new("M_UNRECOGNIZED", what.to_owned()).with_status(StatusCode::BAD_REQUEST)
}

/// The five kinds of the `global` scope; anything else is refused.
fn check_kind(kind: &RuleKind) -> Result<(), MatrixError> {
    match kind {
        RuleKind::Override
        | RuleKind::Underride
        | RuleKind::Content
        | RuleKind::Room
        | RuleKind::Sender => Ok(()),
        other => Err(unrecognized(&format!("Unknown push rule kind: {other}"))),
    }
}

async fn rules(state: &AppState, sender: &Authed) -> Result<Ruleset, MatrixError> {
    Ok(state
        .userapi
        .send(QueryPushRules {
            localpart: sender.localpart.clone(),
        })
        .await?)
}

/// One rule as the rule set lists it (`push_rules::to_json`, the shape `/pushrules/` gives).
async fn rule(
    state: &AppState,
    sender: &Authed,
    kind: &RuleKind,
    rule_id: &str,
) -> Result<serde_json::Value, MatrixError> {
    check_kind(kind)?;
    let all = crate::push_rules::to_json(&rules(state, sender).await?);
    all[kind.as_str()]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["rule_id"] == rule_id))
        .cloned()
        .ok_or_else(|| MatrixError::not_found("Unknown push rule"))
}

async fn change(
    state: &AppState,
    sender: &Authed,
    change: PushRuleChange,
) -> Result<(), MatrixError> {
    state
        .userapi
        .send(PerformPushRuleUpdate {
            localpart: sender.localpart.clone(),
            change,
        })
        .await
        .map_err(rule_error)
}

/// # `GET /_matrix/client/v3/pushrules/`
///
/// Written out with every kind present, empty ones too (ruma's response leaves them out).
pub async fn get_pushrules_all(
    state: web::Data<AppState>,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let global = rules(&state, &req.sender).await?;
    Ok(HttpResponse::Ok().json(crate::push_rules::content(&global)))
}

/// # `GET /_matrix/client/v3/pushrules/global/`
///
/// The rule set itself, not wrapped in `global` (as Synapse answers).
pub async fn get_pushrules_global_scope(
    state: web::Data<AppState>,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let global = rules(&state, &req.sender).await?;
    Ok(HttpResponse::Ok().json(crate::push_rules::to_json(&global)))
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn get_pushrule(
    state: web::Data<AppState>,
    req: Ruma<get_pushrule::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let r = rule(&state, &req.sender, &req.body.kind, &req.body.rule_id).await?;
    Ok(HttpResponse::Ok().json(r))
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn set_pushrule(
    state: web::Data<AppState>,
    req: Ruma<set_pushrule::v3::Request>,
) -> RumaResult<set_pushrule::v3::Response> {
    let kind = req.body.rule.kind();
    check_kind(&kind)?;
    let (rule_id, actions, conditions, pattern) = match req.body.rule {
        NewPushRule::Override(r) | NewPushRule::Underride(r) => {
            (r.rule_id, r.actions, Some(r.conditions), None)
        }
        NewPushRule::Content(r) => (r.rule_id, r.actions, None, Some(r.pattern)),
        NewPushRule::Room(r) => (r.rule_id.to_string(), r.actions, None, None),
        NewPushRule::Sender(r) => (r.rule_id.to_string(), r.actions, None, None),
        _ => return Err(unrecognized("Unknown push rule kind")),
    };
    check_actions(&actions)?;
    change(
        &state,
        &req.sender,
        PushRuleChange::Set {
            kind,
            rule_id,
            actions,
            conditions,
            pattern,
            before: req.body.before.filter(|s| !s.is_empty()),
            after: req.body.after.filter(|s| !s.is_empty()),
        },
    )
    .await?;
    Ok(RumaResponse(set_pushrule::v3::Response::new()))
}

/// # `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn delete_pushrule(
    state: web::Data<AppState>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> RumaResult<delete_pushrule::v3::Response> {
    check_kind(&req.body.kind)?;
    change(
        &state,
        &req.sender,
        PushRuleChange::Delete {
            kind: req.body.kind,
            rule_id: req.body.rule_id,
        },
    )
    .await?;
    Ok(RumaResponse(delete_pushrule::v3::Response::new()))
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn get_pushrule_enabled(
    state: web::Data<AppState>,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let r = rule(&state, &req.sender, &req.body.kind, &req.body.rule_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "enabled": r["enabled"] })))
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn set_pushrule_enabled(
    state: web::Data<AppState>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> RumaResult<set_pushrule_enabled::v3::Response> {
    check_kind(&req.body.kind)?;
    change(
        &state,
        &req.sender,
        PushRuleChange::Enabled {
            kind: req.body.kind,
            rule_id: req.body.rule_id,
            enabled: req.body.enabled,
        },
    )
    .await?;
    Ok(RumaResponse(set_pushrule_enabled::v3::Response::new()))
}

/// # `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn get_pushrule_actions(
    state: web::Data<AppState>,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let r = rule(&state, &req.sender, &req.body.kind, &req.body.rule_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "actions": r["actions"] })))
}

/// # `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn set_pushrule_actions(
    state: web::Data<AppState>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> RumaResult<set_pushrule_actions::v3::Response> {
    check_kind(&req.body.kind)?;
    check_actions(&req.body.actions)?;
    change(
        &state,
        &req.sender,
        PushRuleChange::Actions {
            kind: req.body.kind,
            rule_id: req.body.rule_id,
            actions: req.body.actions,
        },
    )
    .await?;
    Ok(RumaResponse(set_pushrule_actions::v3::Response::new()))
}

/// Every other path under `/pushrules/`: as Synapse, `GET /pushrules/global/{kind}/` lists
/// that kind's rules, and anything else (another scope than `global`, an unknown kind, a kind
/// without a rule ID) is 400 `M_UNRECOGNIZED`.
pub async fn other_path(
    state: web::Data<AppState>,
    sender: RawAuthed,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, MatrixError> {
    let rest = req.match_info().get("rest").unwrap_or_default();
    if req.method() == actix_web::http::Method::GET {
        if let Some(kind) = rest
            .strip_prefix("global/")
            .and_then(|k| k.strip_suffix('/'))
        {
            if crate::push_rules::KINDS.contains(&kind) {
                let all = crate::push_rules::to_json(&rules(&state, &sender.0).await?);
                return Ok(HttpResponse::Ok().json(&all[kind]));
            }
        }
    }
    Err(unrecognized(
        "Unrecognised push rule path: the scope must be global and a rule needs a kind and an ID",
    ))
}

/// Refuses actions that are not the spec's (`notify`, `dont_notify`, `coalesce` and
/// `set_tweak` objects), as Synapse does, so no rule holds what no pusher understands.
fn check_actions(actions: &[ruma::push::Action]) -> Result<(), MatrixError> {
    for a in actions {
        let ok = match serde_json::to_value(a).unwrap_or_default() {
            serde_json::Value::String(s) => {
                ["notify", "dont_notify", "coalesce"].contains(&s.as_str())
            }
            serde_json::Value::Object(o) => o.get("set_tweak").is_some_and(|t| t.is_string()),
            _ => false,
        };
        if !ok {
            return Err(bad_rule(format!(
                "Invalid action {}",
                serde_json::to_string(a).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// A push rule the server cannot take: 400 M_UNKNOWN, as Synapse answers (and the spec's
/// example shows).
fn bad_rule(error: String) -> MatrixError {
    MatrixError::new("M_UNKNOWN", error).with_status(StatusCode::BAD_REQUEST)
}

/// A userapi refusal of a rule change, in the push-rule API's terms.
fn rule_error(e: crate::actors::userapi::UserApiError) -> MatrixError {
    match e {
        crate::actors::userapi::UserApiError::BadRequest(why) => bad_rule(why),
        other => other.into(),
    }
}
