//! Local or remote: the one generic way a caller reaches a component.
//!
//! A caller holds a [`Handle`]: `Local(Addr<A>)` when the component runs in this process (the
//! mailbox is the short circuit and messages move as values) or `Remote(Addr<HttpBridge>)`
//! when it runs on another node. [`HttpBridge`] has ONE generic `Handler<M>` for every
//! [`RemoteMessage`]: it POSTs the message as JSON to
//! `/_myelin/internal/<component>/<Message>` on the hosting node, whose one generic route per
//! message ([`serve`]) hands it to the local actor and answers with the serialized `Result`.
//! Both paths return the same values, so the same tests run against both.

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_web::{web, HttpResponse};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A message that may cross nodes. `COMPONENT` and `NAME` form its stable route.
pub trait RemoteMessage: Message + Serialize + DeserializeOwned + Send + 'static {
    const COMPONENT: &'static str;
    const NAME: &'static str;
    /// How long the bridge waits for the reply (long polls wait longer).
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
}

/// Declares messages as [`RemoteMessage`]s of one component.
#[macro_export]
macro_rules! remote_messages {
    ($component:literal: $($msg:ident),+ $(,)?) => {
        $(impl $crate::actors::bridge::RemoteMessage for $msg {
            const COMPONENT: &'static str = $component;
            const NAME: &'static str = stringify!($msg);
        })+
    };
}

/// Why a message did not reach its component. Every component error converts from it.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum BridgeError {
    #[error("component unreachable: {0}")]
    Unreachable(String),
    #[error("component mailbox closed")]
    Mailbox,
    #[error("bad reply from component: {0}")]
    Protocol(String),
}

/// The largest message or reply the bridge carries.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Forwards messages to a component on another node.
pub struct HttpBridge {
    base_url: String,
    client: awc::Client,
    /// `Bearer <components.internal_secret>`, sent with every message.
    authorization: String,
}

impl HttpBridge {
    /// A bridge to the node whose internal listener is at `base_url` (`http://host:port`),
    /// authenticating with the deployment's shared `secret`.
    pub fn new(base_url: &str, secret: &str) -> HttpBridge {
        HttpBridge {
            base_url: base_url.trim_end_matches('/').to_owned(),
            // Each request sets its message's own timeout.
            client: awc::Client::builder().disable_timeout().finish(),
            authorization: format!("Bearer {secret}"),
        }
    }
}

/// Whether an internal request carries the deployment's secret (`Authorization: Bearer`),
/// compared in constant time.
pub fn authorized(req: &actix_web::dev::ServiceRequest, secret: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    // Length first (it is not secret), then every byte without an early exit.
    !secret.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Actor for HttpBridge {
    type Context = Context<Self>;
}

impl<M, T, E> Handler<M> for HttpBridge
where
    M: RemoteMessage + Message<Result = Result<T, E>>,
    T: DeserializeOwned + 'static,
    E: DeserializeOwned + From<BridgeError> + 'static,
{
    type Result = ResponseFuture<Result<T, E>>;

    fn handle(&mut self, msg: M, _: &mut Context<Self>) -> Self::Result {
        let request = self
            .client
            .post(format!(
                "{}/_myelin/internal/{}/{}",
                self.base_url,
                M::COMPONENT,
                M::NAME
            ))
            .insert_header((
                actix_web::http::header::AUTHORIZATION,
                self.authorization.as_str(),
            ))
            .timeout(M::TIMEOUT);
        Box::pin(async move {
            let mut response = request
                .send_json(&msg)
                .await
                .map_err(|e| E::from(BridgeError::Unreachable(e.to_string())))?;
            let body = response
                .body()
                .limit(MAX_BODY_BYTES)
                .await
                .map_err(|e| E::from(BridgeError::Protocol(e.to_string())))?;
            if !response.status().is_success() {
                return Err(E::from(BridgeError::Protocol(format!(
                    "HTTP {}: {}",
                    response.status(),
                    String::from_utf8_lossy(&body)
                ))));
            }
            serde_json::from_slice::<Result<T, E>>(&body)
                .map_err(|e| E::from(BridgeError::Protocol(e.to_string())))?
        })
    }
}

/// How a caller reaches component actor `A`.
pub enum Handle<A: Actor> {
    Local(Addr<A>),
    Remote(Addr<HttpBridge>),
}

impl<A: Actor> Clone for Handle<A> {
    fn clone(&self) -> Self {
        match self {
            Handle::Local(a) => Handle::Local(a.clone()),
            Handle::Remote(b) => Handle::Remote(b.clone()),
        }
    }
}

impl<A: Actor> Handle<A> {
    /// Sends a message and waits for its reply, wherever the component runs.
    pub async fn send<M, T, E>(&self, msg: M) -> Result<T, E>
    where
        M: RemoteMessage + Message<Result = Result<T, E>>,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + From<BridgeError> + Send + 'static,
    {
        let start = Instant::now();
        let result = match self {
            Handle::Local(addr) => addr.send(msg).await,
            Handle::Remote(bridge) => bridge.send(msg).await,
        }
        .map_err(|_| E::from(BridgeError::Mailbox))
        .and_then(|r| r);
        crate::metrics::observe_message(M::COMPONENT, M::NAME, result.is_ok(), start.elapsed());
        result
    }
}

/// Mounts the internal route of message `M`, served by the local actor `addr`.
pub fn serve<M, A, T, E>(cfg: &mut web::ServiceConfig, addr: Addr<A>)
where
    M: RemoteMessage + Message<Result = Result<T, E>>,
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    T: Serialize + Send + 'static,
    E: Serialize + From<BridgeError> + Send + 'static,
{
    let path = format!("/_myelin/internal/{}/{}", M::COMPONENT, M::NAME);
    cfg.route(
        &path,
        web::post().to(move |body: web::Bytes| {
            let addr = addr.clone();
            async move {
                let msg: M = match serde_json::from_slice(&body) {
                    Ok(m) => m,
                    Err(e) => {
                        return HttpResponse::BadRequest().body(format!("bad {}: {e}", M::NAME))
                    }
                };
                let reply: Result<T, E> = addr
                    .send(msg)
                    .await
                    .map_err(|_| E::from(BridgeError::Mailbox))
                    .and_then(|r| r);
                HttpResponse::Ok().json(&reply)
            }
        }),
    );
}
