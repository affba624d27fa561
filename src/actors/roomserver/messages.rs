//! The roomserver's public API (so far: sending local events and reading state and events).

use super::error::RoomserverError;
use actix::Message;
use serde::{Deserialize, Serialize};

/// An event stored and accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEvent {
    pub event_id: String,
    pub room_id: String,
}

/// An event as stored, in federation format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub room_id: String,
    pub json: serde_json::Value,
    /// It failed authorization: kept for the DAG, never served to clients.
    pub rejected: bool,
    /// When redacted: the redaction event (federation format, with its `event_id`); `json`
    /// is then already redacted by the room version's algorithm.
    pub redacted_because: Option<serde_json::Value>,
}

/// Builds an event for a local sender, authorizes it against the room's current state,
/// signs it and stores it (moving the room's state and extremities), all in the room's
/// order: events of one room are handled one at a time, rooms in parallel.
///
/// With `event_type = "m.room.create"` and no `room_id`, it creates a room: the room
/// version is `room_version` (or the server's default), the room ID is derived from the
/// create event (v12) or generated, and `room_version`/`creator` in the content are set by
/// the server.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<SentEvent, RoomserverError>")]
pub struct PerformRoomEvent {
    pub room_id: Option<String>,
    pub room_version: Option<String>,
    pub sender: String,
    pub event_type: String,
    /// `Some` for state events.
    pub state_key: Option<String>,
    /// A JSON object.
    pub content: serde_json::Value,
    /// The client's (device ID, transaction ID): a retry returns the event already sent.
    pub txn: Option<(String, String)>,
    /// For `m.room.redaction`: the event to redact, which must be in the room. It is
    /// redacted when the sender sent it or has the room's `redact` power (else the
    /// redaction is refused).
    pub redacts: Option<String>,
}

/// Creates a room with all its initial events at once: the `m.room.create` event
/// (`creation_content`, to which the server adds `room_version` and, where the version wants
/// it, `creator`), then `initial`, in order, every one sent by `sender` and authorized
/// against the state the ones before it make. They are stored in one transaction, so a
/// refused event (`NotAllowed`, `BadRequest`) leaves no room behind. Returns the create event.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<SentEvent, RoomserverError>")]
pub struct PerformCreateRoom {
    /// `None`: the server's default version.
    pub room_version: Option<String>,
    pub sender: String,
    /// A JSON object.
    pub creation_content: serde_json::Value,
    pub initial: Vec<InitialEvent>,
}

/// One of a new room's initial events (`PerformCreateRoom`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialEvent {
    pub event_type: String,
    /// `Some` for state events.
    pub state_key: Option<String>,
    /// A JSON object.
    pub content: serde_json::Value,
}

/// The room's current state events (federation format). `types` empty means *all* current
/// state, else only those (type, state_key) pairs that are set. `None`: no such room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<Vec<StoredEvent>>, RoomserverError>")]
pub struct QueryCurrentState {
    pub room_id: String,
    pub types: Vec<(String, String)>,
}

/// The rooms a user has joined, by room ID.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<String>, RoomserverError>")]
pub struct QueryJoinedRooms {
    pub user_id: String,
}

/// The rooms where a user's current membership is `membership` (`join`, `invite`, `knock`,
/// `leave`, `ban`), by room ID.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<String>, RoomserverError>")]
pub struct QueryRoomsWithMembership {
    pub user_id: String,
    pub membership: String,
}

/// Forgets a room for a user, who must have left it (or been kicked or banned): emits
/// `RoomForgotten` (once; forgetting again changes nothing). `NoRoom` when the user never
/// had a membership of it, `BadState` while they are in it.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformForget {
    pub user_id: String,
    pub room_id: String,
}

/// A user's current membership of a room (`join`, `invite`, `knock`, `leave`, `ban`) and
/// whether they forgot the room; `None` when they never had one (or no such room).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<MembershipState>, RoomserverError>")]
pub struct QueryMembership {
    pub room_id: String,
    pub user_id: String,
}

/// What `QueryMembership` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipState {
    pub membership: String,
    /// Forgotten after leaving (`PerformForget`), until the next membership change.
    pub forgotten: bool,
}

