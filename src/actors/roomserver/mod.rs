//! The roomserver: the room DAG, authorization and state.
//!
//! Built so far: its storage (rooms, interned event types and state keys, events, and state
//! as snapshots of shared blocks; see `README.md`). The input path (per-room actors, auth
//! checks with ruma's state-res, state resolution), its messages and its output stream come
//! next.

pub mod state;
pub mod storage;
