//! The federationapi's tables, one file each. Nobody else reads them.

pub mod server_keys;
