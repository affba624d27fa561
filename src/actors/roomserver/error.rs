//! What can go wrong in the roomserver, as callers see it.

use crate::actors::bridge::BridgeError;
use crate::pdu::PduError;
use crate::storage::StorageError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum RoomserverError {
    /// The auth rules refuse the event; the reason is meant for people.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The room does not exist here.
    #[error("no such room")]
    NoRoom,
    /// The alias is taken.
    #[error("alias {0} is in use")]
    AliasInUse(String),
    /// No such alias.
    #[error("no alias {0}")]
    NoAlias(String),
    /// An event the request names is not in the room.
    #[error("no such event: {0}")]
    NoEvent(String),
    /// A room version this server does not support.
    #[error("unsupported room version {0}")]
    UnsupportedRoomVersion(String),
    /// The room's version is not among those the asking server supports (`make_join`).
    #[error("incompatible room version {0}")]
    IncompatibleRoomVersion(String),
    /// The event is larger than a PDU may be.
    #[error("event too large")]
    TooLarge,
    /// The event cannot be built (bad content, bad IDs).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The change cannot be made in the room's present state.
    #[error("bad state: {0}")]
    BadState(String),
    /// Storage or signing failed; the detail is logged where it happened.
    #[error("internal error: {0}")]
    Internal(String),
    /// The database had no connection free within the pool's wait: try again shortly.
    #[error("database busy")]
    Busy,
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl RoomserverError {
    /// An internal failure, logged here with its cause and where it happened: the one log
    /// line it gets (routing turns `Internal` into a sanitized 500 without logging again).
    /// Call it from a closure at the failing line, so the location is that line.
    #[track_caller]
    pub fn internal(cause: impl std::fmt::Display) -> RoomserverError {
        let at = std::panic::Location::caller();
        tracing::error!(error = %cause, at = %at, "roomserver internal error");
        RoomserverError::Internal(cause.to_string())
    }
}

impl From<StorageError> for RoomserverError {
    /// At the `?` that converts: the location logged is the failing call's.
    #[track_caller]
    fn from(e: StorageError) -> Self {
        if let StorageError::Busy(_) = e {
            tracing::warn!(error = %e, "roomserver request refused");
            return RoomserverError::Busy;
        }
        let at = std::panic::Location::caller();
        tracing::error!(error = %e, at = %at, "roomserver storage failure");
        RoomserverError::Internal(e.to_string())
    }
}

impl From<PduError> for RoomserverError {
    #[track_caller]
    fn from(e: PduError) -> Self {
        match e {
            PduError::UnsupportedRoomVersion(v) => RoomserverError::UnsupportedRoomVersion(v),
            PduError::TooLarge => RoomserverError::TooLarge,
            e @ (PduError::ContentNotObject | PduError::InvalidContent(_)) => {
                RoomserverError::BadRequest(e.to_string())
            }
            e => RoomserverError::internal(format_args!("building an event failed: {e}")),
        }
    }
}
