//! The HTTP layer: one awc client for the whole run, every request bounded by a timeout, and
//! every failure sorted into an error kind for the report (`M_*` errcode, `http_<status>`,
//! `timeout`, `connect`, `fd_limit`, …).

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::Method;
use serde_json::Value;
use std::cell::Cell;
use std::io;
use std::time::Duration;

/// The largest response body read (an initial sync of many rooms is big).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

/// A failed request.
#[derive(Debug, Clone)]
pub struct ReqError {
    /// The kind counted in the report.
    pub kind: String,
    /// A human-readable detail, for the first error of a kind.
    pub detail: String,
}

impl ReqError {
    fn transport(kind: &str, detail: impl ToString) -> ReqError {
        ReqError {
            kind: kind.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body's size in bytes.
    pub bytes: usize,
    /// The body as JSON; `Null` when it is empty or not JSON.
    pub json: Value,
}

/// One request to send.
pub struct Req<'a> {
    method: Method,
    path: String,
    token: Option<&'a str>,
    body: Option<Value>,
    timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    /// A GET of `path` (starting with `/`, query string included).
    pub fn get(path: impl Into<String>) -> Req<'a> {
        Req::new(Method::GET, path)
    }

    /// A POST of `body` to `path`.
    pub fn post(path: impl Into<String>, body: Value) -> Req<'a> {
        Req::new(Method::POST, path).json(body)
    }

    /// A PUT of `body` to `path`.
    pub fn put(path: impl Into<String>, body: Value) -> Req<'a> {
        Req::new(Method::PUT, path).json(body)
    }

    fn new(method: Method, path: impl Into<String>) -> Req<'a> {
        Req {
            method,
            path: path.into(),
            token: None,
            body: None,
            timeout: None,
        }
    }

    fn json(mut self, body: Value) -> Req<'a> {
        self.body = Some(body);
        self
    }

    /// Authenticates the request with an access token.
    pub fn token(mut self, token: &'a str) -> Req<'a> {
        self.token = Some(token);
        self
    }

    /// Overrides the client's per-request timeout (long polls need more).
    pub fn timeout(mut self, timeout: Duration) -> Req<'a> {
        self.timeout = Some(timeout);
        self
    }
}

/// The HTTP client of a run. Not `Send`: it lives on the run's single-threaded runtime.
pub struct Http {
    client: awc::Client,
    base: String,
    timeout: Duration,
    /// Whether the "too many open files" hint was printed already.
    fd_hint_shown: Cell<bool>,
}

impl Http {
    /// A client for the homeserver at `base` (`http://host:port`), each request limited to
    /// `timeout` unless it says otherwise.
    pub fn new(base: &str, timeout: Duration) -> Http {
        // awc allows 100 connections per scheme by default, far too few for idle long polls.
        // The server (actix-web) closes idle connections after 5 s; dropping them from the
        // pool after 4 s avoids reusing one the server is closing.
        let connector = awc::Connector::new()
            .limit(0)
            .timeout(Duration::from_secs(10))
            .conn_keep_alive(Duration::from_secs(4));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .finish();
        Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
            fd_hint_shown: Cell::new(false),
        }
    }

    /// Sends `req` and returns the reply whatever its status; only failing to get one is an
    /// error.
    pub async fn raw(&self, req: Req<'_>) -> Result<Reply, ReqError> {
        let timeout = req.timeout.unwrap_or(self.timeout);
        let url = format!("{}{}", self.base, req.path);
        let mut builder = self
            .client
            .request(req.method, url.as_str())
            .timeout(timeout);
        if let Some(token) = req.token {
            builder = builder.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let exchange = async move {
            let mut response = match &req.body {
                Some(body) => builder.send_json(body).await,
                None => builder.send().await,
            }
            .map_err(|e| self.send_error(e))?;
            let status = response.status().as_u16();
            let bytes = response
                .body()
                .limit(BODY_LIMIT)
                .await
                .map_err(payload_error)?;
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok(Reply {
                status,
                bytes: bytes.len(),
                json,
            })
        };
        // awc's own timeout covers the exchange; this one is a backstop for a body that
        // trickles in.
        match tokio::time::timeout(timeout + Duration::from_secs(1), exchange).await {
            Ok(result) => result,
            Err(_) => Err(ReqError::transport(
                "timeout",
                "no complete response in time",
            )),
        }
    }

    /// Sends `req`; a status outside 2xx is an error of the response's errcode, or
    /// `http_<status>` when it has none.
    pub async fn call(&self, req: Req<'_>) -> Result<Reply, ReqError> {
        let reply = self.raw(req).await?;
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(status_error(reply))
        }
    }

    fn send_error(&self, e: SendRequestError) -> ReqError {
        match e {
            SendRequestError::Timeout => ReqError::transport("timeout", e),
            SendRequestError::Connect(ConnectError::Io(io)) if is_fd_exhaustion(&io) => {
                self.fd_hint(&io)
            }
            SendRequestError::Send(io) if is_fd_exhaustion(&io) => self.fd_hint(&io),
            SendRequestError::Connect(ConnectError::Timeout) => {
                ReqError::transport("connect", "connect timed out")
            }
            SendRequestError::Connect(c) => ReqError::transport("connect", c),
            SendRequestError::Send(io) => ReqError::transport("send", io),
            SendRequestError::Response(p) => ReqError::transport("bad_response", p),
            other => ReqError::transport("http_client", other),
        }
    }

    fn fd_hint(&self, io: &io::Error) -> ReqError {
        if !self.fd_hint_shown.replace(true) {
            eprintln!(
                "myelin-load: out of file descriptors ({io}); raise the open-file limit, \
                 e.g. `ulimit -n 65536`, or lower --idle-clients / --concurrency"
            );
        }
        ReqError::transport("fd_limit", io)
    }
}

/// The error for a non-2xx reply: its errcode, or `http_<status>`.
pub fn status_error(reply: Reply) -> ReqError {
    let errcode = reply
        .json
        .get("errcode")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .map(str::to_owned);
    let detail = match reply.json.get("error").and_then(Value::as_str) {
        Some(msg) => format!("HTTP {}: {msg}", reply.status),
        None => format!("HTTP {}", reply.status),
    };
    ReqError {
        kind: errcode.unwrap_or_else(|| format!("http_{}", reply.status)),
        detail,
    }
}

fn payload_error(e: PayloadError) -> ReqError {
    match e {
        PayloadError::Overflow => ReqError::transport("too_large", e),
        PayloadError::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
            ReqError::transport("timeout", io)
        }
        other => ReqError::transport("body", other),
    }
}

/// Whether `e` is EMFILE or ENFILE: this process, or the system, is out of file descriptors.
fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23) | Some(24))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(status: u16, json: Value) -> Reply {
        Reply {
            status,
            bytes: 0,
            json,
        }
    }

    #[test]
    fn status_errors_are_named_by_errcode_or_status() {
        let e = status_error(reply(
            429,
            json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 10}),
        ));
        assert_eq!(e.kind, "M_LIMIT_EXCEEDED");
        assert_eq!(e.detail, "HTTP 429: slow down");
        assert_eq!(
            status_error(reply(404, json!({"errcode": "M_UNRECOGNIZED"}))).kind,
            "M_UNRECOGNIZED"
        );
        assert_eq!(status_error(reply(502, Value::Null)).kind, "http_502");
        assert_eq!(
            status_error(reply(500, json!({"errcode": ""}))).kind,
            "http_500"
        );
    }

    #[test]
    fn fd_exhaustion() {
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(24)));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(111)));
    }
}
