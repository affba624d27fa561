//! The streams the federationapi reads, one file each.

pub mod presence;
pub mod receipts;
pub mod roomserver;
