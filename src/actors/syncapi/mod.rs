//! The syncapi: its own copy of what clients see, fed by the roomserver's stream, for
//! `/sync` and the history endpoints.
//!
//! Built so far: the storage (`syncapi_room_events` at stream positions, each room's current
//! state with memberships) and the consumer of the `roomserver` stream. The actor, the
//! notifier that wakes long-polling `/sync` requests, and the endpoints come next.

pub mod consumers;
pub mod storage;

#[cfg(test)]
mod tests;
