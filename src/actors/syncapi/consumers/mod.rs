//! The streams the syncapi reads, one file each.

pub mod roomserver;
