//! The history endpoints: `/messages`, `/context`, `/relations` and `/threads`, read from the
//! syncapi's copy of the room, with history visibility and the ignore list applied.
//!
//! Tokens are sync tokens (`s<position>_...`); only the room-event position matters here. A
//! token at position `p` sits just after the event at `p`: backwards pagination from it
//! starts with that event, forwards pagination with the next one.
//!
//! A backwards `/messages` page that reaches the start of what this server holds of a room
//! asks the roomserver for older history from other servers (`PerformBackfill`, which does
//! nothing when none lacks: a room created here, or history fetched before); what comes is
//! stored at negative positions, below everything else, and the page is read again.

use super::actor::Deps;
use super::filter::EventFilter;
use super::format::{self, Format};
use super::messages::*;
use super::notifier::QueryPositions;
use super::storage::room_events::{self, RoomEvent};
use super::storage::{current_state, relations};
use super::sync::{ignored_users, Scan};
use super::token::StreamPositions;
use super::visibility::Visibility;
use super::SyncApiError;
use crate::history_visibility::HistoryVisibility;
use crate::storage::Db;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The most events one page holds.
const MAX_LIMIT: i64 = 1000;
/// How deep `recurse=true` follows relations of relations.
const RECURSION_DEPTH: usize = 3;

fn token(s: &Option<String>) -> Result<Option<StreamPositions>, SyncApiError> {
    s.as_deref()
        .map(|t| {
            StreamPositions::parse(t).ok_or_else(|| {
                SyncApiError::InvalidParam(format!("invalid pagination token {t:?}"))
            })
        })
        .transpose()
}

fn at(now: StreamPositions, pdu: i64) -> String {
    StreamPositions { pdu, ..now }.to_string()
}

/// What a user may read of a room: events up to `upto` (their leave), and from `trusted`
/// on without checking visibility.
struct Access {
    upto: i64,
    trusted: i64,
}

/// Refuses users who were never in the room (unless its history is world-readable).
async fn access(db: &Db, room_id: &str, user: &str) -> Result<Access, SyncApiError> {
    match current_state::select_membership(db, room_id, user).await? {
        Some((m, position)) if m == "join" => Ok(Access {
            upto: i64::MAX,
            trusted: position,
        }),
        Some((m, position)) if m == "leave" || m == "ban" => Ok(Access {
            upto: position,
            trusted: i64::MAX,
        }),
        _ => {
            if world_readable(db, room_id).await? {
                Ok(Access {
                    upto: i64::MAX,
                    trusted: i64::MAX,
                })
            } else {
                Err(SyncApiError::Forbidden(format!(
                    "{user} is not in room {room_id}"
                )))
            }
        }
    }
}

/// Whether a room's current history visibility is `world_readable` (anyone may read it
/// without joining: peeking).
pub(super) async fn world_readable(db: &Db, room_id: &str) -> Result<bool, SyncApiError> {
    let setting =
        current_state::select_holder(db, room_id, "m.room.history_visibility", "").await?;
    Ok(match setting {
        Some(id) => room_events::select_by_id(db, &id).await?.is_some_and(|e| {
            HistoryVisibility::from_event_json(&e.json) == HistoryVisibility::WorldReadable
        }),
        None => false,
    })
}

/// How events are written for a reader of the history.
fn reader_format<'a>(
    user: &'a str,
    device: &'a str,
    acc: &Access,
    ignored: &HashSet<String>,
) -> Format<'a> {
    Format {
        upto: acc.upto,
        ignored: std::sync::Arc::new(ignored.clone()),
        ..Format::client(user, Some(device))
    }
}

fn parse_filter(v: &Value) -> Result<EventFilter, SyncApiError> {
    if v.is_null() {
        return Ok(EventFilter::default());
    }
    serde_json::from_value(v.clone())
        .map_err(|e| SyncApiError::InvalidParam(format!("invalid filter: {e}")))
}