/// Points an alias of this server at a room the user is joined to. `AliasInUse` when taken.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformSetRoomAlias {
    pub alias: String,
    pub room_id: String,
    pub user_id: String,
}

/// The room an alias points at; `None` when there is no such alias.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<String>, RoomserverError>")]
pub struct QueryRoomIdForAlias {
    pub alias: String,
}

/// The aliases of a room, sorted.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<String>, RoomserverError>")]
pub struct QueryAliasesForRoom {
    pub room_id: String,
}

/// Removes an alias: by its creator, or anyone with power over the room's aliases.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformRemoveRoomAlias {
    pub alias: String,
    pub user_id: String,
}

/// Lists (or unlists) a room in the public directory; needs power over the room's aliases.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformPublishRoom {
    pub room_id: String,
    pub user_id: String,
    pub publish: bool,
}

/// Whether a room is listed; `None` for an unknown room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<bool>, RoomserverError>")]
pub struct QueryPublishedRoom {
    pub room_id: String,
}

/// A page of the public room directory.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<PublicRoomsPage, RoomserverError>")]
pub struct QueryPublicRooms {
    pub limit: Option<u32>,
    /// A `next_batch` or `prev_batch` token of an earlier page.
    pub since: Option<String>,
    /// Matches names, topics and aliases, case-insensitively.
    pub search: Option<String>,
    /// Only rooms of these types (`None` in the list: rooms without a type); `None` or an
    /// empty list: every room.
    #[serde(default)]
    pub room_types: Option<Vec<Option<String>>>,
}

/// Records a report of a room (`event_id: None`) or of one of its events. An event report
/// needs the reporter to be in the room (`NoEvent` otherwise, so it reveals nothing).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformReport {
    pub room_id: String,
    pub event_id: Option<String>,
    pub reporter: String,
    pub reason: Option<String>,
}

/// The room's event closest to `ts` that `user_id` may see by the history visibility: the
/// first at or after it (`forward`), or the last at or before it. Returns (event ID,
/// origin_server_ts); `None` when there is none (events the user may not see are passed
/// over, at most 1000 of them). `NoRoom` for an unknown room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<(String, i64)>, RoomserverError>")]
pub struct QueryEventByTimestamp {
    pub room_id: String,
    pub user_id: String,
    pub ts: i64,
    pub forward: bool,
}

/// Whether a user's power level reaches what the room requires for a state event of
/// `event_type` (a check before a multi-step change such as an upgrade).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<bool, RoomserverError>")]
pub struct QueryMaySendState {
    pub room_id: String,
    pub user_id: String,
    pub event_type: String,
}

/// A room as the public directory shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicRoom {
    pub room_id: String,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub canonical_alias: Option<String>,
    pub avatar_url: Option<String>,
    pub join_rule: Option<String>,
    pub room_type: Option<String>,
    pub world_readable: bool,
    pub guest_can_join: bool,
    pub num_joined_members: i64,
}

/// One page of the public directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoom>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: u64,
}

/// The room's state as of a position of the `roomserver` stream (what a sync token names):
/// the state after the room's last event output at or before it. `None`: unknown room;
/// empty: the room had no event yet then; `NotAllowed` when `user_id` may not see that event
/// by the history visibility (a point they could not see).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<Vec<StoredEvent>>, RoomserverError>")]
pub struct QueryStateAtPosition {
    pub room_id: String,
    pub position: i64,
    pub user_id: String,
}

/// The room's state right after one of its events (all of it). `None`: no such room, or the
/// event is not one of the room's.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<Vec<StoredEvent>>, RoomserverError>")]
pub struct QueryStateAfterEvent {
    pub room_id: String,
    pub event_id: String,
}

/// One event by ID, for the server itself (no history visibility: a client's read of one
/// event goes to the syncapi, `QueryClientEvent`); `None` when it is not stored.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<StoredEvent>, RoomserverError>")]
pub struct QueryEvent {
    pub event_id: String,
}

