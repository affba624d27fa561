//! Typing, receipts, to-device messages and presence: the streams the syncapi owns.

use super::actor::Deps;
use super::messages::*;
use super::notifier::{Advance, QuerySharedUsers};
use super::storage::{current_state, presence, receipts, room_events, to_device};
use super::token::Stream;
use super::{SyncApiError, PRESENCE_STREAM, RECEIPTS_STREAM, TO_DEVICE_STREAM};
use crate::bus;
use crate::storage::{now_ms, Conn};
use serde_json::{json, Value};

/// The longest a typing notification lasts without a refresh.
const MAX_TYPING_MS: u64 = 120_000;

/// Refuses users not joined to the room.
pub async fn ensure_joined(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<(), SyncApiError> {
    let joined = current_state::select_membership(db, room_id, user_id)
        .await?
        .is_some_and(|(m, _)| m == "join");
    if joined {
        Ok(())
    } else {
        Err(SyncApiError::Forbidden(format!(
            "{user_id} is not in room {room_id}"
        )))
    }
}

pub async fn perform_typing(deps: &Deps, msg: PerformTyping) -> Result<(), SyncApiError> {
    deps.catch_up().await;
    ensure_joined(&deps.db, &msg.room_id, &msg.user_id).await?;
    let timeout = msg.timeout_ms.min(MAX_TYPING_MS);
    let until = msg.typing.then(|| now_ms() + timeout as i64);
    let (generation, changed) = deps.typing.set(&msg.room_id, &msg.user_id, until);
    if changed {
        deps.notifier.do_send(Advance {
            stream: Some(Stream::Typing),
            position: generation,
            rooms: vec![msg.room_id.clone()],
            ..Default::default()
        });
    }
    if msg.typing {
        let (typing, notifier) = (deps.typing.clone(), deps.notifier.clone());
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(std::time::Duration::from_millis(timeout)).await;
            if let Some(position) = typing.expire(&msg.room_id, &msg.user_id, generation) {
                notifier.do_send(Advance {
                    stream: Some(Stream::Typing),
                    position,
                    rooms: vec![msg.room_id],
                    ..Default::default()
                });
            }
        });
    }
    Ok(())
}

pub async fn perform_receipt(deps: &Deps, msg: PerformReceipt) -> Result<(), SyncApiError> {
    deps.catch_up().await;
    ensure_joined(&deps.db, &msg.room_id, &msg.user_id).await?;
    room_events::select_by_id(&deps.db, &msg.event_id)
        .await?
        .filter(|e| e.room_id == msg.room_id)
        .ok_or_else(|| SyncApiError::NotFound(format!("Unknown event {}", msg.event_id)))?;
    let ts = now_ms();
    let txn = deps.db.begin().await?;
    let appended = bus::append(
        &txn,
        RECEIPTS_STREAM,
        &msg.room_id,
        // Private receipts are marked so the federation sender never sends them.
        &json!({
            "room_id": msg.room_id, "receipt_type": msg.receipt_type, "user_id": msg.user_id,
            "event_id": msg.event_id, "thread_id": msg.thread_id,
            "private": msg.receipt_type == "m.read.private", "ts": ts,
        }),
    )
    .await?;
    receipts::upsert(
        &txn,
        &receipts::Receipt {
            room_id: msg.room_id.clone(),
            receipt_type: msg.receipt_type.clone(),
            user_id: msg.user_id.clone(),
            thread_id: msg.thread_id.unwrap_or_default(),
            event_id: msg.event_id,
            ts,
            position: appended.position,
        },
    )
    .await?;
    let position = appended.position;
    deps.bus.commit(txn, &[appended]).await?;
    // A private receipt concerns only its user.
    let private = msg.receipt_type == "m.read.private";
    deps.notifier.do_send(Advance {
        stream: Some(Stream::Receipts),
        position,
        rooms: if private { vec![] } else { vec![msg.room_id] },
        users: vec![msg.user_id],
        ..Default::default()
    });
    Ok(())
}

