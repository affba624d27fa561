//! The roomserver actors: [`RoomserverActor`] receives every message and hands events for an
//! existing room to that room's [`RoomActor`], started on demand. A room actor handles one
//! event at a time (`AtomicResponse`), so a room's events form a linear DAG however many
//! clients send at once, while rooms progress in parallel. Idle room actors are dropped.

use super::input::{self, Deps};
use super::messages::*;
use super::RoomserverError;
use crate::actors::executors::Executors;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A room actor unused for this long is dropped (it stops once its mailbox is empty).
const IDLE: Duration = Duration::from_secs(300);

pub struct RoomserverActor {
    deps: Deps,
    rooms: HashMap<String, RoomEntry>,
    /// Where room actors start (by room ID) and queries run.
    exec: Executors,
    /// Rooms whose last backfill found no server to answer: not asked again before then,
    /// with the wait that got them there (see [`BACKFILL_RETRY_MIN`]).
    backfill_backoff: Arc<std::sync::Mutex<HashMap<String, (Instant, Duration)>>>,
}

/// After a backfill no server answered, a room's `/messages` pages do not ask again for this
/// long; each further failure doubles it, up to [`BACKFILL_RETRY_MAX`]. A page that reaches
/// the bottom meanwhile is answered with what is held.
const BACKFILL_RETRY_MIN: Duration = Duration::from_secs(30);
/// See [`BACKFILL_RETRY_MIN`].
const BACKFILL_RETRY_MAX: Duration = Duration::from_secs(60 * 60);

/// A running room actor, when it was last given work, and how much it still has: a room is
/// dropped only when idle AND drained, so there is never a second writer for a room.
struct RoomEntry {
    addr: Addr<RoomActor>,
    used: Instant,
    in_flight: Arc<AtomicUsize>,
}

/// A room actor's address and its in-flight counter, released when the work is done.
struct Lease {
    addr: Addr<RoomActor>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RoomserverActor {
    pub fn new(deps: Deps, exec: Executors) -> RoomserverActor {
        RoomserverActor {
            deps,
            rooms: HashMap::new(),
            exec,
            backfill_backoff: Default::default(),
        }
    }

    fn room(&mut self, room_id: &str) -> Lease {
        let (deps, exec) = (&self.deps, &self.exec);
        let entry = self
            .rooms
            .entry(room_id.to_owned())
            .or_insert_with(|| RoomEntry {
                addr: RoomActor::start_for(deps.clone(), room_id, exec),
                used: Instant::now(),
                in_flight: Arc::new(AtomicUsize::new(0)),
            });
        if !entry.addr.connected() {
            entry.addr = RoomActor::start_for(deps.clone(), room_id, exec);
        }
        entry.used = Instant::now();
        entry.in_flight.fetch_add(1, Ordering::SeqCst);
        Lease {
            addr: entry.addr.clone(),
            in_flight: entry.in_flight.clone(),
        }
    }

    /// How many room actors are running.
    pub fn active_rooms(&self) -> usize {
        self.rooms.len()
    }
}

/// A room turned out not to exist: its actor goes at once (when nothing else is in flight
/// for it) instead of idling for minutes, so requests naming made-up rooms leave nothing
/// behind. Internal to the roomserver.
#[derive(Message)]
#[rtype(result = "()")]
struct ForgetUnknownRoom(String);

impl Handler<ForgetUnknownRoom> for RoomserverActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetUnknownRoom, _: &mut Context<Self>) {
        if self
            .rooms
            .get(&msg.0)
            .is_some_and(|r| r.in_flight.load(Ordering::SeqCst) == 0)
        {
            self.rooms.remove(&msg.0);
        }
    }
}

/// How many room actors run (tests). Internal to the roomserver.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountRoomActors;

impl Handler<CountRoomActors> for RoomserverActor {
    type Result = usize;

    fn handle(&mut self, _: CountRoomActors, _: &mut Context<Self>) -> usize {
        self.active_rooms()
    }
}

impl Actor for RoomserverActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(IDLE / 5, |act, _| {
            act.rooms.retain(|_, room| {
                room.used.elapsed() < IDLE || room.in_flight.load(Ordering::SeqCst) > 0
            });
        });
    }
}

impl Handler<PerformRoomEvent> for RoomserverActor {
    type Result = ResponseFuture<Result<SentEvent, RoomserverError>>;

