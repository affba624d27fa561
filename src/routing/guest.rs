//! Guest access: the endpoints the spec opens to guest accounts; every other authenticated
//! endpoint answers a guest with 403 M_GUEST_ACCESS_FORBIDDEN.

use super::error::MatrixError;
use actix_web::http::Method;

/// (method, path after the version segment, with every `{parameter}` written `{}`), from
/// the spec's "Guest access" module.
const ALLOWED: &[(&str, &str)] = &[
    ("GET", "/rooms/{}/state"),
    ("GET", "/rooms/{}/context/{}"),
    ("GET", "/rooms/{}/event/{}"),
    ("GET", "/rooms/{}/state/{}/{}"),
    ("GET", "/rooms/{}/messages"),
    ("GET", "/rooms/{}/members"),
    ("GET", "/rooms/{}/initialSync"),
    ("GET", "/sync"),
    ("PUT", "/rooms/{}/typing/{}"),
    ("POST", "/rooms/{}/receipt/{}/{}"),
    ("POST", "/rooms/{}/read_markers"),
    ("GET", "/presence/{}/status"),
    ("PUT", "/presence/{}/status"),
    ("GET", "/events"),
    ("GET", "/media/download/{}/{}"),
    ("GET", "/media/download/{}/{}/{}"),
    ("GET", "/media/thumbnail/{}/{}"),
    ("POST", "/rooms/{}/join"),
    ("POST", "/rooms/{}/leave"),
    ("PUT", "/rooms/{}/send/{}/{}"),
    ("PUT", "/rooms/{}/state/{}/{}"),
    ("PUT", "/sendToDevice/{}/{}"),
    ("PUT", "/profile/{}/displayname"),
    ("DELETE", "/profile/{}/displayname"),
    ("GET", "/devices"),
    ("GET", "/devices/{}"),
    ("PUT", "/devices/{}"),
    ("GET", "/account/whoami"),
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    // Not in the spec's list; Synapse lets guests have TURN credentials unless
    // `turn_allow_guests` is off (`voip.turn_allow_guests`, checked by the endpoint).
    ("GET", "/voip/turnServer"),
];

/// The route pattern with its `/_matrix/client/<version>` prefix removed and parameter
/// names erased.
pub(super) fn normalize(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix("/_matrix/client/")?;
    let (_version, path) = rest.split_once('/')?;
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    let mut in_param = false;
    for ch in path.chars() {
        match ch {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    Some(out)
}

/// Whether a guest may call the route `pattern` with `method`.
pub fn allowed(method: &Method, pattern: &str) -> bool {
    normalize(pattern).is_some_and(|p| {
        ALLOWED
            .iter()
            .any(|(m, path)| *m == method.as_str() && *path == p)
    })
}

/// The error a guest gets elsewhere.
pub fn forbidden() -> MatrixError {
    MatrixError::new(
        "M_GUEST_ACCESS_FORBIDDEN",
        "Guest access is not allowed here",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_ruma_patterns() {
        let cases = [
            (Method::GET, "/_matrix/client/v3/account/whoami", true),
            (Method::GET, "/_matrix/client/r0/devices/{device_id}", true),
            (
                Method::PUT,
                "/_matrix/client/v3/profile/{user_id}/displayname",
                true,
            ),
            (
                Method::PUT,
                "/_matrix/client/v3/profile/{user_id}/avatar_url",
                false,
            ),
            (Method::POST, "/_matrix/client/v3/account/password", false),
            (
                Method::DELETE,
                "/_matrix/client/v3/devices/{device_id}",
                false,
            ),
            (
                Method::PUT,
                "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}",
                true,
            ),
            (Method::GET, "/.well-known/matrix/client", false),
        ];
        for (m, p, want) in cases {
            assert_eq!(allowed(&m, p), want, "{m} {p}");
        }
    }
}
