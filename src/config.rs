//! Node configuration: `config.toml`, then environment variables, then `--set key=value`
//! flags, each overriding the one before. A bad value stops the start with an error that
//! names the key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration of one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub registration: RegistrationConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub components: ComponentsConfig,
    #[serde(default)]
    pub rooms: RoomsConfig,
    #[serde(default)]
    pub bus: BusConfig,
    #[serde(default)]
    pub voip: VoipConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub federation: FederationConfig,
}

/// Federation with other homeservers: server keys, the outbound client (discovery, TLS,
/// limits). See `crate::federation` and `actors::federationapi`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// A listener of its own for the federation API (`/_matrix/federation`, `/_matrix/key`),
    /// HTTPS when `server.tls_cert` is set. Empty: none (federation is served on
    /// `server.listen` either way).
    pub listen: String,
    /// How long the keys this server publishes (`/_matrix/key/v2/server`) stay valid:
    /// `valid_until_ts` is now plus this. Synapse's `key_refresh_interval`, 1 day.
    #[serde(deserialize_with = "duration")]
    pub key_validity: std::time::Duration,
    /// Keys this server signed with before a rotation, published as `old_verify_keys` so
    /// that events signed with them still verify: key ID -> `{ key = "<unpadded base64
    /// public key>", expired_ts = <ms since the epoch> }`.
    pub old_signing_keys: std::collections::BTreeMap<String, OldSigningKey>,
    /// Notary servers asked for another server's keys when that server cannot be asked
    /// directly. Each answer must be signed with one of the notary's `verify_keys`
    /// (key ID -> unpadded base64 public key). Empty by default.
    pub trusted_key_servers: Vec<TrustedKeyServer>,
    /// Whether other servers' TLS certificates are verified. Only tests may turn this off;
    /// the server logs a warning at start when it is off.
    pub verify_tls: bool,
    /// A PEM file of CA certificates trusted in addition to the public roots (a private CA).
    /// Empty: none.
    pub ca_file: String,
    /// The longest a connection to another server may take to open (TCP and TLS).
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: std::time::Duration,
    /// The longest one request to another server may take as a whole.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: std::time::Duration,
    /// The largest response body accepted from another server, in bytes (Synapse: 100 MiB).
    pub max_response_bytes: usize,
    /// FOR TESTS ONLY: server name -> base URL (`http://127.0.0.1:8448`) used instead of
    /// server discovery, so several servers can federate on loopback without DNS or TLS.
    /// The server logs a warning at start for each entry. Empty by default.
    pub test_destinations: std::collections::BTreeMap<String, String>,
    /// How long the outgoing queue of a server waits after the first failed transaction
    /// before it tries again (Synapse's `destination_min_retry_interval`, 10 minutes). Each
    /// further failure multiplies the wait by `retry_multiplier`, up to
    /// `retry_max_interval`; a random 0.8-1.4 factor spreads the retries.
    #[serde(deserialize_with = "duration")]
    pub retry_min_interval: std::time::Duration,
    /// See `retry_min_interval` (Synapse's `destination_retry_multiplier`, 2).
    pub retry_multiplier: u32,
    /// The longest wait between two attempts (Synapse's `destination_max_retry_interval`,
    /// 1 week).
    #[serde(deserialize_with = "duration")]
    pub retry_max_interval: std::time::Duration,
    /// A destination whose transactions have failed for this long is in catch-up: its queue
    /// keeps only the newest item of each kind (a room's newest event, a user's newest
    /// presence, typing or receipt), so a dead server's queue stays bounded. 1 hour.
    #[serde(deserialize_with = "duration")]
    pub catch_up_after: std::time::Duration,
}

/// One entry of `federation.old_signing_keys`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OldSigningKey {
    /// The public key, unpadded base64.
    pub key: String,
    /// When the key stopped being used, in ms since the epoch.
    pub expired_ts: u64,
}

