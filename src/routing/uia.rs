//! User-interactive authentication: sessions and stages, kept in memory by routing (a
//! session lives minutes; losing them on restart only makes the client start over).
//!
//! A session is bound to the operation it was issued for (e.g. `delete_devices:@a:x`), so
//! a completed session cannot authorize something else.

use super::error::MatrixError;
use super::AppState;
use crate::actors::userapi::messages::{PasswordCheck, QueryPasswordCheck};
use actix_web::http::StatusCode;
use ruma::api::client::uiaa::{AuthData, UserIdentifier};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";

/// The purpose whose sessions outlive their completion (until they expire): a client may
/// repeat the completing registration request and gets the same account, as from Synapse.
pub const KEPT_PURPOSE: &str = "register";

struct Session {
    purpose: String,
    completed: Vec<&'static str>,
    created: Instant,
    /// The parameters of the request that started the session, for a client that sends
    /// them once and then only `auth` (registration).
    params: Option<serde_json::Value>,
    /// Set once a kept session's request was carried out (the registered user ID), so that
    /// a repeat of the completing request gets the same answer.
    outcome: Option<String>,
    /// Whether a completed flow keeps the session (registration) instead of ending it.
    keep: bool,
    done: bool,
}

pub struct UiaSessions {
    sessions: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
}

/// The user a password stage must prove to be.
pub struct PasswordOwner<'a> {
    pub localpart: &'a str,
    pub user_id: &'a str,
}

