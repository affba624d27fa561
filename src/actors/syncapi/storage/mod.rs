//! The syncapi's tables, one file each. Nobody else reads them.

pub mod current_state;
pub mod room_events;
