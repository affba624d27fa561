//! The identity-server client: what a homeserver asks an identity server when a user invites
//! a third-party identifier (an email address, a phone number) to a room, as Synapse's
//! `synapse/handlers/identity.py` does.
//!
//! - [`IdentityClient::lookup`]: `GET /_matrix/identity/v2/hash_details`, then
//!   `POST /_matrix/identity/v2/lookup` with the address hashed (`sha256` of
//!   `"<address> <medium> <pepper>"`, unpadded URL-safe base64; `none` when that is all the
//!   server offers). The answer is the Matrix user the address is bound to, if any.
//! - [`IdentityClient::store_invite`]: `POST /_matrix/identity/v2/store-invite`, which makes
//!   the identity server remember the invite (and mail the invitee); it answers the token and
//!   public keys that go into the room's `m.room.third_party_invite` event.
//!
//! Every call carries the client's `id_access_token` as `Authorization: Bearer`.
//!
//! **Security.** The client names the identity server, so these calls go to a hostile
//! network. The server name must be `host[:port]` (no path, no user info) and is reached over
//! `https://`; redirects are not followed; the server's one outbound guard
//! ([`crate::net::GuardedResolver`] with `server.ip_range_denylist`) drops every address in a
//! denied range (private, loopback, link-local, multicast, reserved by default) that a name
//! resolves to, and an IP literal in such a range is refused before any connection, so a
//! client cannot make the homeserver probe its own network. Each request is bounded by `identity.timeout_ms` as a whole and its
//! response by `identity.max_response_bytes`. Only the servers listed in
//! `identity.insecure_http_servers` (tests, private deployments) are reached over plain
//! `http://` and may be on private addresses.
//!
//! This module does no storage and sends no messages: routing calls it, then sends the
//! resulting events to the roomserver. Its errors are not Matrix errors; `routing::error`
//! maps them.

use crate::config::IdentityConfig;
use crate::net::{GuardedResolver, IpDenylist};
use actix_tls::connect::Resolver;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// What went wrong talking to an identity server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// `id_server` is not `host[:port]`, or names an address this server will not call.
    #[error("{0}")]
    InvalidServer(String),
    /// No answer: connection refused, DNS, TLS, timeout, a body past the size limit.
    #[error("identity server {server} is unreachable: {detail}")]
    Unreachable { server: String, detail: String },
    /// An answer this server cannot use (not JSON, fields missing).
    #[error("identity server {server} gave an invalid answer: {detail}")]
    BadResponse { server: String, detail: String },
    /// The identity server refused the request (non-2xx), with its errcode if it sent one.
    #[error("identity server {server} refused the request ({status} {errcode}: {error})")]
    Refused {
        server: String,
        status: u16,
        errcode: String,
        error: String,
    },
}

/// What `store-invite` answered: what the `m.room.third_party_invite` event carries.
#[derive(Debug, Clone)]
pub struct StoredInvite {
    /// The invite's token: the state key of the event, and what the identity server signs
    /// (with the invitee's user ID) once the address is bound.
    pub token: String,
    /// A name to show for the invitee (usually an obfuscated address).
    pub display_name: String,
    /// Every `{public_key, key_validity_url}` that may sign the invite.
    pub public_keys: Vec<Value>,
    /// The one of them that also goes into the event's top level (older servers read it).
    pub public_key: String,
    pub key_validity_url: String,
}

/// The invite details sent to `store-invite`, as Synapse sends them.
#[derive(Debug, Clone, Default)]
pub struct InviteDetails {
    pub medium: String,
    pub address: String,
    pub room_id: String,
    pub room_alias: String,
    pub room_avatar_url: String,
    pub room_join_rules: String,
    pub room_name: String,
    /// `type` of the room's create event; left out when the room has none.
    pub room_type: Option<String>,
    pub sender: String,
    pub sender_display_name: String,
    pub sender_avatar_url: String,
}

/// Calls identity servers; cheap to build, shared by every worker (`AppState`). The HTTP
/// client itself is made per call: awc's client is bound to one thread.
#[derive(Debug, Clone)]
pub struct IdentityClient {
    config: IdentityConfig,
    /// `server.ip_range_denylist`, shared with every other outbound client.
    denylist: Arc<IpDenylist>,
}

/// A validated `id_server` and how to reach it.
struct Target {
    name: String,
    base: String,
    insecure: bool,
}

impl IdentityClient {
    pub fn new(config: IdentityConfig, denylist: Arc<IpDenylist>) -> IdentityClient {
        IdentityClient { config, denylist }
    }

