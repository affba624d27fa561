//! The components, each an actix actor system behind one message API (`messages.rs`), and
//! the generic bridge that lets a caller reach a component on another node.

pub mod bridge;
pub mod executors;
pub mod federationapi;
pub mod roomserver;
pub mod syncapi;
pub mod userapi;