/// One entry of `federation.trusted_key_servers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyServer {
    /// The notary's server name.
    pub server_name: String,
    /// Key ID -> unpadded base64 public key: the keys the notary signs its answers with.
    pub verify_keys: std::collections::BTreeMap<String, String>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            listen: String::new(),
            key_validity: std::time::Duration::from_secs(24 * 60 * 60),
            old_signing_keys: Default::default(),
            trusted_key_servers: Vec::new(),
            verify_tls: true,
            ca_file: String::new(),
            connect_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(60),
            max_response_bytes: 100 * 1024 * 1024,
            test_destinations: Default::default(),
            retry_min_interval: std::time::Duration::from_secs(10 * 60),
            retry_multiplier: 2,
            retry_max_interval: std::time::Duration::from_secs(7 * 24 * 60 * 60),
            catch_up_after: std::time::Duration::from_secs(60 * 60),
        }
    }
}

/// Calls to identity servers (third-party invites: lookups and `store-invite`). Clients name
/// the server (`id_server`), so these calls go to a hostile network: `https://` only, no
/// private, loopback or link-local addresses, bounded time and response size. See
/// `crate::identity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Identity servers (`host[:port]`, exactly as clients send `id_server`) reached over
    /// plain `http://` and allowed on private and loopback addresses. For tests and private
    /// deployments only; empty by default.
    pub insecure_http_servers: Vec<String>,
    /// The longest one request to an identity server may take (connect, send, read), in ms.
    pub timeout_ms: u64,
    /// The largest response body accepted from an identity server, in bytes.
    pub max_response_bytes: usize,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            insecure_http_servers: Vec::new(),
            timeout_ms: 10_000,
            max_response_bytes: 64 * 1024,
        }
    }
}

/// TURN servers handed to clients for VoIP calls (`GET /voip/turnServer`), as Synapse's
/// `turn_*` options. With `turn_shared_secret`, each user gets credentials that expire (the
/// TURN REST API: username `<expiry>:<user ID>`, password HMAC-SHA1 of it, base64); otherwise
/// the fixed `turn_username`/`turn_password`. Without `turn_uris`, clients get `{}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoipConfig {
    /// `turn:` / `turns:` URIs of the TURN servers.
    pub turn_uris: Vec<String>,
    /// Secret shared with the TURN server (coturn's `static-auth-secret`).
    pub turn_shared_secret: String,
    /// Fixed credentials, when there is no shared secret.
    pub turn_username: String,
    pub turn_password: String,
    /// How long handed-out credentials stay valid, in ms.
    pub turn_user_lifetime_ms: u64,
    /// Whether guests may have TURN credentials.
    pub turn_allow_guests: bool,
}

