//! One file per message of the federationapi.

pub mod input_send_to_device;
pub mod input_transaction;
pub mod input_typing;
pub mod query_local_server_keys;
pub mod query_notary_keys;
pub mod query_server_keys;
