//! The federation API endpoints this server serves before federation exists: those that
//! other parties than homeservers call (identity servers' `/3pid/onbind`). They are mounted
//! on the client listener with the client routes. Signed requests (`X-Matrix`) come with
//! federation.

pub mod thirdparty;

use super::ruma::Router;
use actix_web::http::Method;
use actix_web::web;
use ruma::api::federation as f;

/// Adds the federation endpoints to the client listener's routes.
pub fn add_routes(r: &mut Router) {
    r.add::<f::thirdparty::bind_callback::v1::Request, _, _>(thirdparty::bind_callback);
    // Sydent, the reference identity server, and Synapse use POST; the spec says PUT.
    r.add_raw(
        "/_matrix/federation/v1/3pid/onbind",
        Method::POST,
        web::post().to(thirdparty::bind_callback),
    );
}
