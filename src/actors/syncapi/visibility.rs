//! History visibility, from the syncapi's own copy of a room: which events a user may see,
//! by `m.room.history_visibility` and the user's memberships, in stream order. The rule is
//! `crate::history_visibility::allows` (the roomserver asks the same one); this file reads
//! its inputs: the setting and the user's membership before each event, and whether they
//! joined at any later position.

use super::storage::room_events::{self, RoomEvent};
use crate::history_visibility::{self as rule, HistoryVisibility};
use crate::storage::{Conn, StorageError};

/// The users whose accounts were erased, kept in memory by the syncapi (loaded at start from
/// `syncapi_erased_users`, added to by the userapi stream's consumer after each commit), so a
/// visibility check costs no statement for them.
pub type ErasedUsers = std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>;

/// `QueryErasedUsers`: the erased ones among `user_ids`, in their order (from memory).
pub async fn query_erased_users(
    deps: &super::actor::Deps,
    msg: super::messages::QueryErasedUsers,
) -> Result<Vec<String>, super::error::SyncApiError> {
    let erased = deps.erased.read().unwrap_or_else(|e| e.into_inner());
    Ok(msg
        .user_ids
        .into_iter()
        .filter(|u| erased.contains(u))
        .collect())
}

/// What decides visibility in one room for one user.
#[derive(Debug, Default)]
pub struct Visibility {
    user_id: String,
    /// (position, setting), oldest first.
    settings: Vec<(i64, HistoryVisibility)>,
    /// (position, membership) of the user, oldest first; `None` where the event could not
    /// be read (no membership).
    memberships: Vec<(i64, Option<String>)>,
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
        let settings = room_events::select_state_history(
            db,
            room_id,
            "m.room.history_visibility",
            "",
            i64::MAX,
        )
        .await?
        .iter()
        .map(|e| (e.position, HistoryVisibility::from_event_json(&e.json)))
        .collect();
        let memberships =
            room_events::select_state_history(db, room_id, "m.room.member", user_id, i64::MAX)
                .await?
                .iter()
                .map(|e| (e.position, rule::membership_of_event(&e.json)))
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
                    let create: serde_json::Value =
                        serde_json::from_str(&e.json).unwrap_or_default();
                    create["content"]["room_version"]
                        .as_str()
                        .unwrap_or("1")
                        .to_owned()
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
        if self.membership_before(e.position) == Some("join") {
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

    /// The user's membership before `position` (`None`: none, or unreadable).
    fn membership_before(&self, position: i64) -> Option<&str> {
        self.memberships
            .iter()
            .rev()
            .find(|(p, _)| *p < position)
            .and_then(|(_, m)| m.as_deref())
    }

    /// Whether the user may see `e`: the room's setting and their membership before it, and
    /// whether they joined at any later position (`crate::history_visibility::allows`).
    pub fn allows(&self, e: &RoomEvent) -> bool {
        let setting = self
            .settings
            .iter()
            .rev()
            .find(|(p, _)| *p < e.position)
            .map(|(_, s)| *s)
            .unwrap_or_default();
        let joined_later = self
            .memberships
            .iter()
            .any(|(p, m)| *p > e.position && m.as_deref() == Some("join"));
        let own = e.event_type == "m.room.member" && e.state_key.as_deref() == Some(&self.user_id);
        rule::allows(
            setting,
            self.membership_before(e.position),
            joined_later,
            own,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HistoryVisibility::*;

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
            settings: vec![(1, Joined), (10, Shared)],
            memberships: vec![
                (5, Some("join".into())),
                (8, Some("leave".into())),
                (12, Some("join".into())),
            ],
            erased: Default::default(),
            room_version: String::new(),
        };
        assert!(!v.allows(&ev(3)), "joined-only, before the join");
        assert!(v.allows(&ev(6)), "while joined");
        assert!(!v.allows(&ev(9)), "joined-only, after leaving");
        assert!(v.allows(&ev(11)), "shared, and the user joins later");
        let w = Visibility {
            user_id: "@u".into(),
            settings: vec![(1, Invited)],
            memberships: vec![(5, Some("invite".into()))],
            ..Default::default()
        };
        assert!(w.allows(&ev(6)));
        assert!(!w.allows(&ev(4)));
        let world = Visibility {
            settings: vec![(1, WorldReadable)],
            ..Default::default()
        };
        assert!(world.allows(&ev(2)));
        // Shared history, a user who joined, left, and came back much later: everything up
        // to the rejoin is theirs to read, joined or not when it was sent.
        let later = Visibility {
            user_id: "@u".into(),
            settings: vec![(1, Shared)],
            memberships: vec![(5, Some("join".into())), (8, Some("leave".into()))],
            ..Default::default()
        };
        assert!(later.allows(&ev(6)));
        assert!(later.allows(&ev(3)), "before the first join, joined later");
        assert!(!later.allows(&ev(9)), "after leaving for good");
        // An unreadable membership is none; the user's own member events stay visible.
        let unreadable = Visibility {
            user_id: "@u".into(),
            settings: vec![(1, Joined)],
            memberships: vec![(5, None)],
            ..Default::default()
        };
        assert!(!unreadable.allows(&ev(6)));
        let own = RoomEvent {
            position: 5,
            event_type: "m.room.member".into(),
            state_key: Some("@u".into()),
            ..Default::default()
        };
        assert!(unreadable.allows(&own));
    }

    #[test]
    fn erased_senders_are_redacted_for_who_was_not_joined() {
        let v = Visibility {
            user_id: "@u".into(),
            memberships: vec![
                (5, Some("join".into())),
                (8, Some("leave".into())),
                (12, Some("join".into())),
            ],
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
