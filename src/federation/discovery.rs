//! Server discovery: from a server name to where to connect, which `Host` header to send and
//! which name the TLS certificate must be valid for, as the spec's "Resolving server names"
//! says:
//!
//! 1. an IP literal: that address, its port or 8448; `Host` is the server name;
//! 2. a host name with an explicit port: that name (A/AAAA) and port; `Host` is the server name;
//! 3. `https://<hostname>/.well-known/matrix/server` (cached, see [`cache_period`]); a valid
//!    `m.server` delegates to `<delegated_hostname>[:<delegated_port>]`, then
//!    1. an IP literal: that address, its port or 8448; `Host` is the delegated name,
//!    2. a host name with a port: that name and port; `Host` is the delegated name,
//!    3. otherwise SRV `_matrix-fed._tcp.<delegated_hostname>`, then (deprecated)
//!       `_matrix._tcp.<delegated_hostname>`: the target and port; `Host` and the certificate
//!       are the delegated hostname,
//!    4. otherwise the delegated hostname at port 8448;
//! 4. without a delegation: the same SRV lookups for `<hostname>`, then `<hostname>:8448`.
//!
//! A [`Destination`] carries the result as a URL base (`https://<certificate name>:<port>`,
//! the port always explicit), the `Host` header, and for SRV the target the connection goes
//! to instead of the name in the URL (given to the resolver through [`crate::net::Routes`]).
//! The certificate name is the URL's host, so rustls sends it as SNI and checks the
//! certificate against it; an IP literal gets no SNI, as the spec asks.

use ruma::ServerName;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The federation port when neither the name, a delegation nor SRV gives one.
pub const DEFAULT_PORT: u16 = 8448;
/// How long a `.well-known` answer is kept without cache headers (the spec's advice).
pub const WELL_KNOWN_DEFAULT_CACHE: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest a `.well-known` answer is kept, whatever its headers say (the spec's advice).
pub const WELL_KNOWN_MAX_CACHE: Duration = Duration::from_secs(48 * 60 * 60);
/// The shortest a `.well-known` answer is kept, whatever its headers say (as Synapse).
pub const WELL_KNOWN_MIN_CACHE: Duration = Duration::from_secs(5 * 60);
/// How long an invalid `.well-known` (non-200, bad JSON, no `m.server`) is remembered.
pub const WELL_KNOWN_INVALID_CACHE: Duration = Duration::from_secs(60 * 60);
/// How long a failed `.well-known` request (no answer at all) is remembered the first time;
/// doubled for each failure in a row, up to [`WELL_KNOWN_INVALID_CACHE`].
pub const WELL_KNOWN_FAILURE_CACHE: Duration = Duration::from_secs(2 * 60);
/// The largest `.well-known` body read (as Synapse).
pub const WELL_KNOWN_MAX_BYTES: usize = 50 * 1024;

/// Where and how to reach a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https://<certificate name>:<port>` (or a test override's base URL).
    pub base: String,
    /// The `Host` header to send.
    pub host_header: String,
    /// For SRV: connect to this host instead of the URL's (at the URL's port).
    pub connect_to: Option<String>,
}

impl Destination {
    fn direct(host: &str, port: u16, host_header: &str) -> Destination {
        Destination {
            base: format!("https://{host}:{port}"),
            host_header: host_header.to_owned(),
            connect_to: None,
        }
    }

    /// The URL's host and port (the certificate name and the port connected to).
    pub fn host_and_port(&self) -> (String, u16) {
        let authority = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, a)| a);
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => (
                &authority[..i],
                authority[i + 1..].parse().unwrap_or(DEFAULT_PORT),
            ),
            _ => (
                authority,
                if self.base.starts_with("http://") {
                    80
                } else {
                    443
                },
            ),
        };
        (host.to_owned(), port)
    }
}

/// A `.well-known/matrix/server` answer as the client got it.
#[derive(Debug, Clone)]
pub struct WellKnownAnswer {
    pub status: u16,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub body: Vec<u8>,
}

/// What discovery asks of the network; the federation client implements it, tests fake it.
#[allow(async_fn_in_trait)]
pub trait Lookups {
    /// `GET https://<host>/.well-known/matrix/server` (redirects followed); `Err` when no
    /// answer came at all.
    async fn well_known(&self, host: &str) -> Result<WellKnownAnswer, String>;
    /// The best SRV record of `name` (lowest priority, then highest weight): target and
    /// port. `None` when there is none (or the lookup failed).
    async fn srv(&self, name: &str) -> Option<(String, u16)>;
}

