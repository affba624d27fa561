//! The roomserver: the room DAG, authorization and state.
//!
//! Built so far: sending events built on this server (`PerformRoomEvent`: create a room, or
//! send into one, authorized with ruma's state-res against the current state;
//! `PerformCreateRoom`: a room with all its initial events in one transaction), forgetting
//! rooms (`PerformForget`, announced as `RoomForgotten`), reading the
//! current state and events, per-room ordering (one actor per active room), the `roomserver`
//! output stream, and the storage (rooms, interned types and keys, events, state snapshots
//! of shared blocks; see `README.md`). State resolution of forks and events from other
//! servers come with federation's input; the client room API is next. Rooms shared with
//! other servers (`remote.rs`): join templates, other servers' joins and leaves, a room
//! imported from our own `send_join`, invites of our users into rooms not held here, their
//! knocks on rooms not held here; who vouches for joins of restricted rooms
//! (`restricted.rs`).
//! History not seen happen (`history.rs`): events placed on the state another server told
//! (`InputRoomEventAtState`) and history backfilled from other servers (`PerformBackfill`,
//! through the federationapi's `QueryBackfill`).
//!
//! Callers: routing (to come). Emits `RoomserverOutput` on the `roomserver` stream.

mod actor;
mod create_room;
pub mod directory;
pub mod error;
mod history;
pub mod input;
mod input_events;
pub mod keyring;
pub mod membership;
pub mod messages;
pub mod remote;
mod restricted;
pub mod retention;
mod room_head;
mod server_reads;
pub mod state;
mod state_res_v1;
pub(crate) mod storage;
#[cfg(test)]
pub(crate) mod tests;
mod visibility;

pub use actor::RoomserverActor;
pub use error::RoomserverError;

use crate::actors::bridge::Handle;
use crate::actors::executors::Executors;
use actix::prelude::*;

/// How callers reach the roomserver.
pub type RoomserverHandle = Handle<RoomserverActor>;

/// Mounts the roomserver's internal routes, so other nodes reach `addr` over the HTTP bridge.
pub fn serve_remote(cfg: &mut actix_web::web::ServiceConfig, addr: Addr<RoomserverActor>) {
    use crate::actors::bridge::serve;
    use messages::*;
    serve::<PerformRoomEvent, _, _, _>(cfg, addr.clone());
    serve::<PerformCreateRoom, _, _, _>(cfg, addr.clone());
    serve::<QueryCurrentState, _, _, _>(cfg, addr.clone());
    serve::<QueryEvent, _, _, _>(cfg, addr.clone());
    serve::<QueryJoinedRooms, _, _, _>(cfg, addr.clone());
    serve::<QueryRoomsWithMembership, _, _, _>(cfg, addr.clone());
    serve::<PerformForget, _, _, _>(cfg, addr.clone());
    serve::<QueryMembership, _, _, _>(cfg, addr.clone());
    serve::<PerformSetRoomAlias, _, _, _>(cfg, addr.clone());
    serve::<QueryRoomIdForAlias, _, _, _>(cfg, addr.clone());
    serve::<QueryAliasesForRoom, _, _, _>(cfg, addr.clone());
    serve::<PerformRemoveRoomAlias, _, _, _>(cfg, addr.clone());
    serve::<PerformPublishRoom, _, _, _>(cfg, addr.clone());
    serve::<QueryPublishedRoom, _, _, _>(cfg, addr.clone());
    serve::<QueryPublicRooms, _, _, _>(cfg, addr.clone());
    serve::<PerformReport, _, _, _>(cfg, addr.clone());
    serve::<QueryEventByTimestamp, _, _, _>(cfg, addr.clone());
    serve::<QueryMaySendState, _, _, _>(cfg, addr.clone());
    serve::<InputRoomEvent, _, _, _>(cfg, addr.clone());
    serve::<QueryRoomHead, _, _, _>(cfg, addr.clone());
    serve::<QueryStateAtPosition, _, _, _>(cfg, addr.clone());
    serve::<QueryStateAfterEvent, _, _, _>(cfg, addr.clone());
    serve::<QueryMembershipTemplate, _, _, _>(cfg, addr.clone());
    serve::<PerformRemoteMembership, _, _, _>(cfg, addr.clone());
    serve::<InputJoinedRoom, _, _, _>(cfg, addr.clone());
    serve::<InputRemoteInvite, _, _, _>(cfg, addr.clone());
    serve::<QueryRemoteInvite, _, _, _>(cfg, addr.clone());
    serve::<PerformRetireRemoteInvite, _, _, _>(cfg, addr.clone());
    serve::<InputRemoteKnock, _, _, _>(cfg, addr.clone());
    serve::<QueryRemoteKnock, _, _, _>(cfg, addr.clone());
    serve::<PerformRetireRemoteKnock, _, _, _>(cfg, addr.clone());
    serve::<QueryJoinAuthorisation, _, _, _>(cfg, addr.clone());
    serve::<InputRoomEventAtState, _, _, _>(cfg, addr.clone());
    serve::<PerformBackfill, _, _, _>(cfg, addr.clone());
    // Reads for other servers.
    serve::<QueryEventForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryStateForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryStateIdsForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryEventAuthForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryBackfillForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryMissingEventsForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryEventByTimestampForServer, _, _, _>(cfg, addr.clone());
    serve::<QueryJoinedServers, _, _, _>(cfg, addr);
}

