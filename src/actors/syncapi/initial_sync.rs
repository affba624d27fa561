//! The legacy snapshots clients and bridges still call: `GET /initialSync` (every room of
//! the user) and `GET /rooms/{roomId}/initialSync` (one room), read from the same tables as
//! `/sync` and shaped as Synapse's `InitialSyncHandler` shapes them (no bundled
//! aggregations: a deprecated API).
//!
//! Tokens are sync tokens: `end` works as `/sync`'s `since` and `/events`' `from`, and a
//! room's `messages.start` as `/messages`' `from` (it sits just before the first event).

use super::actor::Deps;
use super::ephemeral::presence_content;
use super::filter::EventFilter;
use super::format::{self, Format};
use super::history::world_readable;
use super::messages::{QueryInitialSync, QueryRoomInitialSync};
use super::notifier::{QueryPositions, QuerySharedUsers};
use super::storage::current_state::{self, Membership};
use super::storage::presence::{self, Presence};
use super::storage::room_events::{self, RoomEvent};
use super::storage::{account_data, receipts};
use super::sync::{global_account_data, ignored_users, timeline};
use super::token::StreamPositions;
use super::SyncApiError;
use crate::storage::Conn;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// Timeline events per room when the request sets no limit (Synapse's default).
const DEFAULT_LIMIT: i64 = 10;
/// The most a request may ask for (Synapse's `PaginationConfig` cap).
pub(super) const MAX_LIMIT: i64 = 1000;

/// A request's limit, defaulted and capped.
pub(super) fn limit_of(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// An `m.presence` event as the legacy endpoints give it: `content` carries `user_id` (as
/// Synapse's `format_user_presence_state` does), `sender` names the user too.
pub(super) fn presence_event(user_id: &str, p: Option<&Presence>) -> Value {
    let mut content = match p {
        Some(p) => presence_content(p),
        None => json!({"presence": "offline"}),
    };
    content["user_id"] = json!(user_id);
    json!({"type": "m.presence", "sender": user_id, "content": content})
}

/// Receipt rows as `m.receipt` events, one per room (with `room_id`), in the order the rooms
/// first appear; other users' private receipts are left out.
pub(super) fn receipt_events(rows: &[receipts::Receipt], viewer: &str) -> Vec<Value> {
    let mut rooms: Vec<(String, Map<String, Value>)> = Vec::new();
    for r in rows {
        if r.receipt_type == "m.read.private" && r.user_id != viewer {
            continue;
        }
        let i = match rooms.iter().position(|(room, _)| *room == r.room_id) {
            Some(i) => i,
            None => {
                rooms.push((r.room_id.clone(), Map::new()));
                rooms.len() - 1
            }
        };
        let mut receipt = json!({"ts": r.ts});
        if !r.thread_id.is_empty() {
            receipt["thread_id"] = json!(r.thread_id);
        }
        let by_event = rooms[i]
            .1
            .entry(r.event_id.clone())
            .or_insert_with(|| json!({}));
        if !by_event[&r.receipt_type].is_object() {
            by_event[&r.receipt_type] = json!({});
        }
        by_event[&r.receipt_type][&r.user_id] = receipt;
    }
    rooms
        .into_iter()
        .map(|(room, content)| json!({"type": "m.receipt", "room_id": room, "content": content}))
        .collect()
}

/// A room's account data for the user: tags (only when there are any, as Synapse) and the
/// rest, from rows of every room.
fn room_account_data(rows: &[account_data::AccountData], room_id: &str) -> Vec<Value> {
    rows.iter()
        .filter(|a| a.room_id == room_id)
        .map(|a| json!({"type": a.data_type, "content": parse(&a.content)}))
        .filter(|e| {
            e["type"] != "m.tag"
                || e["content"]["tags"]
                    .as_object()
                    .is_some_and(|t| !t.is_empty())
        })
        .collect()
}

/// What one snapshot reads with.
struct Reader<'a> {
    db: &'a crate::storage::Db,
    erased: &'a super::visibility::ErasedUsers,
    user: &'a str,
    fmt: Format<'a>,
    ignored: HashSet<String>,
    limit: i64,
}

