//! The one guard on every outbound connection the server makes (federation, identity
//! servers, and later push gateways, URL previews and remote media): `server.ip_range_denylist`.
//!
//! Other servers and clients choose where this server connects (a server name, an
//! `id_server`, a URL), so without a guard they could make it probe its own network: the
//! loopback interface, a cloud metadata address, a database on a private range. The denylist
//! is a list of CIDR ranges ([`DEFAULT_DENYLIST`]: private, loopback, link-local, shared
//! (CGNAT), multicast, unspecified, documentation and reserved ranges, IPv6 unique-local and
//! link-local); an address is refused when it, or the IPv4 address it embeds (IPv4-mapped
//! `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`), is in a listed range.
//!
//! [`GuardedResolver`] is the name resolver given to awc's connector: it resolves a host and
//! keeps only the addresses the denylist allows, and the connection uses exactly those
//! addresses (no second lookup that could answer differently). An IP literal never reaches
//! a resolver (actix-tls connects to it directly), so callers check literals with
//! [`IpDenylist::check_host`] before sending.
//!
//! An empty list (`ip_range_denylist = []`) allows everything: for tests on loopback.

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// The ranges refused by default: Synapse's default `ip_range_blacklist`, plus the
/// unspecified, "this network" and reserved ranges and the IPv6 discard prefix.
pub const DEFAULT_DENYLIST: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/96",
    "::1/128",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// One CIDR range, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// The network address (host bits cleared), IPv4 in the low 32 bits.
    network: u128,
    prefix: u8,
    v4: bool,
}

impl IpRange {
    fn mask(&self) -> u128 {
        let bits: u32 = if self.v4 { 32 } else { 128 };
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (bits - u32::from(self.prefix))) & (u128::MAX >> (128 - bits))
        }
    }

    /// Whether `ip` is in the range (an IPv4 range never holds an IPv6 address, and back).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (ip, self.v4) {
            (IpAddr::V4(v4), true) => u128::from(u32::from(v4)) & self.mask() == self.network,
            (IpAddr::V6(v6), false) => u128::from(v6) & self.mask() == self.network,
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    /// `a.b.c.d/n`, `x:y::z/n`, or a single address (a /32 or /128).
    fn from_str(s: &str) -> Result<IpRange, String> {
        let bad = || format!("{s:?} is not an IP range such as \"10.0.0.0/8\" or \"fc00::/7\"");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let (value, bits, v4) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u8, true),
            IpAddr::V6(v6) => (u128::from(v6), 128u8, false),
        };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        let mut range = IpRange {
            network: 0,
            prefix,
            v4,
        };
        range.network = value & range.mask();
        Ok(range)
    }
}

/// The ranges outbound connections may not reach. Cheap to share (`Arc`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpDenylist {
    ranges: Vec<IpRange>,
}

impl IpDenylist {
    /// Parses a list of CIDR ranges; the error names the first bad entry.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<IpDenylist, String> {
        ranges
            .iter()
            .map(|r| r.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(|ranges| IpDenylist { ranges })
    }

    /// The default list ([`DEFAULT_DENYLIST`]).
    pub fn default_ranges() -> Vec<String> {
        DEFAULT_DENYLIST.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Whether nothing is denied (`[]`, for tests).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether a connection to `ip` is refused: `ip` or the IPv4 address it embeds
    /// (IPv4-mapped, NAT64) is in a listed range.
    pub fn denies(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.ranges
            .iter()
            .any(|r| r.contains(ip) || embedded.is_some_and(|e| r.contains(e)))
    }

    /// Refuses a host that is an IP literal in a denied range (`[v6]` or plain); host names
    /// pass (the resolver checks what they resolve to).
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) if self.denies(ip) => Err(format!(
                "{host} is in server.ip_range_denylist; this server does not connect there"
            )),
            _ => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (`::ffff:a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// Where to connect for a `(host, port)` a URL names, when that is not the host itself: the
/// target of an SRV record. Federation discovery fills it in; the resolver reads it. The URL
/// keeps the name the TLS certificate must be valid for (and the SNI), the connection goes to
/// the SRV target.
#[derive(Debug, Default)]
pub struct Routes {
    map: Mutex<HashMap<(String, u16), String>>,
}

impl Routes {
    /// Connections to `(host, port)` go to `target` (a host name or IP literal) at `port`.
    pub fn set(&self, host: &str, port: u16, target: &str) {
        if let Ok(mut map) = self.map.lock() {
            // Bounded: a name is re-added on its next discovery.
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert((host.to_ascii_lowercase(), port), target.to_owned());
        }
    }

    fn get(&self, host: &str, port: u16) -> Option<String> {
        self.map
            .lock()
            .ok()?
            .get(&(host.to_ascii_lowercase(), port))
            .cloned()
    }
}

/// A resolver for awc's connector that keeps only the addresses the denylist allows, after
/// following [`Routes`].
#[derive(Clone)]
pub struct GuardedResolver {
    denylist: Arc<IpDenylist>,
    routes: Option<Arc<Routes>>,
}

impl GuardedResolver {
    pub fn new(denylist: Arc<IpDenylist>, routes: Option<Arc<Routes>>) -> GuardedResolver {
        GuardedResolver { denylist, routes }
    }
}

impl Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let target = self
                .routes
                .as_ref()
                .and_then(|r| r.get(host, port))
                .unwrap_or_else(|| host.to_owned());
            let literal = target.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    let query = (literal.to_owned(), port);
                    tokio::task::spawn_blocking(move || {
                        std::net::ToSocketAddrs::to_socket_addrs(&query).map(Iterator::collect)
                    })
                    .await??
                }
            };
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| !self.denylist.denies(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves to no address outside server.ip_range_denylist"
                )
                .into());
            }
            Ok(allowed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_list() -> IpDenylist {
        IpDenylist::parse(DEFAULT_DENYLIST).unwrap()
    }

    #[test]
    fn default_list_denies_private_and_reserved_addresses() {
        let list = default_list();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(list.denies(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!list.denies(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains("10.255.0.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(!r.contains("::ffff:10.0.0.1".parse().unwrap()));
        let host: IpRange = "192.0.2.7".parse().unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        // Host bits are ignored, as in most CIDR parsers.
        assert_eq!("10.1.2.3/8".parse::<IpRange>(), "10.0.0.0/8".parse());
        for bad in ["10.0.0.0/33", "::/129", "example.org/8", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
        let err = IpDenylist::parse(&["10.0.0.0/8", "nope"]).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn an_empty_list_allows_everything() {
        let list = IpDenylist::parse::<&str>(&[]).unwrap();
        assert!(list.is_empty());
        assert!(!list.denies("127.0.0.1".parse().unwrap()));
        assert!(list.check_host("127.0.0.1").is_ok());
        assert!(default_list().check_host("[::1]").is_err());
        assert!(default_list().check_host("127.0.0.1").is_err());
        assert!(default_list().check_host("example.org").is_ok());
    }

    #[actix_web::test]
    async fn the_resolver_drops_denied_addresses() {
        let guarded = GuardedResolver::new(Arc::new(default_list()), None);
        assert!(guarded.lookup("localhost", 80).await.is_err());
        let open = GuardedResolver::new(Arc::new(IpDenylist::default()), None);
        let addrs = open.lookup("localhost", 80).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // A route sends a name to another target.
        let routes = Arc::new(Routes::default());
        routes.set("example.invalid", 8448, "127.0.0.1");
        let routed = GuardedResolver::new(Arc::new(IpDenylist::default()), Some(routes));
        let addrs = routed.lookup("example.invalid", 8448).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8448".parse().unwrap()]);
    }
}