/// An event built by another server (or injected by a test), for a room known here. It is
/// verified, placed in the DAG, authorized against its auth events and the state before it
/// (resolving forks with state resolution v2) and stored, rejected or not. An accepted event
/// is then checked against the room's current state: one that fails there is soft-failed
/// (stored, nothing else). Otherwise the room's extremities and current state move (the
/// memberships follow the resolved state), a redaction the sender may make applies, and the
/// event is output. Handled in the room's order, like local events.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<InputOutcome, RoomserverError>")]
pub struct InputRoomEvent {
    pub room_id: String,
    /// The event in federation format.
    pub event: serde_json::Value,
    /// The server this server passes the event on for: the origin of a `send_join` or
    /// `send_leave`, whose event only the resident server can send to the room's other
    /// servers (as Synapse's `send_on_behalf_of`). Carried into the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_on_behalf_of: Option<String>,
}

/// An event from elsewhere whose prev events are not all held here with their state (the
/// origin could not fill the gap with `/get_missing_events`), placed on the state the origin
/// told (`/state_ids`), as Synapse's `_resolve_state_at_missing_prevs` does. First each of
/// `fetched` is checked on its own (its format for the room's version, its signatures and
/// content hash: one that fails, or names another room, is dropped), authorized against its
/// auth events (held here or among `fetched`; rejected when they fail) and stored as an
/// outlier. Then each prev event of `prev_states` (which must be held here now) gets the
/// state before it, `state_before` (every event named must be held here now: `BadRequest`
/// otherwise; rejected ones are left out), and the state after it. Then the event is input
/// as [`InputRoomEvent`] (its state before is the resolution of the states after its prev
/// events), and its prev events that are not part of the room's history here become
/// backward extremities (where `PerformBackfill` asks for history).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<InputOutcome, RoomserverError>")]
pub struct InputRoomEventAtState {
    pub room_id: String,
    /// The event in federation format.
    pub event: serde_json::Value,
    /// The events fetched to place it: the prev events without state here, and the events
    /// of their state and its auth chains that were not held here (federation format).
    pub fetched: Vec<serde_json::Value>,
    /// The prev events of `event` whose state this message tells.
    pub prev_states: Vec<PrevState>,
}

/// The room's state before one prev event, as another server told it (`/state_ids`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrevState {
    pub event_id: String,
    /// The IDs of the state events (not including the event itself).
    pub state_before: Vec<String>,
}

/// History before what this server holds of a room, fetched from the room's other servers
/// (`/backfill` through the federationapi's `QueryBackfill`) when a client pages back past
/// it (the syncapi's `/messages`). The room's backward extremities (prev events it holds no
/// history of: those of its join over federation, or of an event placed with
/// `InputRoomEventAtState`) are asked for; when there are none, nothing is fetched. The
/// events are checked as `InputRoomEventAtState`'s `fetched` (a content hash mismatch
/// keeps the event redacted, as servers serve events a server may not see) and stored as
/// backfilled outliers: they change no state, no extremity, and are output as
/// `OldRoomEvent`, newest first, so the syncapi places them before what it has. Other
/// servers' failures are logged; the answer then says nothing was added. `NoRoom` for an
/// unknown room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Backfilled, RoomserverError>")]
pub struct PerformBackfill {
    pub room_id: String,
    /// How many events to ask for (capped at [`MAX_BACKFILL`]).
    pub limit: u64,
}

/// What [`PerformBackfill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfilled {
    /// Whether other servers were asked (the room had backward extremities).
    pub asked: bool,
    /// How many events were added to the room's history (and output as `OldRoomEvent`).
    pub events: u64,
}

/// What the federationapi needs before it inputs an event from another server: the room's
/// version (which decides the event format and ID), its forward extremities and depth (the
/// `earliest_events` and `min_depth` of `/get_missing_events`), and which of some events
/// (the event's prev events) are not stored here. `None` when the room is not known here.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<RoomHead>, RoomserverError>")]
pub struct QueryRoomHead {
    pub room_id: String,
    /// Events to look up; those not stored in this room come back in
    /// [`RoomHead::unknown_events`], those stored as outliers (without the state before
    /// them, so no event can be placed on them) in [`RoomHead::stateless_events`]. May be
    /// empty.
    pub event_ids: Vec<String>,
}

