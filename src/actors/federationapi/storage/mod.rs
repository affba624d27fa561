//! The federationapi's tables, one file each (see the component's README).
//! Nobody else reads them.

pub mod destinations;
pub mod joined_members;
pub mod queue;
pub mod received_transactions;
pub mod server_keys;
