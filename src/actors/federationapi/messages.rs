//! The federationapi's whole public API. Callers: routing (the key endpoints, the
//! `X-Matrix` check of every signed federation request, incoming transactions), the client
//! API's joins, leaves, invites and alias lookups that need another server, and its typing
//! and to-device messages for other servers.

use super::FederationApiError;
use actix::Message;
use ruma::{OwnedServerName, OwnedServerSigningKeyId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Another server's signing keys, from the cache or fetched (directly, then through the
/// trusted notaries) when the cache cannot answer. Our own name answers our own keys.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ServerKeys, FederationApiError>")]
pub struct QueryServerKeys {
    pub server_name: OwnedServerName,
    /// The keys wanted. Empty means any current key. The cache answers when each is known
    /// (a current key valid until `minimum_valid_until_ts`, or an old key); otherwise the
    /// keys are fetched again (at most once per server every few seconds).
    pub key_ids: Vec<OwnedServerSigningKeyId>,
    /// ms since the epoch; usually now.
    pub minimum_valid_until_ts: i64,
}

/// The keys known for a server after a [`QueryServerKeys`]: possibly fewer than asked for
/// (the caller decides whether what it needs is there and valid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeys {
    /// Key ID -> key.
    pub keys: BTreeMap<String, ServerKey>,
}

/// One public key of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKey {
    /// Unpadded base64.
    pub key: String,
    /// ms since the epoch: a current key may be used until then. For an old key: its
    /// `expired_ts`.
    pub valid_until_ts: i64,
    /// `Some` for an old key (`old_verify_keys`): valid for events sent before then, never
    /// for requests.
    pub expired_ts: Option<i64>,
}

/// Our own key object for `/_matrix/key/v2/server`: the current key, the configured old
/// keys, `valid_until_ts` now plus `federation.key_validity`, signed by us.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, FederationApiError>")]
pub struct QueryLocalServerKeys {}

/// As a notary: the key objects of the servers asked about (fetched if the cache cannot
/// answer), each with our signature added (`/_matrix/key/v2/query`). A server that cannot
/// be reached and has nothing cached is left out.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<Value>, FederationApiError>")]
pub struct QueryNotaryKeys {
    /// What is asked about each server.
    pub servers: BTreeMap<OwnedServerName, KeyQuery>,
}

/// The keys of one server a notary query asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyQuery {
    /// The keys wanted; empty means all (the answer may hold more keys either way).
    pub key_ids: Vec<OwnedServerSigningKeyId>,
    /// ms since the epoch: the cache answers when the keys are valid until then.
    pub minimum_valid_until_ts: i64,
}

/// Joins a room on another server: `make_join` (offering the room versions we support) to
/// each of `servers` in turn until one answers, the template filled in (our user's
/// `content`, `membership: join`) and signed, then `send_join` v2 to that server. The answer
/// is not checked here: the roomserver checks it as it imports the room
/// (`InputJoinedRoom`). `Remote` with the last server's refusal when none can be used.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<JoinedRoom, FederationApiError>")]
pub struct PerformJoin {
    pub room_id: String,
    /// Our user who joins.
    pub user_id: String,
    /// Servers to ask, in order (our own name is skipped).
    pub servers: Vec<String>,
    /// Content keys for the member event besides `membership` (display name, avatar,
    /// reason): a JSON object.
    pub content: Value,
}

/// What [`PerformJoin`] answers: the resident server's `send_join` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinedRoom {
    /// The server that let us in.
    pub server: String,
    pub room_version: String,
    /// Our join: the resident server's copy (`event`) when it gave one with the same ID,
    /// else ours as we signed it.
    pub join_event: Value,
    pub state: Vec<Value>,
    pub auth_chain: Vec<Value>,
}