/// A room's head, as [`QueryRoomHead`] answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomHead {
    /// The room version, e.g. `"11"`.
    pub room_version: String,
    /// The room's forward extremities (the events new ones build on).
    pub forward_extremities: Vec<String>,
    /// The largest depth of the room's events.
    pub max_depth: i64,
    /// Of the events asked about, those not stored in this room (in the order asked).
    pub unknown_events: Vec<String>,
    /// Of the events asked about, those stored as outliers, without the state before them.
    #[serde(default)]
    pub stateless_events: Vec<String>,
}

/// What became of an input event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputOutcome {
    /// In the DAG and, where it is state, considered for the room's state.
    Accepted { event_id: String },
    /// In the DAG but refused by the auth rules; never served or part of state.
    Rejected { event_id: String, reason: String },
    /// Allowed by the state before it but refused by the room's current state ("soft
    /// failure"): in the DAG (later events may build on it), but no forward extremity, not
    /// applied to the current state and not output, so no client sees it arrive.
    SoftFailed { event_id: String, reason: String },
}

/// A membership event for a user to fill in, sign and send back (`make_join`/`make_leave`
/// of another server, and our own invites of other servers' users): `type`, `room_id`,
/// `sender`, `state_key`, `content`, `prev_events` (the room's forward extremities),
/// `auth_events`, `depth`, `origin` and `origin_server_ts`, unsigned. The event must pass
/// the auth rules against the room's current state as it would be sent (`NotAllowed`
/// otherwise). `NoRoom` for a room not known here.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<MembershipTemplate, RoomserverError>")]
pub struct QueryMembershipTemplate {
    pub room_id: String,
    pub sender: String,
    pub state_key: String,
    /// A JSON object with `membership`.
    pub content: serde_json::Value,
    /// The room versions the asking server supports; `None`: any. When the room's version
    /// is not among them: `IncompatibleRoomVersion` (before the auth rules are asked).
    pub supported_versions: Option<Vec<String>>,
}

/// What [`QueryMembershipTemplate`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipTemplate {
    pub room_version: String,
    /// The unsigned event (federation format, without hashes and signatures).
    pub event: serde_json::Value,
}

/// Another server's `send_join`, `send_leave` (v2) or `send_knock`: its user's signed
/// membership event for one of our rooms. Checked first (`BadRequest`: the event ID is not
/// the event's, another room, not an `m.room.member` event of `membership`, a sender other
/// than its state key or not of `origin`; for a join naming one of our users in
/// `join_authorised_via_users_server`: `BadRequest` when it names another server's user,
/// `NotAllowed` when the user satisfies none of the room's allow rules, else our signature is
/// added), then input as [`InputRoomEvent`] (signatures verified there); an event the auth
/// rules refuse (rejected or soft-failed) is `NotAllowed`. For a join, the answer holds the
/// state before the event and the auth chain of that state and the event.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<MembershipAnswer, RoomserverError>")]
pub struct PerformRemoteMembership {
    pub room_id: String,
    pub event_id: String,
    /// The server that sent the request (checked with its signature by routing).
    pub origin: String,
    /// `join`, `leave` or `knock`.
    pub membership: String,
    /// The event in federation format.
    pub event: serde_json::Value,
    /// `omit_members` of `send_join`: leave `m.room.member` events out of `state` (and the
    /// state's events out of `auth_chain`).
    pub omit_members: bool,
}

/// What [`PerformRemoteMembership`] answers. Empty lists for a leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipAnswer {
    /// The event as stored here.
    pub event: serde_json::Value,
    /// The room's state before the event (federation format).
    pub state: Vec<serde_json::Value>,
    /// Every event in the auth chains of `state` and of the event.
    pub auth_chain: Vec<serde_json::Value>,
    /// Member events were left out of `state`.
    pub members_omitted: bool,
    /// The servers with joined members before the event.
    pub servers_in_room: Vec<String>,
}

