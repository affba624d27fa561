//! The streams the federationapi reads, one file each.

pub mod receipts;
pub mod roomserver;
