//! Federation plumbing shared by the federationapi component and the federation routes:
//! the library side of talking to other homeservers, with no storage and no actors.
//!
//! - [`discovery`]: server names to destinations (IP literals, ports, `.well-known` with its
//!   cache, SRV, 8448), as the spec's "Resolving server names".
//! - [`client`]: [`client::FederationClient`], the one outbound HTTP client to other servers:
//!   discovery, the IP range denylist, TLS, timeouts, connection reuse, a response size cap,
//!   and `X-Matrix` request signatures.
//! - [`keys`]: server key objects: ours (self-signed) and the checks on other servers' and
//!   notaries' answers.
//! - [`acl`]: server ACLs (`m.room.server_acl`): whether a room lets a server take part.
//!
//! The federationapi component (`actors::federationapi`) owns the key cache and uses the
//! client; routing checks incoming `X-Matrix` signatures (`routing::federation::auth`).

pub mod acl;
pub mod client;
pub mod discovery;
pub mod keys;
