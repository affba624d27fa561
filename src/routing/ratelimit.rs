//! Token-bucket rate limiting per user (or per client address for requests without a token),
//! one bucket per user and [`Class`] of endpoint, so a burst of messages does not lock a user
//! out of joining rooms. Applies to the endpoints the spec marks rate-limited and to every
//! endpoint that writes or costs ([`class_of`]); answers 429 M_LIMIT_EXCEEDED with
//! `retry_after_ms`.
//!
//! Memory is bounded without scanning: buckets live in two generations. A bucket not touched
//! for a whole generation has refilled (a generation lasts at least `burst / per_second`), so
//! dropping the older generation at each turn forgets nothing; a generation that fills up
//! (`MAX_KEYS`) turns early.

use super::error::MatrixError;
use crate::config::RateLimitConfig;
use actix_web::http::Method;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Kinds of rate-limited work, each with its own bucket per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Events: messages, state, redactions, to-device messages.
    Message,
    /// Room creation and upgrades.
    RoomCreation,
    /// Joins, invites, knocks.
    Membership,
    /// The public room directory.
    Directory,
    /// Password checks of user-interactive auth (per user, whatever the operation).
    Password,
    /// Everything else the spec marks rate-limited (registration, login, profile, ...).
    Other,
}

impl Class {
    fn prefix(self) -> &'static str {
        match self {
            Class::Message => "msg",
            Class::RoomCreation => "room",
            Class::Membership => "member",
            Class::Directory => "dir",
            Class::Password => "pw",
            Class::Other => "other",
        }
    }
}

/// (method, path after `/_matrix/client/<version>` with parameters written `{}`, class) of the
/// endpoints limited whatever ruma's metadata says.
const LIMITED: &[(&str, &str, Class)] = &[
    ("PUT", "/rooms/{}/send/{}/{}", Class::Message),
    ("POST", "/rooms/{}/send/{}", Class::Message),
    ("PUT", "/rooms/{}/state/{}", Class::Message),
    ("PUT", "/rooms/{}/state/{}/{}", Class::Message),
    ("PUT", "/rooms/{}/redact/{}/{}", Class::Message),
    ("PUT", "/sendToDevice/{}/{}", Class::Message),
    ("POST", "/createRoom", Class::RoomCreation),
    ("POST", "/rooms/{}/upgrade", Class::RoomCreation),
    ("POST", "/join/{}", Class::Membership),
    ("POST", "/rooms/{}/join", Class::Membership),
    ("POST", "/rooms/{}/invite", Class::Membership),
    ("POST", "/knock/{}", Class::Membership),
    ("GET", "/publicRooms", Class::Directory),
    ("POST", "/publicRooms", Class::Directory),
];

/// The class of a route (`pattern` as actix matched it), if it is limited beyond what ruma
/// marks.
pub fn class_of(method: &Method, pattern: &str) -> Option<Class> {
    let path = super::guest::normalize(pattern)?;
    LIMITED
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, c)| *c)
}

/// Keys one generation holds at most before it turns early.
const MAX_KEYS: usize = 50_000;

struct Generations {
    current: HashMap<String, (f64, Instant)>,
    previous: HashMap<String, (f64, Instant)>,
    started: Instant,
}

pub struct RateLimiter {
    enabled: bool,
    per_second: f64,
    burst: f64,
    /// How long a generation lasts: long enough for any bucket to refill.
    generation: Duration,
    buckets: Mutex<Generations>,
}

impl RateLimiter {
    pub fn new(c: &RateLimitConfig) -> RateLimiter {
        let burst = f64::from(c.burst.max(1));
        let refill = if c.per_second > 0.0 {
            burst / c.per_second
        } else {
            60.0
        };
        RateLimiter {
            enabled: c.enabled,
            per_second: c.per_second,
            burst,
            generation: Duration::from_secs_f64(refill.clamp(1.0, 3600.0)),
            buckets: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
                started: Instant::now(),
            }),
        }
    }

    /// Takes one request from `key`'s bucket of `class`, or says how long to wait.
    pub fn check(&self, class: Class, key: &str) -> Result<(), MatrixError> {
        if !self.enabled {
            return Ok(());
        }
        self.take(&format!("{}:{key}", class.prefix()), Instant::now())
            .map_err(|wait_ms| {
                MatrixError::new("M_LIMIT_EXCEEDED", "Too many requests")
                    .with("retry_after_ms", wait_ms)
            })
    }

    fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(g.started) >= self.generation || g.current.len() >= MAX_KEYS {
            g.previous = std::mem::take(&mut g.current);
            g.started = now;
        }
        let bucket = match g.current.get_mut(key) {
            Some(b) => b,
            None => {
                let carried = g.previous.remove(key).unwrap_or((self.burst, now));
                g.current.entry(key.to_owned()).or_insert(carried)
            }
        };
        let (tokens, at) = bucket;
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err((((1.0 - refilled) / self.per_second) * 1000.0).ceil() as u64)
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        let g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        g.current.len() + g.previous.len()
    }
}