/// The member events of the senders of `events` as of position `upto` (lazy loading).
async fn members_of(
    db: &Db,
    room_id: &str,
    events: &[RoomEvent],
    upto: i64,
    f: &Format<'_>,
) -> Result<Vec<Value>, SyncApiError> {
    let senders: HashSet<&str> = events.iter().map(|e| e.sender.as_str()).collect();
    let mut out = Vec::new();
    for sender in senders {
        let history =
            room_events::select_state_history(db, room_id, "m.room.member", sender, upto).await?;
        if let Some(e) = history.last() {
            out.push(format::event(e, f, None));
        }
    }
    Ok(out)
}

pub async fn query_messages(deps: &Deps, msg: QueryMessages) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let acc = access(db, &msg.room_id, &msg.user_id).await?;
    let filter = parse_filter(&msg.filter)?;
    let limit = msg.limit.unwrap_or(10).clamp(0, MAX_LIMIT);
    let now = deps.notifier.send(QueryPositions).await?;
    let from = token(&msg.from)?;
    let to = token(&msg.to)?;
    let ignored = ignored_users(db, &msg.user_id).await?;
    let scan = Scan {
        room_id: &msg.room_id,
        user: &msg.user_id,
        filter: &filter,
        ignored: &ignored,
        trusted_from: acc.trusted,
        current_state_visible: false,
        erased: &deps.erased,
    };
    let fmt = reader_format(&msg.user_id, &msg.device_id, &acc, &ignored);
    let (start, events, end) = if msg.backwards {
        let from = from.map_or(now.pdu, |t| t.pdu).min(acc.upto);
        let lo = to.map_or(i64::MIN, |t| t.pdu);
        let mut page = scan.run(db, lo, from, limit, true).await?;
        // The start of what this server holds: older history may be on other servers.
        if to.is_none() && !page.more && (page.events.len() as i64) < limit {
            let rescan = backfill(deps, &msg.room_id, limit).await;
            if rescan {
                page = scan.run(db, lo, from, limit, true).await?;
            }
        }
        // As Synapse: `end` comes with every page that has events or may have more; only an
        // empty page at the end of what the user may see has none.
        let end = (page.more || !page.events.is_empty()).then(|| at(now, page.resume));
        (at(now, from), page.events, end)
    } else {
        let from = from.map_or(i64::MIN, |t| t.pdu);
        let hi = to.map_or(now.pdu, |t| t.pdu).min(now.pdu).min(acc.upto);
        let page = scan.run(db, from, hi, limit, false).await?;
        let end = (page.more || !page.events.is_empty()).then(|| at(now, page.resume));
        (at(now, from), page.events, end)
    };
    let chunk = format::events(db, &events, &fmt).await?;
    let state = if filter.lazy_load_members {
        let upto = events.iter().map(|e| e.position).max().unwrap_or(0);
        members_of(db, &msg.room_id, &events, upto, &fmt).await?
    } else {
        Vec::new()
    };
    // As Synapse: `state` only when there is some (lazy-loaded members).
    let mut out = json!({"start": start, "chunk": chunk});
    if !state.is_empty() {
        out["state"] = json!(state);
    }
    if let Some(end) = end {
        out["end"] = json!(end);
    }
    Ok(out)
}

/// The fewest events a backfill asks other servers for.
const BACKFILL_MIN: u64 = 50;

/// Asks the roomserver for the room's history before what this server holds
/// (`PerformBackfill`: from other servers, only when it lacks some) and waits for what came
/// to be applied here. Whether anything came; a failure is logged, the page stays as it is.
async fn backfill(deps: &Deps, room_id: &str, limit: i64) -> bool {
    let Some(roomserver) = &deps.roomserver else {
        return false;
    };
    let asked = roomserver
        .send(crate::actors::roomserver::messages::PerformBackfill {
            room_id: room_id.to_owned(),
            limit: u64::try_from(limit).unwrap_or(0).max(BACKFILL_MIN),
        })
        .await;
    match asked {
        Ok(done) if done.events > 0 => {
            deps.catch_up().await;
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(room_id, error = %e, "backfill failed");
            false
        }
    }
}