    /// Whether `id_server` may be called at all (`host[:port]`, not a private address unless
    /// listed as insecure): a check to make before anything else happens.
    pub fn check_server(&self, id_server: &str) -> Result<(), IdentityError> {
        self.target(id_server).map(|_| ())
    }

    /// Checks `id_server` and decides the scheme: `host[:port]`, https unless listed as
    /// insecure, and never an IP literal in a denied range unless listed.
    fn target(&self, id_server: &str) -> Result<Target, IdentityError> {
        let name = ruma::ServerName::parse(id_server).map_err(|_| {
            IdentityError::InvalidServer(format!(
                "id_server {id_server:?} is not a host name with an optional port"
            ))
        })?;
        let insecure = self
            .config
            .insecure_http_servers
            .iter()
            .any(|s| s == id_server);
        if !insecure && self.denylist.check_host(name.host()).is_err() {
            return Err(IdentityError::InvalidServer(format!(
                "id_server {id_server:?} is not a public address"
            )));
        }
        let scheme = if insecure { "http" } else { "https" };
        Ok(Target {
            name: id_server.to_owned(),
            base: format!("{scheme}://{id_server}"),
            insecure,
        })
    }

    /// A client for one call: timeouts, no redirects, and unless the server is listed as
    /// insecure, the resolver that keeps off denied addresses.
    fn http(&self, target: &Target) -> awc::Client {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let connector = awc::Connector::new()
            .timeout(timeout)
            .handshake_timeout(timeout);
        // The two connectors differ in type, so each branch finishes its own builder.
        if target.insecure {
            awc::Client::builder()
                .connector(connector)
                .timeout(timeout)
                .disable_redirects()
                .add_default_header(("User-Agent", "myelin"))
                .finish()
        } else {
            let guarded = actix_tls::connect::Connector::new(Resolver::custom(
                GuardedResolver::new(self.denylist.clone(), None),
            ));
            awc::Client::builder()
                .connector(connector.connector(guarded.service()))
                .timeout(timeout)
                .disable_redirects()
                .add_default_header(("User-Agent", "myelin"))
                .finish()
        }
    }

    /// Sends one request (`body` = POST, else GET) and reads a JSON object back, the whole
    /// exchange bounded by the timeout and the answer by the size limit.
    async fn call(
        &self,
        target: &Target,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Map<String, Value>, IdentityError> {
        let url = format!("{}{path}", target.base);
        let limit = self.config.max_response_bytes;
        let unreachable = |detail: String| IdentityError::Unreachable {
            server: target.name.clone(),
            detail,
        };
        let exchange = async {
            let client = self.http(target);
            let request = match body {
                Some(_) => client.post(&url),
                None => client.get(&url),
            }
            .bearer_auth(token);
            let mut response = match body {
                Some(b) => request.send_json(b).await,
                None => request.send().await,
            }
            .map_err(|e| unreachable(e.to_string()))?;
            let bytes = response
                .body()
                .limit(limit)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            Ok::<_, IdentityError>((response.status().as_u16(), bytes))
        };
        let (status, bytes) =
            actix_web::rt::time::timeout(Duration::from_millis(self.config.timeout_ms), exchange)
                .await
                .map_err(|_| unreachable("timed out".into()))??;
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(&bytes).ok();
        if !(200..300).contains(&status) {
            let field = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>()
            };
            return Err(IdentityError::Refused {
                server: target.name.clone(),
                status,
                errcode: field("errcode"),
                error: field("error"),
            });
        }
        parsed.ok_or_else(|| IdentityError::BadResponse {
            server: target.name.clone(),
            detail: format!("{path} did not answer a JSON object"),
        })
    }