impl Reader<'_> {
    /// The `messages` of a room: its newest `limit` events at or before `hi` that the user
    /// may see (those from `trusted_from` on without checking), oldest first. `start` sits
    /// before the first event, `end` is `end`.
    async fn messages(
        &self,
        room_id: &str,
        hi: i64,
        trusted_from: i64,
        end: StreamPositions,
    ) -> Result<Value, SyncApiError> {
        let (events, _) = timeline(
            self.db,
            room_id,
            self.user,
            0,
            hi,
            self.limit,
            &EventFilter::default(),
            &self.ignored,
            trusted_from,
            self.erased,
        )
        .await?;
        let start = StreamPositions {
            pdu: events.first().map_or(hi, |e| e.position - 1),
            ..end
        };
        let chunk: Vec<Value> = events
            .iter()
            .map(|e| format::event(e, &self.fmt, None))
            .collect();
        Ok(json!({"chunk": chunk, "start": start.to_string(), "end": end.to_string()}))
    }

    fn state(&self, events: &[RoomEvent]) -> Vec<Value> {
        events
            .iter()
            .map(|e| format::event(e, &self.fmt, None))
            .collect()
    }
}

async fn reader<'a>(
    deps: &'a Deps,
    user: &'a str,
    device: &'a str,
    limit: Option<i64>,
) -> Result<Reader<'a>, SyncApiError> {
    let ignored = ignored_users(&deps.db, user).await?;
    Ok(Reader {
        db: &deps.db,
        erased: &deps.erased,
        user,
        fmt: Format {
            ignored: std::sync::Arc::new(ignored.clone()),
            ..Format::client(user, Some(device))
        },
        ignored,
        limit: limit_of(limit),
    })
}

/// The state of a room right after the event at `position` (a leave).
async fn state_at(
    db: &impl Conn,
    room_id: &str,
    position: i64,
) -> Result<Vec<RoomEvent>, SyncApiError> {
    Ok(
        room_events::select_state_in_range(db, room_id, i64::MIN, position.saturating_add(1))
            .await?,
    )
}

/// The user's membership as of `upto`: the current one, or (when the consumer applied a
/// newer one than the positions the snapshot reads up to) the one before it.
async fn membership_at(
    db: &impl Conn,
    m: Membership,
    user: &str,
    upto: i64,
) -> Result<Option<Membership>, SyncApiError> {
    if m.position <= upto {
        return Ok(Some(m));
    }
    let history =
        room_events::select_state_history(db, &m.room_id, "m.room.member", user, upto).await?;
    Ok(history.last().map(Membership::from_event))
}

pub async fn query_initial_sync(deps: &Deps, msg: QueryInitialSync) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let user = msg.user_id.as_str();
    let now = deps.notifier.send(QueryPositions).await?;
    let r = reader(deps, user, &msg.device_id, msg.limit).await?;
    let acct = account_data::select_since(db, user, 0, now.account_data).await?;
    let mut rooms = Vec::new();
    let mut joined = Vec::new();
    for m in current_state::select_memberships_of(db, user).await? {
        let Some(m) = membership_at(db, m, user, now.pdu).await? else {
            continue;
        };
        // As Synapse: invites and joins, and with `archived` rooms left (not bans).
        let wanted = match m.membership.as_str() {
            "join" | "invite" => true,
            "leave" => msg.archived,
            _ => false,
        };
        if !wanted {
            continue;
        }
        let mut room = json!({"room_id": m.room_id, "membership": m.membership});
        match m.membership.as_str() {
            "invite" => {
                if let Some(e) = room_events::select_by_id(db, &m.event_id).await? {
                    if r.ignored.contains(&e.sender) {
                        continue;
                    }
                    room["inviter"] = json!(e.sender);
                    room["invite"] = format::event(&e, &r.fmt, None);
                }
            }
            "join" => {
                joined.push(m.room_id.clone());
                room["messages"] = r.messages(&m.room_id, now.pdu, m.position, now).await?;
                let state = current_state::select_state_events(db, &m.room_id).await?;
                room["state"] = json!(r.state(&state));
                room["account_data"] = json!(room_account_data(&acct, &m.room_id));
            }
            _ => {
                let end = StreamPositions {
                    pdu: m.position,
                    ..now
                };
                room["messages"] = r.messages(&m.room_id, m.position, i64::MAX, end).await?;
                let state = state_at(db, &m.room_id, m.position).await?;
                room["state"] = json!(r.state(&state));
                room["account_data"] = json!(room_account_data(&acct, &m.room_id));
            }
        }
        rooms.push(room);
    }
    // Presence of the users sharing a room with the user, except those offline (Synapse's
    // `include_offline=False`).
    let shared = deps
        .notifier
        .send(QuerySharedUsers {
            user_id: msg.user_id.clone(),
        })
        .await?;
    let presence: Vec<Value> = presence::select_since(db, &shared, 0, now.presence)
        .await?
        .iter()
        .filter(|p| p.presence != "offline")
        .map(|p| presence_event(&p.user_id, Some(p)))
        .collect();
    let receipts = receipts::select_since(db, &joined, 0, now.receipts).await?;
    let global: Vec<Value> = acct
        .iter()
        .filter(|a| a.room_id.is_empty())
        .map(|a| global_account_data(user, &a.data_type, &a.content))
        .collect();
    Ok(json!({
        "end": now.to_string(),
        "rooms": rooms,
        "presence": presence,
        "account_data": global,
        "receipts": receipt_events(&receipts, user),
    }))
}