/// A room this server joins through another server (the answer of its `send_join`): the
/// state before our join and its auth chain are checked (each event's format for
/// `room_version`, its signatures, the create event against the room ID, each event
/// against its auth events; events that fail are dropped or stored rejected, and never
/// enter the state) and stored as outliers; the room's state before our join is the
/// returned state, and `join_event` (our user's, signed by us and maybe by the resident
/// server) is stored on top of it as the room's only forward extremity. The new state
/// events, then the join, are output. A remote invite of the user into the room is
/// removed. Returns the join.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<SentEvent, RoomserverError>")]
pub struct InputJoinedRoom {
    pub room_id: String,
    pub room_version: String,
    pub join_event: serde_json::Value,
    pub state: Vec<serde_json::Value>,
    pub auth_chain: Vec<serde_json::Value>,
}

/// Another server's invite (`PUT /_matrix/federation/v2/invite`) of one of our users. The
/// event is checked (`BadRequest`: the event ID is not the event's, another room, not an
/// `m.room.member` invite, a sender not of `origin`, a bad signature; `NotAllowed`: the
/// invitee is not a user of this server) and signed by us. In a room known here it is
/// input as any event from elsewhere; otherwise it is kept as a remote invite and output
/// (with `unsigned.invite_room_state`) so the user sees it. Returns the event with our
/// signature.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<serde_json::Value, RoomserverError>")]
pub struct InputRemoteInvite {
    pub room_id: String,
    pub event_id: String,
    pub origin: String,
    pub room_version: String,
    pub event: serde_json::Value,
    /// Stripped state events of the room, as the inviting server sent them.
    pub invite_room_state: Vec<serde_json::Value>,
}

/// The remote invite of a user into a room not known here; `None` when there is none.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<RemoteInvite>, RoomserverError>")]
pub struct QueryRemoteInvite {
    pub room_id: String,
    pub user_id: String,
}

/// What [`QueryRemoteInvite`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteInvite {
    pub event_id: String,
    pub room_version: String,
    /// The invite event (federation format, signed by both servers).
    pub event: serde_json::Value,
}

/// Ends a remote invite (rejected by the user): removes it and outputs a leave that replaces
/// it for the syncapi: `leave_event`, the user's leave as the inviting server accepted it
/// (`send_leave`), or when that failed (`None`) a leave made here on top of the invite and
/// known to nobody else, as Synapse does. `NoRoom` when there is no such invite.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformRetireRemoteInvite {
    pub room_id: String,
    pub user_id: String,
    pub leave_event: Option<serde_json::Value>,
}

/// Our user's knock on a room this server does not hold, as the room's server accepted it
/// (`send_knock`). Checked (`BadRequest`: the event ID is not the event's, another room, not
/// an `m.room.member` knock by its state key, a sender not of this server, not signed by
/// us), kept (replacing an earlier knock) with the room's state events in
/// `unsigned.knock_room_state`, and output so the user sees the room under `rooms.knock`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct InputRemoteKnock {
    pub room_id: String,
    pub room_version: String,
    /// The knock event in federation format, signed by us.
    pub event: serde_json::Value,
    /// The state events the room's server sent back (`knock_room_state`).
    pub knock_room_state: Vec<serde_json::Value>,
    /// The servers to leave through later (the one that took the knock first).
    pub servers: Vec<String>,
}

/// The remote knock of a user on a room not held here; `None` when there is none.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<RemoteKnock>, RoomserverError>")]
pub struct QueryRemoteKnock {
    pub room_id: String,
    pub user_id: String,
}

/// What [`QueryRemoteKnock`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteKnock {
    pub event_id: String,
    pub room_version: String,
    /// The knock event (federation format, with `unsigned.knock_room_state`).
    pub event: serde_json::Value,
    /// The servers to leave through.
    pub servers: Vec<String>,
}

/// Ends a remote knock (rescinded by the user), as [`PerformRetireRemoteInvite`] ends an
/// invite: removes it and outputs `leave_event` (the leave the room's server accepted), or
/// when that failed (`None`) a leave made here on top of the knock. `NoRoom` when there is
/// no such knock.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformRetireRemoteKnock {
    pub room_id: String,
    pub user_id: String,
    pub leave_event: Option<serde_json::Value>,
}

/// Whether a join of `user_id` into a room held here needs a user who vouches for it
/// (`join_authorised_via_users_server`, room versions 8+ with a `restricted` or
/// `knock_restricted` join rule), and who. The allow rules (`m.room_membership`) are
/// judged by the user's membership of the allowed rooms this server is in. `NoRoom` for a
/// room not known here.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<JoinAuthorisation, RoomserverError>")]
pub struct QueryJoinAuthorisation {
    pub room_id: String,
    pub user_id: String,
}

