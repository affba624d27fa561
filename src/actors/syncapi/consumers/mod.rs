//! The syncapi's consumers: one per stream it reads.

pub mod roomserver;
pub mod userapi;