    fn handle(&mut self, msg: PerformRoomEvent, ctx: &mut Context<Self>) -> Self::Result {
        match msg.room_id.clone() {
            // A new room: nothing to order it against.
            None if msg.event_type == "m.room.create" => {
                let deps = self.deps.clone();
                Box::pin(self.exec.run(move || async move {
                    super::create_room::create(
                        &deps,
                        msg.room_version,
                        &msg.sender,
                        msg.content,
                        Vec::new(),
                    )
                    .await
                }))
            }
            None => Box::pin(async {
                Err(RoomserverError::BadRequest(
                    "the event needs a room ID".into(),
                ))
            }),
            Some(room_id) => {
                let room = self.room(&room_id);
                let me = ctx.address();
                Box::pin(async move {
                    let result = room
                        .addr
                        .send(InRoom(msg))
                        .await
                        .map_err(|e| RoomserverError::internal(e))?;
                    if matches!(result, Err(RoomserverError::NoRoom)) {
                        drop(room);
                        me.do_send(ForgetUnknownRoom(room_id));
                    }
                    result
                })
            }
        }
    }
}

impl Handler<PerformCreateRoom> for RoomserverActor {
    type Result = ResponseFuture<Result<SentEvent, RoomserverError>>;

    fn handle(&mut self, msg: PerformCreateRoom, _: &mut Context<Self>) -> Self::Result {
        // A new room: nothing to order it against (no one can send into it before it exists).
        let deps = self.deps.clone();
        Box::pin(self.exec.run(move || async move {
            super::create_room::create(
                &deps,
                msg.room_version,
                &msg.sender,
                msg.creation_content,
                msg.initial,
            )
            .await
        }))
    }
}

impl Handler<InputRoomEvent> for RoomserverActor {
    type Result = ResponseFuture<Result<InputOutcome, RoomserverError>>;

    fn handle(&mut self, msg: InputRoomEvent, ctx: &mut Context<Self>) -> Self::Result {
        let room = self.room(&msg.room_id);
        let room_id = msg.room_id.clone();
        let me = ctx.address();
        Box::pin(async move {
            let result = room
                .addr
                .send(InRoomInput(msg))
                .await
                .map_err(|e| RoomserverError::internal(e))?;
            if matches!(result, Err(RoomserverError::NoRoom)) {
                drop(room);
                me.do_send(ForgetUnknownRoom(room_id));
            }
            result
        })
    }
}

impl Handler<QueryCurrentState> for RoomserverActor {
    type Result = ResponseFuture<Result<Option<Vec<StoredEvent>>, RoomserverError>>;

    fn handle(&mut self, msg: QueryCurrentState, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        Box::pin(
            self.exec.run(move || async move {
                input::current_state(&db, &msg.room_id, &msg.types).await
            }),
        )
    }
}

impl Handler<QueryEvent> for RoomserverActor {
    type Result = ResponseFuture<Result<Option<StoredEvent>, RoomserverError>>;

    fn handle(&mut self, msg: QueryEvent, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        Box::pin(
            self.exec
                .run(move || async move { input::event(&db, &msg.event_id).await }),
        )
    }
}

impl Handler<QueryRoomsWithMembership> for RoomserverActor {
    type Result = ResponseFuture<Result<Vec<String>, RoomserverError>>;

    fn handle(&mut self, msg: QueryRoomsWithMembership, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        Box::pin(self.exec.run(move || async move {
            Ok(
                super::storage::memberships::select_rooms(&db, &msg.user_id, &msg.membership)
                    .await?,
            )
        }))
    }
}

impl Handler<QueryJoinedRooms> for RoomserverActor {
    type Result = ResponseFuture<Result<Vec<String>, RoomserverError>>;

    fn handle(&mut self, msg: QueryJoinedRooms, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        Box::pin(self.exec.run(move || async move {
            Ok(super::storage::memberships::select_rooms(&db, &msg.user_id, "join").await?)
        }))
    }
}

impl Handler<PerformForget> for RoomserverActor {
    type Result = ResponseFuture<Result<(), RoomserverError>>;

    fn handle(&mut self, msg: PerformForget, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(self.exec.run(move || async move {
            super::membership::forget(&deps, &msg.room_id, &msg.user_id).await
        }))
    }
}

impl Handler<QueryMembership> for RoomserverActor {
    type Result = ResponseFuture<Result<Option<MembershipState>, RoomserverError>>;

