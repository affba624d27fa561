//! `QueryRoomHead`: what the federationapi reads before it inputs an event from another
//! server (the room's version, forward extremities and depth, and which prev events are not
//! stored here, or only as outliers without the state before them). Reads only.

use super::error::RoomserverError;
use super::messages::RoomHead;
use super::storage::{events, rooms};
use crate::storage::Conn;

/// The head of `room_id`, or `None` when the room is not known here. Of `event_ids`, those
/// not stored in this room are listed in [`RoomHead::unknown_events`].
pub async fn room_head(
    db: &impl Conn,
    room_id: &str,
    event_ids: &[String],
) -> Result<Option<RoomHead>, RoomserverError> {
    let Some(room) = rooms::select(db, room_id).await? else {
        return Ok(None);
    };
    let forward_extremities = events::select_by_nids(db, &room.latest_event_nids)
        .await?
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    let mut unknown_events = Vec::new();
    let mut stateless_events = Vec::new();
    for id in event_ids {
        let here = events::select_by_id(db, id)
            .await?
            .filter(|r| r.room_nid == room.room_nid);
        match here {
            None if !unknown_events.contains(id) => unknown_events.push(id.clone()),
            Some(r) if r.state_snapshot_nid.is_none() && !stateless_events.contains(id) => {
                stateless_events.push(id.clone())
            }
            _ => {}
        }
    }
    Ok(Some(RoomHead {
        room_version: room.room_version,
        forward_extremities,
        max_depth: room.max_depth,
        unknown_events,
        stateless_events,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::messages::{QueryRoomHead, RoomHead};

    #[test]
    fn the_messages_survive_serde() {
        let q = QueryRoomHead {
            room_id: "!r:a.test".into(),
            event_ids: vec!["$e".into()],
        };
        let back: QueryRoomHead =
            serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
        assert_eq!(format!("{q:?}"), format!("{back:?}"));
        let h = RoomHead {
            room_version: "11".into(),
            forward_extremities: vec!["$x".into()],
            max_depth: 4,
            unknown_events: vec!["$e".into()],
            stateless_events: vec!["$f".into()],
        };
        let back: RoomHead = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(h, back);
    }
}