    /// The Matrix user `address` (of `medium`) is bound to on `id_server`, if any.
    pub async fn lookup(
        &self,
        id_server: &str,
        id_access_token: &str,
        medium: &str,
        address: &str,
    ) -> Result<Option<ruma::OwnedUserId>, IdentityError> {
        let target = self.target(id_server)?;
        let bad = |detail: &str| IdentityError::BadResponse {
            server: target.name.clone(),
            detail: detail.to_owned(),
        };
        let details = self
            .call(
                &target,
                "/_matrix/identity/v2/hash_details",
                id_access_token,
                None,
            )
            .await?;
        let algorithms: Vec<&str> = details
            .get("algorithms")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let pepper = details
            .get("lookup_pepper")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("hash_details without lookup_pepper"))?;
        let (algorithm, value) = if algorithms.contains(&"sha256") {
            ("sha256", hash_address(address, medium, pepper))
        } else if algorithms.contains(&"none") {
            ("none", format!("{address} {medium}"))
        } else {
            return Err(bad(
                "no lookup algorithm this server supports (sha256, none)",
            ));
        };
        let body = json!({ "addresses": [value], "algorithm": algorithm, "pepper": pepper });
        let answer = self
            .call(
                &target,
                "/_matrix/identity/v2/lookup",
                id_access_token,
                Some(&body),
            )
            .await?;
        match answer
            .get("mappings")
            .and_then(Value::as_object)
            .and_then(|m| m.get(&value))
        {
            None => Ok(None),
            Some(Value::String(mxid)) => ruma::OwnedUserId::try_from(mxid.as_str())
                .map(Some)
                .map_err(|_| bad("lookup mapped the address to an invalid user ID")),
            Some(_) => Err(bad("lookup mapping is not a user ID")),
        }
    }

    /// Asks `id_server` to store an invite of `details.address`; the answer goes into the
    /// room's `m.room.third_party_invite` event (read as Synapse reads it).
    pub async fn store_invite(
        &self,
        id_server: &str,
        id_access_token: &str,
        details: &InviteDetails,
    ) -> Result<StoredInvite, IdentityError> {
        let target = self.target(id_server)?;
        let bad = |detail: &str| IdentityError::BadResponse {
            server: target.name.clone(),
            detail: detail.to_owned(),
        };
        let mut body = json!({
            "medium": details.medium,
            "address": details.address,
            "room_id": details.room_id,
            "room_alias": details.room_alias,
            "room_avatar_url": details.room_avatar_url,
            "room_join_rules": details.room_join_rules,
            "room_name": details.room_name,
            "sender": details.sender,
            "sender_display_name": details.sender_display_name,
            "sender_avatar_url": details.sender_avatar_url,
        });
        if let Some(room_type) = &details.room_type {
            body["room_type"] = json!(room_type);
        }
        let answer = self
            .call(
                &target,
                "/_matrix/identity/v2/store-invite",
                id_access_token,
                Some(&body),
            )
            .await?;
        let string = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
        let token = string("token")
            .filter(|t| !t.is_empty() && t.len() <= 255)
            .ok_or_else(|| bad("store-invite answered no token"))?;
        let display_name =
            string("display_name").ok_or_else(|| bad("store-invite answered no display_name"))?;
        // Keys with both fields as strings; a handful at most.
        let mut public_keys: Vec<Value> = answer
            .get("public_keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter(|k| k["public_key"].is_string() && k["key_validity_url"].is_string())
                    .take(16)
                    .map(|k| {
                        json!({
                            "public_key": k["public_key"],
                            "key_validity_url": k["key_validity_url"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fallback = match string("public_key") {
            Some(key) => json!({
                "public_key": key,
                "key_validity_url": format!("{}/_matrix/identity/v2/pubkey/isvalid", target.base),
            }),
            None => public_keys
                .first()
                .cloned()
                .ok_or_else(|| bad("store-invite answered no public key"))?,
        };
        if public_keys.is_empty() {
            public_keys.push(fallback.clone());
        }
        let field = |k: &str| fallback[k].as_str().unwrap_or_default().to_owned();
        Ok(StoredInvite {
            token,
            display_name,
            public_key: field("public_key"),
            key_validity_url: field("key_validity_url"),
            public_keys,
        })
    }
}

/// The v2 lookup hash: sha256 of `"<address> <medium> <pepper>"`, unpadded URL-safe base64.
pub fn hash_address(address: &str, medium: &str, pepper: &str) -> String {
    let digest = Sha256::digest(format!("{address} {medium} {pepper}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_hash_is_unpadded_url_safe_sha256() {
        // The spec's example: "alice@example.com email matrixrocks".
        assert_eq!(
            hash_address("alice@example.com", "email", "matrixrocks"),
            "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"
        );
    }

    #[test]
    fn servers_are_host_and_port_and_https_unless_listed() {
        let client = IdentityClient::new(
            IdentityConfig {
                insecure_http_servers: vec!["127.0.0.1:8090".into()],
                ..IdentityConfig::default()
            },
            Arc::new(IpDenylist::parse(crate::net::DEFAULT_DENYLIST).unwrap()),
        );
        assert_eq!(
            client.target("id.example.org").ok().map(|t| t.base),
            Some("https://id.example.org".to_owned())
        );
        assert_eq!(
            client.target("127.0.0.1:8090").ok().map(|t| t.base),
            Some("http://127.0.0.1:8090".to_owned())
        );
        for bad in [
            "127.0.0.1:8091",
            "10.0.0.1",
            "[::1]:80",
            "id.example.org/path",
            "user@id.example.org",
            "",
        ] {
            assert!(client.target(bad).is_err(), "{bad}");
        }
    }
}
