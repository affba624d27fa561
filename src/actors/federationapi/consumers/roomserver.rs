//! Reads the roomserver's stream (offset `federationapi.roomserver`): keeps who is joined to
//! each room (`federationapi_joined_members`, in stream order) and queues every event this
//! server originated (its sender is one of our users), or accepted on another server's behalf
//! (`send_on_behalf_of`: a `send_join`/`send_leave`, sent on to everyone but that server), for
//! each other server in the room at
//! the event: the servers with joined members before it, plus, for a membership change of
//! another server's user, that user's server (so a kicked, banned or uninvited server hears
//! of it). Queued items commit with the consumer's offset; after each batch the senders of
//! the destinations it touched are woken.
//!
//! The membership table follows the output's `adds_state` and `removes_state`: the event
//! itself when it is a member event that entered the state, and the other member events a
//! fork resolution or a join over federation brought in, or pushed out. Those events were
//! output earlier (a room joined over federation outputs its state before the join), and the
//! consumer keeps the member events among them until then; others it reads with `QueryEvent`.
//!
//! The joined members of the rooms it has met are kept in memory too ([`Members`], loaded
//! from the table on first use, forgotten when a batch rolls back), so an event that changes
//! no membership and goes to no other server (every event of a room with only local
//! members) is passed over without touching the database ([`Consumer::skip`]).

use super::super::sender::Queues;
use super::super::storage::joined_members;
use crate::actors::roomserver::messages::{QueryEvent, RoomserverOutput};
use crate::actors::roomserver::RoomserverHandle;
use crate::actors::syncapi::messages::QueryPresence;
use crate::actors::syncapi::SyncApiHandle;
use crate::bus::{Consumer, ConsumerError};
use crate::storage::{Conn, Db, Txn};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Past this many rooms in memory, the consumer forgets them all and loads again on use.
const MAX_ROOMS_IN_MEMORY: usize = 20_000;
/// A server new to a room gets the presence of at most this many of our users in it.
const MAX_PRESENCE_ON_JOIN: usize = 1000;
/// Past this many state events seen before entering the state, the consumer forgets them
/// (and reads them with `QueryEvent` when they do).
const MAX_SEEN: usize = 100_000;

/// A room's joined members as the table holds them.
#[derive(Default)]
struct Members {
    /// User ID to (server, join event ID).
    users: HashMap<String, (String, String)>,
    /// Join event ID to user ID.
    by_event: HashMap<String, String>,
    /// Server name to its number of joined users.
    servers: HashMap<String, usize>,
}

impl Members {
    fn join(&mut self, user: &str, server: &str, event_id: &str) {
        self.leave(user);
        self.users
            .insert(user.to_owned(), (server.to_owned(), event_id.to_owned()));
        self.by_event.insert(event_id.to_owned(), user.to_owned());
        *self.servers.entry(server.to_owned()).or_default() += 1;
    }

    fn leave(&mut self, user: &str) {
        let Some((server, event_id)) = self.users.remove(user) else {
            return;
        };
        self.by_event.remove(&event_id);
        if let Some(n) = self.servers.get_mut(&server) {
            *n -= 1;
            if *n == 0 {
                self.servers.remove(&server);
            }
        }
    }

    /// The servers with a joined member.
    fn servers(&self) -> BTreeSet<String> {
        self.servers.keys().cloned().collect()
    }

    /// The user whose join `event_id` is, if it is one of the joins held.
    fn joined_by(&self, event_id: &str) -> Option<String> {
        self.by_event.get(event_id).cloned()
    }
}

/// The federationapi's consumer of the `roomserver` stream.
pub struct RoomserverConsumer {
    /// This server's name: events of its users are sent, and it is never a destination.
    server_name: String,
    roomserver: RoomserverHandle,
    /// For our users' presence, sent to servers they come to share a room with.
    syncapi: SyncApiHandle,
    queues: Queues,
    /// Per stream position in the batch being applied, the destinations it queued for
    /// (a rolled-back batch applied again writes the same entries).
    touched: BTreeMap<i64, BTreeSet<String>>,
    /// The joined members of the rooms met so far, as of the last output applied.
    rooms: HashMap<String, Members>,
    /// State events output before a later output's `adds_state` names them (a room joined
    /// over federation outputs its state first, then the join that adds it all): the member
    /// events, and `None` for the others, so the join needs no `QueryEvent` per state event.
    seen: HashMap<String, Option<Value>>,
}