impl Default for VoipConfig {
    fn default() -> Self {
        VoipConfig {
            turn_uris: Vec::new(),
            turn_shared_secret: String::new(),
            turn_username: String::new(),
            turn_password: String::new(),
            turn_user_lifetime_ms: 60 * 60 * 1000,
            turn_allow_guests: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// The room version of new rooms that do not ask for one.
    pub default_version: String,
    /// How long a redacted event keeps its original content in storage (for moderators)
    /// before it is pruned to its redacted form: a duration such as `"7d"`, `"12h"`, `"30m"`,
    /// `"10s"`, `"500ms"`, or a number of milliseconds. Synapse's default, 7 days.
    #[serde(deserialize_with = "duration")]
    pub redaction_retention: std::time::Duration,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            default_version: crate::room_versions::DEFAULT.into(),
            redaction_retention: std::time::Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// The embedded bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// How long an output stays in the outbox after every consumer of its stream has applied
    /// it (a duration, as `rooms.redaction_retention`); older ones are deleted.
    #[serde(deserialize_with = "duration")]
    pub outbox_retention: std::time::Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            outbox_retention: std::time::Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// A duration: a number of milliseconds, or a string of a number and a unit (`ms`, `s`, `m`,
/// `h`, `d`, `w`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Ms(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Ms(ms) => Ok(std::time::Duration::from_millis(ms)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as \"7d\", \"12h\" or \"500ms\""))?;
    let ms_per = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (ms, s, m, h, d, w)"
            ))
        }
    };
    n.checked_mul(ms_per)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The server name: the part after the colon in user IDs.
    pub name: String,
    /// Address of the client (and, later, federation) HTTP listener.
    pub listen: String,
    /// The URL clients reach this server at, for `/.well-known/matrix/client`.
    /// Empty: `http://<listen>`.
    pub public_baseurl: String,
    /// The `host:port` other servers reach this one at, for `/.well-known/matrix/server`.
    /// Empty: the server name.
    pub federation_address: String,
    /// Where the node keeps its files (the SQLite database by default, later keys and media).
    pub data_dir: PathBuf,
    /// The largest request body accepted, in bytes; larger ones get 413 M_TOO_LARGE.
    pub max_request_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Threads the components' actors run on (see `actors::executors`); 0 means one per core.
    pub actor_threads: usize,
    /// PEM certificate (the file may hold the chain after it) and private key: when set,
    /// `server.listen` (and `federation.listen`) serve HTTPS. Empty: plain HTTP (behind a
    /// TLS-terminating proxy).
    pub tls_cert: String,
    pub tls_key: String,
    /// A plain-HTTP listener serving the client API only (no federation), beside the HTTPS
    /// `server.listen`: for local clients or a proxy on the same host. Empty: none.
    pub http_listen: String,
    /// CIDR ranges no outbound request of this server may connect to (federation, identity
    /// servers, ...), see `crate::net`. Default: private, loopback, link-local, CGNAT,
    /// multicast, unspecified and reserved ranges. `[]` allows everything (tests).
    pub ip_range_denylist: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            name: "localhost:8008".into(),
            listen: "127.0.0.1:8008".into(),
            public_baseurl: String::new(),
            federation_address: String::new(),
            data_dir: "./data".into(),
            max_request_bytes: 10 * 1024 * 1024,
            workers: 0,
            actor_threads: 0,
            ip_range_denylist: crate::net::IpDenylist::default_ranges(),
            tls_cert: String::new(),
            tls_key: String::new(),
            http_listen: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://user@host:port/db`. Empty: SQLite at
    /// `<data_dir>/myelin.db`.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a request waits for a free connection when all are in use before it fails
    /// with 503 (the server sheds load instead of queueing without limit), in ms.
    pub pool_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: String::new(),
            pool_size: 8,
            pool_timeout_ms: crate::storage::DEFAULT_POOL_WAIT.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the metrics listener (`/metrics`, `/debug/pprof/...`). Empty: none.
    pub listen: String,
    /// Whether `/debug/pprof/profile` is served.
    pub profiling: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9009".into(),
            profiling: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Whether new accounts may register at all.
    pub enabled: bool,
    /// When not empty, registering needs one of these tokens (`m.login.registration_token`).
    pub tokens: Vec<String>,
    /// Whether guest accounts (`kind=guest`) may register.
    pub guests: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            enabled: true,
            tokens: Vec::new(),
            guests: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of access tokens issued with a refresh token, in ms. Tokens issued without
    /// one never expire.
    pub access_token_lifetime_ms: u64,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id time cost (iterations).
    pub argon2_iterations: u32,
    /// Threads that hash and verify passwords, away from the async executor.
    pub hasher_threads: usize,
    /// How long a user-interactive auth session lives, in ms.
    pub uia_session_lifetime_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_lifetime_ms: 5 * 60 * 1000,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            hasher_threads: 2,
            uia_session_lifetime_ms: 15 * 60 * 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether rate limiting applies at all.
    pub enabled: bool,
    /// Sustained requests per second to rate-limited endpoints, per user (or per IP when
    /// not logged in).
    pub per_second: f64,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: u32,
    /// Reverse proxies in front of this server: for requests from these addresses the client's
    /// address is taken from `X-Forwarded-For` (for rate limits and device activity). Nobody
    /// else can claim an address that way.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            per_second: 5.0,
            burst: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `myelin=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsConfig {
    /// Address of this node's internal listener, which serves the components that run here
    /// to other nodes over the HTTP bridge. Empty: none (a single-process node).
    pub internal_listen: String,
    /// The secret every node of a split deployment shares: bridges send it with each message,
    /// and the internal listener refuses a message without it (401). Required whenever this
    /// node has an internal listener or reaches a component on another node; at least 32
    /// characters.
    pub internal_secret: String,
    /// Where the userapi runs: `local`, or the internal URL of the node hosting it
    /// (`http://10.0.0.2:7000`).
    pub userapi: String,
    /// Where the roomserver runs: `local`, or the internal URL of the node hosting it.
    pub roomserver: String,
    /// Where the syncapi runs: `local`, or the internal URL of the node hosting it. A local
    /// syncapi follows the roomserver's and userapi's streams on the embedded bus, so it
    /// needs them local too.
    pub syncapi: String,
    /// Where the federationapi runs (server keys, the outbound federation client):
    /// `local`, or the internal URL of the node hosting it.
    pub federationapi: String,
}

