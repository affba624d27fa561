//! Incoming request authentication: the `X-Matrix` scheme of the spec's "Request
//! Authentication". Every federation endpoint whose ruma metadata says `ServerSignatures`
//! gets it through [`Ruma<T>`](crate::routing::ruma::Ruma) (its `sender` is the origin
//! server); a raw route takes [`SignedRequest`].
//!
//! The check, in order (each failure a 401 `M_UNAUTHORIZED` saying what is wrong):
//! 1. exactly one `Authorization` header, of the `X-Matrix` scheme, that parses (ruma's
//!    `XMatrix`: `origin`, `key` and `sig` present, none twice);
//! 2. `destination`, when present, is this server's name;
//! 3. the key is an `ed25519` key of the origin that the federationapi knows or fetches
//!    (`QueryServerKeys`), current (not an old key) and valid now;
//! 4. the signature verifies over the method, the URI as sent (path and query), origin,
//!    destination and the JSON body.
//!
//! A request that passes tells the federationapi its origin is up (`InputServerUp`, not
//! waited for): our queue for it stops backing off, as Synapse's `Authenticator` does.
//!
//! A non-empty body that is not JSON cannot have been signed as the spec says: 400
//! `M_NOT_JSON`. Endpoints the spec serves without signatures (`/version`, the key
//! endpoints, `/3pid/onbind`) use `NoAuthentication` and never come here.

use crate::actors::federationapi::messages::{InputServerUp, QueryServerKeys};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{check_declared_length, read_body, AuthInput, AuthRequirement};
use crate::routing::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use ruma::api::federation::authentication::ServerSignatures;
use ruma::api::federation::authentication::XMatrix;
use ruma::serde::Base64;
use ruma::OwnedServerName;
use std::collections::BTreeMap;

/// Verifies the `X-Matrix` signature of a request; the origin server on success.
pub async fn verify(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<OwnedServerName, MatrixError> {
    let mut headers = req.headers().get_all(AUTHORIZATION);
    let header = match (headers.next(), headers.next()) {
        (None, _) => {
            return Err(MatrixError::unauthorized(
                "Missing X-Matrix Authorization header",
            ))
        }
        (Some(h), None) => h,
        (Some(_), Some(_)) => {
            return Err(MatrixError::unauthorized(
                "More than one Authorization header",
            ))
        }
    };
    let text = header
        .to_str()
        .map_err(|_| MatrixError::unauthorized("Authorization header is not ASCII"))?;
    let scheme = text.split([' ', '\t']).next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case(XMatrix::AUTH_SCHEME) {
        return Err(MatrixError::unauthorized(
            "Authorization header is not of the X-Matrix scheme",
        ));
    }
    let x = XMatrix::parse(text).map_err(|e| {
        MatrixError::unauthorized(format!("Malformed X-Matrix Authorization header: {e}"))
    })?;
    let ours = state.server_name();
    if let Some(destination) = &x.destination {
        if destination.as_str() != ours {
            return Err(MatrixError::unauthorized(format!(
                "The request is for {destination}, not for this server ({ours})"
            )));
        }
    }
    if x.key.algorithm().as_str() != "ed25519" {
        return Err(MatrixError::unauthorized(format!(
            "Unsupported key algorithm of {}",
            x.key
        )));
    }
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(MatrixError::new(
            "M_NOT_JSON",
            "The body of a signed request must be JSON",
        ));
    }
    let now = crate::storage::now_ms();
    let keys = state
        .federationapi
        .send(QueryServerKeys {
            server_name: x.origin.clone(),
            key_ids: vec![x.key.clone()],
            minimum_valid_until_ts: now,
        })
        .await?;
    let key = match keys.keys.get(x.key.as_str()) {
        Some(k) if k.expired_ts.is_none() && k.valid_until_ts >= now => k,
        Some(_) => {
            return Err(MatrixError::unauthorized(format!(
                "Key {} of {} is no longer valid for requests",
                x.key, x.origin
            )))
        }
        None => {
            return Err(MatrixError::unauthorized(format!(
                "Unknown key {} of {} (or its keys could not be fetched)",
                x.key, x.origin
            )))
        }
    };
    let public = Base64::parse(&key.key)
        .map_err(|_| MatrixError::unauthorized(format!("Key {} is not base64", x.key)))?;
    let key_map = BTreeMap::from([(
        x.origin.to_string(),
        BTreeMap::from([(x.key.to_string(), public)]),
    )]);
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
    let request = http::Request::builder()
        .method(req.method().as_str())
        .uri(uri)
        .body(body)
        .map_err(|_| MatrixError::unauthorized("Unrepresentable request URI"))?;
    let destination = <&ruma::ServerName>::try_from(ours).map_err(|e| MatrixError::internal(e))?;
    x.verify_http_request(&request, destination, &key_map)
        .map_err(|e| {
            MatrixError::unauthorized(format!(
                "Invalid X-Matrix signature by {} with {}: {e}",
                x.origin, x.key
            ))
        })?;
    // The origin is up: a backoff of our queue for it ends (not waited for; cheap when
    // there is none).
    let federationapi = state.federationapi.clone();
    let origin = x.origin.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = federationapi
            .send(InputServerUp {
                server_name: origin.clone(),
            })
            .await
        {
            tracing::warn!(origin = %origin, error = %e, "could not report a server up");
        }
    });
    Ok(x.origin)
}

/// Endpoints that need a server's signature: the sender is the origin server.
impl AuthRequirement for ServerSignatures {
    type Sender = OwnedServerName;

    const SIGNS_BODY: bool = true;

    async fn authenticate(
        state: &AppState,
        input: AuthInput<'_>,
    ) -> Result<OwnedServerName, MatrixError> {
        verify(state, input.request, input.body).await
    }

    fn rate_key(sender: &OwnedServerName) -> Option<String> {
        Some(sender.to_string())
    }
}

/// A raw federation route's verified request: the origin server and the body it signed.
pub struct SignedRequest {
    pub origin: OwnedServerName,
    pub body: Bytes,
}

impl FromRequest for SignedRequest {
    type Error = MatrixError;
    type Future = LocalBoxFuture<'static, Result<Self, MatrixError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| MatrixError::internal("no AppState on the app"))?;
            let limit = state.config.server.max_request_bytes;
            check_declared_length(&req, limit)?;
            let body = read_body(&req, payload, limit).await?;
            let origin = verify(&state, &req, &body).await?;
            Ok(SignedRequest { origin, body })
        })
    }
}