#[derive(Debug, Clone)]
struct WellKnownEntry {
    /// The delegated server name, if the answer was valid.
    delegated: Option<String>,
    expires: Instant,
    /// Failed requests in a row (for the back-off).
    failures: u32,
}

/// Server discovery with its `.well-known` cache; one per federation client, shared by
/// every thread.
#[derive(Debug, Default)]
pub struct Discovery {
    well_known: Mutex<HashMap<String, WellKnownEntry>>,
}

impl Discovery {
    /// Resolves `name` as the spec says (see the module docs).
    pub async fn resolve(&self, name: &ServerName, lookups: &impl Lookups) -> Destination {
        let host = name.host();
        if name.is_ip_literal() {
            return Destination::direct(host, name.port().unwrap_or(DEFAULT_PORT), name.as_str());
        }
        if let Some(port) = name.port() {
            return Destination::direct(host, port, name.as_str());
        }
        match self.delegation(host, lookups).await {
            Some(delegated) => {
                // Validated when cached.
                let Ok(d) = <&ServerName>::try_from(delegated.as_str()) else {
                    return srv_or_default(host, lookups).await;
                };
                match d.port() {
                    Some(port) => Destination::direct(d.host(), port, d.as_str()),
                    None if d.is_ip_literal() => {
                        Destination::direct(d.host(), DEFAULT_PORT, d.as_str())
                    }
                    None => srv_or_default(d.host(), lookups).await,
                }
            }
            None => srv_or_default(host, lookups).await,
        }
    }

    /// The delegated server name of `host` from its `.well-known`, from the cache when fresh.
    async fn delegation(&self, host: &str, lookups: &impl Lookups) -> Option<String> {
        let key = host.to_ascii_lowercase();
        let previous = self.well_known.lock().ok()?.get(&key).cloned();
        if let Some(entry) = &previous {
            if entry.expires > Instant::now() {
                return entry.delegated.clone();
            }
        }
        let entry = match lookups.well_known(host).await {
            Ok(answer) if answer.status == 200 => match parse_well_known(&answer.body) {
                Some(delegated) => WellKnownEntry {
                    delegated: Some(delegated),
                    expires: Instant::now()
                        + cache_period(
                            answer.cache_control.as_deref(),
                            answer.expires.as_deref(),
                            SystemTime::now(),
                        ),
                    failures: 0,
                },
                None => invalid(),
            },
            Ok(_) => invalid(),
            Err(error) => {
                let failures = previous.as_ref().map_or(0, |p| p.failures) + 1;
                tracing::info!(host, error, "no answer from .well-known/matrix/server");
                WellKnownEntry {
                    // A delegation seen before survives an outage.
                    delegated: previous.and_then(|p| p.delegated),
                    expires: Instant::now() + failure_period(failures),
                    failures,
                }
            }
        };
        let delegated = entry.delegated.clone();
        if let Ok(mut cache) = self.well_known.lock() {
            if cache.len() > 100_000 {
                let now = Instant::now();
                cache.retain(|_, e| e.expires > now);
            }
            cache.insert(key, entry);
        }
        delegated
    }
}

fn invalid() -> WellKnownEntry {
    WellKnownEntry {
        delegated: None,
        expires: Instant::now() + WELL_KNOWN_INVALID_CACHE,
        failures: 0,
    }
}

/// How long a failed `.well-known` request is remembered after `failures` in a row.
pub fn failure_period(failures: u32) -> Duration {
    WELL_KNOWN_FAILURE_CACHE
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(WELL_KNOWN_INVALID_CACHE)
}

/// SRV `_matrix-fed._tcp.<host>`, then `_matrix._tcp.<host>`, else `<host>:8448`; `Host` and
/// the certificate are `<host>` either way.
async fn srv_or_default(host: &str, lookups: &impl Lookups) -> Destination {
    for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
        if let Some((target, port)) = lookups.srv(&format!("{service}.{host}")).await {
            return Destination {
                base: format!("https://{host}:{port}"),
                host_header: host.to_owned(),
                connect_to: Some(target),
            };
        }
    }
    Destination::direct(host, DEFAULT_PORT, host)
}

/// The delegated server name of a `.well-known/matrix/server` body: `m.server`, when it is
/// a valid server name. The body is JSON whatever its content type says.
pub fn parse_well_known(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let server = value.get("m.server")?.as_str()?;
    ServerName::parse(server).ok().map(|s| s.to_string())
}

