//! The legacy event stream: `GET /events` (what happened since a token, long-polling like
//! `/sync`, woken by the same notifier) and `GET /events/{eventId}`, as Synapse's
//! `EventStreamHandler` and `EventHandler` answer them.
//!
//! `/events` reads the user's joined rooms, or with `room_id` that room alone, which a
//! non-member may read when it is world-readable (peeking; the request then waits on the
//! room, not on the user). A response carries room events (at most `limit`, with the
//! user's own membership changes in other rooms), typing, receipts, presence (and the
//! presence of whoever joins, as Synapse adds it) and account data. Its tokens are sync
//! tokens; the to-device part stays where `from` had it, since `/events` delivers none, so
//! `end` can be handed to `/sync` without losing a to-device message.

use super::actor::Deps;
use super::ephemeral::touch_presence;
use super::filter::EventFilter;
use super::format::{self, json_of, Format};
use super::history::world_readable;
use super::initial_sync::{limit_of, presence_event, receipt_events};
use super::messages::{QueryClientEvent, QueryEvents, MAX_SYNC_TIMEOUT_MS};
use super::notifier::{Listen, ListenRoom, QuerySharedUsers};
use super::storage::room_events::{self, RoomEvent};
use super::storage::{account_data, current_state, presence, receipts};
use super::sync::{global_account_data, ignored_users, Scan};
use super::token::StreamPositions;
use super::visibility::Visibility;
use super::SyncApiError;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub async fn query_events(deps: &Deps, msg: QueryEvents) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let user = msg.user_id.as_str();
    let mut from = match &msg.from {
        Some(t) => Some(
            StreamPositions::parse(t)
                .ok_or_else(|| SyncApiError::InvalidParam(format!("invalid from token {t:?}")))?,
        ),
        None => None,
    };
    // As Synapse's notifier: the named room if the user is joined to it or it is
    // world-readable, else every joined room.
    let peeking = match &msg.room_id {
        Some(room) => {
            let joined = current_state::select_membership(db, room, user)
                .await?
                .is_some_and(|(m, _)| m == "join");
            if !joined && !world_readable(db, room).await? {
                return Err(SyncApiError::Forbidden(
                    "Non-joined access not allowed".into(),
                ));
            }
            !joined
        }
        None => false,
    };
    if msg.affect_presence {
        touch_presence(deps, user, "online").await?;
    }
    let limit = limit_of(msg.limit).max(1);
    let deadline = Instant::now() + Duration::from_millis(msg.timeout_ms.min(MAX_SYNC_TIMEOUT_MS));
    loop {
        let listening = match (&msg.room_id, peeking) {
            (Some(room), true) => {
                deps.notifier
                    .send(ListenRoom {
                        room_id: room.clone(),
                    })
                    .await?
            }
            _ => {
                deps.notifier
                    .send(Listen {
                        user_id: msg.user_id.clone(),
                    })
                    .await?
            }
        };
        // Without `from`, the stream starts where it stood when the request came.
        let start = *from.get_or_insert(listening.positions);
        let (body, empty) = read(deps, &msg, start, listening.positions, peeking, limit).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !empty || left.is_zero() {
            return Ok(body);
        }
        if tokio::time::timeout(left, listening.woken).await.is_err() {
            return Ok(body);
        }
    }
}