/// What [`QueryJoinAuthorisation`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JoinAuthorisation {
    /// The join rule is not restricted (in this room version), or the user is invited or
    /// joined already: the join needs nobody to vouch for it.
    NotNeeded,
    /// The user is joined to an allowed room; `via`, a user of this server joined to the
    /// room with the power to invite (the highest such), vouches for the join.
    Authorised { via: String },
    /// The user is in none of the allowed rooms, and this server is in all of them.
    NotAllowed,
    /// The user is in none of the allowed rooms this server is in, and this server is not in
    /// some other allowed room (another server may be able to tell).
    CannotCheck,
    /// The user is allowed, but no user of this server in the room may invite.
    NoLocalInviter,
}

/// The servers with joined members in a room's current state, sorted; `None` for a room not
/// known here.
/// What the roomserver answers other servers (the federation API's reads, `server_reads.rs`).
/// Each names the asking server (`server_name`, the verified origin of the request) and
/// checks that it may read the room: one of its users is joined to the room now, whatever
/// the history visibility, as Synapse (`NotAllowed` otherwise). Events
/// the server may not see by the history visibility for servers
/// (`history_visibility::allows_server`, at the state after each event) are served
/// redacted, as Synapse does. Unknown room: `NoRoom`; an event not in the room: `NoEvent`.
///
/// One event by ID (any room), rejected ones included as Synapse serves them; `None` when
/// it is not stored. The room's server ACL is the caller's to check, with the answer's room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<ServerEvent>, RoomserverError>")]
pub struct QueryEventForServer {
    pub event_id: String,
    pub server_name: String,
}

/// An event as another server may see it (`QueryEventForServer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerEvent {
    pub room_id: String,
    /// The room's version (the rules to redact by).
    pub room_version: String,
    /// The PDU in federation format, redacted when the server may not see it (or when a
    /// redaction applies to it).
    pub pdu: serde_json::Value,
}

/// The room's state just before one of its events (the spec's `/state`: not including the
/// event itself) and the full auth chain of those state events, as PDUs (state events are
/// served whole, as Synapse does). `NoEvent` also for a rejected event and for an event whose
/// state is not known here.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ServerState, RoomserverError>")]
pub struct QueryStateForServer {
    pub room_id: String,
    pub event_id: String,
    pub server_name: String,
}

/// `QueryStateForServer`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    /// The state events, by (type, state key) order of no significance.
    pub pdus: Vec<serde_json::Value>,
    /// Every event reachable from them by `auth_events`, oldest (least deep) first.
    pub auth_chain: Vec<serde_json::Value>,
}

/// [`QueryStateForServer`] by event IDs only (the spec's `/state_ids`).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ServerStateIds, RoomserverError>")]
pub struct QueryStateIdsForServer {
    pub room_id: String,
    pub event_id: String,
    pub server_name: String,
}

/// `QueryStateIdsForServer`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStateIds {
    pub pdu_ids: Vec<String>,
    pub auth_chain_ids: Vec<String>,
}

/// The full auth chain of one of the room's events: its auth events and everything
/// reachable from them by `auth_events` (the spec's `/event_auth`), least deep first.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<serde_json::Value>, RoomserverError>")]
pub struct QueryEventAuthForServer {
    pub room_id: String,
    pub event_id: String,
    pub server_name: String,
}

/// History before some of the room's events (the spec's `/backfill`): those events and
/// their ancestors by `prev_events`, deepest first (a walk that always takes the deepest
/// event not yet taken, as Synapse's), at most `limit` (capped at [`MAX_BACKFILL`]). Event
/// IDs not in the room are ignored; rejected events are walked through but not served.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ServerPdus, RoomserverError>")]
pub struct QueryBackfillForServer {
    pub room_id: String,
    pub event_ids: Vec<String>,
    pub limit: u64,
    pub server_name: String,
}

/// Events of one room for another server (`QueryBackfillForServer`,
/// `QueryMissingEventsForServer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerPdus {
    /// The room's version (the rules to redact by).
    pub room_version: String,
    /// The PDUs in federation format, in the order the message describes.
    pub pdus: Vec<serde_json::Value>,
}

