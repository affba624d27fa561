//! The federationapi's whole public API. Callers: routing (the key endpoints, and the
//! `X-Matrix` check of every signed federation request).

use super::FederationApiError;
use actix::Message;
use ruma::{OwnedServerName, OwnedServerSigningKeyId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Another server's signing keys, from the cache or fetched (directly, then through the
/// trusted notaries) when the cache cannot answer. Our own name answers our own keys.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<ServerKeys, FederationApiError>")]
pub struct QueryServerKeys {
    pub server_name: OwnedServerName,
    /// The keys wanted. Empty means any current key. The cache answers when each is known
    /// (a current key valid until `minimum_valid_until_ts`, or an old key); otherwise the
    /// keys are fetched again (at most once per server every few seconds).
    pub key_ids: Vec<OwnedServerSigningKeyId>,
    /// ms since the epoch; usually now.
    pub minimum_valid_until_ts: i64,
}

/// The keys known for a server after a [`QueryServerKeys`]: possibly fewer than asked for
/// (the caller decides whether what it needs is there and valid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeys {
    /// Key ID -> key.
    pub keys: BTreeMap<String, ServerKey>,
}

/// One public key of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKey {
    /// Unpadded base64.
    pub key: String,
    /// ms since the epoch: a current key may be used until then. For an old key: its
    /// `expired_ts`.
    pub valid_until_ts: i64,
    /// `Some` for an old key (`old_verify_keys`): valid for events sent before then, never
    /// for requests.
    pub expired_ts: Option<i64>,
}

/// Our own key object for `/_matrix/key/v2/server`: the current key, the configured old
/// keys, `valid_until_ts` now plus `federation.key_validity`, signed by us.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, FederationApiError>")]
pub struct QueryLocalServerKeys {}

/// As a notary: the key objects of the servers asked about (fetched if the cache cannot
/// answer), each with our signature added (`/_matrix/key/v2/query`). A server that cannot
/// be reached and has nothing cached is left out.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<Value>, FederationApiError>")]
pub struct QueryNotaryKeys {
    /// What is asked about each server.
    pub servers: BTreeMap<OwnedServerName, KeyQuery>,
}

/// The keys of one server a notary query asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyQuery {
    /// The keys wanted; empty means all (the answer may hold more keys either way).
    pub key_ids: Vec<OwnedServerSigningKeyId>,
    /// ms since the epoch: the cache answers when the keys are valid until then.
    pub minimum_valid_until_ts: i64,
}

crate::remote_messages!("federationapi":
    QueryServerKeys,
    QueryLocalServerKeys,
    QueryNotaryKeys,
);
