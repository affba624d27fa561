//! The bridge between actix-web and ruma's endpoint types, written once:
//!
//! - [`Ruma<T>`] extracts a ruma request: reads the body (413 past the limit), authenticates
//!   as `T`'s metadata says, rate-limits `T`s marked so, converts actix's `http` 0.2 request
//!   into ruma's `http` 1.x one and parses it (M_NOT_JSON / M_BAD_JSON / M_INVALID_PARAM).
//! - [`RumaResponse<R>`] renders a ruma response back into an actix response.
//! - [`Router`] registers handlers under every path of a ruma endpoint's metadata, one
//!   resource per path with all its methods, so a known path with a wrong method is 405.

use super::error::MatrixError;
use super::AppState;
use crate::actors::userapi::messages::{InputDeviceActivity, QueryAccessToken, TokenLookup};
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, Responder};
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{
    IncomingRequest, IncomingRequestExt, Metadata, OutgoingResponse, OutgoingResponseExt,
};
use ruma::{OwnedDeviceId, OwnedUserId};
use std::collections::BTreeMap;

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user_id: OwnedUserId,
    pub localpart: String,
    pub device_id: OwnedDeviceId,
    pub is_guest: bool,
}

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What authentication may look at.
pub struct AuthInput<'a> {
    /// The access token (`Authorization: Bearer` or `access_token`), if any.
    pub token: Option<String>,
    pub client: &'a ClientInfo,
    pub request: &'a HttpRequest,
    /// The request body, for schemes that sign it (`SIGNS_BODY`); empty for the others.
    pub body: &'a [u8],
}

/// What an endpoint's authentication scheme yields: `Authed` when a token is required,
/// `Option<Authed>` when optional, `()` when none is used.
pub trait AuthRequirement {
    type Sender;

    /// Whether the scheme signs the request body (`X-Matrix`): then the body is read before
    /// authenticating and given to `authenticate`; otherwise the sender is known before any
    /// body is read.
    const SIGNS_BODY: bool = false;

    #[allow(async_fn_in_trait)]
    async fn authenticate(
        state: &AppState,
        input: AuthInput<'_>,
    ) -> Result<Self::Sender, MatrixError>;

    /// The rate-limit key of a sender; `None`: limit by IP.
    fn rate_key(sender: &Self::Sender) -> Option<String>;

    /// Whether the sender is a guest (whose access is restricted).
    fn is_guest(_sender: &Self::Sender) -> bool {
        false
    }
}

impl AuthRequirement for AccessToken {
    type Sender = Authed;

    async fn authenticate(state: &AppState, input: AuthInput<'_>) -> Result<Authed, MatrixError> {
        let token = input
            .token
            .ok_or_else(|| MatrixError::new("M_MISSING_TOKEN", "Missing access token"))?;
        lookup(state, token, input.client).await
    }

    fn rate_key(sender: &Authed) -> Option<String> {
        Some(sender.user_id.to_string())
    }

    fn is_guest(sender: &Authed) -> bool {
        sender.is_guest
    }
}

impl AuthRequirement for AccessTokenOptional {
    type Sender = Option<Authed>;

    async fn authenticate(
        state: &AppState,
        input: AuthInput<'_>,
    ) -> Result<Option<Authed>, MatrixError> {
        match input.token {
            Some(t) => lookup(state, t, input.client).await.map(Some),
            None => Ok(None),
        }
    }

    fn rate_key(sender: &Option<Authed>) -> Option<String> {
        sender.as_ref().map(|s| s.user_id.to_string())
    }

    fn is_guest(sender: &Option<Authed>) -> bool {
        sender.as_ref().is_some_and(|s| s.is_guest)
    }
}

impl AuthRequirement for NoAuthentication {
    type Sender = ();

    async fn authenticate(_: &AppState, _: AuthInput<'_>) -> Result<(), MatrixError> {
        Ok(())
    }

    fn rate_key(_: &()) -> Option<String> {
        None
    }
}

/// Register and login accept an appservice's token; until appservices land the token is
/// not used and the request is treated as a plain client's.
impl AuthRequirement for AppserviceTokenOptional {
    type Sender = ();

    async fn authenticate(_: &AppState, _: AuthInput<'_>) -> Result<(), MatrixError> {
        Ok(())
    }

    fn rate_key(_: &()) -> Option<String> {
        None
    }
}

impl AuthRequirement for NoAccessToken {
    type Sender = ();

    async fn authenticate(_: &AppState, _: AuthInput<'_>) -> Result<(), MatrixError> {
        Ok(())
    }

    fn rate_key(_: &()) -> Option<String> {
        None
    }
}