/// The most `/backfill` serves at once (Synapse: 100).
pub const MAX_BACKFILL: u64 = 100;

/// Events missing between what another server has and what it heard of (the spec's
/// `/get_missing_events`): a breadth-first walk back from `latest_events` by `prev_events`
/// that does not return or pass `earliest_events` (nor the latest events themselves) or
/// events less deep than `min_depth`, at most `limit` (capped at [`MAX_MISSING_EVENTS`]),
/// returned oldest first. Latest events not in the room are ignored; rejected events are
/// neither served nor walked through.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ServerPdus, RoomserverError>")]
pub struct QueryMissingEventsForServer {
    pub room_id: String,
    pub earliest_events: Vec<String>,
    pub latest_events: Vec<String>,
    pub limit: u64,
    pub min_depth: u64,
    pub server_name: String,
}

/// The most `/get_missing_events` serves at once (Synapse: 20).
pub const MAX_MISSING_EVENTS: u64 = 20;

/// The room's event closest to `ts` (the spec's `/timestamp_to_event` for servers): the
/// first at or after it (`forward`), or the last at or before it, as (event ID,
/// origin_server_ts); `None` when there is none. Rejected and soft-failed events are passed
/// over; as Synapse, no event is judged by its history visibility (only IDs and times are
/// told), but the server must be able to read the room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<(String, i64)>, RoomserverError>")]
pub struct QueryEventByTimestampForServer {
    pub room_id: String,
    pub ts: i64,
    pub forward: bool,
    pub server_name: String,
}

/// The servers with a user joined to a room now, sorted; `None` for an unknown room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<Vec<String>>, RoomserverError>")]
pub struct QueryJoinedServers {
    pub room_id: String,
}

crate::remote_messages!("roomserver":
    QueryEventForServer,
    QueryStateForServer,
    QueryStateIdsForServer,
    QueryEventAuthForServer,
    QueryBackfillForServer,
    QueryMissingEventsForServer,
    QueryEventByTimestampForServer,
    QueryJoinedServers,
);

/// What the roomserver publishes on its stream (`roomserver`), keyed by room ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RoomserverOutput {
    /// An event was accepted into a room (soft-failed events are not output, unless a later
    /// resolution brings one into the current state: it is output then, just before the event
    /// whose `adds_state` names it).
    NewRoomEvent {
        room_id: String,
        event_id: String,
        /// The event in federation format.
        event: serde_json::Value,
        /// State events that entered the room's current state with this event (the event
        /// itself when it is state; more when a fork was resolved).
        adds_state: Vec<String>,
        /// State events the change pushed out of the current state.
        removes_state: Vec<String>,
        /// For a redaction the roomserver applied: the event it redacts (the sender was
        /// allowed to).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redacts: Option<String>,
        /// For an event a redaction output before it applies to (the redaction arrived
        /// first and waited for it): that redaction's ID. `event` is the original; readers
        /// redact it as if the redaction came now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        redacted_by: Option<String>,
        /// For an event a local client sent: its (device ID, transaction ID).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transaction: Option<(String, String)>,
        /// For another server's event this server accepted through `send_join` or
        /// `send_leave`: that server. The federationapi sends the event to the room's other
        /// servers, as it does this server's own events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        send_on_behalf_of: Option<String>,
    },
    /// An event of the room's history from before what this server held, fetched with
    /// `/backfill` (`PerformBackfill`): not new, and no change to the room's state; readers
    /// of the history place it before every event they have of the room (the events of one
    /// backfill are output newest first). It may already have been output as a state event
    /// of the room this server joined; it moves then.
    OldRoomEvent {
        room_id: String,
        event_id: String,
        /// The event in federation format (redacted when the server that served it did).
        event: serde_json::Value,
    },
    /// A user forgot a room they had left (`PerformForget`): reads of the room as a former
    /// member stop for them until their membership changes again. Keyed by the room ID, so
    /// it is ordered with the room's member events.
    RoomForgotten { room_id: String, user_id: String },
}