/// Leaves a room through another server (`make_leave`, filled in and signed, `send_leave`
/// v2), to each of `servers` in turn: how an invite into a room not held here is rejected.
/// Returns our leave event as that server accepted it.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, FederationApiError>")]
pub struct PerformLeave {
    pub room_id: String,
    pub user_id: String,
    pub servers: Vec<String>,
    /// Content keys besides `membership` (`reason`): a JSON object.
    pub content: Value,
}

/// Knocks on a room of another server: `make_knock` (offering the room versions we support
/// that have knocking, 7 and up) to each of `servers` in turn until one answers, the
/// template filled in (our user's `content`, `membership: knock`) and signed, then
/// `send_knock` to that server. `Remote` with the last server's refusal when none can be used.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<KnockedRoom, FederationApiError>")]
pub struct PerformKnock {
    pub room_id: String,
    /// Our user who knocks.
    pub user_id: String,
    /// Servers to ask, in order (our own name is skipped).
    pub servers: Vec<String>,
    /// Content keys besides `membership` (`reason`, display name, avatar): a JSON object.
    pub content: Value,
}

/// What [`PerformKnock`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnockedRoom {
    /// The server that took the knock.
    pub server: String,
    pub room_version: String,
    /// Our knock as we signed and sent it.
    pub knock_event: Value,
    /// The room's state events the server sent back (`knock_room_state`), as it sent them
    /// (only JSON objects with a string `type` are kept).
    pub knock_room_state: Vec<Value>,
}

/// Invites another server's user: `template` (the roomserver's
/// `QueryMembershipTemplate` of the invite, sent by our user) is signed and sent to the
/// invitee's server (`PUT /_matrix/federation/v2/invite`). Returns the event as that server
/// signed it, after checking that its signature verifies and the event is ours.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, FederationApiError>")]
pub struct PerformInvite {
    pub room_version: String,
    pub template: Value,
    /// Stripped state events of the room for the invitee.
    pub invite_room_state: Vec<Value>,
}

/// Another server's alias (`GET /_matrix/federation/v1/query/directory` to the alias's
/// server); `None` when that server has no such alias.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<RemoteAlias>, FederationApiError>")]
pub struct QueryRemoteAlias {
    pub alias: String,
}

/// Another server's user's profile (`GET /_matrix/federation/v1/query/profile` to the
/// user's server): `displayname` and `avatar_url` when set (only `field` when given). A user
/// that server does not know is `Remote` 404.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<RemoteProfile, FederationApiError>")]
pub struct QueryRemoteProfile {
    pub user_id: ruma::OwnedUserId,
    /// `displayname` or `avatar_url`; `None` for both.
    pub field: Option<String>,
}

/// Another server's public room directory, for a client's `/publicRooms?server=`: asked
/// with `GET /_matrix/federation/v1/publicRooms`, or `POST` when there is a filter or a
/// third-party network. Answers the page as that server gave it, keeping only its known
/// fields (`chunk` of objects with a `room_id`, `next_batch`, `prev_batch`,
/// `total_room_count_estimate`); its refusals come back as `Remote`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<serde_json::Value, FederationApiError>")]
pub struct QueryRemotePublicRooms {
    pub server: ruma::OwnedServerName,
    pub limit: Option<u64>,
    pub since: Option<String>,
    /// The client's `filter` (`generic_search_term`, `room_types`), if any.
    pub filter: Option<serde_json::Value>,
    pub include_all_networks: bool,
    pub third_party_instance_id: Option<String>,
}

/// What [`QueryRemoteProfile`] answers (fields the other server left out, or gave as other
/// than strings, are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteProfile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// What [`QueryRemoteAlias`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteAlias {
    pub room_id: String,
    /// Servers in the room, to join through.
    pub servers: Vec<String>,
}