/// The event a request names, if the user may see it.
async fn visible_event(
    db: &Db,
    room_id: &str,
    user: &str,
    event_id: &str,
    acc: &Access,
    erased: &super::visibility::ErasedUsers,
) -> Result<RoomEvent, SyncApiError> {
    let not_found = || SyncApiError::NotFound(format!("Event {event_id} not found"));
    let mut e = room_events::select_by_id(db, event_id)
        .await?
        .filter(|e| e.room_id == room_id && e.position <= acc.upto)
        .ok_or_else(not_found)?;
    if e.position < acc.trusted {
        let v = Visibility::load(db, room_id, user, erased).await?;
        if !v.allows(&e) {
            return Err(not_found());
        }
        v.apply_erasure(&mut e);
    }
    Ok(e)
}

pub async fn query_context(deps: &Deps, msg: QueryContext) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let acc = access(db, &msg.room_id, &msg.user_id).await?;
    let filter = parse_filter(&msg.filter)?;
    let limit = msg.limit.clamp(0, MAX_LIMIT);
    let event = visible_event(
        db,
        &msg.room_id,
        &msg.user_id,
        &msg.event_id,
        &acc,
        &deps.erased,
    )
    .await?;
    let now = deps.notifier.send(QueryPositions).await?;
    let ignored = ignored_users(db, &msg.user_id).await?;
    let scan = Scan {
        room_id: &msg.room_id,
        user: &msg.user_id,
        filter: &filter,
        ignored: &ignored,
        trusted_from: acc.trusted,
        current_state_visible: false,
        erased: &deps.erased,
    };
    let before_limit = limit / 2;
    let after_limit = limit - before_limit;
    let before = scan
        .run(db, i64::MIN, event.position - 1, before_limit, true)
        .await?
        .events;
    let hi = now.pdu.min(acc.upto);
    let after = scan
        .run(db, event.position, hi, after_limit, false)
        .await?
        .events;
    let fmt = reader_format(&msg.user_id, &msg.device_id, &acc, &ignored);
    let start = at(
        now,
        before.last().map_or(event.position, |e| e.position) - 1,
    );
    let end = at(now, after.last().map_or(event.position, |e| e.position));
    let mut all: Vec<RoomEvent> = before.clone();
    all.push(event.clone());
    all.extend(after.iter().cloned());
    // The state at the last event returned, never later (a user who left sees no more).
    let last = after.last().map_or(event.position, |e| e.position);
    let state: Vec<Value> = if filter.lazy_load_members {
        members_of(db, &msg.room_id, &all, last, &fmt).await?
    } else {
        room_events::select_state_in_range(db, &msg.room_id, i64::MIN, last + 1)
            .await?
            .iter()
            .filter(|e| filter.allows(&format::json_of(e)))
            .map(|e| format::event(e, &fmt, None))
            .collect()
    };
    Ok(json!({
        "event": format::events(db, std::slice::from_ref(&event), &fmt).await?.pop(),
        "events_before": format::events(db, &before, &fmt).await?,
        "events_after": format::events(db, &after, &fmt).await?,
        "start": start,
        "end": end,
        "state": state,
    }))
}

