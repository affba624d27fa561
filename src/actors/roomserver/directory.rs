//! Room aliases and the public room directory.

use super::error::RoomserverError;
use super::input::{level, power_of, state_events};
use super::messages::{PublicRoom, PublicRoomsPage};
use super::storage::{memberships, published_rooms, room_aliases, rooms};
use crate::storage::Db;
use ruma::events::StateEventType;
use ruma::UserId;
use serde_json::Value;

/// Whether `user` may change what a room's aliases and listing say about it: the power to
/// send `m.room.canonical_alias`.
async fn may_manage(db: &Db, room_id: &str, user: &str) -> Result<bool, RoomserverError> {
    may_send_state(db, room_id, user, "m.room.canonical_alias").await
}

/// Whether `user`'s power level reaches what the room's power levels require for a state
/// event of `event_type`.
pub async fn may_send_state(
    db: &Db,
    room_id: &str,
    user: &str,
    event_type: &str,
) -> Result<bool, RoomserverError> {
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    // Sending state needs being in the room, whatever one's level.
    let joined = memberships::select(db, room_id, user)
        .await?
        .is_some_and(|(m, _)| m == "join");
    if !joined {
        return Ok(false);
    }
    let (_, rules) = crate::pdu::rules(&room.room_version)?;
    let Some(snapshot) = room.state_snapshot_nid else {
        return Ok(false);
    };
    let user = <&UserId>::try_from(user).map_err(|e| RoomserverError::BadRequest(e.to_string()))?;
    let wanted = [
        (StateEventType::RoomCreate, String::new()),
        (StateEventType::RoomPowerLevels, String::new()),
    ];
    let (state, events) = state_events(db, snapshot, &wanted).await?;
    let get = |k: StateEventType| state.get(&(k, String::new())).and_then(|id| events.get(id));
    let pl: Value = get(StateEventType::RoomPowerLevels)
        .and_then(|e| serde_json::from_str(e.content.get()).ok())
        .unwrap_or_default();
    let needed = pl["events"]
        .get(event_type)
        .map_or_else(|| level(&pl["state_default"], 50), |v| level(v, 50));
    Ok(power_of(user, get(StateEventType::RoomCreate), &pl, &rules) >= needed)
}

/// Points `alias` at a room the user is joined to.
pub async fn set_alias(
    db: &Db,
    alias: &str,
    room_id: &str,
    user: &str,
) -> Result<(), RoomserverError> {
    if rooms::select(db, room_id).await?.is_none() {
        return Err(RoomserverError::NoRoom);
    }
    let joined = memberships::select(db, room_id, user)
        .await?
        .is_some_and(|(m, _)| m == "join");
    if !joined {
        return Err(RoomserverError::NotAllowed(
            "You are not in the room".into(),
        ));
    }
    if room_aliases::insert(db, alias, room_id, user).await? {
        Ok(())
    } else {
        Err(RoomserverError::AliasInUse(alias.to_owned()))
    }
}

/// Removes an alias: its creator may, and so may anyone with power over the room's aliases.
pub async fn remove_alias(db: &Db, alias: &str, user: &str) -> Result<(), RoomserverError> {
    let (room_id, creator) = room_aliases::select(db, alias)
        .await?
        .ok_or_else(|| RoomserverError::NoAlias(alias.to_owned()))?;
    if creator != user && !may_manage(db, &room_id, user).await? {
        return Err(RoomserverError::NotAllowed(
            "You may not remove this alias".into(),
        ));
    }
    Ok(room_aliases::delete(db, alias).await?)
}

/// Lists or unlists a room in the public directory.
pub async fn set_published(
    db: &Db,
    room_id: &str,
    user: &str,
    published: bool,
) -> Result<(), RoomserverError> {
    if !may_manage(db, room_id, user).await? {
        return Err(RoomserverError::NotAllowed(
            "You may not change this room's listing".into(),
        ));
    }
    Ok(published_rooms::set(db, room_id, published).await?)
}

