//! What can go wrong in the federationapi, as callers see it: semantic variants, no HTTP
//! codes (routing maps them to Matrix errors).

use crate::actors::bridge::BridgeError;
use crate::storage::StorageError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum FederationApiError {
    /// The request makes no sense (too many servers in one notary query, ...).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Another server refused or failed a request (the last one asked): its status (0 when
    /// it gave no usable answer), errcode and error.
    #[error("{server}: {status} {errcode}: {error}")]
    Remote {
        server: String,
        status: u16,
        errcode: String,
        error: String,
    },
    /// Storage or signing failed; the detail is logged where it happened.
    #[error("internal error: {0}")]
    Internal(String),
    /// The database had no connection free within the pool's wait: try again shortly.
    #[error("database busy")]
    Busy,
    /// The component could not be reached.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl FederationApiError {
    /// An internal failure, logged here with its cause and where it happened (routing turns
    /// `Internal` into a sanitized 500 without logging again). Call it from a closure at the
    /// failing line, so the location is that line.
    #[track_caller]
    pub fn internal(cause: impl std::fmt::Display) -> FederationApiError {
        let at = std::panic::Location::caller();
        tracing::error!(error = %cause, at = %at, "federationapi internal error");
        FederationApiError::Internal(cause.to_string())
    }
}

impl From<StorageError> for FederationApiError {
    #[track_caller]
    fn from(e: StorageError) -> Self {
        if let StorageError::Busy(_) = e {
            tracing::warn!(error = %e, "federationapi request refused");
            return FederationApiError::Busy;
        }
        let at = std::panic::Location::caller();
        tracing::error!(error = %e, at = %at, "federationapi storage failure");
        FederationApiError::Internal(e.to_string())
    }
}

impl From<crate::federation::client::FederationError> for FederationApiError {
    /// A failed call to another server, as the `Remote` the caller sees.
    fn from(e: crate::federation::client::FederationError) -> Self {
        use crate::federation::client::FederationError as F;
        match e {
            F::Refused {
                server,
                status,
                errcode,
                error,
            } => FederationApiError::Remote {
                server,
                status,
                errcode,
                error,
            },
            F::Denied { ref server, .. }
            | F::Unreachable { ref server, .. }
            | F::TooLarge { ref server, .. }
            | F::BadResponse { ref server, .. } => FederationApiError::Remote {
                server: server.clone(),
                status: 0,
                errcode: String::new(),
                error: e.to_string(),
            },
        }
    }
}