impl UiaSessions {
    pub fn new(lifetime: Duration) -> UiaSessions {
        UiaSessions {
            sessions: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the parameters of a session's first request (later ones do not replace them).
    pub fn remember(&self, session: &str, params: serde_json::Value) {
        if let Some(s) = self.lock().get_mut(session) {
            s.params.get_or_insert(params);
        }
    }

    /// The parameters remembered for a session.
    pub fn recall(&self, session: &str) -> Option<serde_json::Value> {
        self.lock().get(session).and_then(|s| s.params.clone())
    }

    /// Records what the completed request of a kept session did.
    pub fn set_outcome(&self, session: &str, outcome: String) {
        if let Some(s) = self.lock().get_mut(session) {
            s.outcome = Some(outcome);
            // Nothing sensitive stays behind once the request is done.
            s.params = None;
        }
    }

    /// What the completed request of a kept session did, if it was carried out.
    pub fn outcome(&self, session: &str) -> Option<String> {
        self.lock().get(session).and_then(|s| s.outcome.clone())
    }

    fn start(&self, purpose: &str) -> String {
        let id = rand::distributions::DistString::sample_string(
            &rand::distributions::Alphanumeric,
            &mut rand::thread_rng(),
            24,
        );
        let mut s = self.lock();
        let lifetime = self.lifetime;
        s.retain(|_, v| v.created.elapsed() < lifetime);
        s.insert(
            id.clone(),
            Session {
                purpose: purpose.to_owned(),
                completed: Vec::new(),
                created: Instant::now(),
                params: None,
                outcome: None,
                keep: purpose == KEPT_PURPOSE,
                done: false,
            },
        );
        id
    }

    /// The 401 answer that tells the client what to do next.
    fn challenge(
        &self,
        flows: &[&[&'static str]],
        session: &str,
        error: Option<(&'static str, &str)>,
    ) -> MatrixError {
        let completed = self
            .lock()
            .get(session)
            .map(|s| s.completed.clone())
            .unwrap_or_default();
        let flows: Vec<_> = flows.iter().map(|f| json!({ "stages": f })).collect();
        // A plain challenge carries no errcode: the empty errcode leaves it out.
        let err = MatrixError::new(error.map_or("", |e| e.0), error.map_or("", |e| e.1))
            .with_status(StatusCode::UNAUTHORIZED)
            .with("flows", flows)
            .with("params", json!({}))
            .with("session", session);
        // As Synapse: `completed` only once a stage is done.
        if completed.is_empty() {
            err
        } else {
            err.with("completed", completed)
        }
    }

    /// Checks `auth` against `flows` for `purpose`. `Ok(())` once a whole flow is done;
    /// otherwise the 401 (or 400) the client must get.
    pub async fn check(
        &self,
        state: &AppState,
        auth: Option<&AuthData>,
        flows: &[&[&'static str]],
        purpose: &str,
        owner: Option<PasswordOwner<'_>>,
    ) -> Result<(), MatrixError> {
        let Some(auth) = auth else {
            let session = self.start(purpose);
            return Err(self.challenge(flows, &session, None));
        };
        let session =
            match auth.session() {
                Some(id) => {
                    let s = self.lock();
                    match s.get(id) {
                        Some(found) if found.created.elapsed() >= self.lifetime => {
                            return Err(MatrixError::new(
                                "M_UNKNOWN",
                                format!("Unknown session ID: {id}"),
                            )
                            .with_status(StatusCode::BAD_REQUEST))
                        }
                        Some(found) if found.purpose == purpose => {
                            if found.done {
                                // A kept session whose flow is complete: the same request again.
                                return Ok(());
                            }
                            id.to_owned()
                        }
                        // Another user's device, another operation: as Synapse, 403.
                        Some(_) => return Err(MatrixError::forbidden(
                            "Requested operation has changed during the UI authentication session",
                        )),
                        None => {
                            return Err(MatrixError::new(
                                "M_UNKNOWN",
                                format!("Unknown session ID: {id}"),
                            )
                            .with_status(StatusCode::BAD_REQUEST))
                        }
                    }
                }
                None => self.start(purpose),
            };
        let stage: &'static str = match auth {
            AuthData::Dummy(_) => DUMMY,
            AuthData::RegistrationToken(t) => {
                if !state
                    .config
                    .registration
                    .tokens
                    .iter()
                    .any(|k| k == &t.token)
                {
                    return Err(self.challenge(
                        flows,
                        &session,
                        Some(("M_UNAUTHORIZED", "Invalid registration token")),
                    ));
                }
                REGISTRATION_TOKEN
            }
            AuthData::Password(p) => {
                let Some(owner) = &owner else {
                    return Err(MatrixError::bad_json(
                        "Password authentication needs a logged-in user",
                    ));
                };
                let named = match &p.identifier {
                    UserIdentifier::Matrix(m) => m.user.clone(),
                    _ => {
                        return Err(self.challenge(
                            flows,
                            &session,
                            Some(("M_FORBIDDEN", "Only m.id.user identifiers are supported")),
                        ))
                    }
                };
                // Password guesses are limited per user, whatever the operation.
                state
                    .limiter
                    .check(super::ratelimit::Class::Password, owner.user_id)?;
                let same = named == owner.localpart || named == owner.user_id;
                let check = if same {
                    state
                        .userapi
                        .send(QueryPasswordCheck {
                            localpart: owner.localpart.to_owned(),
                            password: p.password.clone(),
                        })
                        .await?
                } else {
                    PasswordCheck::Invalid
                };
                if !matches!(check, PasswordCheck::Valid { .. }) {
                    return Err(self.challenge(
                        flows,
                        &session,
                        Some(("M_FORBIDDEN", "Invalid password")),
                    ));
                }
                PASSWORD
            }
            other => {
                let kind = other
                    .auth_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default();
                return Err(self.challenge(
                    flows,
                    &session,
                    Some((
                        "M_UNRECOGNIZED",
                        &format!("Unsupported authentication type {kind:?}"),
                    )),
                ));
            }
        };
        if !flows.iter().any(|f| f.contains(&stage)) {
            return Err(self.challenge(
                flows,
                &session,
                Some(("M_FORBIDDEN", "That stage is not in any flow")),
            ));
        }
        let done = {
            let mut s = self.lock();
            let entry = s
                .get_mut(&session)
                .ok_or_else(|| MatrixError::internal("UIA session vanished"))?;
            if !entry.completed.contains(&stage) {
                entry.completed.push(stage);
            }
            let done = flows
                .iter()
                .any(|f| f.iter().all(|st| entry.completed.contains(st)));
            if done {
                if entry.keep {
                    entry.done = true;
                } else {
                    s.remove(&session);
                }
            }
            done
        };
        if done {
            Ok(())
        } else {
            Err(self.challenge(flows, &session, None))
        }
    }
}
