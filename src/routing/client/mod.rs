//! The client-server API, one file per area and one fn per endpoint.

mod account;
mod account_data;
mod devices;
pub(crate) mod directory;
mod discovery;
mod filter;
mod history;
mod legacy;
pub(crate) mod membership;
mod openid;
mod profile;
mod push_rules;
mod register;
mod rooms;
mod session;
mod sync;
mod upgrade;
mod voip;

use super::error::MatrixError;
use super::ruma::{Authed, Router};
use actix_web::http::Method;
use actix_web::web;
use ruma::api::client as c;
use ruma::UserId;

/// Every client endpoint myelin serves, and the federation API beside them (one port for
/// clients and other servers, as Synapse's).
pub fn router() -> Router {
    router_with(true)
}

/// The client endpoints, with the federation API when `federation` (the plain-HTTP
/// `server.http_listen` serves the client API only: federation is HTTPS).
pub fn router_with(federation: bool) -> Router {
    let mut r = Router::default();
    r.add::<c::discovery::get_supported_versions::Request, _, _>(discovery::get_supported_versions)
        .add::<c::discovery::discover_homeserver::Request, _, _>(discovery::discover_homeserver)
        .add::<c::discovery::get_capabilities::v3::Request, _, _>(discovery::get_capabilities)
        .add_raw(
            "/.well-known/matrix/server",
            Method::GET,
            web::get().to(discovery::well_known_server),
        )
        .add::<c::account::register::v3::Request, _, _>(register::register)
        .add::<c::account::get_username_availability::v3::Request, _, _>(
            register::get_username_availability,
        )
        .add::<c::account::check_registration_token_validity::v1::Request, _, _>(
            register::check_registration_token_validity,
        )
        .add::<c::session::get_login_types::v3::Request, _, _>(session::get_login_types)
        .add::<c::session::login::v3::Request, _, _>(session::login)
        .add::<c::session::refresh_token::v3::Request, _, _>(session::refresh_token)
        .add::<c::session::logout::v3::Request, _, _>(session::logout)
        .add::<c::session::logout_all::v3::Request, _, _>(session::logout_all)
        .add::<c::account::whoami::v3::Request, _, _>(account::whoami)
        .add::<c::account::change_password::v3::Request, _, _>(account::change_password)
        .add::<c::account::deactivate::v3::Request, _, _>(account::deactivate)
        .add::<c::account::get_3pids::v3::Request, _, _>(account::get_3pids)
        .add::<c::account::add_3pid::v3::Request, _, _>(account::add_3pid)
        .add::<c::account::bind_3pid::v3::Request, _, _>(account::bind_3pid)
        .add::<c::account::request_3pid_management_token_via_email::v3::Request, _, _>(
            account::request_3pid_management_token_via_email,
        )
        .add::<c::account::request_3pid_management_token_via_msisdn::v3::Request, _, _>(
            account::request_3pid_management_token_via_msisdn,
        )
        .add::<c::device::get_devices::v3::Request, _, _>(devices::get_devices)
        .add::<c::device::get_device::v3::Request, _, _>(devices::get_device)
        .add::<c::device::update_device::v3::Request, _, _>(devices::update_device)
        .add::<c::device::delete_device::v3::Request, _, _>(devices::delete_device)
        .add::<c::device::delete_devices::v3::Request, _, _>(devices::delete_devices)
        .add::<c::profile::get_profile::v3::Request, _, _>(profile::get_profile)
        .add::<c::profile::get_display_name::v3::Request, _, _>(profile::get_display_name)
        .add::<c::profile::set_display_name::v3::Request, _, _>(profile::set_display_name)
        .add::<c::profile::get_avatar_url::v3::Request, _, _>(profile::get_avatar_url)
        .add::<c::profile::set_avatar_url::v3::Request, _, _>(profile::set_avatar_url)
        .add::<c::config::get_global_account_data::v3::Request, _, _>(
            account_data::get_global_account_data,
        )
        .add::<c::config::set_global_account_data::v3::Request, _, _>(
            account_data::set_global_account_data,
        )
        .add::<c::config::get_room_account_data::v3::Request, _, _>(
            account_data::get_room_account_data,
        )
        .add::<c::config::set_room_account_data::v3::Request, _, _>(
            account_data::set_room_account_data,
        )
        .add::<c::filter::create_filter::v3::Request, _, _>(filter::create_filter)
        .add::<c::filter::get_filter::v3::Request, _, _>(filter::get_filter)
        .add::<c::room::create_room::v3::Request, _, _>(rooms::create_room)
        .add::<c::message::send_message_event::v3::Request, _, _>(rooms::send_message_event)
        .add::<c::state::send_state_event::v3::Request, _, _>(rooms::send_state_event)
        .add::<c::state::get_state_events::v3::Request, _, _>(rooms::get_state_events)
        .add::<c::state::get_state_event_for_key::v3::Request, _, _>(rooms::get_state_event_for_key)
        .add::<c::room::get_room_event::v3::Request, _, _>(rooms::get_room_event)
        .add::<c::redact::redact_event::v3::Request, _, _>(rooms::redact_event)
        .add::<c::room::report_content::v3::Request, _, _>(rooms::report_content)
        .add::<c::room::report_room::v3::Request, _, _>(rooms::report_room)
        .add::<c::room::get_event_by_timestamp::v1::Request, _, _>(rooms::get_event_by_timestamp)
        .add::<c::knock::knock_room::v3::Request, _, _>(membership::knock_room)
        .add::<c::room::upgrade_room::v3::Request, _, _>(upgrade::upgrade_room)
        .add::<c::membership::join_room_by_id::v3::Request, _, _>(membership::join_room_by_id)
        .add::<c::membership::join_room_by_id_or_alias::v3::Request, _, _>(
            membership::join_room_by_id_or_alias,
        )
        .add::<c::membership::leave_room::v3::Request, _, _>(membership::leave_room)
        .add::<c::membership::invite_user::v3::Request, _, _>(membership::invite_user)
        .add::<c::membership::kick_user::v3::Request, _, _>(membership::kick_user)
        .add::<c::membership::ban_user::v3::Request, _, _>(membership::ban_user)
        .add::<c::membership::unban_user::v3::Request, _, _>(membership::unban_user)
        .add::<c::membership::get_member_events::v3::Request, _, _>(membership::get_member_events)
        .add::<c::membership::joined_members::v3::Request, _, _>(membership::joined_members)
        .add::<c::membership::joined_rooms::v3::Request, _, _>(membership::joined_rooms)
        .add::<c::membership::forget_room::v3::Request, _, _>(membership::forget_room)
        .add::<c::alias::create_alias::v3::Request, _, _>(directory::create_alias)
        .add::<c::alias::get_alias::v3::Request, _, _>(directory::get_alias)
        .add::<c::alias::delete_alias::v3::Request, _, _>(directory::delete_alias)
        .add::<c::room::aliases::v3::Request, _, _>(directory::get_room_aliases)
        .add::<c::directory::get_room_visibility::v3::Request, _, _>(directory::get_room_visibility)
        .add::<c::directory::set_room_visibility::v3::Request, _, _>(directory::set_room_visibility)
        .add::<c::directory::get_public_rooms::v3::Request, _, _>(directory::get_public_rooms)
        .add::<c::directory::get_public_rooms_filtered::v3::Request, _, _>(
            directory::get_public_rooms_filtered,
        )
        .add::<c::sync::sync_events::v3::Request, _, _>(sync::sync)
        .add::<c::typing::create_typing_event::v3::Request, _, _>(sync::typing)
        .add::<c::receipt::create_receipt::v3::Request, _, _>(sync::create_receipt)
        .add::<c::read_marker::set_read_marker::v3::Request, _, _>(sync::set_read_marker)
        .add::<c::presence::set_presence::v3::Request, _, _>(sync::set_presence)
        .add::<c::presence::get_presence::v3::Request, _, _>(sync::get_presence)
        .add::<c::to_device::send_event_to_device::v3::Request, _, _>(sync::send_to_device)
        .add::<c::tag::get_tags::v3::Request, _, _>(sync::get_tags)
        .add::<c::tag::create_tag::v3::Request, _, _>(sync::create_tag)
        .add::<c::tag::delete_tag::v3::Request, _, _>(sync::delete_tag)
        .add::<c::message::get_message_events::v3::Request, _, _>(history::get_messages)
        .add::<c::context::get_context::v3::Request, _, _>(history::get_context)
        .add::<c::relations::get_relating_events::v1::Request, _, _>(history::get_relations)
        .add::<c::relations::get_relating_events_with_rel_type::v1::Request, _, _>(
            history::get_relations_with_rel_type,
        )
        .add::<c::relations::get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
            history::get_relations_with_rel_type_and_event_type,
        )
        .add::<c::threads::get_threads::v1::Request, _, _>(history::get_threads)
        .add::<c::peeking::get_current_state::v3::Request, _, _>(legacy::room_initial_sync)
        .add::<c::voip::get_turn_server_info::v3::Request, _, _>(voip::get_turn_server_info)
        .add::<c::thirdparty::get_protocols::v3::Request, _, _>(voip::get_protocols)
        .add::<c::account::request_openid_token::v3::Request, _, _>(openid::request_openid_token)
        .add::<c::push::get_pushrules_all::v3::Request, _, _>(push_rules::get_pushrules_all)
        .add::<c::push::get_pushrules_global_scope::v3::Request, _, _>(
            push_rules::get_pushrules_global_scope,
        )
        .add::<c::push::get_pushrule::v3::Request, _, _>(push_rules::get_pushrule)
        .add::<c::push::set_pushrule::v3::Request, _, _>(push_rules::set_pushrule)
        .add::<c::push::delete_pushrule::v3::Request, _, _>(push_rules::delete_pushrule)
        .add::<c::push::get_pushrule_enabled::v3::Request, _, _>(push_rules::get_pushrule_enabled)
        .add::<c::push::set_pushrule_enabled::v3::Request, _, _>(push_rules::set_pushrule_enabled)
        .add::<c::push::get_pushrule_actions::v3::Request, _, _>(push_rules::get_pushrule_actions)
        .add::<c::push::set_pushrule_actions::v3::Request, _, _>(push_rules::set_pushrule_actions);
    if federation {
        crate::routing::federation::add_routes(&mut r);
    }
    // Sending without a transaction ID: an old form clients and bridges still use.
    for version in ["r0", "v3"] {
        r.add_raw(
            &format!("/_matrix/client/{version}/rooms/{{room_id}}/send/{{event_type}}"),
            Method::POST,
            web::post().to(rooms::send_message_event),
        );
    }
    // The legacy snapshot and event stream, which ruma does not type (or, for `/events`,
    // types with a `room_id` it requires).
    for version in ["r0", "v3"] {
        r.add_raw(
            &format!("/_matrix/client/{version}/initialSync"),
            Method::GET,
            web::get().to(legacy::initial_sync),
        )
        .add_raw(
            &format!("/_matrix/client/{version}/events"),
            Method::GET,
            web::get().to(legacy::events),
        )
        .add_raw(
            &format!("/_matrix/client/{version}/events/{{event_id}}"),
            Method::GET,
            web::get().to(legacy::event),
        );
    }
    // Every other path under /pushrules (after the ones above: literal segments sort first).
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        r.add_raw(
            "/_matrix/client/{version}/pushrules/{rest:.*}",
            method.clone(),
            web::method(method).to(push_rules::other_path),
        );
    }
    r
}

/// Refuses acting for another user: the path's user must be the sender.
fn ensure_self(sender: &Authed, user_id: &UserId, what: &str) -> Result<(), MatrixError> {
    if sender.user_id == user_id {
        Ok(())
    } else {
        Err(MatrixError::forbidden(format!(
            "Cannot {what} for other users."
        )))
    }
}

/// The localpart of a user of this server, or `None` for a remote user.
fn local_part<'a>(server_name: &str, user_id: &'a UserId) -> Option<&'a str> {
    (user_id.server_name().as_str() == server_name).then(|| user_id.localpart())
}