/// Resolves an access token and records the device's activity (without waiting for it).
async fn lookup(
    state: &AppState,
    token: String,
    client: &ClientInfo,
) -> Result<Authed, MatrixError> {
    match state
        .userapi
        .send(QueryAccessToken {
            access_token: token,
        })
        .await?
    {
        TokenLookup::Valid(owner) => {
            let user_id = OwnedUserId::try_from(owner.user_id.as_str())
                .map_err(|e| MatrixError::internal(e))?;
            let activity = InputDeviceActivity {
                localpart: owner.localpart.clone(),
                device_id: owner.device_id.clone(),
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
            };
            let userapi = state.userapi.clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = userapi.send(activity).await {
                    // The cause was logged where it happened (or just now, for an
                    // unreachable userapi): only what was skipped is said here.
                    let e = MatrixError::from(e);
                    tracing::warn!(errcode = e.errcode, error = %e.error, "recording device activity failed");
                }
            });
            Ok(Authed {
                user_id,
                localpart: owner.localpart,
                device_id: owner.device_id.into(),
                is_guest: owner.is_guest,
            })
        }
        TokenLookup::Expired => Err(MatrixError::new(
            "M_UNKNOWN_TOKEN",
            "Access token has expired",
        )
        .with("soft_logout", true)),
        TokenLookup::Unknown => Err(MatrixError::new(
            "M_UNKNOWN_TOKEN",
            "Unrecognised access token",
        )
        .with("soft_logout", false)),
    }
}

/// Whether a request without an access-token requirement carries a valid access token
/// anyway (an endpoint that serves everyone but does more for users); an invalid token is
/// the usual error.
pub async fn signed_in(
    state: &AppState,
    req: &HttpRequest,
    client: &ClientInfo,
) -> Result<bool, MatrixError> {
    let Some(token) = access_token(req) else {
        return Ok(false);
    };
    let input = AuthInput {
        token: Some(token),
        client,
        request: req,
        body: &[],
    };
    <AccessToken as AuthRequirement>::authenticate(state, input).await?;
    Ok(true)
}

/// The access token of a request: `Authorization: Bearer`, else the `access_token` query
/// parameter (deprecated, still used by some clients).
pub fn access_token(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
    }
    req.query_string().split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "access_token").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

pub fn client_info(req: &HttpRequest) -> ClientInfo {
    let trusted: &[std::net::IpAddr] = req
        .app_data::<web::Data<AppState>>()
        .map_or(&[], |s| s.config.rate_limit.trusted_proxies.as_slice());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    ClientInfo {
        ip: super::ratelimit::client_address(req.peer_addr().map(|a| a.ip()), forwarded, trusted),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// The authenticated sender of a route that has no ruma type (the legacy `/initialSync`,
/// `/events` and `/events/{eventId}`): the same token lookup, errors (401 `M_MISSING_TOKEN`,
/// `M_UNKNOWN_TOKEN`) and guest allowlist as [`Ruma<T>`] for an `AccessToken` endpoint.
pub struct RawAuthed(pub Authed);

impl FromRequest for RawAuthed {
    type Error = MatrixError;
    type Future = LocalBoxFuture<'static, Result<Self, MatrixError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| MatrixError::internal("no AppState on the app"))?;
            let client = client_info(&req);
            let sender = <AccessToken as AuthRequirement>::authenticate(
                &state,
                AuthInput {
                    token: access_token(&req),
                    client: &client,
                    request: &req,
                    body: &[],
                },
            )
            .await?;
            if sender.is_guest
                && !super::guest::allowed(req.method(), &req.match_pattern().unwrap_or_default())
            {
                return Err(super::guest::forbidden());
            }
            Ok(RawAuthed(sender))
        })
    }
}

/// A parsed ruma request with its authenticated sender.
pub struct Ruma<T: Metadata>
where
    T::Authentication: AuthRequirement,
{
    pub body: T,
    pub sender: <T::Authentication as AuthRequirement>::Sender,
    pub client: ClientInfo,
    /// The request body as sent, for the few endpoints that keep keys ruma's type drops
    /// (extra member-event content on joins).
    pub raw: Bytes,
}

fn too_large(limit: usize) -> MatrixError {
    MatrixError::new(
        "M_TOO_LARGE",
        format!("Request body is larger than {limit} bytes"),
    )
}