    fn handle(&mut self, msg: QueryMembership, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        Box::pin(self.exec.run(move || async move {
            super::membership::query(&db, &msg.room_id, &msg.user_id).await
        }))
    }
}

/// Handlers that only read or write directory tables: run concurrently on the database.
macro_rules! directory_handler {
    ($msg:ident, $ret:ty, |$db:ident, $m:ident| $body:expr) => {
        impl Handler<$msg> for RoomserverActor {
            type Result = ResponseFuture<Result<$ret, RoomserverError>>;

            fn handle(&mut self, $m: $msg, _: &mut Context<Self>) -> Self::Result {
                let $db = self.deps.db.clone();
                Box::pin(self.exec.run(move || async move { $body }))
            }
        }
    };
}

directory_handler!(PerformSetRoomAlias, (), |db, m| {
    super::directory::set_alias(&db, &m.alias, &m.room_id, &m.user_id).await
});
directory_handler!(QueryRoomIdForAlias, Option<String>, |db, m| {
    Ok(super::storage::room_aliases::select(&db, &m.alias)
        .await?
        .map(|(room, _)| room))
});
directory_handler!(QueryAliasesForRoom, Vec<String>, |db, m| {
    Ok(super::storage::room_aliases::select_for_room(&db, &m.room_id).await?)
});
directory_handler!(PerformRemoveRoomAlias, (), |db, m| {
    super::directory::remove_alias(&db, &m.alias, &m.user_id).await
});
directory_handler!(PerformPublishRoom, (), |db, m| {
    super::directory::set_published(&db, &m.room_id, &m.user_id, m.publish).await
});
directory_handler!(QueryPublishedRoom, Option<bool>, |db, m| {
    super::directory::is_published(&db, &m.room_id).await
});
directory_handler!(QueryPublicRooms, PublicRoomsPage, |db, m| {
    super::directory::public_rooms(
        &db,
        m.limit,
        m.since.as_deref(),
        m.search.as_deref(),
        m.room_types.as_deref(),
    )
    .await
});

directory_handler!(PerformReport, (), |db, m| {
    input::report(
        &db,
        &m.room_id,
        m.event_id.as_deref(),
        &m.reporter,
        m.reason.as_deref(),
    )
    .await
});
directory_handler!(QueryEventByTimestamp, Option<(String, i64)>, |db, m| {
    super::visibility::event_by_timestamp(&db, &m.room_id, &m.user_id, m.ts, m.forward).await
});

directory_handler!(QueryStateAtPosition, Option<Vec<StoredEvent>>, |db, m| {
    input::state_at_position(&db, &m.room_id, m.position, &m.user_id).await
});
directory_handler!(QueryStateAfterEvent, Option<Vec<StoredEvent>>, |db, m| {
    input::state_after_event(&db, &m.room_id, &m.event_id).await
});
directory_handler!(QueryRoomHead, Option<RoomHead>, |db, m| {
    super::room_head::room_head(&db, &m.room_id, &m.event_ids).await
});
directory_handler!(QueryMaySendState, bool, |db, m| {
    super::directory::may_send_state(&db, &m.room_id, &m.user_id, &m.event_type).await
});

directory_handler!(QueryRemoteInvite, Option<RemoteInvite>, |db, m| {
    super::remote::remote_invite(&db, &m.room_id, &m.user_id).await
});
directory_handler!(QueryRemoteKnock, Option<RemoteKnock>, |db, m| {
    super::remote::remote_knock(&db, &m.room_id, &m.user_id).await
});

impl Handler<QueryJoinAuthorisation> for RoomserverActor {
    type Result = ResponseFuture<Result<JoinAuthorisation, RoomserverError>>;

    fn handle(&mut self, msg: QueryJoinAuthorisation, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(self.exec.run(move || async move {
            super::restricted::join_authorisation(
                &deps.db,
                &deps.server_name,
                &msg.room_id,
                &msg.user_id,
            )
            .await
        }))
    }
}

impl Handler<InputRemoteKnock> for RoomserverActor {
    type Result = ResponseFuture<Result<(), RoomserverError>>;

    fn handle(&mut self, msg: InputRemoteKnock, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            self.exec
                .run(move || async move { super::remote::store_remote_knock(&deps, msg).await }),
        )
    }
}

impl Handler<PerformRetireRemoteKnock> for RoomserverActor {
    type Result = ResponseFuture<Result<(), RoomserverError>>;