/// How long to keep a `.well-known` answer: `Cache-Control: max-age`, else `Expires`, else
/// a day; never less than 5 minutes or more than 48 hours (`no-store`/`no-cache` mean the
/// least).
pub fn cache_period(
    cache_control: Option<&str>,
    expires: Option<&str>,
    now: SystemTime,
) -> Duration {
    let from_headers = cache_control
        .and_then(|cc| {
            let directives: Vec<String> = cc
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .collect();
            if directives
                .iter()
                .any(|d| d == "no-store" || d == "no-cache")
            {
                return Some(Duration::ZERO);
            }
            directives.iter().find_map(|d| {
                d.strip_prefix("max-age=")
                    .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
                    .map(Duration::from_secs)
            })
        })
        .or_else(|| {
            let at: SystemTime = expires?
                .parse::<actix_web::http::header::HttpDate>()
                .ok()?
                .into();
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        });
    from_headers
        .unwrap_or(WELL_KNOWN_DEFAULT_CACHE)
        .clamp(WELL_KNOWN_MIN_CACHE, WELL_KNOWN_MAX_CACHE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Lookups from fixed answers, counting the `.well-known` requests.
    #[derive(Default)]
    struct Fake {
        well_known: HashMap<String, Result<WellKnownAnswer, String>>,
        srv: HashMap<String, (String, u16)>,
        asked: RefCell<Vec<String>>,
    }

    impl Lookups for Fake {
        async fn well_known(&self, host: &str) -> Result<WellKnownAnswer, String> {
            self.asked.borrow_mut().push(host.to_owned());
            self.well_known
                .get(host)
                .cloned()
                .unwrap_or_else(|| Err("connection refused".into()))
        }
        async fn srv(&self, name: &str) -> Option<(String, u16)> {
            self.srv.get(name).cloned()
        }
    }

    fn ok(body: &str, cache_control: Option<&str>) -> Result<WellKnownAnswer, String> {
        Ok(WellKnownAnswer {
            status: 200,
            cache_control: cache_control.map(str::to_owned),
            expires: None,
            body: body.as_bytes().to_vec(),
        })
    }

    fn name(s: &str) -> &ServerName {
        <&ServerName>::try_from(s).unwrap()
    }

    fn dest(base: &str, host: &str, connect_to: Option<&str>) -> Destination {
        Destination {
            base: base.into(),
            host_header: host.into(),
            connect_to: connect_to.map(str::to_owned),
        }
    }

    #[actix_web::test]
    async fn ip_literals_and_explicit_ports_skip_discovery() {
        let fake = Fake::default();
        let d = Discovery::default();
        let cases = [
            ("1.2.3.4", dest("https://1.2.3.4:8448", "1.2.3.4", None)),
            ("1.2.3.4:99", dest("https://1.2.3.4:99", "1.2.3.4:99", None)),
            (
                "[2001:db8::1]",
                dest("https://[2001:db8::1]:8448", "[2001:db8::1]", None),
            ),
            (
                "[2001:db8::1]:7",
                dest("https://[2001:db8::1]:7", "[2001:db8::1]:7", None),
            ),
            (
                "example.org:1234",
                dest("https://example.org:1234", "example.org:1234", None),
            ),
        ];
        for (server, want) in cases {
            assert_eq!(d.resolve(name(server), &fake).await, want, "{server}");
        }
        assert!(fake.asked.borrow().is_empty(), "no .well-known asked");
        assert_eq!(
            dest("https://[2001:db8::1]:7", "", None).host_and_port(),
            ("[2001:db8::1]".to_owned(), 7)
        );
    }

    #[actix_web::test]
    async fn well_known_delegations_follow_the_spec() {
        let mut fake = Fake::default();
        fake.well_known
            .insert("ip.example".into(), ok(r#"{"m.server": "5.6.7.8"}"#, None));
        fake.well_known.insert(
            "port.example".into(),
            ok(r#"{"m.server": "matrix.port.example:443"}"#, None),
        );
        fake.well_known.insert(
            "srv.example".into(),
            ok(r#"{"m.server": "matrix.srv.example"}"#, None),
        );
        fake.well_known.insert(
            "plain.example".into(),
            ok(r#"{"m.server": "matrix.plain.example"}"#, None),
        );
        fake.srv.insert(
            "_matrix-fed._tcp.matrix.srv.example".into(),
            ("host1.srv.example".into(), 8000),
        );
        let d = Discovery::default();
        assert_eq!(
            d.resolve(name("ip.example"), &fake).await,
            dest("https://5.6.7.8:8448", "5.6.7.8", None)
        );
        assert_eq!(
            d.resolve(name("port.example"), &fake).await,
            dest(
                "https://matrix.port.example:443",
                "matrix.port.example:443",
                None
            )
        );
        assert_eq!(
            d.resolve(name("srv.example"), &fake).await,
            dest(
                "https://matrix.srv.example:8000",
                "matrix.srv.example",
                Some("host1.srv.example")
            )
        );
        assert_eq!(
            d.resolve(name("plain.example"), &fake).await,
            dest(
                "https://matrix.plain.example:8448",
                "matrix.plain.example",
                None
            )
        );
    }

    #[actix_web::test]
    async fn without_delegation_srv_then_the_default_port() {
        let mut fake = Fake::default();
        fake.srv.insert(
            "_matrix._tcp.old.example".into(),
            ("legacy.old.example".into(), 8449),
        );
        fake.srv.insert(
            "_matrix-fed._tcp.new.example".into(),
            ("fed.new.example".into(), 443),
        );
        fake.srv.insert(
            "_matrix._tcp.new.example".into(),
            ("never.new.example".into(), 1),
        );
        // An invalid .well-known counts as none.
        fake.well_known.insert(
            "new.example".into(),
            ok(r#"{"m.server": "bad name!"}"#, None),
        );
        let d = Discovery::default();
        assert_eq!(
            d.resolve(name("old.example"), &fake).await,
            dest(
                "https://old.example:8449",
                "old.example",
                Some("legacy.old.example")
            )
        );
        assert_eq!(
            d.resolve(name("new.example"), &fake).await,
            dest(
                "https://new.example:443",
                "new.example",
                Some("fed.new.example")
            )
        );
        assert_eq!(
            d.resolve(name("none.example"), &fake).await,
            dest("https://none.example:8448", "none.example", None)
        );
    }

    #[actix_web::test]
    async fn well_known_answers_and_failures_are_cached() {
        let mut fake = Fake::default();
        fake.well_known.insert(
            "a.example".into(),
            ok(r#"{"m.server": "b.example:1"}"#, Some("max-age=3600")),
        );
        fake.well_known.insert(
            "c.example".into(),
            Ok(WellKnownAnswer {
                status: 404,
                cache_control: None,
                expires: None,
                body: Vec::new(),
            }),
        );
        let d = Discovery::default();
        for _ in 0..3 {
            d.resolve(name("a.example"), &fake).await;
            d.resolve(name("c.example"), &fake).await;
            d.resolve(name("down.example"), &fake).await;
        }
        assert_eq!(
            *fake.asked.borrow(),
            vec!["a.example", "c.example", "down.example"],
            "each host asked once"
        );
        // Expired, a host that stops answering keeps its delegation.
        d.well_known
            .lock()
            .unwrap()
            .get_mut("a.example")
            .unwrap()
            .expires = Instant::now();
        fake.well_known.remove("a.example");
        assert_eq!(
            d.resolve(name("a.example"), &fake).await,
            dest("https://b.example:1", "b.example:1", None)
        );
        assert_eq!(fake.asked.borrow().len(), 4);
    }

    #[test]
    fn cache_periods_follow_the_headers_within_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = Duration::from_secs(3600);
        assert_eq!(cache_period(None, None, now), 24 * h);
        assert_eq!(cache_period(Some("public, max-age=7200"), None, now), 2 * h);
        assert_eq!(
            cache_period(Some("max-age=10"), None, now),
            WELL_KNOWN_MIN_CACHE
        );
        assert_eq!(cache_period(Some("max-age=999999999"), None, now), 48 * h);
        assert_eq!(
            cache_period(Some("no-store"), None, now),
            WELL_KNOWN_MIN_CACHE
        );
        let expires = actix_web::http::header::HttpDate::from(now + 3 * h).to_string();
        assert_eq!(cache_period(None, Some(&expires), now), 3 * h);
        // max-age wins over Expires; a bad Expires is ignored.
        assert_eq!(
            cache_period(Some("max-age=36000"), Some(&expires), now),
            10 * h
        );
        assert_eq!(cache_period(None, Some("soon"), now), 24 * h);
        assert_eq!(failure_period(1), WELL_KNOWN_FAILURE_CACHE);
        assert_eq!(failure_period(2), 2 * WELL_KNOWN_FAILURE_CACHE);
        assert_eq!(failure_period(30), WELL_KNOWN_INVALID_CACHE);
    }

    #[test]
    fn well_known_bodies_parse_strictly() {
        assert_eq!(
            parse_well_known(br#"{"m.server": "matrix.example.org:443"}"#).as_deref(),
            Some("matrix.example.org:443")
        );
        for bad in [
            &br#"{"m.server": 1}"#[..],
            br#"{"m.server": "a b"}"#,
            br#"{"m.server": "example.org:99999"}"#,
            br#"{}"#,
            b"<html>",
            b"",
        ] {
            assert_eq!(
                parse_well_known(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