impl Default for ComponentsConfig {
    fn default() -> Self {
        ComponentsConfig {
            internal_listen: String::new(),
            internal_secret: String::new(),
            userapi: "local".into(),
            roomserver: "local".into(),
            syncapi: "local".into(),
            federationapi: "local".into(),
        }
    }
}

/// The shortest `components.internal_secret` accepted.
pub const MIN_INTERNAL_SECRET_CHARS: usize = 32;

/// Where a component runs, as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Local,
    Remote(String),
}

/// The environment variables read, and the key each sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("MYELIN_SERVER_NAME", "server.name"),
    ("MYELIN_LISTEN", "server.listen"),
    ("MYELIN_PUBLIC_BASEURL", "server.public_baseurl"),
    ("MYELIN_DATA_DIR", "server.data_dir"),
    ("MYELIN_METRICS_LISTEN", "metrics.listen"),
    ("MYELIN_DATABASE", "database.url"),
    ("MYELIN_LOG", "log.level"),
    ("MYELIN_INTERNAL_SECRET", "components.internal_secret"),
];

/// A configuration error; its message names the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads the file (if any), then the environment, then the `--set` overrides.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl Fn(&str) -> Option<String>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for (var, key) in ENV_OVERRIDES {
            if let Some(v) = env(var) {
                set_key(&mut table, key, toml::Value::String(v))?;
            }
        }
        for s in sets {
            let (key, raw) = s
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--set {s:?}: expected section.key=value")))?;
            set_key(&mut table, key.trim(), parse_scalar(raw.trim()))?;
        }
        Self::from_table(table)
    }

    /// Parses a configuration from TOML text alone (tests, embedded use).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError(e.to_string()))?;
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("key {}: {}", e.path(), e.inner())))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ruma::ServerName::parse(&self.server.name).map_err(|e| {
            ConfigError(format!(
                "key server.name: {:?} is not a server name: {e}",
                self.server.name
            ))
        })?;
        parse_addr("server.listen", &self.server.listen)?;
        if !self.metrics.listen.is_empty() {
            parse_addr("metrics.listen", &self.metrics.listen)?;
        }
        if !self.components.internal_listen.is_empty() {
            parse_addr(
                "components.internal_listen",
                &self.components.internal_listen,
            )?;
        }
        self.placement("components.userapi", &self.components.userapi)?;
        self.placement("components.roomserver", &self.components.roomserver)?;
        self.placement("components.federationapi", &self.components.federationapi)?;
        if self.placement("components.syncapi", &self.components.syncapi)? == Placement::Local
            && (self.userapi_placement() != Placement::Local
                || self.roomserver_placement() != Placement::Local)
        {
            return Err(ConfigError(
                "key components.syncapi: a local syncapi needs the userapi and the roomserver \
                 local too (it reads their streams on the embedded bus); point it at the node \
                 that hosts them"
                    .into(),
            ));
        }
        let remote = [
            self.userapi_placement(),
            self.roomserver_placement(),
            self.syncapi_placement(),
            self.federationapi_placement(),
        ]
        .iter()
        .any(|p| *p != Placement::Local);
        if (remote || !self.components.internal_listen.is_empty())
            && self.components.internal_secret.chars().count() < MIN_INTERNAL_SECRET_CHARS
        {
            return Err(ConfigError(format!(
                "key components.internal_secret: a split deployment (an internal listener, or a \
                 component on another node) needs a secret shared by its nodes, at least \
                 {MIN_INTERNAL_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)"
            )));
        }
        if self.placement("components.federationapi", &self.components.federationapi)?
            == Placement::Local
            && self.roomserver_placement() != Placement::Local
        {
            return Err(ConfigError(
                "key components.federationapi: a local federationapi needs the roomserver local \
                 too (it reads the roomserver's stream on the embedded bus); point it at the node \
                 that hosts the roomserver"
                    .into(),
            ));
        }
        if !crate::room_versions::STABLE.contains(&self.rooms.default_version.as_str()) {
            return Err(ConfigError(format!(
                "key rooms.default_version: {:?} is not a supported room version ({})",
                self.rooms.default_version,
                crate::room_versions::STABLE.join(", ")
            )));
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "key database.url: {url:?} is neither sqlite:PATH nor a postgres:// URL"
            )));
        }
        if !self.voip.turn_uris.is_empty() && self.voip.turn_user_lifetime_ms < 1000 {
            return Err(ConfigError(
                "key voip.turn_user_lifetime_ms: must be at least 1000".into(),
            ));
        }
        if self.identity.timeout_ms < 100 {
            return Err(ConfigError(
                "key identity.timeout_ms: must be at least 100".into(),
            ));
        }
        if self.identity.max_response_bytes < 1024 {
            return Err(ConfigError(
                "key identity.max_response_bytes: must be at least 1024".into(),
            ));
        }
        if let Some(bad) = self
            .identity
            .insecure_http_servers
            .iter()
            .find(|s| ruma::ServerName::parse(s.as_str()).is_err())
        {
            return Err(ConfigError(format!(
                "key identity.insecure_http_servers: {bad:?} is not host[:port]"
            )));
        }
        crate::net::IpDenylist::parse(&self.server.ip_range_denylist)
            .map_err(|e| ConfigError(format!("key server.ip_range_denylist: {e}")))?;
        self.validate_federation()?;
        if self.database.pool_size == 0 {
            return Err(ConfigError(
                "key database.pool_size: must be at least 1".into(),
            ));
        }
        if self.server.max_request_bytes < 1024 {
            return Err(ConfigError(
                "key server.max_request_bytes: must be at least 1024".into(),
            ));
        }
        if self.rate_limit.enabled
            && self.rate_limit.per_second.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err(ConfigError(
                "key rate_limit.per_second: must be above 0".into(),
            ));
        }
        if self.auth.argon2_memory_kib < 8 || self.auth.argon2_iterations == 0 {
            return Err(ConfigError(
                "key auth.argon2_memory_kib / auth.argon2_iterations: too small for argon2".into(),
            ));
        }
        if self.auth.hasher_threads == 0 {
            return Err(ConfigError(
                "key auth.hasher_threads: must be at least 1".into(),
            ));
        }
        if self
            .registration
            .tokens
            .iter()
            .any(|t| t.is_empty() || t.len() > 64)
        {
            return Err(ConfigError(
                "key registration.tokens: tokens must be 1 to 64 characters".into(),
            ));
        }
        Ok(())
    }

    fn validate_federation(&self) -> Result<(), ConfigError> {
        let f = &self.federation;
        if !f.listen.is_empty() {
            parse_addr("federation.listen", &f.listen)?;
        }
        if !self.server.http_listen.is_empty() {
            parse_addr("server.http_listen", &self.server.http_listen)?;
        }
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return Err(ConfigError(
                "key server.tls_cert / server.tls_key: set both or neither".into(),
            ));
        }
        for (key, path) in [
            ("server.tls_cert", &self.server.tls_cert),
            ("server.tls_key", &self.server.tls_key),
        ] {
            if !path.is_empty() && !std::path::Path::new(path).is_file() {
                return Err(ConfigError(format!(
                    "key {key}: {path:?} is not a readable file"
                )));
            }
        }
        if f.retry_min_interval.is_zero()
            || f.retry_multiplier == 0
            || f.retry_max_interval < f.retry_min_interval
        {
            return Err(ConfigError(
                "key federation.retry_min_interval / retry_multiplier / retry_max_interval: \
                 the minimum and the multiplier must be positive and the maximum at least the \
                 minimum"
                    .into(),
            ));
        }
        if f.key_validity < std::time::Duration::from_secs(60) {
            return Err(ConfigError(
                "key federation.key_validity: must be at least 1m".into(),
            ));
        }
        for (id, old) in &f.old_signing_keys {
            check_key("federation.old_signing_keys", id, &old.key)?;
        }
        for server in &f.trusted_key_servers {
            ruma::ServerName::parse(&server.server_name).map_err(|_| {
                ConfigError(format!(
                    "key federation.trusted_key_servers: {:?} is not a server name",
                    server.server_name
                ))
            })?;
            if server.verify_keys.is_empty() {
                return Err(ConfigError(format!(
                    "key federation.trusted_key_servers: {} has no verify_keys; its answers \
                     could not be checked",
                    server.server_name
                )));
            }
            for (id, key) in &server.verify_keys {
                check_key("federation.trusted_key_servers", id, key)?;
            }
        }
        if f.connect_timeout < std::time::Duration::from_millis(100)
            || f.request_timeout < std::time::Duration::from_millis(100)
        {
            return Err(ConfigError(
                "key federation.connect_timeout / federation.request_timeout: must be at \
                 least 100ms"
                    .into(),
            ));
        }
        if f.max_response_bytes < 64 * 1024 {
            return Err(ConfigError(
                "key federation.max_response_bytes: must be at least 65536".into(),
            ));
        }
        if !f.ca_file.is_empty() && !std::path::Path::new(&f.ca_file).is_file() {
            return Err(ConfigError(format!(
                "key federation.ca_file: {:?} is not a readable file",
                f.ca_file
            )));
        }
        for (name, url) in &f.test_destinations {
            if ruma::ServerName::parse(name).is_err()
                || !(url.starts_with("http://") || url.starts_with("https://"))
                || url.trim_end_matches('/').matches('/').count() != 2
            {
                return Err(ConfigError(format!(
                    "key federation.test_destinations: {name:?} = {url:?} must map a server \
                     name to a base URL such as \"http://127.0.0.1:8448\""
                )));
            }
        }
        Ok(())
    }

    fn placement(&self, key: &str, value: &str) -> Result<Placement, ConfigError> {
        match value {
            "local" | "" => Ok(Placement::Local),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Placement::Remote(url.trim_end_matches('/').to_owned()))
            }
            other => Err(ConfigError(format!(
                "key {key}: {other:?} is neither \"local\" nor an http(s):// URL"
            ))),
        }
    }

    /// Where the userapi runs.
    pub fn userapi_placement(&self) -> Placement {
        self.placement("components.userapi", &self.components.userapi)
            .unwrap_or(Placement::Local)
    }

    /// Where the syncapi runs.
    pub fn syncapi_placement(&self) -> Placement {
        self.placement("components.syncapi", &self.components.syncapi)
            .unwrap_or(Placement::Local)
    }

    /// Where the federationapi runs.
    pub fn federationapi_placement(&self) -> Placement {
        self.placement("components.federationapi", &self.components.federationapi)
            .unwrap_or(Placement::Local)
    }

    /// `server.ip_range_denylist`, parsed (the config was validated when it loaded).
    pub fn ip_denylist(&self) -> crate::net::IpDenylist {
        crate::net::IpDenylist::parse(&self.server.ip_range_denylist).unwrap_or_else(|_| {
            crate::net::IpDenylist::parse(crate::net::DEFAULT_DENYLIST).unwrap_or_default()
        })
    }

    /// Where the roomserver runs.
    pub fn roomserver_placement(&self) -> Placement {
        self.placement("components.roomserver", &self.components.roomserver)
            .unwrap_or(Placement::Local)
    }

    /// The database URL, with the default (SQLite in the data dir) filled in.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite:{}",
                self.server.data_dir.join("myelin.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// The base URL clients should use, for `/.well-known/matrix/client`.
    pub fn public_baseurl(&self) -> String {
        if self.server.public_baseurl.is_empty() {
            let scheme = if self.server.tls_cert.is_empty() {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{}", self.server.listen)
        } else {
            self.server.public_baseurl.trim_end_matches('/').to_owned()
        }
    }
}

/// Checks a configured public key: an `ed25519:<version>` ID and 32 bytes of base64.
fn check_key(key: &str, id: &str, public: &str) -> Result<(), ConfigError> {
    if ruma::OwnedServerSigningKeyId::try_from(id).is_err() {
        return Err(ConfigError(format!(
            "key {key}: {id:?} is not a key ID such as \"ed25519:abc\""
        )));
    }
    match ruma::serde::Base64::<ruma::serde::base64::Standard, Vec<u8>>::parse(public) {
        Ok(b) if b.as_bytes().len() == 32 => Ok(()),
        _ => Err(ConfigError(format!(
            "key {key}: the key of {id} is not a base64 ed25519 public key"
        ))),
    }
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|e| {
        ConfigError(format!(
            "key {key}: {value:?} is not an IP:port address ({e})"
        ))
    })
}