    fn handle(&mut self, msg: PerformRetireRemoteKnock, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            self.exec
                .run(move || async move { super::remote::retire_remote_knock(&deps, msg).await }),
        )
    }
}

impl Handler<QueryMembershipTemplate> for RoomserverActor {
    type Result = ResponseFuture<Result<MembershipTemplate, RoomserverError>>;

    fn handle(&mut self, msg: QueryMembershipTemplate, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            self.exec
                .run(move || async move { super::remote::membership_template(&deps, msg).await }),
        )
    }
}

impl Handler<PerformRetireRemoteInvite> for RoomserverActor {
    type Result = ResponseFuture<Result<(), RoomserverError>>;

    fn handle(&mut self, msg: PerformRetireRemoteInvite, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(
            self.exec
                .run(move || async move { super::remote::retire_remote_invite(&deps, msg).await }),
        )
    }
}

/// An event from elsewhere into its room's actor; an outcome other than accepted is
/// `NotAllowed`. `send_on_behalf_of`: see [`InputRoomEvent`].
async fn input_accepted(
    room: Lease,
    room_id: String,
    event: serde_json::Value,
    send_on_behalf_of: Option<String>,
) -> Result<(), RoomserverError> {
    let outcome = room
        .addr
        .send(InRoomInput(InputRoomEvent {
            room_id,
            event,
            send_on_behalf_of,
        }))
        .await
        .map_err(|e| RoomserverError::internal(e))??;
    match outcome {
        InputOutcome::Accepted { .. } => Ok(()),
        InputOutcome::Rejected { reason, .. } | InputOutcome::SoftFailed { reason, .. } => {
            Err(RoomserverError::NotAllowed(reason))
        }
    }
}

impl Handler<PerformRemoteMembership> for RoomserverActor {
    type Result = ResponseFuture<Result<MembershipAnswer, RoomserverError>>;

    fn handle(&mut self, msg: PerformRemoteMembership, ctx: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        let room = self.room(&msg.room_id);
        let me = ctx.address();
        Box::pin(async move {
            let event = match super::remote::check_remote_membership(&deps, &msg).await {
                Ok(event) => event,
                Err(e) => {
                    if matches!(e, RoomserverError::NoRoom) {
                        drop(room);
                        me.do_send(ForgetUnknownRoom(msg.room_id));
                    }
                    return Err(e);
                }
            };
            let servers = super::server_reads::joined_servers(&deps.db, &msg.room_id)
                .await?
                .unwrap_or_default();
            // The joining (or leaving) server cannot send its event to the room's other
            // servers: this server does, on its behalf.
            input_accepted(room, msg.room_id.clone(), event, Some(msg.origin.clone())).await?;
            super::remote::membership_answer(&deps, &msg, servers).await
        })
    }
}

impl Handler<InputRemoteInvite> for RoomserverActor {
    type Result = ResponseFuture<Result<serde_json::Value, RoomserverError>>;

    fn handle(&mut self, msg: InputRemoteInvite, ctx: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        let room = self.room(&msg.room_id);
        let me = ctx.address();
        Box::pin(async move {
            let (event_id, signed) = super::remote::check_and_sign_invite(&deps, &msg).await?;
            let value = serde_json::to_value(&signed).map_err(|e| RoomserverError::internal(e))?;
            let known = super::storage::rooms::select(&deps.db, &msg.room_id)
                .await?
                .is_some();
            // In a room known here the invite is an event like any other; one whose place
            // in the DAG is unknown (or a room not here) is kept as a remote invite.
            let input = if known {
                input_accepted(room, msg.room_id.clone(), value.clone(), None).await
            } else {
                drop(room);
                me.do_send(ForgetUnknownRoom(msg.room_id.clone()));
                Err(RoomserverError::NoRoom)
            };
            match input {
                Ok(()) => {}
                Err(RoomserverError::NoRoom | RoomserverError::BadRequest(_)) => {
                    super::remote::store_remote_invite(&deps, &msg, &event_id, &signed).await?
                }
                Err(e) => return Err(e),
            }
            Ok(value)
        })
    }
}

impl Handler<InputJoinedRoom> for RoomserverActor {
    type Result = ResponseFuture<Result<SentEvent, RoomserverError>>;

    fn handle(&mut self, msg: InputJoinedRoom, _: &mut Context<Self>) -> Self::Result {
        let room = self.room(&msg.room_id);
        Box::pin(async move {
            room.addr
                .send(InRoomImport(msg))
                .await
                .map_err(|e| RoomserverError::internal(e))?
        })
    }
}

