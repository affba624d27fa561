//! What can go wrong in the syncapi, as callers see it.

use crate::actors::bridge::BridgeError;
use crate::storage::StorageError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum SyncApiError {
    /// The user may not do or see this; the reason is meant for people.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The room, event or user is unknown (or hidden from the user).
    #[error("not found: {0}")]
    NotFound(String),
    /// A parameter is malformed (a token, a filter, a limit).
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// Storage failed; the detail is logged where it happened.
    #[error("internal error: {0}")]
    Internal(String),
    /// The database had no connection free within the pool's wait: try again shortly.
    #[error("database busy")]
    Busy,
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl From<StorageError> for SyncApiError {
    /// At the `?` that converts: the location logged is the failing call's.
    #[track_caller]
    fn from(e: StorageError) -> Self {
        if let StorageError::Busy(_) = e {
            tracing::warn!(error = %e, "syncapi request refused");
            return SyncApiError::Busy;
        }
        let at = std::panic::Location::caller();
        tracing::error!(error = %e, at = %at, "syncapi storage failure");
        SyncApiError::Internal(e.to_string())
    }
}

impl From<actix::MailboxError> for SyncApiError {
    #[track_caller]
    fn from(e: actix::MailboxError) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(error = %e, at = %at, "syncapi notifier unreachable");
        SyncApiError::Internal(e.to_string())
    }
}