/// One read of the stream in `(start, now]`: the body and whether its chunk is empty.
async fn read(
    deps: &Deps,
    msg: &QueryEvents,
    start: StreamPositions,
    now: StreamPositions,
    peeking: bool,
    limit: i64,
) -> Result<(Value, bool), SyncApiError> {
    let db = &deps.db;
    let user = msg.user_id.as_str();
    let memberships = current_state::select_memberships_of(db, user).await?;
    // Room → the position of the user's join (events from there on need no visibility check).
    let rooms: HashMap<String, i64> = match &msg.room_id {
        Some(room) if peeking => HashMap::from([(room.clone(), i64::MAX)]),
        Some(room) => memberships
            .iter()
            .filter(|m| &m.room_id == room && m.membership == "join")
            .map(|m| (m.room_id.clone(), m.position))
            .collect(),
        None => memberships
            .iter()
            .filter(|m| m.membership == "join")
            .map(|m| (m.room_id.clone(), m.position))
            .collect(),
    };
    let room_ids: Vec<String> = rooms.keys().cloned().collect();
    let ignored = ignored_users(db, user).await?;
    let fmt = Format {
        ignored: std::sync::Arc::new(ignored.clone()),
        ..Format::client(user, Some(&msg.device_id))
    };
    let mut end = start;
    let mut chunk = Vec::new();

    if now.pdu > start.pdu {
        let filter = EventFilter::default();
        let changed: HashSet<String> = room_events::rooms_with_events(db, start.pdu, now.pdu)
            .await?
            .into_iter()
            .collect();
        // Every event up to `bound` that passes is read; a room whose scan stopped early
        // lowers it, so the next `from` misses nothing.
        let mut bound = now.pdu;
        let mut events: Vec<RoomEvent> = Vec::new();
        for (room, trusted_from) in rooms.iter().filter(|(r, _)| changed.contains(*r)) {
            let scan = Scan {
                room_id: room,
                user,
                filter: &filter,
                ignored: &ignored,
                trusted_from: *trusted_from,
                // As Synapse's event stream: no exception for current state.
                current_state_visible: false,
                erased: &deps.erased,
            };
            let page = scan.run(db, start.pdu, now.pdu, limit, false).await?;
            if page.more {
                bound = bound.min(page.resume);
            }
            events.extend(page.events);
        }
        // The user's own membership changes in rooms not read above (invites, leaves).
        if !peeking {
            for m in &memberships {
                if !rooms.contains_key(&m.room_id)
                    && m.position > start.pdu
                    && m.position <= now.pdu
                    && msg.room_id.is_none()
                {
                    if let Some(e) = room_events::select_by_id(db, &m.event_id).await? {
                        events.push(e);
                    }
                }
            }
        }
        events.retain(|e| e.position <= bound);
        events.sort_by_key(|e| e.position);
        if events.len() as i64 > limit {
            events.truncate(limit as usize);
            bound = events.last().map_or(bound, |e| e.position);
        }
        end.pdu = bound;
        chunk.extend(events.iter().map(|e| format::event(e, &fmt, None)));
        // Presence of who joined: everyone in the room when it is the user (as Synapse).
        let mut joiners: Vec<String> = Vec::new();
        for e in &events {
            if e.event_type != "m.room.member" || json_of(e)["content"]["membership"] != "join" {
                continue;
            }
            let who = e.state_key.clone().unwrap_or_default();
            if who == user {
                for (member, m) in current_state::select_members(db, &e.room_id).await? {
                    if m == "join" {
                        joiners.push(member);
                    }
                }
            } else {
                joiners.push(who);
            }
        }
        for who in joiners {
            let p = presence::select(db, &who).await?;
            chunk.push(presence_event(&who, p.as_ref()));
        }
    }

    if now.typing > start.typing {
        for room in &room_ids {
            if let Some(users) = deps.typing.since(room, Some(start.typing)) {
                chunk.push(
                    json!({"type": "m.typing", "room_id": room, "content": {"user_ids": users}}),
                );
            }
        }
        end.typing = now.typing;
    }
    if now.receipts > start.receipts {
        let rows = receipts::select_since(db, &room_ids, start.receipts, now.receipts).await?;
        chunk.extend(receipt_events(&rows, user));
        end.receipts = now.receipts;
    }
    if now.presence > start.presence {
        let users: Vec<String> = if peeking {
            let mut members: Vec<String> = current_state::select_members(db, &room_ids[0])
                .await?
                .into_iter()
                .filter(|(_, m)| m == "join")
                .map(|(u, _)| u)
                .collect();
            members.push(msg.user_id.clone());
            members
        } else {
            deps.notifier
                .send(QuerySharedUsers {
                    user_id: msg.user_id.clone(),
                })
                .await?
        };
        for p in presence::select_since(db, &users, start.presence, now.presence).await? {
            chunk.push(presence_event(&p.user_id, Some(&p)));
        }
        end.presence = now.presence;
    }
    if now.account_data > start.account_data {
        for a in account_data::select_since(db, user, start.account_data, now.account_data).await? {
            chunk.push(if a.room_id.is_empty() {
                global_account_data(user, &a.data_type, &a.content)
            } else {
                let content = serde_json::from_str::<Value>(&a.content).unwrap_or(json!({}));
                json!({"type": a.data_type, "content": content, "room_id": a.room_id})
            });
        }
        end.account_data = now.account_data;
    }
    let empty = chunk.is_empty();
    Ok((
        json!({"chunk": chunk, "start": start.to_string(), "end": end.to_string()}),
        empty,
    ))
}

pub async fn query_client_event(deps: &Deps, msg: QueryClientEvent) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let not_found = || SyncApiError::NotFound("Event not found.".into());
    let mut e = room_events::select_by_id(db, &msg.event_id)
        .await?
        .ok_or_else(not_found)?;
    // History visibility as for any read (a former member sees up to their leave; anyone
    // sees a world-readable room), and not from someone the user ignores; an erased sender's
    // event redacted for whoever was not joined when it was sent.
    let visibility = Visibility::load(db, &e.room_id, &msg.user_id, &deps.erased).await?;
    if !visibility.allows(&e) {
        return Err(not_found());
    }
    // A room the user forgot reads as one they were never in: world-readable history only.
    if current_state::select_forgotten(db, &e.room_id, &msg.user_id).await?
        && !world_readable(db, &e.room_id).await?
    {
        return Err(not_found());
    }
    visibility.apply_erasure(&mut e);
    if e.state_key.is_none() && ignored_users(db, &msg.user_id).await?.contains(&e.sender) {
        return Err(not_found());
    }
    Ok(format::event(
        &e,
        &Format::client(&msg.user_id, Some(&msg.device_id)),
        None,
    ))
}
