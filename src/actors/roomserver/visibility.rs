//! History visibility in the roomserver, for the reads that name a reader
//! (`QueryEventByTimestamp`, `QueryStateAtPosition`): whether a user may see one of a room's
//! events, by the one rule (`crate::history_visibility::allows`). Its inputs come from the
//! room's DAG: the setting and the user's membership in the state before the event (its
//! snapshot; an event without one fails closed), and whether the user joined at any point
//! after it (joined now, or a join of theirs stored after the event).

use super::error::RoomserverError;
use super::state;
use super::storage::{event_types, events, memberships, rooms, state_keys};
use crate::history_visibility::{self as rule, HistoryVisibility};
use crate::storage::Db;
use std::collections::HashMap;

/// Candidates `event_by_timestamp` reads at most (then it answers none).
const MAX_CANDIDATES: i64 = 1000;
/// Candidates read per statement.
const PAGE: i64 = 50;

/// What decides visibility in one room for one user; cheap to ask again (settings and
/// memberships are read once per state snapshot).
pub struct Viewer<'a> {
    room_nid: i64,
    room_id: &'a str,
    user_id: &'a str,
    /// Interned (type, state key) of the setting and of the user's membership; `None` when
    /// never used, so no state holds them.
    setting_key: Option<state::StateKey>,
    member_key: Option<state::StateKey>,
    /// The type of `m.room.create`, the one event with no state before it.
    create_type: Option<i64>,
    /// The event_nids of the user's joins, read when first needed.
    joins: Option<Vec<i64>>,
    /// (setting, membership) by state snapshot.
    by_snapshot: HashMap<i64, (HistoryVisibility, Option<String>)>,
}

impl<'a> Viewer<'a> {
    /// Prepares the checks of `user_id` in a room (2 statements).
    pub async fn load(
        db: &Db,
        room_nid: i64,
        room_id: &'a str,
        user_id: &'a str,
    ) -> Result<Viewer<'a>, RoomserverError> {
        let types = event_types::select_nids(
            db,
            &[
                "m.room.history_visibility".into(),
                "m.room.member".into(),
                "m.room.create".into(),
            ],
        )
        .await?;
        let keys = state_keys::select_nids(db, &[String::new(), user_id.to_owned()]).await?;
        let key = |t: &str, k: &str| Some((*types.get(t)?, *keys.get(k)?));
        Ok(Viewer {
            room_nid,
            room_id,
            user_id,
            setting_key: key("m.room.history_visibility", ""),
            member_key: key("m.room.member", user_id),
            create_type: types.get("m.room.create").copied(),
            joins: None,
            by_snapshot: HashMap::new(),
        })
    }

    /// Whether the user may see `row`, one of the room's events.
    pub async fn may_see(
        &mut self,
        db: &Db,
        row: &events::EventRow,
    ) -> Result<bool, RoomserverError> {
        let own = self
            .member_key
            .is_some_and(|(t, k)| row.type_nid == t && row.state_key_nid == Some(k));
        let (setting, membership) = match row.state_snapshot_nid {
            Some(snapshot) => self.at_snapshot(db, snapshot).await?,
            // The create event: nothing before it, so the default setting and no membership.
            None if Some(row.type_nid) == self.create_type => (HistoryVisibility::default(), None),
            // Any other event whose state before it is unknown: fail closed.
            None => (HistoryVisibility::Joined, None),
        };
        if rule::allows(setting, membership.as_deref(), false, own) {
            return Ok(true);
        }
        if setting != HistoryVisibility::Shared {
            return Ok(false);
        }
        let joined_later = self.joined_after(db, row.event_nid).await?;
        Ok(rule::allows(
            setting,
            membership.as_deref(),
            joined_later,
            own,
        ))
    }

    /// The setting and the user's membership in a state snapshot.
    async fn at_snapshot(
        &mut self,
        db: &Db,
        snapshot: i64,
    ) -> Result<(HistoryVisibility, Option<String>), RoomserverError> {
        if let Some(found) = self.by_snapshot.get(&snapshot) {
            return Ok(found.clone());
        }
        let keys: Vec<state::StateKey> = [self.setting_key, self.member_key]
            .into_iter()
            .flatten()
            .collect();
        let entries = state::load_keys(db, snapshot, &keys).await?;
        let holder = |key: Option<state::StateKey>| key.and_then(|k| entries.get(&k).copied());
        let (setting_nid, member_nid) = (holder(self.setting_key), holder(self.member_key));
        let nids: Vec<i64> = [setting_nid, member_nid].into_iter().flatten().collect();
        let rows = events::select_by_nids(db, &nids).await?;
        let json = |nid: Option<i64>| {
            nid.map(|n| {
                rows.iter()
                    .find(|r| r.event_nid == n)
                    .map_or("", |r| r.json.as_str())
            })
        };
        // No setting in the state: shared (the spec's default); a setting whose event is
        // missing or unreadable: joined.
        let setting = json(setting_nid).map_or(HistoryVisibility::default(), |j| {
            HistoryVisibility::from_event_json(j)
        });
        let membership = json(member_nid).and_then(rule::membership_of_event);
        self.by_snapshot
            .insert(snapshot, (setting, membership.clone()));
        Ok((setting, membership))
    }

    /// Whether the user joined the room after the event `event_nid`: joined now, or a join of
    /// theirs stored after it (one room actor writes a room's events, so storage order is the
    /// room's order).
    async fn joined_after(&mut self, db: &Db, event_nid: i64) -> Result<bool, RoomserverError> {
        if self.joins.is_none() {
            let joined_now = memberships::select(db, self.room_id, self.user_id)
                .await?
                .is_some_and(|(m, _)| m == "join");
            let joins = match (joined_now, self.member_key) {
                (true, _) => vec![i64::MAX],
                (false, None) => Vec::new(),
                (false, Some((t, k))) => events::select_of_state_key(db, self.room_nid, t, k)
                    .await?
                    .into_iter()
                    .filter(|e| rule::membership_of_event(&e.json).as_deref() == Some("join"))
                    .map(|e| e.event_nid)
                    .collect(),
            };
            self.joins = Some(joins);
        }
        Ok(self
            .joins
            .as_ref()
            .is_some_and(|joins| joins.iter().any(|n| *n > event_nid)))
    }
}

/// The room's event closest to `ts` that `user_id` may see: the first at or after it
/// (`forward`), or the last at or before it, with its `origin_server_ts`. Events the user may
/// not see are passed over, so none is revealed; after `MAX_CANDIDATES` of them the answer is
/// none. `NoRoom` for an unknown room.
pub async fn event_by_timestamp(
    db: &Db,
    room_id: &str,
    user_id: &str,
    ts: i64,
    forward: bool,
) -> Result<Option<(String, i64)>, RoomserverError> {
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let mut viewer = Viewer::load(db, room.room_nid, room_id, user_id).await?;
    let mut from = (ts, if forward { i64::MIN } else { i64::MAX });
    let mut read = 0;
    while read < MAX_CANDIDATES {
        let rows = events::select_by_ts(db, room.room_nid, from, forward, PAGE).await?;
        for (row, at) in &rows {
            if viewer.may_see(db, row).await? {
                return Ok(Some((row.event_id.clone(), *at)));
            }
            from = (*at, row.event_nid);
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
        read += PAGE;
    }
    Ok(None)
}