/// A `--set` value: TOML when it parses as a TOML value (numbers, booleans, arrays),
/// otherwise the plain string.
fn parse_scalar(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ConfigError(format!("bad key {key:?}")))?;
    let mut t = table;
    for p in parts {
        let entry = t
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("key {key}: {p} is not a section")))?;
    }
    // Keep the type of numbers and booleans given as strings (environment variables).
    let value = match (&value, t.get(last)) {
        (toml::Value::String(s), Some(old)) if !old.is_str() => parse_scalar(s),
        _ => value,
    };
    t.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(
            Some(&path),
            |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &sets,
        )
    }

    #[test]
    fn shipped_config_is_valid_and_matches_defaults() {
        let text = include_str!("../config.toml");
        let c = Config::from_toml(text).expect("config.toml parses");
        assert_eq!(c.server.name, "localhost:8008");
        assert_eq!(c.server.listen, "127.0.0.1:8008");
        assert!(c.database_url().starts_with("sqlite:"));
        let defaults = ServerConfig::default();
        assert_eq!(c.server.ip_range_denylist, defaults.ip_range_denylist);
        let f = FederationConfig::default();
        assert_eq!(c.federation.key_validity, f.key_validity);
        assert_eq!(c.federation.max_response_bytes, f.max_response_bytes);
        assert_eq!(c.federation.request_timeout, f.request_timeout);
        assert_eq!(c.federation.connect_timeout, f.connect_timeout);
        assert!(c.federation.verify_tls && c.federation.test_destinations.is_empty());
        assert_eq!(c.components.federationapi, "local");
    }

    #[test]
    fn durations_take_units_or_milliseconds() {
        let ms = std::time::Duration::from_millis;
        for (text, want) in [
            ("7d", ms(604_800_000)),
            ("12h", ms(43_200_000)),
            ("30m", ms(1_800_000)),
            ("10s", ms(10_000)),
            ("250ms", ms(250)),
            ("1w", ms(604_800_000)),
            ("42", ms(42)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "d", "7 years", "-1d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let c = load(
            "[rooms]\nredaction_retention = \"2h\"\n",
            &[],
            &["bus.outbox_retention=1500"],
        )
        .unwrap();
        assert_eq!(c.rooms.redaction_retention, ms(7_200_000));
        assert_eq!(c.bus.outbox_retention, ms(1500));
        let err = load("[rooms]\nredaction_retention = \"soon\"\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rooms.redaction_retention"), "{err}");
    }

    #[test]
    fn environment_then_flags_override_the_file() {
        let c = load(
            "[server]\nname = \"a.example\"\n",
            &[
                ("MYELIN_SERVER_NAME", "b.example"),
                ("MYELIN_DATABASE", "postgres://u@h/db"),
                ("MYELIN_DATA_DIR", "/tmp/x"),
            ],
            &[
                "server.name=c.example",
                "rate_limit.enabled=false",
                "database.pool_size=3",
            ],
        )
        .unwrap();
        assert_eq!(c.server.name, "c.example");
        assert_eq!(c.database_url(), "postgres://u@h/db");
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        assert!(!c.rate_limit.enabled);
        assert_eq!(c.database.pool_size, 3);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("[server]\nlisten = \"nowhere\"\n", &[], "server.listen"),
            ("[server]\nnme = \"x\"\n", &[], "nme"),
            ("", &["database.pool_size=lots"], "database.pool_size"),
            ("", &["database.url=mysql://x"], "database.url"),
            ("", &["server.name=bad name!"], "server.name"),
            ("", &["components.userapi=elsewhere"], "components.userapi"),
            ("", &["metrics.listen=1.2.3.4"], "metrics.listen"),
            ("", &["rooms.default_version=2"], "rooms.default_version"),
            (
                "",
                &["components.internal_listen=127.0.0.1:7000"],
                "components.internal_secret",
            ),
            (
                "",
                &[
                    "components.userapi=http://10.0.0.2:7000",
                    "components.roomserver=http://10.0.0.2:7000",
                    "components.syncapi=http://10.0.0.2:7000",
                ],
                "components.internal_secret",
            ),
            (
                "",
                &[
                    "components.internal_listen=127.0.0.1:7000",
                    "components.internal_secret=short",
                ],
                "components.internal_secret",
            ),
            (
                "",
                &["components.roomserver=nowhere"],
                "components.roomserver",
            ),
            (
                "",
                &["server.ip_range_denylist=[\"10.0.0.0/8\", \"nope\"]"],
                "server.ip_range_denylist",
            ),
            (
                "[federation.old_signing_keys]\n\"ed25519:old\" = { key = \"short\", expired_ts = 1 }\n",
                &[],
                "federation.old_signing_keys",
            ),
            (
                "[[federation.trusted_key_servers]]\nserver_name = \"notary.example\"\nverify_keys = {}\n",
                &[],
                "federation.trusted_key_servers",
            ),
            (
                "",
                &["federation.ca_file=/nonexistent/ca.pem"],
                "federation.ca_file",
            ),
            (
                "[federation.test_destinations]\n\"b.test\" = \"127.0.0.1:1\"\n",
                &[],
                "federation.test_destinations",
            ),
            ("", &["federation.key_validity=1s"], "federation.key_validity"),
            (
                "",
                &["federation.retry_min_interval=0"],
                "federation.retry_min_interval",
            ),
            (
                "",
                &[
                    "federation.retry_min_interval=1h",
                    "federation.retry_max_interval=1m",
                ],
                "retry_max_interval",
            ),
            (
                "",
                &[
                    "components.roomserver=http://10.0.0.2:7000",
                    "components.userapi=http://10.0.0.2:7000",
                    "components.syncapi=http://10.0.0.2:7000",
                    "components.internal_secret=0123456789abcdef0123456789abcdef",
                ],
                "components.federationapi",
            ),
            ("", &["server.tls_cert=/etc/hostname"], "server.tls_key"),
            (
                "",
                &["server.tls_cert=/nonexistent", "server.tls_key=/nonexistent"],
                "server.tls_cert",
            ),
            ("", &["federation.listen=nowhere"], "federation.listen"),
        ];
        for (text, sets, key) in cases {
            let err = load(text, &[], sets).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} {sets:?}: {err}");
        }
    }

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let c = load("", &[("MYELIN_DATA_DIR", "/srv/m")], &[]).unwrap();
        assert_eq!(c.database_url(), "sqlite:/srv/m/myelin.db");
    }
}
