//! `MatrixError`: the only place that knows Matrix errcodes and HTTP statuses. Component
//! errors map into it here; the status follows from the errcode in one table.

use crate::actors::federationapi::FederationApiError;
use crate::actors::roomserver::RoomserverError;
use crate::actors::syncapi::SyncApiError;
use crate::actors::userapi::UserApiError;
use crate::identity::IdentityError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};
use std::fmt;

/// A Matrix error response: `{"errcode": ..., "error": ..., ...extra}`.
#[derive(Debug, Clone)]
pub struct MatrixError {
    pub errcode: &'static str,
    pub error: String,
    /// Extra top-level fields (`retry_after_ms`, `soft_logout`, UIA flows...).
    pub extra: Map<String, Value>,
    /// Set when the errcode alone does not decide the status (405, UIA's 401).
    pub status_override: Option<StatusCode>,
}

impl MatrixError {
    pub fn new(errcode: &'static str, error: impl Into<String>) -> MatrixError {
        MatrixError {
            errcode,
            error: error.into(),
            extra: Map::new(),
            status_override: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> MatrixError {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> MatrixError {
        self.status_override = Some(status);
        self
    }

    pub fn forbidden(error: impl Into<String>) -> MatrixError {
        Self::new("M_FORBIDDEN", error)
    }
    pub fn not_found(error: impl Into<String>) -> MatrixError {
        Self::new("M_NOT_FOUND", error)
    }
    pub fn bad_json(error: impl Into<String>) -> MatrixError {
        Self::new("M_BAD_JSON", error)
    }
    pub fn invalid_param(error: impl Into<String>) -> MatrixError {
        Self::new("M_INVALID_PARAM", error)
    }
    pub fn unrecognized() -> MatrixError {
        Self::new("M_UNRECOGNIZED", "Unrecognized request")
    }
    pub fn method_not_allowed() -> MatrixError {
        Self::new("M_UNRECOGNIZED", "Method not allowed for this endpoint")
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
    }
    /// Work that needs another server, while federation is not built: 502 `M_UNKNOWN`
    /// (Synapse would try the other server and answer 502 when it cannot reach it), never a
    /// success for work not done.
    pub fn federation_unavailable(what: impl fmt::Display) -> MatrixError {
        Self::new(
            "M_UNKNOWN",
            format!("{what}: this server does not federate yet"),
        )
        .with_status(StatusCode::BAD_GATEWAY)
    }
    /// A federation request whose `X-Matrix` signature is missing, malformed or wrong: 401.
    pub fn unauthorized(error: impl Into<String>) -> MatrixError {
        Self::new("M_UNAUTHORIZED", error)
    }
    /// An internal failure found in routing: logged here, with its cause and where it
    /// happened (the one log line it gets); the client gets a sanitized 500 `M_UNKNOWN`.
    /// Call it from a closure at the failing line, so the location is that line.
    #[track_caller]
    pub fn internal(cause: impl fmt::Display) -> MatrixError {
        let at = std::panic::Location::caller();
        tracing::error!(error = %cause, at = %at, "internal error");
        Self::sanitized_internal()
    }
    /// The 500 of an internal failure that was logged where it happened (a component's
    /// `Internal`): the body says nothing of it.
    fn sanitized_internal() -> MatrixError {
        Self::new("M_UNKNOWN", "Internal server error")
    }
    /// The server is overloaded (its database pool stayed saturated): 503, try again.
    pub fn busy() -> MatrixError {
        Self::new("M_UNKNOWN", "The server is busy; try again shortly")
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The HTTP status of an errcode, as the spec and Synapse pair them.
    pub fn status(&self) -> StatusCode {
        if let Some(s) = self.status_override {
            return s;
        }
        match self.errcode {
            "M_FORBIDDEN"
            | "M_USER_DEACTIVATED"
            | "M_THREEPID_DENIED"
            | "M_GUEST_ACCESS_FORBIDDEN"
            | "M_THREEPID_MEDIUM_NOT_SUPPORTED" => StatusCode::FORBIDDEN,
            "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" | "M_UNAUTHORIZED" => StatusCode::UNAUTHORIZED,
            "M_NOT_FOUND" | "M_UNRECOGNIZED" => StatusCode::NOT_FOUND,
            "M_LIMIT_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
            "M_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
            "M_UNKNOWN" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        // An empty errcode is a bare user-interactive auth challenge: no errcode, no error.
        if !self.errcode.is_empty() {
            body.insert("errcode".into(), json!(self.errcode));
            body.insert("error".into(), json!(self.error));
        }
        Value::Object(body)
    }
}

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errcode, self.error)
    }
}

impl ResponseError for MatrixError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status()).json(self.body())
    }
}

