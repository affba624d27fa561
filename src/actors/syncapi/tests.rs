//! The syncapi's copy of rooms, fed by a real roomserver through the bus.

use super::consumers::roomserver::RoomserverConsumer;
use super::storage::{current_state, room_events};
use crate::actors::bridge::Handle;
use crate::actors::roomserver::input::Deps;
use crate::actors::roomserver::messages::PerformRoomEvent;
use crate::actors::roomserver::tests::ev;
use crate::bus::{run_consumer, Bus};
use crate::signing_key::SigningKey;
use crate::storage::testing::*;
use serde_json::json;
use std::sync::Arc;

#[actix_web::test]
async fn the_roomserver_stream_becomes_timeline_and_state() {
    for backend in BACKENDS {
        let t = test_db(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let bus = Bus::new();
        let rs = Handle::Local(crate::actors::roomserver::start(
            Deps {
                db: t.db.clone(),
                bus: bus.clone(),
                key: Arc::new(SigningKey::load_or_generate(dir.path()).unwrap()),
                server_name: "test.local".try_into().unwrap(),
                default_room_version: "12".into(),
                keyring: Default::default(),
            },
            &crate::actors::executors::Executors::start(2),
        ));
        let consumer = run_consumer(t.db.clone(), bus.clone(), RoomserverConsumer::new(None));
        let room = rs
            .send(PerformRoomEvent {
                room_id: None,
                room_version: None,
                sender: "@alice:test.local".into(),
                event_type: "m.room.create".into(),
                state_key: Some(String::new()),
                content: json!({}),
                txn: None,
                redacts: None,
            })
            .await
            .unwrap()
            .room_id;
        let alice = "@alice:test.local";
        rs.send(ev(
            &room,
            "alice",
            "m.room.member",
            Some(alice),
            json!({"membership": "join"}),
        ))
        .await
        .unwrap();
        rs.send(ev(
            &room,
            "alice",
            "m.room.name",
            Some(""),
            json!({"name": "one"}),
        ))
        .await
        .unwrap();
        let renamed = rs
            .send(ev(
                &room,
                "alice",
                "m.room.name",
                Some(""),
                json!({"name": "two"}),
            ))
            .await
            .unwrap();
        let last = rs
            .send(ev(
                &room,
                "alice",
                "m.room.message",
                None,
                json!({"body": "hi"}),
            ))
            .await
            .unwrap();
        // Bounded wait for the consumer to catch up.
        for _ in 0..3000 {
            if room_events::select_by_id(&t.db, &last.event_id)
                .await
                .unwrap()
                .is_some()
            {
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        consumer.stop();
        let timeline = room_events::select_range(&t.db, &room, 0, i64::MAX, 10, true)
            .await
            .unwrap();
        assert_eq!(timeline.len(), 5, "{backend}");
        assert_eq!(timeline[0].event_id, last.event_id, "newest first");
        assert!(timeline.windows(2).all(|w| w[0].position > w[1].position));
        let state = current_state::select_room(&t.db, &room).await.unwrap();
        assert_eq!(state.len(), 3, "create, member, name: {state:?}");
        assert!(
            state.contains(&renamed.event_id),
            "the newer name replaced the older"
        );
        assert_eq!(
            current_state::select_rooms_of(&t.db, alice, "join")
                .await
                .unwrap(),
            vec![room.clone()]
        );
        assert_eq!(
            room_events::max_position(&t.db).await.unwrap(),
            timeline[0].position
        );
    }
}