pub async fn query_room_initial_sync(
    deps: &Deps,
    msg: QueryRoomInitialSync,
) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let db = &deps.db;
    let user = msg.user_id.as_str();
    let room_id = msg.room_id.as_str();
    let now = deps.notifier.send(QueryPositions).await?;
    let membership = current_state::select_membership(db, room_id, user).await?;
    // Members, former members (not guests, as Synapse), and anyone when the room is
    // world-readable (peeking: no `membership` in the answer).
    let (membership, peeking) = match membership {
        Some((m, position)) if m == "join" => (Some((m, position)), false),
        Some((m, position)) if (m == "leave" || m == "ban") && !msg.is_guest => {
            (Some((m, position)), false)
        }
        _ if world_readable(db, room_id).await? => (None, true),
        _ => {
            return Err(SyncApiError::Forbidden(format!(
                "User {user} not in room {room_id}, and room previews are disabled"
            )))
        }
    };
    let r = reader(deps, user, &msg.device_id, msg.limit).await?;
    let acct = account_data::select_since(db, user, 0, now.account_data).await?;
    let mut out = json!({"room_id": room_id});
    match membership {
        Some((m, position)) if m != "join" => {
            // As of the leave, with tokens of that moment only (as Synapse).
            let end = StreamPositions {
                pdu: position,
                ..Default::default()
            };
            out["messages"] = r.messages(room_id, position, i64::MAX, end).await?;
            out["state"] = json!(r.state(&state_at(db, room_id, position).await?));
            out["presence"] = json!([]);
            out["receipts"] = json!([]);
            out["membership"] = json!(m);
        }
        _ => {
            let trusted = membership.as_ref().map_or(i64::MAX, |(_, p)| *p);
            out["messages"] = r.messages(room_id, now.pdu, trusted, now).await?;
            let state = current_state::select_state_events(db, room_id).await?;
            out["state"] = json!(r.state(&state));
            let mut presence = Vec::new();
            for (member, m) in current_state::select_members(db, room_id).await? {
                if m == "join" {
                    let p = presence::select(db, &member).await?;
                    presence.push(presence_event(&member, p.as_ref()));
                }
            }
            out["presence"] = json!(presence);
            let rows = receipts::select_since(db, &[room_id.to_owned()], 0, now.receipts).await?;
            out["receipts"] = json!(receipt_events(&rows, user));
            if !peeking {
                out["membership"] = json!("join");
            }
        }
    }
    out["account_data"] = json!(room_account_data(&acct, room_id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(room: &str, ty: &str, user: &str, event: &str) -> receipts::Receipt {
        receipts::Receipt {
            room_id: room.into(),
            receipt_type: ty.into(),
            user_id: user.into(),
            thread_id: String::new(),
            event_id: event.into(),
            ts: 5,
            position: 1,
        }
    }

    #[test]
    fn receipts_group_by_room_and_hide_others_private_ones() {
        let rows = [
            receipt("!a", "m.read", "@bob", "$1"),
            receipt("!b", "m.read.private", "@bob", "$2"),
            receipt("!a", "m.read.private", "@me", "$1"),
        ];
        let events = receipt_events(&rows, "@me");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["room_id"], "!a");
        assert_eq!(events[0]["content"]["$1"]["m.read"]["@bob"]["ts"], 5);
        assert_eq!(events[0]["content"]["$1"]["m.read.private"]["@me"]["ts"], 5);
        assert_eq!(limit_of(None), 10);
        assert_eq!(limit_of(Some(5000)), MAX_LIMIT);
    }
}
