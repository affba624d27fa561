//! The syncapi's tables, one file each. Nobody else reads them.

pub mod account_data;
pub mod current_state;
pub mod erased_users;
pub mod presence;
pub mod receipts;
pub mod relations;
pub mod room_events;
pub mod to_device;