/// Refuses a request whose declared `Content-Length` is past `limit` (413 M_TOO_LARGE),
/// before anything reads its body.
pub fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), MatrixError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// Reads a request body, refusing more than `limit` bytes with 413 M_TOO_LARGE.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, MatrixError> {
    check_declared_length(req, limit)?;
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| MatrixError::bad_json(format!("Reading body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl<T> FromRequest for Ruma<T>
where
    T: IncomingRequest + 'static,
    T::Authentication: AuthRequirement,
{
    type Error = MatrixError;
    type Future = LocalBoxFuture<'static, Result<Self, MatrixError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = Some(payload.take());
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| MatrixError::internal("no AppState on the app"))?;
            // A declared size past the limit is refused before anything else; the body itself
            // is read only once the sender is known (and allowed, and within their rate).
            let limit = state.config.server.max_request_bytes;
            check_declared_length(&req, limit)?;
            let client = client_info(&req);
            // A signed request's body is part of what is authenticated: read it first.
            let signed_body = if <T::Authentication as AuthRequirement>::SIGNS_BODY {
                Some(read_body(&req, payload.take().unwrap_or(Payload::None), limit).await?)
            } else {
                None
            };
            let sender = <T::Authentication as AuthRequirement>::authenticate(
                &state,
                AuthInput {
                    token: access_token(&req),
                    client: &client,
                    request: &req,
                    body: signed_body.as_deref().unwrap_or_default(),
                },
            )
            .await?;
            let pattern = req.match_pattern().unwrap_or_default();
            if <T::Authentication as AuthRequirement>::is_guest(&sender)
                && !super::guest::allowed(req.method(), &pattern)
            {
                return Err(super::guest::forbidden());
            }
            let class = super::ratelimit::class_of(req.method(), &pattern)
                .or(T::RATE_LIMITED.then_some(super::ratelimit::Class::Other));
            if let Some(class) = class {
                let key = <T::Authentication as AuthRequirement>::rate_key(&sender)
                    .or_else(|| client.ip.clone())
                    .unwrap_or_default();
                state.limiter.check(class, &key)?;
            }
            let body = match signed_body {
                Some(body) => body,
                None => read_body(&req, payload.take().unwrap_or(Payload::None), limit).await?,
            };
            let args: Vec<String> = req
                .match_info()
                .iter()
                .map(|(_, v)| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect();
            let mut arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            // A route without its trailing state key (see `route_patterns`) means the empty one.
            let expected = T::PATH_BUILDER
                .all_paths()
                .next()
                .map_or(0, |p| p.matches('{').count());
            if arg_refs.len() + 1 == expected {
                arg_refs.push("");
            }
            // ruma's parsers can panic on some malformed bodies (a login without "type");
            // a panic must never take a worker down, so it becomes M_BAD_JSON.
            let parse = |body: &[u8]| -> Result<Result<T, FromHttpRequestError>, MatrixError> {
                let http_request = to_http1(&req, &T::METHOD, body)?;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    T::try_from_http_request(http_request, &arg_refs)
                }))
                .map_err(|_| MatrixError::bad_json("Malformed request body"))
            };
            // ruma's generated parsers read an empty body as `{}`; a few hand-written ones
            // (join_room_by_id_or_alias, knock_room) do not, and clients such as matrix-nio
            // send `POST /join/{roomIdOrAlias}` with no body: give those `{}` as well.
            let parsed = match parse(&body)? {
                Err(FromHttpRequestError::Deserialization(DeserializationError::Json(e)))
                    if body.is_empty() && e.is_eof() =>
                {
                    parse(b"{}")?
                }
                other => other,
            }
            .map_err(parse_error)?;
            Ok(Ruma {
                body: parsed,
                sender,
                client,
                raw: body,
            })
        })
    }
}

/// The one conversion from actix's request (`http` 0.2) to ruma's (`http` 1.x).
///
/// The method is the endpoint's own: the route that matched already chose the handler by
/// method, and a few old forms (`POST .../send/{type}`, HEAD for GET) reach an endpoint under
/// another one.
fn to_http1<'b>(
    req: &HttpRequest,
    method: &http::Method,
    body: &'b [u8],
) -> Result<http::Request<&'b [u8]>, MatrixError> {
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(req.uri().to_string());
    for (name, value) in req.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder
        .body(body)
        .map_err(|e| MatrixError::invalid_param(format!("Malformed request: {e}")))
}

