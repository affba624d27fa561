//! History visibility, from the syncapi's own copy of a room: which events a user may see,
//! by `m.room.history_visibility` and the user's membership when each was sent. The same
//! rules as the roomserver's (`QueryEvent` with a viewer).

use super::storage::room_events::{self, RoomEvent};
use crate::storage::{Conn, StorageError};

/// The users whose accounts were erased, kept in memory by the syncapi (loaded at start from
/// `syncapi_erased_users`, added to by the userapi stream's consumer after each commit), so a
/// visibility check costs no statement for them.
pub type ErasedUsers = std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>;

/// What decides visibility in one room for one user.
#[derive(Debug, Default)]
pub struct Visibility {
    user_id: String,
    /// (position, history_visibility), oldest first.
    settings: Vec<(i64, String)>,
    /// (position, membership) of the user, oldest first.
    memberships: Vec<(i64, String)>,
    /// Erased users (the spec's account erasure), and the room's version to redact by; empty
    /// when nobody was ever erased.
    erased: std::collections::HashSet<String>,
    room_version: String,
}

impl Visibility {
    /// Loads the room's visibility settings and the user's memberships (2 statements).
    pub async fn load(
        db: &impl Conn,
        room_id: &str,
        user_id: &str,
        erased: &ErasedUsers,
    ) -> Result<Visibility, StorageError> {
        let field = |e: &RoomEvent, k: &str| -> String {
            let j: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
            j["content"][k].as_str().unwrap_or_default().to_owned()
        };
        let settings = room_events::select_state_history(
            db,
            room_id,
            "m.room.history_visibility",
            "",
            i64::MAX,
        )
        .await?
        .iter()
        .map(|e| (e.position, field(e, "history_visibility")))
        .collect();
        let memberships =
            room_events::select_state_history(db, room_id, "m.room.member", user_id, i64::MAX)
                .await?
                .iter()
                .map(|e| (e.position, field(e, "membership")))
                .collect();
        // Erasure is rare: the room's version is read only when someone was erased.
        let erased: std::collections::HashSet<String> = erased
            .read()
            .map(|set| set.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let room_version = if erased.is_empty() {
            String::new()
        } else {
            room_events::select_state_history(db, room_id, "m.room.create", "", i64::MAX)
                .await?
                .first()
                .map(|e| {
                    let v = field(e, "room_version");
                    if v.is_empty() {
                        "1".to_owned()
                    } else {
                        v
                    }
                })
                .unwrap_or_default()
        };
        Ok(Visibility {
            user_id: user_id.to_owned(),
            settings,
            memberships,
            erased,
            room_version,
        })
    }

    /// Serves `e` redacted when its sender's account was erased and the user was not joined
    /// when it was sent (the spec's account erasure, as Synapse applies it): who saw it then
    /// keeps it, who comes later does not.
    pub fn apply_erasure(&self, e: &mut RoomEvent) {
        if !self.erased.contains(&e.sender) || e.sender == self.user_id {
            return;
        }
        if Self::before(&self.memberships, e.position) == Some("join") {
            return;
        }
        let Ok(json) = serde_json::from_str::<ruma::CanonicalJsonObject>(&e.json) else {
            return;
        };
        if let Ok(redacted) = crate::pdu::redact(json, &self.room_version) {
            if let Ok(text) = serde_json::to_string(&redacted) {
                e.json = text;
            }
        }
    }

    fn before(list: &[(i64, String)], position: i64) -> Option<&str> {
        list.iter()
            .rev()
            .find(|(p, _)| *p < position)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the user may see `e`. Their own membership events are always visible (so a
    /// room they left or were kicked from shows how it ended).
    pub fn allows(&self, e: &RoomEvent) -> bool {
        if e.event_type == "m.room.member" && e.state_key.as_deref() == Some(&self.user_id) {
            return true;
        }
        let setting = Self::before(&self.settings, e.position).unwrap_or("shared");
        let mut membership = Self::before(&self.memberships, e.position);
        if e.event_type == "m.room.member" && e.state_key.as_deref() == Some(&self.user_id) {
            membership = self
                .memberships
                .iter()
                .find(|(p, _)| *p == e.position)
                .map(|(_, m)| m.as_str())
                .or(membership);
        }
        let was = |m: &str| membership == Some(m);
        match setting {
            "world_readable" => true,
            "invited" => was("join") || was("invite"),
            "joined" => was("join"),
            // shared (and anything unknown): also visible to who joined later.
            _ => {
                was("join")
                    || self
                        .memberships
                        .iter()
                        .any(|(p, m)| *p >= e.position && m == "join")
            }
        }
    }

    /// The position of the user's latest join (0 when never joined).
    pub fn joined_at(&self) -> i64 {
        self.memberships
            .iter()
            .rev()
            .find(|(_, m)| m == "join")
            .map_or(0, |(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(position: i64) -> RoomEvent {
        RoomEvent {
            position,
            event_type: "m.room.message".into(),
            ..Default::default()
        }
    }

    #[test]
    fn visibility_follows_the_setting_and_membership_at_each_event() {
        let v = Visibility {
            user_id: "@u".into(),
            settings: vec![(1, "joined".into()), (10, "shared".into())],
            memberships: vec![(5, "join".into()), (8, "leave".into()), (12, "join".into())],
            erased: Default::default(),
            room_version: String::new(),
        };
        assert!(!v.allows(&ev(3)), "joined-only, before the join");
        assert!(v.allows(&ev(6)), "while joined");
        assert!(!v.allows(&ev(9)), "joined-only, after leaving");
        assert!(v.allows(&ev(11)), "shared, and the user joins later");
        let w = Visibility {
            user_id: "@u".into(),
            settings: vec![(1, "invited".into())],
            memberships: vec![(5, "invite".into())],
            ..Default::default()
        };
        assert!(w.allows(&ev(6)));
        assert!(!w.allows(&ev(4)));
        let world = Visibility {
            settings: vec![(1, "world_readable".into())],
            ..Default::default()
        };
        assert!(world.allows(&ev(2)));
    }

    #[test]
    fn erased_senders_are_redacted_for_who_was_not_joined() {
        let v = Visibility {
            user_id: "@u".into(),
            memberships: vec![(5, "join".into()), (8, "leave".into()), (12, "join".into())],
            erased: ["@gone".to_owned()].into_iter().collect(),
            room_version: "11".into(),
            ..Default::default()
        };
        let said = |position: i64, sender: &str| RoomEvent {
            position,
            sender: sender.into(),
            event_type: "m.room.message".into(),
            json: serde_json::json!({"type": "m.room.message", "sender": sender,
                "content": {"body": "secret"}, "room_id": "!r", "origin_server_ts": 1,
                "depth": 1, "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"},
                "signatures": {}})
            .to_string(),
            ..Default::default()
        };
        let body = |e: &RoomEvent| -> serde_json::Value {
            serde_json::from_str::<serde_json::Value>(&e.json).unwrap()["content"]["body"].clone()
        };
        for (position, sender, kept) in [
            (3, "@gone", false),  // before the user joined
            (6, "@gone", true),   // while joined: they saw it
            (10, "@gone", false), // after they left, before they came back
            (6, "@other", true),  // not erased
        ] {
            let mut e = said(position, sender);
            v.apply_erasure(&mut e);
            assert_eq!(body(&e) == "secret", kept, "{position} {sender}");
        }
    }
}