/// Starts the roomserver on one of `exec`'s arbiters; its room actors and queries spread
/// over all of them.
pub fn start(deps: input::Deps, exec: &Executors) -> Addr<RoomserverActor> {
    let exec = exec.clone();
    RoomserverActor::start_in_arbiter(&exec.next(), move |_| RoomserverActor::new(deps, exec))
}

#[cfg(test)]
mod serde_tests {
    use super::messages::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::json;

    fn round_trip<M: Serialize + DeserializeOwned + std::fmt::Debug>(m: M) {
        let json = serde_json::to_string(&m).unwrap();
        let back: M = serde_json::from_str(&json).unwrap();
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
    }

    /// The messages that serve other servers (the others' round trips are covered by the
    /// bridged integration tests).
    #[test]
    fn server_read_messages_survive_serde() {
        let (room, event, server) = ("!r:a.test".to_owned(), "$e".to_owned(), "b.test".to_owned());
        round_trip(QueryEventForServer {
            event_id: event.clone(),
            server_name: server.clone(),
        });
        round_trip(ServerEvent {
            room_id: room.clone(),
            room_version: "11".into(),
            pdu: json!({"type": "m.room.message"}),
        });
        round_trip(QueryStateForServer {
            room_id: room.clone(),
            event_id: event.clone(),
            server_name: server.clone(),
        });
        round_trip(ServerState {
            pdus: vec![json!({"a": 1})],
            auth_chain: vec![json!({"b": 2})],
        });
        round_trip(QueryStateIdsForServer {
            room_id: room.clone(),
            event_id: event.clone(),
            server_name: server.clone(),
        });
        round_trip(ServerStateIds {
            pdu_ids: vec![event.clone()],
            auth_chain_ids: vec!["$f".into()],
        });
        round_trip(QueryEventAuthForServer {
            room_id: room.clone(),
            event_id: event.clone(),
            server_name: server.clone(),
        });
        round_trip(QueryBackfillForServer {
            room_id: room.clone(),
            event_ids: vec![event.clone()],
            limit: 5,
            server_name: server.clone(),
        });
        round_trip(QueryMissingEventsForServer {
            room_id: room.clone(),
            earliest_events: vec!["$x".into()],
            latest_events: vec![event],
            limit: 10,
            min_depth: 2,
            server_name: server,
        });
        round_trip(ServerPdus {
            room_version: "11".into(),
            pdus: vec![json!({"c": 3})],
        });
        round_trip(QueryEventByTimestampForServer {
            room_id: room.clone(),
            ts: 12,
            forward: true,
            server_name: "b.test".into(),
        });
        round_trip(InputRoomEventAtState {
            room_id: room.clone(),
            event: json!({"type": "m.room.message"}),
            fetched: vec![json!({"d": 4})],
            prev_states: vec![PrevState {
                event_id: "$p".into(),
                state_before: vec!["$s".into()],
            }],
        });
        round_trip(PerformBackfill {
            room_id: room.clone(),
            limit: 50,
        });
        round_trip(Backfilled {
            asked: true,
            events: 3,
        });
        round_trip(RoomserverOutput::OldRoomEvent {
            room_id: room.clone(),
            event_id: "$o".into(),
            event: json!({"type": "m.room.message"}),
        });
        round_trip(QueryJoinedServers { room_id: room });
    }
}