/// Maps ruma's parse failure to the Matrix error a client should see.
fn parse_error(e: FromHttpRequestError) -> MatrixError {
    match e {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            if e.is_syntax() || e.is_eof() {
                MatrixError::new("M_NOT_JSON", "Content not JSON.")
            } else {
                MatrixError::bad_json(format!("Invalid request body: {e}"))
            }
        }
        // A required parameter left out is M_MISSING_PARAM (as Synapse answers it).
        FromHttpRequestError::Deserialization(DeserializationError::Query(e))
            if e.to_string().starts_with("missing field") =>
        {
            MatrixError::new("M_MISSING_PARAM", format!("Missing query parameter: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Query(e)) => {
            MatrixError::invalid_param(format!("Invalid query parameters: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            MatrixError::invalid_param(format!("Invalid identifier: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Utf8(_)) => {
            MatrixError::new("M_NOT_JSON", "Content not UTF-8.")
        }
        other => MatrixError::invalid_param(format!("Malformed request: {other}")),
    }
}

/// A ruma response, rendered for actix.
pub struct RumaResponse<R>(pub R);

impl<R: OutgoingResponse> Responder for RumaResponse<R> {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(res) => {
                let (parts, body) = res.into_parts();
                let status = actix_web::http::StatusCode::from_u16(parts.status.as_u16())
                    .unwrap_or(actix_web::http::StatusCode::OK);
                let mut out = HttpResponse::build(status);
                for (name, value) in &parts.headers {
                    out.append_header((name.as_str(), value.as_bytes()));
                }
                out.body(body.freeze())
            }
            Err(e) => {
                let e = MatrixError::internal(format_args!("serializing a response failed: {e}"));
                actix_web::ResponseError::error_response(&e)
            }
        }
    }
}

/// The shorthand of every endpoint's return type.
pub type RumaResult<R> = Result<RumaResponse<R>, MatrixError>;

/// One path and the routes (one per method) it serves.
type PathRoutes = (String, Vec<(Method, actix_web::Route)>);

/// Collects routes by path, then mounts one resource per path.
/// The route pattern a request matched, for the metrics (read back with `app_data` after the
/// response; asking actix for the pattern again would match every route once more).
pub struct RouteLabel(pub String);

#[derive(Default)]
pub struct Router {
    /// Keyed so that the hottest endpoints come first (actix tries resources in order, one
    /// regex each), then literal segments before `{parameters}` (which so win the match).
    routes: BTreeMap<(bool, Vec<(bool, String)>), PathRoutes>,
}

/// The actix patterns of a ruma path. A trailing `{state_key}` may be empty, contain `/`, or
/// be left out together with its slash (`/state/m.room.name`), as clients send it.
fn route_patterns(path: &str) -> Vec<String> {
    match path.strip_suffix("/{state_key}") {
        Some(prefix) => vec![format!("{prefix}/{{state_key:.*}}"), prefix.to_owned()],
        None => vec![path.to_owned()],
    }
}

fn route_key(path: &str) -> (bool, Vec<(bool, String)>) {
    // Parameters written `{}`, whatever ruma names them.
    const HOT: &[&str] = &[
        "/_matrix/client/v3/sync",
        "/_matrix/client/v3/rooms/{}/send/",
        "/_matrix/client/v3/rooms/{}/typing/",
        "/_matrix/client/v3/rooms/{}/receipt/",
        "/_matrix/client/v3/rooms/{}/messages",
        "/_matrix/client/v3/sendToDevice/",
    ];
    let shape: Vec<&str> = path
        .split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect();
    let shape = shape.join("/");
    let path_shape = shape.as_str();
    // `false` sorts first.
    let cold = !HOT.iter().any(|h| path_shape.starts_with(h));
    let segments = path
        .split('/')
        .map(|s| (s.starts_with('{'), s.to_owned()))
        .collect();
    (cold, segments)
}

impl Router {
    /// Routes every path of ruma endpoint `T` (all its versions) to `handler`.
    pub fn add<T, F, Args>(&mut self, handler: F) -> &mut Self
    where
        T: Metadata,
        F: actix_web::Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let method = Method::from_bytes(T::METHOD.as_str().as_bytes()).unwrap_or(Method::GET);
        for path in T::PATH_BUILDER.all_paths() {
            for path in route_patterns(path) {
                self.add_raw(
                    &path,
                    method.clone(),
                    web::method(method.clone()).to(handler.clone()),
                );
                // HEAD is GET without the body (actix leaves the body out).
                if method == Method::GET {
                    self.add_raw(&path, Method::HEAD, web::head().to(handler.clone()));
                }
            }
        }
        self
    }

    /// Routes one path and method that has no ruma type (e.g. `.well-known`).
    pub fn add_raw(&mut self, path: &str, method: Method, route: actix_web::Route) -> &mut Self {
        self.routes
            .entry(route_key(path))
            .or_insert_with(|| (path.to_owned(), Vec::new()))
            .1
            .push((method, route));
        self
    }

    /// Mounts every collected path; a path's other methods answer 405 M_UNRECOGNIZED.
    pub fn mount(self, cfg: &mut web::ServiceConfig) {
        for (_, (path, routes)) in self.routes {
            let mut resource = web::resource(path.clone()).app_data(RouteLabel(path));
            for (_, route) in routes {
                resource = resource.route(route);
            }
            cfg.service(resource.default_service(web::to(|| async {
                Err::<HttpResponse, _>(MatrixError::method_not_allowed())
            })));
        }
    }
}

#[cfg(test)]
mod route_order_tests {
    use super::route_key;

    #[test]
    fn hot_routes_sort_first() {
        let send = route_key("/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}");
        let versions = route_key("/_matrix/client/versions");
        let sync = route_key("/_matrix/client/v3/sync");
        assert!(send < versions && sync < versions);
        assert!(!send.0 && !sync.0 && versions.0);
    }
}
