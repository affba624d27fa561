//! One file per message of the federationapi.

pub mod input_send_to_device;
pub mod input_server_up;
pub mod input_transaction;
pub mod input_typing;
pub mod membership;
pub mod perform_invite;
pub mod perform_join;
pub mod perform_knock;
pub mod perform_leave;
pub mod query_backfill;
pub mod query_local_server_keys;
pub mod query_notary_keys;
pub mod query_remote_alias;
pub mod query_remote_profile;
pub mod query_remote_public_rooms;
pub mod query_server_keys;