/// A transaction another server sent (`PUT /_matrix/federation/v1/send/{txnId}`), already
/// authenticated (the origin signed the request) and within the spec's limits (at most 50
/// PDUs and 100 EDUs). Idempotent per (origin, transaction ID): a transaction processed
/// before gets its stored answer and nothing is done again. Transactions of one origin are
/// processed one at a time; different origins' concurrently. Each PDU is input into its
/// room through the roomserver (rooms in parallel, each room's PDUs in order), its missing
/// prev events first fetched from the origin with `/get_missing_events`; one bad PDU never
/// fails the others. The answer has one entry per PDU whose event ID could be derived.
/// EDUs (`m.typing`, `m.receipt`, `m.direct_to_device`; others are ignored) go to the
/// syncapi when the origin owns the user they are about.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<TransactionResponse, FederationApiError>")]
pub struct InputTransaction {
    /// The sending server, as its request signature proved.
    pub origin: OwnedServerName,
    /// The transaction ID of the request path.
    pub txn_id: String,
    /// The PDUs, as sent.
    pub pdus: Vec<Value>,
    /// The EDUs, as sent.
    pub edus: Vec<Value>,
}

/// The answer to a transaction: the spec's `{"pdus": {event_id: result}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionResponse {
    /// Event ID -> what became of the PDU.
    pub pdus: BTreeMap<String, PduResult>,
}

/// What became of one PDU of a transaction: `{}` when it was taken (accepted, or kept out of
/// the room's current state by a soft failure), else `{"error": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PduResult {
    /// Why the PDU was not taken (unknown room, bad signature, missing prev events,
    /// refused by the auth rules, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A local user started or stopped typing in a room (the syncapi took it): an `m.typing` EDU
/// is queued for every other server joined to the room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), FederationApiError>")]
pub struct InputTyping {
    pub room_id: String,
    /// A user of this server.
    pub user_id: String,
    pub typing: bool,
}

/// To-device messages of a local user for users of other servers (`/sendToDevice`): one
/// `m.direct_to_device` EDU is queued for each server named.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), FederationApiError>")]
pub struct InputSendToDevice {
    /// A user of this server.
    pub sender: String,
    pub event_type: String,
    /// Unique per sender and request (the receiver drops a second EDU with the same one).
    pub message_id: String,
    /// User (of another server) -> device ID or `*` -> content.
    pub messages: BTreeMap<String, BTreeMap<String, Value>>,
}

/// History of a room from another server (`GET /_matrix/federation/v1/backfill/{roomId}`,
/// for the roomserver's `PerformBackfill`): `servers` are asked in turn (at most 5; one
/// that fails, times out or answers what is not a `/backfill` answer is passed over) for
/// up to `limit` events (capped at 100) before `event_ids`; the first that answers gives the
/// events. Only the answer's PDUs of `room_id` are returned, unchecked (the roomserver checks
/// them). `Remote` (the last server's failure) when none answered; `BadRequest` without servers.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<Value>, FederationApiError>")]
pub struct QueryBackfill {
    pub room_id: String,
    /// The servers to ask, in order (not this one).
    pub servers: Vec<String>,
    /// The events to backfill from (the `v` parameters).
    pub event_ids: Vec<String>,
    pub limit: u64,
}

/// Another server made a request whose `X-Matrix` signature verified (any federation
/// endpoint): it is up. If our queue for it is waiting out a backoff, the backoff is cleared
/// and the queue is sent at once (Synapse marks the origin up on any signed request:
/// `reset_retry_timings`, `notify_remote_server_up`). Cheap when there is no backoff (no
/// database statement); routing sends it without waiting for the answer.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), FederationApiError>")]
pub struct InputServerUp {
    /// The origin of the request, as its signature proved.
    pub server_name: OwnedServerName,
}

crate::remote_messages!("federationapi":
    QueryBackfill,
    QueryServerKeys,
    QueryLocalServerKeys,
    QueryNotaryKeys,
    PerformJoin,
    PerformLeave,
    PerformKnock,
    PerformInvite,
    QueryRemoteAlias,
    QueryRemoteProfile,
    QueryRemotePublicRooms,
    InputTransaction,
    InputTyping,
    InputSendToDevice,
    InputServerUp,
);
