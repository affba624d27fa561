//! Server access control lists (`m.room.server_acl`, the spec's "Server Access Control
//! Lists"): which servers a room lets take part. Pure: [`ServerAcl::from_content`] reads an
//! ACL event's content, [`ServerAcl::allows`] judges a server name. The federation routes
//! fetch a room's current ACL and call it for the origin of every request that names a room
//! (`routing::federation::acl::ensure_allowed`), answering 403 `M_FORBIDDEN` when it refuses.
//!
//! The rules, as the spec and Synapse (`server_acl_evaluator_from_event`,
//! `server_matches_acl_event`) apply them:
//! 1. the port is not part of the name matched (`example.org:8448` is `example.org`);
//! 2. with `allow_ip_literals: false` an IPv4 literal or a bracketed IPv6 literal is refused;
//! 3. a server matching any `deny` glob is refused (deny wins over allow);
//! 4. a server matching any `allow` glob is allowed; every other server is refused (so a
//!    missing or empty `allow` refuses everyone).
//!
//! Globs match the whole name, case-insensitively: `*` matches any run of characters
//! (none included), `?` exactly one. Bad data is read as Synapse reads it: a non-boolean
//! `allow_ip_literals` is `true` (the default), a non-list `allow`/`deny` is empty, and
//! entries that are not strings are ignored.

use serde_json::Value;
use std::net::Ipv4Addr;

/// A room's server ACL, read from the content of its `m.room.server_acl` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAcl {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_ip_literals: bool,
}

impl ServerAcl {
    /// Reads an `m.room.server_acl` content; what cannot be read is taken as the spec's
    /// default (see the module's doc).
    pub fn from_content(content: &Value) -> ServerAcl {
        let globs = |key: &str| -> Vec<String> {
            content
                .get(key)
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_ascii_lowercase)
                        .collect()
                })
                .unwrap_or_default()
        };
        ServerAcl {
            allow: globs("allow"),
            deny: globs("deny"),
            allow_ip_literals: content
                .get("allow_ip_literals")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        }
    }

    /// Whether the ACL lets `server_name` (with or without a port) take part in the room.
    pub fn allows(&self, server_name: &str) -> bool {
        let host = strip_port(server_name).to_ascii_lowercase();
        if !self.allow_ip_literals && (host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok()) {
            return false;
        }
        if self.deny.iter().any(|g| glob_matches(g, &host)) {
            return false;
        }
        self.allow.iter().any(|g| glob_matches(g, &host))
    }
}

/// A server name without its port: `host:port` -> `host`, `[v6]:port` -> `[v6]`.
fn strip_port(server_name: &str) -> &str {
    if server_name.starts_with('[') {
        return match server_name.find(']') {
            Some(end) => &server_name[..=end],
            None => server_name,
        };
    }
    match server_name.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => server_name,
    }
}

/// Whether a glob (`*`: any run, `?`: one character) matches all of `text`. Both are
/// compared as given (callers lower-case them). Linear in practice: on a mismatch it goes
/// back only to the last `*`, which is enough for these two wildcards.
fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    // The last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || (g[gi] != '*' && g[gi] == t[ti])) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            // Let the last `*` take one more character and try again after it.
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// Whether the room's current server ACL lets `server_name` take part; `true` for a room
/// without an ACL, and for a room unknown here (the caller answers for that). For every
/// component that judges another server's part in a room (routing's endpoints through
/// `routing::federation::acl::ensure_allowed`, the federationapi's transactions).
pub async fn server_allowed(
    roomserver: &crate::actors::roomserver::RoomserverHandle,
    room_id: &str,
    server_name: &str,
) -> Result<bool, crate::actors::roomserver::RoomserverError> {
    let acl = roomserver
        .send(crate::actors::roomserver::messages::QueryCurrentState {
            room_id: room_id.to_owned(),
            types: vec![("m.room.server_acl".to_owned(), String::new())],
        })
        .await?
        .and_then(|events| events.into_iter().next());
    Ok(acl.is_none_or(|event| ServerAcl::from_content(&event.json["content"]).allows(server_name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        for (glob, text, expected) in [
            ("*", "", true),
            ("*", "anything.org", true),
            ("", "", true),
            ("", "a", false),
            ("a.org", "a.org", true),
            ("a.org", "b.org", false),
            ("a.org", "a.org.evil", false),
            ("*.a.org", "x.a.org", true),
            ("*.a.org", "a.org", false),
            ("*.a.org", "x.y.a.org", true),
            ("?.org", "a.org", true),
            ("?.org", "ab.org", false),
            ("?.org", ".org", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*?", "", false),
            ("*?", "x", true),
            ("**a", "bba", true),
            ("a?c*", "abcdef", true),
            ("*ab", "aab", true),
        ] {
            assert_eq!(glob_matches(glob, text), expected, "{glob:?} on {text:?}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(strip_port("a.org:8448"), "a.org");
        assert_eq!(strip_port("a.org"), "a.org");
        assert_eq!(strip_port("1.2.3.4:80"), "1.2.3.4");
        assert_eq!(strip_port("[::1]:8448"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn acl_rules() {
        let acl = ServerAcl::from_content(&json!({
            "allow": ["*", 3, null],
            "deny": ["evil.org", "*.evil.org"],
            "allow_ip_literals": false,
        }));
        for (server, expected) in [
            ("good.org", true),
            ("good.org:8448", true),
            ("GOOD.org", true),
            ("evil.org", false),
            ("Evil.Org", false),
            ("evil.org:443", false),
            ("sub.evil.org", false),
            ("notevil.org", true),
            ("1.2.3.4", false),
            ("1.2.3.4:8448", false),
            ("[::1]", false),
            ("[::1]:8448", false),
        ] {
            assert_eq!(acl.allows(server), expected, "{server}");
        }
        // IP literals are allowed by default; deny wins over allow.
        let acl = ServerAcl::from_content(&json!({"allow": ["*"], "deny": ["1.2.3.*"]}));
        assert!(acl.allows("5.6.7.8"));
        assert!(acl.allows("[::1]"));
        assert!(!acl.allows("1.2.3.4"));
        // No allow list: nobody.
        for content in [
            json!({}),
            json!({"allow": []}),
            json!({"allow": "*"}),
            json!({"deny": []}),
        ] {
            assert!(
                !ServerAcl::from_content(&content).allows("a.org"),
                "{content}"
            );
        }
        // A non-boolean allow_ip_literals is the default (true); a non-list deny is empty.
        let acl = ServerAcl::from_content(&json!({
            "allow": ["*"], "allow_ip_literals": "no", "deny": "1.2.3.4",
        }));
        assert!(acl.allows("1.2.3.4"));
        // Only the allowed names.
        let acl = ServerAcl::from_content(&json!({"allow": ["*.good.org", "good.org"]}));
        assert!(acl.allows("good.org") && acl.allows("x.good.org"));
        assert!(!acl.allows("bad.org"));
    }
}