impl From<UserApiError> for MatrixError {
    fn from(e: UserApiError) -> Self {
        match e {
            UserApiError::UserInUse => MatrixError::new("M_USER_IN_USE", "User ID already taken."),
            UserApiError::NotFound(what) => MatrixError::not_found(what),
            UserApiError::UnknownToken => MatrixError::new("M_UNKNOWN_TOKEN", "Unknown token"),
            UserApiError::CredentialsChanged => {
                MatrixError::forbidden("Invalid username or password")
            }
            UserApiError::BadRequest(what) => MatrixError::invalid_param(what),
            // The detail was logged where it happened; the client gets a sanitized body.
            UserApiError::Internal(_) => MatrixError::sanitized_internal(),
            UserApiError::Busy => MatrixError::busy(),
            UserApiError::Bridge(e) => {
                tracing::error!(error = %e, "userapi unreachable");
                MatrixError::sanitized_internal()
            }
        }
    }
}

impl From<FederationApiError> for MatrixError {
    fn from(e: FederationApiError) -> Self {
        match e {
            FederationApiError::BadRequest(why) => MatrixError::invalid_param(why),
            // Another server's refusal, as Synapse relays it: a refusal of the user (403,
            // 404, an incompatible room version) is theirs; anything else is the gateway's.
            FederationApiError::Remote {
                server,
                status,
                errcode,
                error,
            } => match (status, errcode.as_str()) {
                (403, _) => MatrixError::forbidden(format!("{server}: {error}")),
                (404, _) => MatrixError::not_found(format!("{server}: {error}")),
                (400, "M_INCOMPATIBLE_ROOM_VERSION") => {
                    MatrixError::new("M_INCOMPATIBLE_ROOM_VERSION", format!("{server}: {error}"))
                }
                _ => {
                    tracing::warn!(
                        server,
                        status,
                        errcode,
                        error,
                        "another server failed a request"
                    );
                    MatrixError::new(
                        "M_UNKNOWN",
                        format!("{server} could not be used ({status} {errcode}: {error})"),
                    )
                    .with_status(StatusCode::BAD_GATEWAY)
                }
            },
            // The detail was logged where it happened; the client gets a sanitized body.
            FederationApiError::Internal(_) => MatrixError::sanitized_internal(),
            FederationApiError::Busy => MatrixError::busy(),
            FederationApiError::Bridge(e) => {
                tracing::error!(error = %e, "federationapi unreachable");
                MatrixError::sanitized_internal()
            }
        }
    }
}

impl From<SyncApiError> for MatrixError {
    fn from(e: SyncApiError) -> Self {
        match e {
            SyncApiError::Forbidden(why) => MatrixError::forbidden(why),
            SyncApiError::NotFound(what) => MatrixError::not_found(what),
            SyncApiError::InvalidParam(why) => MatrixError::invalid_param(why),
            SyncApiError::Internal(_) => MatrixError::sanitized_internal(),
            SyncApiError::Busy => MatrixError::busy(),
            SyncApiError::Bridge(e) => {
                tracing::error!(error = %e, "syncapi unreachable");
                MatrixError::sanitized_internal()
            }
        }
    }
}

impl From<IdentityError> for MatrixError {
    /// An identity server's failure is the gateway's (502), unless the client named a server
    /// it may not (400) or the identity server refused the client's token (403). Synapse
    /// answers 500 for all of these; 502 tells the client the fault is upstream.
    fn from(e: IdentityError) -> Self {
        match &e {
            IdentityError::InvalidServer(why) => MatrixError::invalid_param(why.clone()),
            IdentityError::Refused {
                status: 401 | 403, ..
            } => MatrixError::forbidden(e.to_string()),
            _ => {
                tracing::warn!(error = %e, "identity server call failed");
                MatrixError::new("M_UNKNOWN", e.to_string()).with_status(StatusCode::BAD_GATEWAY)
            }
        }
    }
}