impl Handler<InputRoomEventAtState> for RoomserverActor {
    type Result = ResponseFuture<Result<InputOutcome, RoomserverError>>;

    fn handle(&mut self, msg: InputRoomEventAtState, _: &mut Context<Self>) -> Self::Result {
        let room = self.room(&msg.room_id);
        Box::pin(async move {
            room.addr
                .send(InRoomAtState(msg))
                .await
                .map_err(|e| RoomserverError::internal(e))?
        })
    }
}

/// An event placed on the state another server told, into its room's actor (internal).
#[derive(Message)]
#[rtype(result = "Result<InputOutcome, RoomserverError>")]
struct InRoomAtState(InputRoomEventAtState);

impl Handler<InRoomAtState> for RoomActor {
    type Result = AtomicResponse<Self, Result<InputOutcome, RoomserverError>>;

    fn handle(&mut self, msg: InRoomAtState, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        self.cache.borrow_mut().clear();
        let cache = self.cache.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let result = super::history::input_at_state(&deps, msg.0).await;
                cache.borrow_mut().clear();
                result
            }
            .into_actor(self),
        ))
    }
}

impl Handler<PerformBackfill> for RoomserverActor {
    type Result = ResponseFuture<Result<Backfilled, RoomserverError>>;

    fn handle(&mut self, msg: PerformBackfill, ctx: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        let nothing = Backfilled {
            asked: false,
            events: 0,
        };
        let backoff = self.backfill_backoff.clone();
        let waiting = backoff
            .lock()
            .ok()
            .and_then(|b| b.get(&msg.room_id).copied());
        if waiting.is_some_and(|(until, _)| Instant::now() < until) {
            return Box::pin(async move { Ok(nothing) });
        }
        let room = self.room(&msg.room_id);
        let me = ctx.address();
        Box::pin(async move {
            let request = match super::history::backfill_request(&deps, &msg.room_id).await {
                Err(RoomserverError::NoRoom) => {
                    drop(room);
                    me.do_send(ForgetUnknownRoom(msg.room_id));
                    return Err(RoomserverError::NoRoom);
                }
                other => other?,
            };
            let Some((from, servers)) = request else {
                return Ok(nothing);
            };
            let Some(federation) = deps.keyring.federation() else {
                return Ok(nothing);
            };
            // Asked outside the room's actor: its input goes on meanwhile.
            let asked = federation
                .send(crate::actors::federationapi::messages::QueryBackfill {
                    room_id: msg.room_id.clone(),
                    servers,
                    event_ids: from.clone(),
                    limit: msg.limit.min(MAX_BACKFILL),
                })
                .await;
            let answer = match asked {
                Ok(answer) => answer,
                Err(e) => {
                    let wait = waiting
                        .map_or(BACKFILL_RETRY_MIN, |(_, w)| (w * 2).min(BACKFILL_RETRY_MAX));
                    tracing::info!(room_id = msg.room_id, error = %e, retry_in_s = wait.as_secs(), "no server gave history");
                    if let Ok(mut b) = backoff.lock() {
                        if b.len() > 10_000 {
                            let now = Instant::now();
                            b.retain(|_, (until, _)| *until > now);
                        }
                        b.insert(msg.room_id.clone(), (Instant::now() + wait, wait));
                    }
                    return Ok(Backfilled {
                        asked: true,
                        events: 0,
                    });
                }
            };
            if let Ok(mut b) = backoff.lock() {
                b.remove(&msg.room_id);
            }
            room.addr
                .send(InRoomBackfill {
                    room_id: msg.room_id,
                    from,
                    answer,
                })
                .await
                .map_err(|e| RoomserverError::internal(e))?
        })
    }
}

/// What another server's `/backfill` answered, into the room's actor (internal).
#[derive(Message)]
#[rtype(result = "Result<Backfilled, RoomserverError>")]
struct InRoomBackfill {
    room_id: String,
    from: Vec<String>,
    answer: Vec<serde_json::Value>,
}

impl Handler<InRoomBackfill> for RoomActor {
    type Result = AtomicResponse<Self, Result<Backfilled, RoomserverError>>;

    fn handle(&mut self, msg: InRoomBackfill, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        AtomicResponse::new(Box::pin(
            async move {
                super::history::store_backfill(&deps, &msg.room_id, msg.from, msg.answer).await
            }
            .into_actor(self),
        ))
    }
}