pub async fn perform_send_to_device(
    deps: &Deps,
    msg: PerformSendToDevice,
) -> Result<(), SyncApiError> {
    let txn = deps.db.begin().await?;
    if !to_device::insert_txn(&txn, &msg.sender, &msg.sender_device, &msg.txn_id).await? {
        // A retry of a request already delivered.
        return Ok(());
    }
    let mut last = None;
    let mut users = Vec::new();
    for (user, device, content) in &msg.messages {
        let appended = bus::append(
            &txn,
            TO_DEVICE_STREAM,
            user,
            &json!({"user_id": user, "device_id": device, "type": msg.event_type}),
        )
        .await?;
        to_device::insert(
            &txn,
            appended.position,
            user,
            device,
            &msg.sender,
            &msg.event_type,
            &content.to_string(),
        )
        .await?;
        if !users.contains(user) {
            users.push(user.clone());
        }
        last = Some(appended);
    }
    let appended: Vec<_> = last.into_iter().collect();
    let position = appended.first().map(|a| a.position);
    deps.bus.commit(txn, &appended).await?;
    if let Some(position) = position {
        deps.notifier.do_send(Advance {
            stream: Some(Stream::ToDevice),
            position,
            users,
            ..Default::default()
        });
    }
    Ok(())
}

/// Stores a presence change and wakes who shares a room with the user.
pub async fn set_presence(
    deps: &Deps,
    user_id: &str,
    state: &str,
    status_msg: Option<String>,
) -> Result<(), SyncApiError> {
    let txn = deps.db.begin().await?;
    let appended = bus::append(
        &txn,
        PRESENCE_STREAM,
        user_id,
        &json!({"user_id": user_id, "presence": state, "status_msg": status_msg}),
    )
    .await?;
    let now = now_ms();
    presence::upsert(
        &txn,
        &presence::Presence {
            user_id: user_id.to_owned(),
            presence: state.to_owned(),
            status_msg,
            last_active_ts: now,
            position: appended.position,
        },
    )
    .await?;
    let position = appended.position;
    deps.bus.commit(txn, &[appended]).await?;
    deps.presence_writes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(user_id.to_owned(), (state.to_owned(), now));
    deps.notifier.do_send(Advance {
        stream: Some(Stream::Presence),
        position,
        presence_of: vec![user_id.to_owned()],
        ..Default::default()
    });
    Ok(())
}

/// `set_presence` of `/sync`. A change of state is a presence update others hear about; the
/// same state again only refreshes `last_active_ts` (at most once a minute), which readers
/// see as `last_active_ago` without being woken for it (as Synapse does).
pub async fn touch_presence(deps: &Deps, user_id: &str, state: &str) -> Result<(), SyncApiError> {
    let known = deps
        .presence_writes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(user_id)
        .cloned();
    if known
        .as_ref()
        .is_some_and(|(s, at)| s == state && now_ms() - at < 60_000)
    {
        return Ok(());
    }
    let stored = presence::select(&deps.db, user_id).await?;
    match stored {
        Some(p) if p.presence == state => {
            presence::touch(&deps.db, user_id, now_ms()).await?;
            deps.presence_writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user_id.to_owned(), (state.to_owned(), now_ms()));
            Ok(())
        }
        other => set_presence(deps, user_id, state, other.and_then(|p| p.status_msg)).await,
    }
}

pub async fn perform_presence(deps: &Deps, msg: PerformPresence) -> Result<(), SyncApiError> {
    if !matches!(msg.presence.as_str(), "online" | "offline" | "unavailable") {
        return Err(SyncApiError::InvalidParam(format!(
            "unknown presence {:?}",
            msg.presence
        )));
    }
    set_presence(deps, &msg.user_id, &msg.presence, msg.status_msg).await
}

/// A presence row in the client format (`m.presence` content).
pub fn presence_content(p: &presence::Presence) -> Value {
    let ago = (now_ms() - p.last_active_ts).max(0);
    let mut c = json!({
        "presence": p.presence,
        "last_active_ago": ago,
        "currently_active": p.presence == "online" && ago < 5 * 60_000,
    });
    if let Some(m) = &p.status_msg {
        c["status_msg"] = json!(m);
    }
    c
}

pub async fn query_presence(deps: &Deps, msg: QueryPresence) -> Result<Value, SyncApiError> {
    if msg.user_id != msg.viewer {
        let shared = deps
            .notifier
            .send(QuerySharedUsers {
                user_id: msg.viewer.clone(),
            })
            .await?;
        if !shared.contains(&msg.user_id) {
            return Err(SyncApiError::Forbidden(
                "You are not allowed to see their presence.".into(),
            ));
        }
    }
    Ok(match presence::select(&deps.db, &msg.user_id).await? {
        Some(p) => presence_content(&p),
        None => json!({"presence": "offline"}),
    })
}