pub async fn query_relations(deps: &Deps, msg: QueryRelations) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    // The spec answers 404 for a parent the user may not see, member or not.
    let acc = access(db, &msg.room_id, &msg.user_id)
        .await
        .map_err(|e| match e {
            SyncApiError::Forbidden(_) => {
                SyncApiError::NotFound(format!("Event {} not found", msg.event_id))
            }
            e => e,
        })?;
    visible_event(
        db,
        &msg.room_id,
        &msg.user_id,
        &msg.event_id,
        &acc,
        &deps.erased,
    )
    .await?;
    let limit = msg.limit.unwrap_or(50).clamp(0, MAX_LIMIT);
    let from = token(&msg.from)?;
    let to = token(&msg.to)?;
    let now = deps.notifier.send(QueryPositions).await?;
    // Bounds, exclusive: lo < position < hi.
    let (lo, hi) = if msg.backwards {
        (
            to.map_or(0, |t| t.pdu),
            from.map_or(i64::MAX, |t| t.pdu.saturating_add(1)),
        )
    } else {
        (
            from.map_or(0, |t| t.pdu),
            to.map_or(i64::MAX, |t| t.pdu.saturating_add(1)),
        )
    };
    let hi = hi.min(acc.upto.saturating_add(1));
    let mut depth = 0;
    let mut rels = if msg.recurse {
        // Relations of relations, a few levels deep, filtered and paged in memory.
        let mut all = Vec::new();
        let mut targets = vec![msg.event_id.clone()];
        for _ in 0..RECURSION_DEPTH {
            let found = relations::select_to(db, &targets).await?;
            if found.is_empty() {
                break;
            }
            depth += 1;
            targets = found.iter().map(|r| r.event_id.clone()).collect();
            all.extend(found);
            if all.len() > 10 * MAX_LIMIT as usize {
                break;
            }
        }
        all.retain(|r| {
            r.position > lo
                && r.position < hi
                && msg.rel_type.as_ref().is_none_or(|t| *t == r.rel_type)
                && msg.event_type.as_ref().is_none_or(|t| *t == r.event_type)
        });
        all.sort_by_key(|r| r.position);
        if msg.backwards {
            all.reverse();
        }
        all.truncate(limit as usize + 1);
        all
    } else {
        relations::select_page(
            db,
            &msg.event_id,
            msg.rel_type.as_deref(),
            msg.event_type.as_deref(),
            lo,
            hi,
            limit + 1,
            msg.backwards,
        )
        .await?
    };
    let more = rels.len() as i64 > limit;
    rels.truncate(limit as usize);
    let ids: Vec<String> = rels.iter().map(|r| r.event_id.clone()).collect();
    let mut events = room_events::select_by_ids(db, &ids).await?;
    events.sort_by_key(|e| e.position);
    if msg.backwards {
        events.reverse();
    }
    let ignored = ignored_users(db, &msg.user_id).await?;
    let mut vis = None;
    let mut shown = Vec::new();
    for e in events {
        if ignored.contains(&e.sender) {
            continue;
        }
        if e.position < acc.trusted {
            if vis.is_none() {
                vis = Some(Visibility::load(db, &msg.room_id, &msg.user_id, &deps.erased).await?);
            }
            if vis.as_ref().is_some_and(|v: &Visibility| !v.allows(&e)) {
                continue;
            }
        }
        shown.push(e);
    }
    let fmt = reader_format(&msg.user_id, &msg.device_id, &acc, &ignored);
    let mut out = json!({"chunk": format::events(db, &shown, &fmt).await?});
    if more {
        if let Some(last) = rels.last() {
            let next = if msg.backwards {
                last.position - 1
            } else {
                last.position
            };
            out["next_batch"] = json!(at(now, next));
        }
    }
    if msg.recurse {
        out["recursion_depth"] = json!(depth);
    }
    Ok(out)
}

pub async fn query_threads(deps: &Deps, msg: QueryThreads) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let acc = access(db, &msg.room_id, &msg.user_id).await?;
    let limit = msg.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let before = token(&msg.from)?.map_or(i64::MAX, |t| t.pdu.saturating_add(1));
    let now = deps.notifier.send(QueryPositions).await?;
    let participant = msg.participated_only.then_some(msg.user_id.as_str());
    let mut roots =
        relations::select_threads(db, &msg.room_id, participant, before, limit + 1).await?;
    let more = roots.len() as i64 > limit;
    roots.truncate(limit as usize);
    let ids: Vec<String> = roots.iter().map(|(id, _)| id.clone()).collect();
    let loaded = room_events::select_by_ids(db, &ids).await?;
    let ignored = ignored_users(db, &msg.user_id).await?;
    let mut vis = None;
    let mut events = Vec::new();
    for (id, _) in &roots {
        let Some(e) = loaded.iter().find(|e| &e.event_id == id) else {
            continue;
        };
        if e.room_id != msg.room_id || e.position > acc.upto || ignored.contains(&e.sender) {
            continue;
        }
        if e.position < acc.trusted {
            if vis.is_none() {
                vis = Some(Visibility::load(db, &msg.room_id, &msg.user_id, &deps.erased).await?);
            }
            if vis.as_ref().is_some_and(|v: &Visibility| !v.allows(e)) {
                continue;
            }
        }
        events.push(e.clone());
    }
    let fmt = reader_format(&msg.user_id, &msg.device_id, &acc, &ignored);
    let mut out = json!({"chunk": format::events(db, &events, &fmt).await?});
    if more {
        if let Some((_, latest)) = roots.last() {
            out["next_batch"] = json!(at(now, latest - 1));
        }
    }
    Ok(out)
}
