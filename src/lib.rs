//! myelin: a Matrix homeserver built from actix actor components.
//!
//! # Layout
//! - [`actors`]: the components (userapi, ... ), each an actor behind a message API, and the
//!   HTTP bridge that reaches a component on another node.
//! - [`routing`]: the client API: validates requests, sends messages, maps replies.
//! - [`storage`]: the Db layer over PostgreSQL and SQLite, and the migration runner.
//! - [`server`]: starts a node: database, components, listeners.
//! - [`identity`]: the client of identity servers (third-party invites).
//! - [`federation`]: the outbound federation client, server discovery and server key JSON.
//! - [`net`]: the IP range denylist every outbound connection goes through.
//! - [`history_visibility`]: the one rule for which events of a room a user may see.
//! - [`config`], [`metrics`], [`profiling`].

pub mod actors;
pub mod alloc;
pub mod bus;
pub mod config;
pub mod federation;
pub mod history_visibility;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod pdu;
pub mod profiling;
pub mod push_rules;
pub mod room_versions;
pub mod routing;
pub mod server;
pub mod signing_key;
pub mod storage;