impl RoomserverConsumer {
    pub fn new(
        server_name: String,
        roomserver: RoomserverHandle,
        syncapi: SyncApiHandle,
        queues: Queues,
    ) -> Self {
        RoomserverConsumer {
            server_name,
            roomserver,
            syncapi,
            queues,
            touched: BTreeMap::new(),
            rooms: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    /// Keeps a state event output without entering the state, for the output that adds it.
    fn remember(&mut self, output: &RoomserverOutput) {
        let RoomserverOutput::NewRoomEvent {
            event_id,
            event,
            adds_state,
            ..
        } = output
        else {
            return;
        };
        if event.get("state_key").is_none() || adds_state.contains(event_id) {
            return;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        let member = event.get("type").and_then(Value::as_str) == Some("m.room.member");
        self.seen
            .insert(event_id.clone(), member.then(|| event.clone()));
    }

    /// The room's members, read from `db` the first time.
    async fn members(
        &mut self,
        db: &impl Conn,
        room_id: &str,
    ) -> Result<&mut Members, ConsumerError> {
        if !self.rooms.contains_key(room_id) {
            if self.rooms.len() >= MAX_ROOMS_IN_MEMORY {
                self.rooms.clear();
            }
            let mut members = Members::default();
            for (user, server, event_id) in joined_members::select_members(db, room_id).await? {
                members.join(&user, &server, &event_id);
            }
            self.rooms.insert(room_id.to_owned(), members);
        }
        Ok(self.rooms.get_mut(room_id).expect("inserted above"))
    }

    /// A member event's effect on the joined members: the user joined, or not any more.
    /// The user when they were not joined before and are now.
    async fn apply_member(
        &mut self,
        txn: &Txn,
        room_id: &str,
        event_id: &str,
        event: &Value,
    ) -> Result<Option<String>, ConsumerError> {
        if event.get("type").and_then(Value::as_str) != Some("m.room.member") {
            return Ok(None);
        }
        let Some(user_id) = event.get("state_key").and_then(Value::as_str) else {
            return Ok(None);
        };
        let Some(server) = server_of(user_id) else {
            return Ok(None);
        };
        let membership = event
            .get("content")
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str);
        if membership == Some("join") {
            joined_members::upsert(txn, room_id, user_id, server, event_id).await?;
            let members = self.members(txn, room_id).await?;
            let new = !members.users.contains_key(user_id);
            members.join(user_id, server, event_id);
            Ok(new.then(|| user_id.to_owned()))
        } else {
            joined_members::delete(txn, room_id, user_id).await?;
            self.members(txn, room_id).await?.leave(user_id);
            Ok(None)
        }
    }

    /// Presence when someone joins, as Synapse sends it: a user of ours who joins gets their
    /// presence sent to the room's other servers, and a server new to the room gets the
    /// presence of our users in it (at most [`MAX_PRESENCE_ON_JOIN`]). Offline users are
    /// left out: that is what other servers assume anyway.
    async fn presence_on_join(
        &mut self,
        txn: &Txn,
        room_id: &str,
        before: &BTreeSet<String>,
        joined: &[String],
    ) -> Result<BTreeSet<String>, ConsumerError> {
        let ours: Vec<&String> = joined
            .iter()
            .filter(|u| server_of(u) == Some(self.server_name.as_str()))
            .collect();
        let new_servers: BTreeSet<String> = joined
            .iter()
            .filter_map(|u| server_of(u))
            .filter(|s| *s != self.server_name && !before.contains(*s))
            .map(str::to_owned)
            .collect();
        if ours.is_empty() && new_servers.is_empty() {
            return Ok(BTreeSet::new());
        }
        let me = self.server_name.clone();
        let members = self.members(txn, room_id).await?;
        let mut everyone = members.servers();
        everyone.remove(&me);
        // (user, servers to tell)
        let mut plan: Vec<(String, BTreeSet<String>)> = Vec::new();
        for user in &ours {
            if !everyone.is_empty() {
                plan.push(((*user).clone(), everyone.clone()));
            }
        }
        if !new_servers.is_empty() {
            let locals = members
                .users
                .iter()
                .filter(|(_, (server, _))| *server == me)
                .map(|(user, _)| user.clone())
                .filter(|u| !ours.contains(&u))
                .take(MAX_PRESENCE_ON_JOIN)
                .collect::<Vec<_>>();
            for user in locals {
                plan.push((user, new_servers.clone()));
            }
        }
        let mut touched = BTreeSet::new();
        for (user, targets) in plan {
            let presence = self
                .syncapi
                .send(QueryPresence {
                    user_id: user.clone(),
                    viewer: user.clone(),
                })
                .await
                .map_err(|e| {
                    ConsumerError::Apply(format!("reading the presence of {user}: {e}"))
                })?;
            let state = presence.get("presence").and_then(Value::as_str);
            if matches!(state, None | Some("offline")) {
                continue;
            }
            let (edu, key) = super::presence::presence_edu(&user, &presence);
            self.queues
                .enqueue(txn, &targets, false, &edu, Some(key.as_str()))
                .await?;
            touched.extend(targets);
        }
        Ok(touched)
    }

    /// The servers an event goes to, given the servers joined before it; empty for an event
    /// that is neither ours nor one we accepted on another server's behalf.
    fn destinations(
        &self,
        before: BTreeSet<String>,
        event: &Value,
        send_on_behalf_of: Option<&str>,
    ) -> BTreeSet<String> {
        let sender = event.get("sender").and_then(Value::as_str).unwrap_or("");
        if server_of(sender) != Some(self.server_name.as_str()) && send_on_behalf_of.is_none() {
            return BTreeSet::new();
        }
        let mut targets = before;
        if event.get("type").and_then(Value::as_str) == Some("m.room.member") {
            if let Some(server) = event
                .get("state_key")
                .and_then(Value::as_str)
                .and_then(server_of)
            {
                targets.insert(server.to_owned());
            }
        }
        targets.remove(&self.server_name);
        // A join or leave sent on another server's behalf: that server has it already.
        if let Some(origin) = send_on_behalf_of {
            targets.remove(origin);
        }
        targets
    }
}

/// The server part of a user ID.
pub fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

impl Consumer for RoomserverConsumer {
    type Output = RoomserverOutput;
    const STREAM: &'static str = crate::actors::roomserver::input::STREAM;
    const NAME: &'static str = "federationapi.roomserver";

    async fn skip(&mut self, db: &Db, output: &RoomserverOutput) -> Result<bool, ConsumerError> {
        self.remember(output);
        let RoomserverOutput::NewRoomEvent {
            room_id,
            event_id,
            event,
            adds_state,
            removes_state,
            send_on_behalf_of,
            ..
        } = output
        else {
            return Ok(true);
        };
        // State a fork resolution brought in may hold member events.
        if adds_state.iter().any(|id| id != event_id) {
            return Ok(false);
        }
        if !adds_state.is_empty()
            && event.get("type").and_then(Value::as_str) == Some("m.room.member")
        {
            return Ok(false);
        }
        let members = self.members(db, room_id).await?;
        if removes_state
            .iter()
            .any(|id| members.joined_by(id).is_some())
        {
            return Ok(false);
        }
        let before = members.servers();
        Ok(self
            .destinations(before, event, send_on_behalf_of.as_deref())
            .is_empty())
    }

    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        output: RoomserverOutput,
    ) -> Result<(), ConsumerError> {
        self.remember(&output);
        let RoomserverOutput::NewRoomEvent {
            room_id,
            event_id,
            event,
            adds_state,
            removes_state,
            send_on_behalf_of,
            ..
        } = output
        else {
            return Ok(());
        };
        let members = self.members(txn, &room_id).await?;
        let before = members.servers();
        for id in &removes_state {
            let members = self.members(txn, &room_id).await?;
            if let Some(user) = members.joined_by(id) {
                members.leave(&user);
                joined_members::delete_by_event(txn, &room_id, id).await?;
            }
        }
        let mut joined = Vec::new();
        for id in &adds_state {
            if *id == event_id {
                joined.extend(self.apply_member(txn, &room_id, id, &event).await?);
                continue;
            }
            if let Some(seen) = self.seen.remove(id) {
                if let Some(event) = seen {
                    joined.extend(self.apply_member(txn, &room_id, id, &event).await?);
                }
                continue;
            }
            let stored = self
                .roomserver
                .send(QueryEvent {
                    event_id: id.clone(),
                })
                .await
                .map_err(|e| ConsumerError::Apply(format!("reading state event {id}: {e}")))?;
            if let Some(stored) = stored {
                joined.extend(self.apply_member(txn, &room_id, id, &stored.json).await?);
            }
        }
        let targets = self.destinations(before.clone(), &event, send_on_behalf_of.as_deref());
        let json = serde_json::to_string(&event)
            .map_err(|e| ConsumerError::Apply(format!("event {event_id}: {e}")))?;
        if !targets.is_empty() {
            self.queues
                .enqueue(
                    txn,
                    &targets,
                    true,
                    &json,
                    Some(format!("pdu|{room_id}").as_str()),
                )
                .await?;
        }
        // After the join itself, so the new server knows the user when their presence comes.
        let mut touched = self
            .presence_on_join(txn, &room_id, &before, &joined)
            .await?;
        touched.extend(targets);
        if !touched.is_empty() {
            self.touched.insert(position, touched);
        }
        Ok(())
    }

    fn applied(&mut self, position: i64) {
        self.queues.wake_applied(&mut self.touched, position);
    }

    fn rolled_back(&mut self) {
        self.rooms.clear();
        self.touched.clear();
    }
}