/// Whether a room is listed; `None` for an unknown room.
pub async fn is_published(db: &Db, room_id: &str) -> Result<Option<bool>, RoomserverError> {
    if rooms::select(db, room_id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(published_rooms::is_published(db, room_id).await?))
}

/// One listed room as the directory shows it, from its current state.
async fn summary(db: &Db, room_id: &str) -> Result<Option<PublicRoom>, RoomserverError> {
    let Some(state) = super::input::current_state(
        db,
        room_id,
        &[
            ("m.room.name".into(), String::new()),
            ("m.room.topic".into(), String::new()),
            ("m.room.canonical_alias".into(), String::new()),
            ("m.room.avatar".into(), String::new()),
            ("m.room.join_rules".into(), String::new()),
            ("m.room.history_visibility".into(), String::new()),
            ("m.room.guest_access".into(), String::new()),
            ("m.room.create".into(), String::new()),
        ],
    )
    .await?
    else {
        return Ok(None);
    };
    let content = |kind: &str| {
        state
            .iter()
            .find(|e| e.json["type"] == kind)
            .map(|e| e.json["content"].clone())
            .unwrap_or_default()
    };
    let text = |v: Value| v.as_str().map(str::to_owned);
    Ok(Some(PublicRoom {
        room_id: room_id.to_owned(),
        name: text(content("m.room.name")["name"].clone()),
        topic: text(content("m.room.topic")["topic"].clone()),
        canonical_alias: text(content("m.room.canonical_alias")["alias"].clone()),
        avatar_url: text(content("m.room.avatar")["url"].clone()),
        join_rule: text(content("m.room.join_rules")["join_rule"].clone()),
        room_type: text(content("m.room.create")["type"].clone()),
        world_readable: content("m.room.history_visibility")["history_visibility"]
            == "world_readable",
        guest_can_join: content("m.room.guest_access")["guest_access"] == "can_join",
        num_joined_members: memberships::count(db, room_id, "join").await?,
    }))
}

/// A page of the public directory, most joined rooms first. `since` is a token from an
/// earlier page (`next_batch` or `prev_batch`); `search` matches name, topic or alias.
pub async fn public_rooms(
    db: &Db,
    limit: Option<u32>,
    since: Option<&str>,
    search: Option<&str>,
    room_types: Option<&[Option<String>]>,
) -> Result<PublicRoomsPage, RoomserverError> {
    let room_types = room_types.filter(|types| !types.is_empty());
    let offset = match since {
        None => 0,
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                RoomserverError::BadRequest(format!("unknown pagination token {token}"))
            })?,
    };
    let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
    let mut all = Vec::new();
    for room_id in published_rooms::select_all(db).await? {
        if let Some(room) = summary(db, &room_id).await? {
            let hay = [&room.name, &room.topic, &room.canonical_alias]
                .iter()
                .filter_map(|v| v.as_deref())
                .map(str::to_lowercase)
                .collect::<Vec<_>>();
            let of_type = room_types.is_none_or(|types| types.contains(&room.room_type));
            if of_type
                && needle
                    .as_ref()
                    .is_none_or(|n| hay.iter().any(|h| h.contains(n.as_str())))
            {
                all.push(room);
            }
        }
    }
    all.sort_by(|a, b| {
        b.num_joined_members
            .cmp(&a.num_joined_members)
            .then(a.room_id.cmp(&b.room_id))
    });
    let total = all.len();
    let limit = limit.map_or(total, |l| l as usize).max(1);
    let chunk: Vec<PublicRoom> = all.into_iter().skip(offset).take(limit).collect();
    let end = offset + chunk.len();
    Ok(PublicRoomsPage {
        chunk,
        next_batch: (end < total).then(|| format!("o{end}")),
        prev_batch: (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit))),
        total: total as u64,
    })
}