crate::remote_messages!("roomserver":
    PerformRoomEvent,
    PerformCreateRoom,
    QueryCurrentState,
    QueryEvent,
    QueryJoinedRooms,
    QueryRoomsWithMembership,
    PerformForget,
    QueryMembership,
    PerformSetRoomAlias,
    QueryRoomIdForAlias,
    QueryAliasesForRoom,
    PerformRemoveRoomAlias,
    PerformPublishRoom,
    QueryPublishedRoom,
    QueryPublicRooms,
    PerformReport,
    QueryEventByTimestamp,
    QueryMaySendState,
    InputRoomEvent,
    QueryRoomHead,
    QueryStateAtPosition,
    QueryStateAfterEvent,
    QueryMembershipTemplate,
    PerformRemoteMembership,
    InputJoinedRoom,
    InputRemoteInvite,
    QueryRemoteInvite,
    PerformRetireRemoteInvite,
    InputRemoteKnock,
    QueryRemoteKnock,
    PerformRetireRemoteKnock,
    QueryJoinAuthorisation,
    InputRoomEventAtState,
    PerformBackfill,
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    fn round_trip<M: Serialize + DeserializeOwned + std::fmt::Debug>(m: M) {
        let json = serde_json::to_string(&m).unwrap();
        let back: M = serde_json::from_str(&json).unwrap();
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
    }

    /// The messages of joins, leaves and invites with other servers survive the bridge.
    #[test]
    fn federation_membership_messages_survive_serde() {
        round_trip(QueryMembershipTemplate {
            room_id: "!r:a.test".into(),
            sender: "@u:b.test".into(),
            state_key: "@u:b.test".into(),
            content: json!({"membership": "join"}),
            supported_versions: Some(vec!["12".into()]),
        });
        round_trip(MembershipTemplate {
            room_version: "12".into(),
            event: json!({"type": "m.room.member"}),
        });
        round_trip(PerformRemoteMembership {
            room_id: "!r:a.test".into(),
            event_id: "$e".into(),
            origin: "b.test".into(),
            membership: "join".into(),
            event: json!({}),
            omit_members: true,
        });
        round_trip(MembershipAnswer {
            event: json!({}),
            state: vec![json!({"type": "m.room.create"})],
            auth_chain: vec![],
            members_omitted: true,
            servers_in_room: vec!["a.test".into()],
        });
        round_trip(InputJoinedRoom {
            room_id: "!r:a.test".into(),
            room_version: "11".into(),
            join_event: json!({}),
            state: vec![json!({})],
            auth_chain: vec![json!({})],
        });
        round_trip(InputRemoteInvite {
            room_id: "!r:a.test".into(),
            event_id: "$e".into(),
            origin: "a.test".into(),
            room_version: "12".into(),
            event: json!({}),
            invite_room_state: vec![json!({"type": "m.room.name"})],
        });
        round_trip(QueryRemoteInvite {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
        });
        round_trip(RemoteInvite {
            event_id: "$e".into(),
            room_version: "12".into(),
            event: json!({}),
        });
        round_trip(PerformRetireRemoteInvite {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
            leave_event: Some(json!({})),
        });
        round_trip(QueryJoinedServers {
            room_id: "!r:a.test".into(),
        });
        round_trip(InputRemoteKnock {
            room_id: "!r:a.test".into(),
            room_version: "10".into(),
            event: json!({}),
            knock_room_state: vec![json!({"type": "m.room.create"})],
            servers: vec!["a.test".into()],
        });
        round_trip(QueryRemoteKnock {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
        });
        round_trip(RemoteKnock {
            event_id: "$e".into(),
            room_version: "10".into(),
            event: json!({}),
            servers: vec!["a.test".into()],
        });
        round_trip(PerformRetireRemoteKnock {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
            leave_event: None,
        });
        round_trip(QueryJoinAuthorisation {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
        });
        for answer in [
            JoinAuthorisation::NotNeeded,
            JoinAuthorisation::Authorised {
                via: "@a:a.test".into(),
            },
            JoinAuthorisation::NotAllowed,
            JoinAuthorisation::CannotCheck,
            JoinAuthorisation::NoLocalInviter,
        ] {
            round_trip(answer);
        }
    }
}