/// A room joined through another server, into its (new) room actor (internal).
#[derive(Message)]
#[rtype(result = "Result<SentEvent, RoomserverError>")]
struct InRoomImport(InputJoinedRoom);

impl Handler<InRoomImport> for RoomActor {
    type Result = AtomicResponse<Self, Result<SentEvent, RoomserverError>>;

    fn handle(&mut self, msg: InRoomImport, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        self.cache.borrow_mut().clear();
        let cache = self.cache.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let result = super::remote::import_room(&deps, msg.0).await;
                cache.borrow_mut().clear();
                result
            }
            .into_actor(self),
        ))
    }
}

// Reads for other servers (`server_reads.rs`).
directory_handler!(QueryEventForServer, Option<ServerEvent>, |db, m| {
    super::server_reads::event(&db, &m.event_id, &m.server_name).await
});
directory_handler!(QueryStateForServer, ServerState, |db, m| {
    super::server_reads::state_at(&db, &m.room_id, &m.event_id, &m.server_name).await
});
directory_handler!(QueryStateIdsForServer, ServerStateIds, |db, m| {
    super::server_reads::state_ids_at(&db, &m.room_id, &m.event_id, &m.server_name).await
});
directory_handler!(QueryEventAuthForServer, Vec<serde_json::Value>, |db, m| {
    super::server_reads::event_auth(&db, &m.room_id, &m.event_id, &m.server_name).await
});
directory_handler!(QueryBackfillForServer, ServerPdus, |db, m| {
    super::server_reads::backfill(&db, &m.room_id, &m.event_ids, m.limit, &m.server_name).await
});
directory_handler!(QueryMissingEventsForServer, ServerPdus, |db, msg| {
    super::server_reads::missing_events(&db, &msg).await
});
directory_handler!(
    QueryEventByTimestampForServer,
    Option<(String, i64)>,
    |db, m| super::server_reads::event_by_timestamp(&db, &m).await
);
directory_handler!(QueryJoinedServers, Option<Vec<String>>, |db, m| {
    super::server_reads::joined_servers(&db, &m.room_id).await
});

/// The input of one room.
pub struct RoomActor {
    deps: Deps,
    room_id: String,
    /// What it read of the room's state for the events it built (see [`input::RoomCache`]).
    cache: std::rc::Rc<std::cell::RefCell<input::RoomCache>>,
}

impl RoomActor {
    /// Starts a room's actor on the arbiter its room ID hashes to.
    fn start_for(deps: Deps, room_id: &str, exec: &Executors) -> Addr<RoomActor> {
        let room_id = room_id.to_owned();
        RoomActor::start_in_arbiter(&exec.for_key(&room_id), move |_| RoomActor {
            deps,
            room_id,
            cache: Default::default(),
        })
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;
}

/// An event for this room (internal to the roomserver).
#[derive(Message)]
#[rtype(result = "Result<SentEvent, RoomserverError>")]
struct InRoom(PerformRoomEvent);

/// An event from elsewhere for this room (internal to the roomserver).
#[derive(Message)]
#[rtype(result = "Result<InputOutcome, RoomserverError>")]
struct InRoomInput(InputRoomEvent);

impl Handler<InRoomInput> for RoomActor {
    type Result = AtomicResponse<Self, Result<InputOutcome, RoomserverError>>;

    fn handle(&mut self, msg: InRoomInput, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        let room_id = self.room_id.clone();
        // An event from elsewhere can change the room's state in ways the cache cannot
        // follow (forks, redactions of stored events): read afresh after it.
        self.cache.borrow_mut().clear();
        let cache = self.cache.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let result = super::input_events::input(
                    &deps,
                    &room_id,
                    msg.0.event,
                    msg.0.send_on_behalf_of,
                )
                .await;
                cache.borrow_mut().clear();
                result
            }
            .into_actor(self),
        ))
    }
}

impl Handler<InRoom> for RoomActor {
    type Result = AtomicResponse<Self, Result<SentEvent, RoomserverError>>;

    fn handle(&mut self, msg: InRoom, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        let room_id = self.room_id.clone();
        let cache = self.cache.clone();
        AtomicResponse::new(Box::pin(
            async move { input::in_room(&deps, &room_id, msg.0, &cache).await }.into_actor(self),
        ))
    }
}
