//! The federation API: what other homeservers (and identity servers) call. Mounted on the
//! client listener with the client routes, and alone on `federation.listen` when set.
//!
//! - `auth`: the `X-Matrix` check of signed requests (`Ruma<T>` for endpoints whose ruma
//!   metadata says `ServerSignatures`, `SignedRequest` for raw routes).
//! - `keys`: `/_matrix/key/v2/server` and the notary's `/_matrix/key/v2/query` (unsigned).
//! - `version`: `/_matrix/federation/v1/version` (unsigned).
//! - `query`: `/_matrix/federation/v1/query/profile` (signed).
//! - `membership`: `make_join`, `send_join` v2, `make_leave`, `send_leave` v2, `make_knock`,
//!   `send_knock` and `invite` v2 (signed).
//! - `send`: `PUT /_matrix/federation/v1/send/{txnId}`, incoming transactions (signed).
//! - `thirdparty`: the identity server's `/3pid/onbind` (unsigned, as the spec says).
//! - `acl`: the server ACL check of every endpoint that names a room.
//! - `events`: the room DAG as other servers read it: `/event`, `/state`, `/state_ids`,
//!   `/event_auth`, `/backfill`, `/get_missing_events`, `/timestamp_to_event` (signed).
//! - `directory`: `/query/directory` and `/publicRooms` GET and POST (signed).
//! - `openid`: `/openid/userinfo` (unsigned: the token is the credential).

pub mod acl;
pub mod auth;
pub mod directory;
pub mod events;
pub mod keys;
pub mod membership;
pub mod openid;
pub mod query;
pub mod send;
pub mod thirdparty;
pub mod version;

use super::ruma::Router;
use actix_web::http::Method;
use actix_web::web;
use ruma::api::federation as f;

/// The federation endpoints alone, for `federation.listen`.
pub fn router() -> Router {
    let mut r = Router::default();
    add_routes(&mut r);
    r
}

/// Adds the federation endpoints to the client listener's routes.
pub fn add_routes(r: &mut Router) {
    r.add::<f::thirdparty::bind_callback::v1::Request, _, _>(thirdparty::bind_callback);
    // Sydent, the reference identity server, and Synapse use POST; the spec says PUT.
    r.add_raw(
        "/_matrix/federation/v1/3pid/onbind",
        Method::POST,
        web::post().to(thirdparty::bind_callback),
    );
    r.add::<f::discovery::get_server_version::v1::Request, _, _>(version::get_server_version);
    r.add::<f::discovery::get_server_keys::v2::Request, _, _>(keys::get_server_keys);
    r.add_raw(
        "/_matrix/key/v2/server/{keyId}",
        Method::GET,
        web::get().to(keys::get_server_keys_by_id),
    );
    r.add::<f::discovery::get_remote_server_keys::v2::Request, _, _>(keys::get_remote_server_keys);
    r.add::<f::discovery::get_remote_server_keys_batch::v2::Request, _, _>(
        keys::get_remote_server_keys_batch,
    );
    r.add::<f::query::get_profile_information::v1::Request, _, _>(query::get_profile_information);
    r.add::<f::membership::prepare_join_event::v1::Request, _, _>(membership::make_join);
    r.add::<f::membership::create_join_event::v2::Request, _, _>(membership::send_join);
    r.add::<f::membership::prepare_leave_event::v1::Request, _, _>(membership::make_leave);
    r.add::<f::membership::create_leave_event::v2::Request, _, _>(membership::send_leave);
    r.add::<f::membership::prepare_knock_event::v1::Request, _, _>(membership::make_knock);
    r.add::<f::membership::create_knock_event::v1::Request, _, _>(membership::send_knock);
    r.add::<f::membership::create_invite::v2::Request, _, _>(membership::invite);
    r.add::<f::query::get_room_information::v1::Request, _, _>(directory::get_room_information);
    r.add::<f::directory::get_public_rooms::v1::Request, _, _>(directory::get_public_rooms);
    r.add::<f::directory::get_public_rooms_filtered::v1::Request, _, _>(
        directory::get_public_rooms_filtered,
    );
    r.add::<f::event::get_event::v1::Request, _, _>(events::get_event);
    r.add::<f::event::get_room_state::v1::Request, _, _>(events::get_room_state);
    r.add::<f::event::get_room_state_ids::v1::Request, _, _>(events::get_room_state_ids);
    r.add::<f::authorization::get_event_authorization::v1::Request, _, _>(
        events::get_event_authorization,
    );
    r.add::<f::backfill::get_backfill::v1::Request, _, _>(events::get_backfill);
    r.add::<f::event::get_missing_events::v1::Request, _, _>(events::get_missing_events);
    r.add::<f::event::get_event_by_timestamp::v1::Request, _, _>(events::get_event_by_timestamp);
    // A raw route: a missing token is 401 M_MISSING_TOKEN (see `openid`).
    r.add_raw(
        "/_matrix/federation/v1/openid/userinfo",
        Method::GET,
        web::get().to(openid::get_openid_userinfo),
    );
    r.add_raw(
        "/_matrix/federation/v1/send/{txnId}",
        Method::PUT,
        web::put().to(send::send_transaction),
    );
}
