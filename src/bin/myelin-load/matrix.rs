//! The client-server API calls the scenarios make, and nothing server-specific: register (with
//! the dummy user-interactive auth stage), login, createRoom, join, send and sync.

use crate::http::{status_error, Http, Req, ReqError};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::time::Duration;

/// The client API prefix.
const V3: &str = "/_matrix/client/v3";

/// Characters left as they are in a path segment or query value: RFC 3986's unreserved set.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` for use as one path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A logged-in device of a user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The full user ID, e.g. `@load1a2b3c-0:localhost:8008`.
    pub user_id: String,
    /// The access token of this device.
    pub token: String,
}

impl Session {
    /// The server name: the part of the user ID after the first colon.
    pub fn server_name(&self) -> Option<&str> {
        self.user_id.split_once(':').map(|(_, s)| s)
    }
}

/// A field of a successful response that must be a string.
fn string_field(json: &Value, field: &str) -> Result<String, ReqError> {
    json.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ReqError {
            kind: "bad_json".into(),
            detail: format!("response has no string {field:?}"),
        })
}

/// The session of a register or login response.
fn session(json: &Value) -> Result<Session, ReqError> {
    Ok(Session {
        user_id: string_field(json, "user_id")?,
        token: string_field(json, "access_token")?,
    })
}

/// `POST /register` with the `m.login.dummy` stage. A server that first answers 401 with a
/// UIA session (Synapse) gets exactly one retry that names the session.
pub async fn register(http: &Http, localpart: &str, password: &str) -> Result<Session, ReqError> {
    let body = |auth: Value| {
        json!({
            "username": localpart,
            "password": password,
            "auth": auth,
            "inhibit_login": false,
            "initial_device_display_name": "myelin-load",
        })
    };
    let first = http
        .raw(Req::post(
            format!("{V3}/register"),
            body(json!({"type": "m.login.dummy"})),
        ))
        .await?;
    let reply = match (
        first.status,
        first.json.get("session").and_then(Value::as_str),
    ) {
        (200..=299, _) => first,
        (401, Some(uia_session)) => {
            let auth = json!({"type": "m.login.dummy", "session": uia_session});
            http.call(Req::post(format!("{V3}/register"), body(auth)))
                .await?
        }
        _ => return Err(status_error(first)),
    };
    session(&reply.json)
}

/// `POST /login` with a password: a new device of an existing user.
pub async fn login(http: &Http, user: &str, password: &str) -> Result<Session, ReqError> {
    let reply = http
        .call(Req::post(
            format!("{V3}/login"),
            json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
                "initial_device_display_name": "myelin-load",
            }),
        ))
        .await?;
    session(&reply.json)
}

/// `POST /createRoom`; returns the room ID.
pub async fn create_room(http: &Http, token: &str, body: Value) -> Result<String, ReqError> {
    let reply = http
        .call(Req::post(format!("{V3}/createRoom"), body).token(token))
        .await?;
    string_field(&reply.json, "room_id")
}

/// `POST /join/{roomId}`.
pub async fn join(http: &Http, token: &str, room_id: &str) -> Result<(), ReqError> {
    http.call(Req::post(format!("{V3}/join/{}", encode(room_id)), json!({})).token(token))
        .await?;
    Ok(())
}

/// `POST /join/{roomId}?server_name={via}`: a room of another server, joined through `via`.
pub async fn join_via(http: &Http, token: &str, room_id: &str, via: &str) -> Result<(), ReqError> {
    let path = format!("{V3}/join/{}?server_name={}", encode(room_id), encode(via));
    http.call(Req::post(path, json!({})).token(token)).await?;
    Ok(())
}

