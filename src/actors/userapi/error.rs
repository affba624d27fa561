//! What can go wrong in the userapi, as callers see it: semantic variants, no HTTP codes
//! (routing maps them to Matrix errors).

use crate::actors::bridge::BridgeError;
use crate::storage::StorageError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum UserApiError {
    /// The localpart is taken.
    #[error("user ID already taken")]
    UserInUse,
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The password changed after it was checked (a login racing a password change).
    #[error("credentials changed")]
    CredentialsChanged,
    /// A token that is not (or no longer) valid.
    #[error("unknown token")]
    UnknownToken,
    /// The request makes no sense (e.g. a device ID that belongs to another user).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Storage or hashing failed; the detail is logged where it happened.
    #[error("internal error: {0}")]
    Internal(String),
    /// The database had no connection free within the pool's wait: try again shortly.
    #[error("database busy")]
    Busy,
    /// The component could not be reached.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl UserApiError {
    /// An internal failure, logged here with its cause and where it happened: the one log
    /// line it gets (routing turns `Internal` into a sanitized 500 without logging again).
    /// Call it from a closure at the failing line, so the location is that line.
    #[track_caller]
    pub fn internal(cause: impl std::fmt::Display) -> UserApiError {
        let at = std::panic::Location::caller();
        tracing::error!(error = %cause, at = %at, "userapi internal error");
        UserApiError::Internal(cause.to_string())
    }
}

impl From<StorageError> for UserApiError {
    /// At the `?` that converts: the location logged is the failing call's.
    #[track_caller]
    fn from(e: StorageError) -> Self {
        if let StorageError::Busy(_) = e {
            tracing::warn!(error = %e, "userapi request refused");
            return UserApiError::Busy;
        }
        let at = std::panic::Location::caller();
        tracing::error!(error = %e, at = %at, "userapi storage failure");
        UserApiError::Internal(e.to_string())
    }
}