/// The client's address: the peer's, or for a peer among `trusted_proxies` the last address of
/// `X-Forwarded-For` that is not a trusted proxy itself (proxies append what they saw).
pub fn client_address(
    peer: Option<std::net::IpAddr>,
    forwarded_for: Option<&str>,
    trusted_proxies: &[std::net::IpAddr],
) -> Option<String> {
    let peer = peer?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer.to_string());
    }
    let from_header = forwarded_for.and_then(|h| {
        h.split(',')
            .rev()
            .map(str::trim)
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .find(|a| !trusted_proxies.contains(a))
    });
    Some(from_header.unwrap_or(peer).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            enabled: true,
            per_second,
            burst,
            trusted_proxies: Vec::new(),
        })
    }

    #[test]
    fn bursts_then_refills() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert_eq!(wait, 500);
        assert!(l.take("b", t0).is_ok(), "keys are independent");
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn classes_have_their_own_buckets() {
        let l = limiter(0.001, 1);
        assert!(l.check(Class::Message, "@a:x").is_ok());
        assert!(l.check(Class::Message, "@a:x").is_err());
        assert!(l.check(Class::Membership, "@a:x").is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_state_survives_a_turn() {
        let l = limiter(1.0, 2);
        let t0 = Instant::now();
        // An empty bucket is carried into the next generation.
        assert!(l.take("a", t0).is_ok() && l.take("a", t0).is_ok());
        let t1 = t0 + Duration::from_millis(2100);
        assert!(l.take("x", t1).is_ok(), "turns the generation");
        assert!(l.take("a", t1).is_ok(), "refilled two tokens in 2.1 s");
        // Many keys: never more than two generations' worth.
        for i in 0..(MAX_KEYS * 3) {
            let _ = l.take(&format!("k{i}"), t1);
        }
        assert!(l.keys() <= 2 * MAX_KEYS, "{}", l.keys());
    }

    #[test]
    fn disabled_never_limits() {
        let l = RateLimiter::new(&RateLimitConfig {
            enabled: false,
            per_second: 0.1,
            burst: 1,
            trusted_proxies: Vec::new(),
        });
        for _ in 0..100 {
            assert!(l.check(Class::Other, "a").is_ok());
        }
    }

    #[test]
    fn routes_by_class() {
        let c = |m: Method, p: &str| class_of(&m, p);
        assert_eq!(
            c(
                Method::PUT,
                "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"
            ),
            Some(Class::Message)
        );
        assert_eq!(
            c(Method::POST, "/_matrix/client/r0/createRoom"),
            Some(Class::RoomCreation)
        );
        assert_eq!(
            c(Method::GET, "/_matrix/client/v3/publicRooms"),
            Some(Class::Directory)
        );
        assert_eq!(c(Method::GET, "/_matrix/client/v3/sync"), None);
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let peer_direct: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = [proxy];
        assert_eq!(
            client_address(Some(peer_direct), Some("1.2.3.4"), &trusted).as_deref(),
            Some("203.0.113.9"),
            "an untrusted peer cannot claim another address"
        );
        assert_eq!(
            client_address(Some(proxy), Some("1.2.3.4, 198.51.100.7"), &trusted).as_deref(),
            Some("198.51.100.7")
        );
        assert_eq!(
            client_address(Some(proxy), Some("1.2.3.4, 10.0.0.1"), &trusted).as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(
            client_address(Some(proxy), None, &trusted).as_deref(),
            Some("10.0.0.1")
        );
    }
}