/// `PUT /rooms/{roomId}/send/m.room.message/{txnId}` of an `m.text` message; returns the
/// event ID.
pub async fn send_text(
    http: &Http,
    token: &str,
    room_id: &str,
    txn_id: &str,
    body: &str,
) -> Result<String, ReqError> {
    let path = format!(
        "{V3}/rooms/{}/send/m.room.message/{}",
        encode(room_id),
        encode(txn_id)
    );
    let reply = http
        .call(Req::put(path, json!({"msgtype": "m.text", "body": body})).token(token))
        .await?;
    string_field(&reply.json, "event_id")
}

/// The filter of the sync scenarios' receivers: only the last timeline event of each room.
pub const SMALL_FILTER: &str = r#"{"room":{"timeline":{"limit":1}}}"#;

/// The path and query of a `GET /sync`.
pub fn sync_path(since: Option<&str>, timeout_ms: u64, filter: Option<&str>) -> String {
    let mut path = format!("{V3}/sync?timeout={timeout_ms}");
    if let Some(since) = since {
        path.push_str("&since=");
        path.push_str(&encode(since));
    }
    if let Some(filter) = filter {
        path.push_str("&filter=");
        path.push_str(&encode(filter));
    }
    path
}

/// A successful sync response.
#[derive(Debug)]
pub struct SyncReply {
    /// The token of the next incremental sync.
    pub next_batch: String,
    /// The body's size in bytes.
    pub bytes: usize,
    /// The whole body.
    pub json: Value,
}

/// `GET /sync`. `request_timeout` overrides the client's per-request timeout, which a long
/// poll (`timeout_ms` > 0) must exceed.
pub async fn sync(
    http: &Http,
    token: &str,
    since: Option<&str>,
    timeout_ms: u64,
    filter: Option<&str>,
    request_timeout: Option<Duration>,
) -> Result<SyncReply, ReqError> {
    let mut req = Req::get(sync_path(since, timeout_ms, filter)).token(token);
    if let Some(t) = request_timeout {
        req = req.timeout(t);
    }
    let reply = http.call(req).await?;
    Ok(SyncReply {
        next_batch: string_field(&reply.json, "next_batch")?,
        bytes: reply.bytes,
        json: reply.json,
    })
}

/// The `content.body` of every timeline event of every joined room in a sync response.
pub fn timeline_bodies(sync: &Value) -> Vec<&str> {
    let Some(rooms) = sync.pointer("/rooms/join").and_then(Value::as_object) else {
        return Vec::new();
    };
    rooms
        .values()
        .filter_map(|room| room.pointer("/timeline/events").and_then(Value::as_array))
        .flatten()
        .filter_map(|event| event.pointer("/content/body").and_then(Value::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_paths_are_encoded() {
        assert_eq!(
            sync_path(None, 0, None),
            "/_matrix/client/v3/sync?timeout=0"
        );
        assert_eq!(
            sync_path(Some("s12_3"), 30000, Some(SMALL_FILTER)),
            "/_matrix/client/v3/sync?timeout=30000&since=s12_3&filter=\
             %7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D"
        );
        assert_eq!(encode("!abc:localhost:8008"), "%21abc%3Alocalhost%3A8008");
    }

    #[test]
    fn bodies_of_all_joined_rooms() {
        let sync = json!({
            "next_batch": "s1",
            "rooms": {"join": {
                "!a:x": {"timeline": {"events": [
                    {"type": "m.room.message", "content": {"body": "one"}},
                    {"type": "m.room.member", "content": {"membership": "join"}},
                ]}},
                "!b:x": {"timeline": {"events": [{"content": {"body": "two"}}]}},
                "!c:x": {},
            }},
        });
        let mut bodies = timeline_bodies(&sync);
        bodies.sort();
        assert_eq!(bodies, vec!["one", "two"]);
        assert!(timeline_bodies(&json!({"next_batch": "s"})).is_empty());
        assert!(timeline_bodies(&json!({"rooms": {"join": []}})).is_empty());
    }

    #[test]
    fn server_name_from_user_id() {
        let s = Session {
            user_id: "@a:localhost:8008".into(),
            token: "t".into(),
        };
        assert_eq!(s.server_name(), Some("localhost:8008"));
    }
}