impl From<RoomserverError> for MatrixError {
    fn from(e: RoomserverError) -> Self {
        match e {
            RoomserverError::NotAllowed(why) => MatrixError::forbidden(why),
            RoomserverError::NoRoom => MatrixError::not_found("Unknown room"),
            RoomserverError::AliasInUse(a) => {
                MatrixError::new("M_UNKNOWN", format!("Room alias {a} already exists"))
                    .with_status(StatusCode::CONFLICT)
            }
            RoomserverError::NoAlias(a) => {
                MatrixError::not_found(format!("Room alias {a} not found"))
            }
            RoomserverError::NoEvent(id) => MatrixError::not_found(format!("Unknown event {id}")),
            RoomserverError::UnsupportedRoomVersion(v) => MatrixError::new(
                "M_UNSUPPORTED_ROOM_VERSION",
                format!("This server does not support room version {v}"),
            ),
            RoomserverError::IncompatibleRoomVersion(v) => MatrixError::new(
                "M_INCOMPATIBLE_ROOM_VERSION",
                format!("Your homeserver does not support the features required to join this room (room version {v})"),
            )
            .with("room_version", v),
            RoomserverError::TooLarge => MatrixError::new("M_TOO_LARGE", "Event is too large"),
            RoomserverError::BadRequest(why) => MatrixError::bad_json(why),
            RoomserverError::BadState(why) => MatrixError::new("M_BAD_STATE", why),
            RoomserverError::Internal(_) => MatrixError::sanitized_internal(),
            RoomserverError::Busy => MatrixError::busy(),
            RoomserverError::Bridge(e) => {
                tracing::error!(error = %e, "roomserver unreachable");
                MatrixError::sanitized_internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;

    #[test]
    fn statuses_follow_errcodes() {
        let cases = [
            ("M_FORBIDDEN", 403),
            ("M_UNKNOWN_TOKEN", 401),
            ("M_MISSING_TOKEN", 401),
            ("M_NOT_FOUND", 404),
            ("M_UNRECOGNIZED", 404),
            ("M_LIMIT_EXCEEDED", 429),
            ("M_TOO_LARGE", 413),
            ("M_NOT_JSON", 400),
            ("M_BAD_JSON", 400),
            ("M_USER_IN_USE", 400),
            ("M_INVALID_USERNAME", 400),
            ("M_UNKNOWN", 500),
        ];
        for (code, status) in cases {
            assert_eq!(
                MatrixError::new(code, "").status().as_u16(),
                status,
                "{code}"
            );
        }
        assert_eq!(MatrixError::method_not_allowed().status().as_u16(), 405);
    }

    /// Log lines written while `f` runs.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn internal_errors_are_logged_once_with_their_cause_and_answered_without_it() {
        use crate::actors::bridge::BridgeError;
        let cause = "disk on fire at /var/lib/secret";
        let mut answers = Vec::new();
        let lines = logged(|| {
            // Made in a component (logged there), then mapped by routing (not again).
            answers.push(MatrixError::from(RoomserverError::internal(cause)));
            answers.push(MatrixError::from(UserApiError::internal(cause)));
            answers.push(MatrixError::from(RoomserverError::from(
                StorageError::Join(cause.into()),
            )));
            answers.push(MatrixError::from(SyncApiError::from(StorageError::Join(
                cause.into(),
            ))));
            // Found in routing itself, or an unreachable component: logged where mapped.
            answers.push(MatrixError::internal(cause));
            answers.push(MatrixError::from(RoomserverError::Bridge(
                BridgeError::Unreachable(cause.into()),
            )));
        });
        assert_eq!(lines.len(), answers.len(), "{lines:#?}");
        for line in &lines {
            assert!(line.contains("ERROR") && line.contains(cause), "{line}");
        }
        // The line names where it happened: this file, not error.rs's constructor.
        assert!(lines[0].contains("src/routing/error.rs:"), "{}", lines[0]);
        for e in answers {
            assert_eq!(e.status().as_u16(), 500);
            assert_eq!(
                e.body(),
                json!({"errcode": "M_UNKNOWN", "error": "Internal server error"})
            );
        }
    }

    #[test]
    fn a_busy_database_is_503_from_every_component() {
        let busy = StorageError::Busy(10);
        for e in [
            MatrixError::from(UserApiError::from(StorageError::Busy(10))),
            MatrixError::from(SyncApiError::from(StorageError::Busy(10))),
            MatrixError::from(RoomserverError::from(busy)),
        ] {
            assert_eq!(e.status().as_u16(), 503);
            assert_eq!(e.errcode, "M_UNKNOWN");
        }
    }
}
